"""Two models timed side by side in one process (VMamba-T against Swin-T), with their share of
the machine's GEMM rate."""

from __future__ import annotations

import statistics
from dataclasses import replace

import torch

from .benchmark import (
    BenchSettings,
    autocast_for,
    gemm_peak_gflop_s,
    inference_model,
    setup,
    time_calls,
)

__all__ = ["paired_throughput"]


def _paper_gflops(model, size: int, device: torch.device) -> float:
    """G multiply-adds of one image, counted as the VMamba paper counts (``get_flops.py``)."""
    from .flops import count_flops

    return count_flops(model, inputs=(torch.randn(1, 3, size, size, device=device),)).flops / 1e9


def paired_throughput(spec_a: str, spec_b: str, size: int, settings: BenchSettings) -> dict:
    """Inference img/s of two models timed in one process in alternating blocks of repeats.

    The sweep times each model in its own process one after the other, so a change of load on
    a shared machine between the two skews their ratio; here both see the same conditions
    (blocks a, b, a, b, a, b). Between blocks the machine's GEMM rate is measured
    (:func:`gemm_peak_gflop_s`), so each model's arithmetic rate can be read as a share of
    what the hardware's matrix units deliver at that moment.

    On the CPU with ``settings.fuse`` both run as :func:`inference_model` makes them (VMamba
    fused by :func:`mmvmamba.deployment.fuse_for_cpu`); the multiply-adds are counted on the
    plain models.

    Returns:
        model_a/b, size, batch, threads, fused_a/b (whether fuse_for_cpu swapped blocks in),
        img_s_a/b (medians), ``ratio`` = img/s of a over b,
        gflops_a/b (paper-counted G multiply-adds per image), ``peak_gflop_s`` (median of the
        GEMM measurements) and use_a/b = 2 * gflops * img/s / peak_gflop_s (the share of the
        GEMM rate each model's counted arithmetic runs at).
    """
    quick = replace(settings, train=False, memory=False)
    plain, x = zip(*(setup(spec, size, quick) for spec in (spec_a, spec_b)))
    x = x[0]
    gflops = [_paper_gflops(model, size, x.device) for model in plain]  # plain modules count
    models = [inference_model(model, quick) for model in plain]

    def forward(model):
        def run():
            with torch.no_grad(), autocast_for(quick):
                model(x)

        return run

    times: list[list[float]] = [[], []]
    peaks = []
    for _ in range(3):
        for i, model in enumerate(models):
            times[i] += time_calls(forward(model), quick)
        peaks.append(gemm_peak_gflop_s(quick))
    t_a, t_b = statistics.median(times[0]), statistics.median(times[1])
    peak = statistics.median(peaks)
    img_s_a, img_s_b = quick.batch / t_a, quick.batch / t_b
    return dict(
        model_a=spec_a,
        model_b=spec_b,
        size=size,
        batch=quick.batch,
        threads=torch.get_num_threads(),
        fused_a=models[0] is not plain[0],
        fused_b=models[1] is not plain[1],
        img_s_a=img_s_a,
        img_s_b=img_s_b,
        ratio=t_b / t_a,
        gflops_a=gflops[0],
        gflops_b=gflops[1],
        peak_gflop_s=peak,
        use_a=2 * gflops[0] * img_s_a / peak,
        use_b=2 * gflops[1] * img_s_b / peak,
    )

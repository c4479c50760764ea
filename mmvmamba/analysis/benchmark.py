"""Throughput, forward+backward time and peak memory of backbones, as the VMamba paper measures.

Method (paper §"throughput", the official ``analyze/utils.Throughput``): a fixed random batch,
``warmup`` untimed iterations, then ``repeats`` timed ones; we report the **median** per-iteration
time (the official code reports the mean of 30; the median is robust to the noise of a shared
machine).

* Inference: ``model.eval()``, ``torch.no_grad()``; img/s = batch / median forward time. On
  the CPU (``fuse``, the default) VMamba runs fused by :func:`mmvmamba.deployment.fuse_for_cpu`,
  as a CPU deployment runs it; ``fuse=False`` times the plain model.
* Training step: ``model.train()``, cross-entropy on random labels (or the mean of the output
  for non-classifiers), forward + backward, no optimizer step (as the paper).
* GPU: CUDA events around each iteration, ``torch.autocast(float16)`` when ``amp`` (the paper's
  AMP numbers), peak memory = ``torch.cuda.max_memory_allocated`` after resetting the peak.
* CPU: ``time.perf_counter``; ``torch.set_num_threads(threads)`` pinned and reported. Peak memory
  is the growth of the process's peak resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
  during one forward (and one forward+backward) measured **in a fresh subprocess per
  (model, size)**: ``ru_maxrss`` only grows, so a process that already ran a bigger model would
  hide the peak; the baseline is taken after the model and input exist, so the number is the
  memory of activations and temporaries (plus the gradients for forward+backward), which is
  what grows with resolution. ``tracemalloc`` does not see torch's allocations, and
  ``torch.profiler``'s memory view needs a profile of every op; RSS is what the OS pays.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..deployment.fuse import fuse_for_cpu
from ..models.layers.cpu_fusion import onednn_fusion_available
from .bench_environment import environment
from .models import build_benchmark_model, first_tensor
from .scan_hooks import identity_scan, scan_mixers

__all__ = [
    "BenchSettings",
    "apply_allocator",
    "autocast_for",
    "environment",
    "gemm_peak_gflop_s",
    "inference_model",
    "measure",
    "measure_in_subprocess",
    "scan_ablation",
    "setup",
    "time_calls",
]


@dataclass
class BenchSettings:
    """Options of one measurement.

    Attributes:
        batch: images per iteration.
        warmup: untimed iterations before timing.
        repeats: timed iterations (the median is reported).
        threads: ``torch.set_num_threads`` on CPU (None: leave torch's default).
        device: ``'cpu'`` or ``'cuda'``.
        amp: float16 autocast on CUDA (ignored on CPU).
        train: also time forward+backward.
        memory: also measure peak memory.
        allocator: ``'system'`` (the C library's defaults) or ``'caching'``: glibc keeps freed
            memory for reuse (:func:`mmvmamba.analysis.allocator.keep_freed_memory`), so large
            tensors do not page-fault afresh every iteration, as under PyTorch's caching GPU
            allocator or a jemalloc / tcmalloc CPU deployment. CPU only; set for the whole
            process, before the model is built.
        fuse: on the CPU, time inference of the model fused by
            :func:`mmvmamba.deployment.fuse_for_cpu` (VMamba's blocks; other models have nothing
            to fuse); False times the plain model. Training always runs the plain model.
    """

    batch: int = 1
    warmup: int = 2
    repeats: int = 5
    threads: int | None = None
    device: str = "cpu"
    amp: bool = True
    train: bool = True
    memory: bool = True
    allocator: str = "system"
    fuse: bool = True

    def __post_init__(self) -> None:
        for name in ("batch", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.allocator not in ("system", "caching"):
            raise ValueError(f"allocator must be 'system' or 'caching', got {self.allocator!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch.cuda.is_available() is False; use 'cpu'")


def apply_allocator(settings: BenchSettings) -> None:
    """Switch this process to ``settings.allocator`` (``'caching'``: glibc keeps freed memory;
    cannot be undone). Raises RuntimeError when the C library is not glibc."""
    if settings.allocator == "caching" and settings.device == "cpu":
        from .allocator import keep_freed_memory

        if not keep_freed_memory():
            raise RuntimeError(
                "allocator='caching' needs glibc's mallopt (this C library is not glibc); "
                "use allocator='system', or preload jemalloc / tcmalloc yourself"
            )


def _maxrss_mb() -> float:
    # Linux reports kilobytes (macOS bytes)
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def autocast_for(settings: BenchSettings):
    """float16 autocast on CUDA with ``amp``, a disabled autocast otherwise."""
    enabled = settings.device == "cuda" and settings.amp
    return torch.autocast(device_type=settings.device, dtype=torch.float16, enabled=enabled)


def _loss(out) -> torch.Tensor:
    logits = first_tensor(out).float()
    if logits.dim() == 2:
        target = torch.randint(0, logits.shape[1], (logits.shape[0],), device=logits.device)
        return F.cross_entropy(logits, target)
    return logits.mean()


def time_calls(fn, settings: BenchSettings) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(settings.warmup):
        fn()
    times = []
    cuda = settings.device == "cuda"
    for _ in range(settings.repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def setup(spec: str, size: int, settings: BenchSettings) -> tuple[nn.Module, torch.Tensor]:
    """Pin the threads and the allocator of ``settings``, then build ``spec`` for ``size`` on
    the device (seed 0) and a random (batch, 3, size, size) input; returns (model, input)."""
    if settings.threads is not None and settings.device == "cpu":
        torch.set_num_threads(int(settings.threads))
    apply_allocator(settings)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    model = build_benchmark_model(spec, size).to(device)
    return model, torch.randn(settings.batch, 3, size, size, device=device)


def inference_model(model: nn.Module, settings: BenchSettings) -> nn.Module:
    """The module that inference is timed on: ``model`` in eval mode, or on the CPU with
    ``settings.fuse`` (and oneDNN in this torch build) its fused twin
    (:func:`~mmvmamba.deployment.fuse_for_cpu` with ``inplace=False``: it shares the
    parameters, ``model`` stays plain for training)."""
    model.eval()
    if settings.device == "cpu" and settings.fuse and onednn_fusion_available():
        return fuse_for_cpu(model, inplace=False)
    return model


def _no_mixer_error(spec: str) -> RuntimeError:
    return RuntimeError(
        f"{spec!r} has no selective-scan mixer (SS2D / BiMambaV2) to replace: the identity-scan "
        "ablation applies to VMamba and Vim models"
    )


def measure(spec: str, size: int, settings: BenchSettings, scan: str = "normal") -> dict:
    """Build ``spec`` for ``size`` and measure it in this process.

    Args:
        spec: a model name of :data:`mmvmamba.analysis.models.BENCHMARK_MODELS`,
            ``'vmamba:<arch>'`` or a config path.
        size: square input side.
        settings: see :class:`BenchSettings`.
        scan: ``'normal'`` or ``'identity'`` (every selective scan returns its input).

    Returns:
        A row: model, size, batch, device, threads, fused, scan, img_s, fwd_ms, fwdbwd_ms (NaN
        if not measured), mem_fwd_MB, mem_fwdbwd_MB (NaN unless ``settings.memory``),
        mem_method.
    """
    model, x = setup(spec, size, settings)
    infer = inference_model(model, settings)
    if scan == "identity" and not scan_mixers(model):
        raise _no_mixer_error(spec)
    nan = float("nan")
    row = dict(
        model=spec,
        size=size,
        batch=settings.batch,
        device=settings.device if settings.device == "cpu" else torch.cuda.get_device_name(),
        threads=torch.get_num_threads(),
        fused=infer is not model,
        scan=scan,
        img_s=nan,
        fwd_ms=nan,
        fwdbwd_ms=nan,
        mem_fwd_MB=nan,
        mem_fwdbwd_MB=nan,
        mem_method="",
    )

    def forward():
        with torch.no_grad(), autocast_for(settings):
            infer(x)

    def forward_backward():
        with autocast_for(settings):
            loss = _loss(model(x))
        loss.backward()
        model.zero_grad(set_to_none=True)

    with contextlib.ExitStack() as stack:
        if scan == "identity":
            for m in {id(model): model, id(infer): infer}.values():
                stack.enter_context(identity_scan(m))
        if settings.memory:  # before any timing: the first peak is the one we want
            row.update(_memory(forward, forward_backward, model, settings))
            model.eval()  # _memory trains for its forward+backward peak
            infer.eval()
        fwd = statistics.median(time_calls(forward, settings))
        row.update(fwd_ms=1000 * fwd, img_s=settings.batch / fwd)
        if settings.train:
            model.train()
            row["fwdbwd_ms"] = 1000 * statistics.median(time_calls(forward_backward, settings))
    return row


def _memory(forward, forward_backward, model, settings: BenchSettings) -> dict:
    if settings.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        forward()
        torch.cuda.synchronize()
        out = dict(mem_fwd_MB=(torch.cuda.max_memory_allocated() - base) / 2**20)
        if settings.train:
            model.train()
            torch.cuda.reset_peak_memory_stats()
            forward_backward()
            torch.cuda.synchronize()
            out["mem_fwdbwd_MB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        out["mem_method"] = "cuda max_memory_allocated - allocated before"
        return out
    gc.collect()
    base = _maxrss_mb()
    forward()
    out = dict(mem_fwd_MB=_maxrss_mb() - base)
    if settings.train:
        model.train()
        forward_backward()
        out["mem_fwdbwd_MB"] = _maxrss_mb() - base
    out["mem_method"] = "peak RSS growth (ru_maxrss), fresh process"
    return out


def measure_in_subprocess(
    spec: str, size: int, settings: BenchSettings, scan: str = "normal", timeout: float = 3600
) -> dict:
    """:func:`measure` in a fresh Python process (so the CPU peak-RSS memory is this model's).

    Raises:
        RuntimeError: the child failed; the message holds the end of its stderr.
    """
    payload = json.dumps(dict(spec=spec, size=size, settings=asdict(settings), scan=scan))
    cmd = [sys.executable, "-m", "mmvmamba.analysis.benchmark", payload]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark of {spec!r} at {size} failed in its subprocess:\n{proc.stderr[-3000:]}"
        )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT ") :])
    raise RuntimeError(
        f"benchmark subprocess of {spec!r} printed no result:\n{proc.stdout[-2000:]}"
    )


def scan_ablation(spec: str, size: int, settings: BenchSettings) -> dict:
    """Forward time of a model with its real selective scans and with ``y = u``.

    Both are timed in this process on the same model instance and input (fused on the CPU as
    :func:`inference_model` makes it), alternating blocks of repeats (normal, identity,
    normal, identity) so that load changes on the machine hit both; returns the medians and
    ``ratio = normal / identity``.
    """
    quick = replace(settings, train=False, memory=False)
    plain, x = setup(spec, size, quick)
    if not scan_mixers(plain):
        raise _no_mixer_error(spec)
    model = inference_model(plain, quick)

    def forward():
        with torch.no_grad(), autocast_for(quick):
            model(x)

    normal, ident = [], []
    for _ in range(2):
        normal += time_calls(forward, quick)
        with identity_scan(model):
            ident += time_calls(forward, quick)
    t_normal, t_ident = statistics.median(normal), statistics.median(ident)
    return dict(
        model=spec,
        size=size,
        batch=quick.batch,
        threads=torch.get_num_threads(),
        fused=model is not plain,
        fwd_ms=1000 * t_normal,
        fwd_identity_scan_ms=1000 * t_ident,
        ratio=t_normal / t_ident,
    )


def gemm_peak_gflop_s(
    settings: BenchSettings, shape: tuple[int, int, int] = (8192, 384, 1536), repeats: int = 3
) -> float:
    """The machine's matrix-multiply rate: best GFLOP/s (2 flops per multiply-add) of
    ``(m, k) @ (k, n)`` written into an output that is already paged in.

    The dtype is the one the models' GEMMs run in (float32; float16 under CUDA AMP). The
    default shape is a stage-3 MLP of VMamba-T / Swin-T at 768 px (k = 384, n = 4 * 384);
    a pre-touched output keeps first-touch page faults out of the peak.
    """
    m, k, n = shape
    device = torch.device(settings.device)
    dtype = torch.float16 if (settings.device == "cuda" and settings.amp) else torch.float32
    a = torch.randn(m, k, device=device, dtype=dtype)
    w = torch.randn(n, k, device=device, dtype=dtype)
    out = torch.zeros(m, n, device=device, dtype=dtype)
    quick = BenchSettings(
        warmup=1, repeats=repeats, threads=settings.threads, device=settings.device, amp=False
    )
    best = min(time_calls(lambda: torch.matmul(a, w.t(), out=out), quick))
    return 2 * m * k * n / best / 1e9


def _worker(payload: str) -> None:
    args = json.loads(payload)
    row = measure(args["spec"], args["size"], BenchSettings(**args["settings"]), args["scan"])
    print("@@RESULT " + json.dumps(row), flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1])

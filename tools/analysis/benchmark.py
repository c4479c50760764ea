"""Inference throughput, forward+backward time and peak memory of backbones vs resolution.

    python tools/analysis/benchmark.py                      # the paper's sweep, all models
    python tools/analysis/benchmark.py --models vmamba-t swin-t deit-s --sizes 224 768 \\
        --batch 1 --repeats 5 --threads 2

Models: ``vmamba-t/s/b`` (ours), mmpretrain's ``swin-t``, ``convnext-t``, ``deit-s``, and
``vim-s`` when Vim is registered; also ``vmamba:<arch>`` or a config path. Each (model, size)
runs in a fresh subprocess on CPU (peak-RSS memory needs it; ``--in-process`` skips memory).
On a GPU (``--device cuda``, default when available): CUDA events, float16 autocast, batch 128.
CPU inference runs VMamba fused by ``mmvmamba.deployment.fuse_for_cpu`` (as a CPU deployment
does); ``--no-fuse`` times the plain model (training is always the plain model).
Also times VMamba-T with its selective scan replaced by the identity (``--ablation-sizes``).

Writes ``benchmark.csv`` / ``benchmark.png`` (img/s, fwd+bwd time and memory vs size),
``scan_ablation.csv``, ``paired_throughput.csv`` and ``environment.json`` (versions, device,
threads, precision, TF32 / cuDNN / oneDNN switches, allocator and kernel environment variables)
into ``--out-dir``; prints the settings, the tables and the paper's targets.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import json
import math
import os
import sys

import torch
from tqdm import tqdm

from mmvmamba.analysis.benchmark import (
    BenchSettings,
    environment,
    measure,
    measure_in_subprocess,
    scan_ablation,
)
from mmvmamba.analysis.models import BENCHMARK_MODELS, vim_registered
from mmvmamba.analysis.plotting import default_out_dir, format_table, plot_lines, write_csv
from mmvmamba.analysis.side_by_side import paired_throughput

DEFAULT_MODELS = ["vmamba-t", "vmamba-s", "vmamba-b", "swin-t", "convnext-t", "deit-s"]
# VMamba-T's throughput targets relative to Swin-T, at the sizes they are set for (the paper's
# 224 and 768); a target is checked only when its size was measured.
THROUGHPUT_TARGETS = {224: 1.0, 768: 1.5}


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=None, help=f"from {sorted(BENCHMARK_MODELS)}"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 384, 512, 640, 768])
    parser.add_argument("--batch", type=int, default=128 if cuda else 1)
    parser.add_argument("--warmup", type=int, default=50 if cuda else 2)
    parser.add_argument("--repeats", type=int, default=30 if cuda else 5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if cuda else "cpu")
    parser.add_argument("--no-amp", action="store_true", help="fp32 on GPU (paper: AMP)")
    parser.add_argument(
        "--allocator",
        choices=["system", "caching"],
        default="system",
        help="CPU: 'caching' makes glibc keep freed memory for reuse (no fresh page faults on "
        "every large tensor, like a caching GPU allocator or jemalloc); both models alike",
    )
    parser.add_argument(
        "--no-fuse",
        action="store_true",
        help="CPU: time inference of the plain model, not the one fused by fuse_for_cpu",
    )
    parser.add_argument("--no-train", action="store_true", help="skip forward+backward")
    parser.add_argument("--in-process", action="store_true", help="no subprocess, no CPU memory")
    parser.add_argument(
        "--ablation-model", default="vmamba-t", help="model of the identity-scan ablation"
    )
    parser.add_argument(
        "--ablation-sizes", type=int, nargs="*", default=None, help="default: first and last size"
    )
    parser.add_argument("--out-dir", default=default_out_dir("benchmark"))
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = DEFAULT_MODELS + (["vim-s"] if vim_registered() else [])
    if args.ablation_sizes is None:
        args.ablation_sizes = sorted({args.sizes[0], args.sizes[-1]})
    if args.threads is None:
        args.threads = torch.get_num_threads()
    return args


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not math.isnan(v)


def _targets(rows: list[dict], ablation: list[dict], paired: list[dict]) -> list[str]:
    """The issue's targets, checked on the measured rows (only those that were measured); the
    throughput ratios come from the side-by-side runs (``paired``), not from the sweep."""
    by = {(r["model"], r["size"]): r for r in rows}
    lines = []

    def get(model, size, key):
        r = by.get((model, size))
        v = r.get(key) if r else None
        return v if isinstance(v, (int, float)) and not math.isnan(v) else None

    sizes = sorted({r["size"] for r in rows})
    lo, hi = (sizes[0], sizes[-1]) if sizes else (0, 0)
    for row in paired:
        need = THROUGHPUT_TARGETS[row["size"]]
        ok = row["ratio"] >= need
        lines.append(
            f"VMamba-T img/s at {row['size']}: {row['img_s_a']:.3g} vs Swin-T "
            f"{row['img_s_b']:.3g} = {row['ratio']:.2f}x, timed side by side "
            f"(target >= {need}x): {'MET' if ok else 'MISSED'}"
        )
        if _number(row.get("peak_gflop_s")) and _number(row.get("use_b")):
            need_use = need * row["use_b"] * row["gflops_a"] / row["gflops_b"]
            lines.append(
                f"  arithmetic rate at {row['size']} (paper-counted multiply-adds x 2 / time, "
                f"share of this machine's GEMM rate, {row['peak_gflop_s']:.0f} GFLOP/s): "
                f"VMamba-T {row['gflops_a']:.1f} G at {100 * row['use_a']:.0f}%, Swin-T "
                f"{row['gflops_b']:.1f} G at {100 * row['use_b']:.0f}%; {need}x Swin-T needs "
                f"VMamba-T at {100 * need_use:.0f}%"
            )
    if hi > lo:
        bound = 1.2 * (hi / lo) ** 2
        for model in ("vmamba-t", "deit-s", "swin-t", "convnext-t"):
            for key, what in (("fwd_ms", "time"), ("mem_fwd_MB", "memory")):
                a, b = get(model, hi, key), get(model, lo, key)
                if a and b:
                    verdict = ""
                    if model == "vmamba-t":
                        verdict = f" (target <= {bound:.1f}): " + (
                            "MET" if a / b <= bound else "MISSED"
                        )
                    lines.append(f"{model} {what} {hi} vs {lo}: {a / b:.1f}x{verdict}")
    for row in ablation:
        ok = row["ratio"] <= 1.5
        lines.append(
            f"{row['model']} forward / identity-scan forward at {row['size']}: {row['ratio']:.2f} "
            f"(target <= 1.5): {'MET' if ok else 'MISSED'}"
        )
    return lines


def main(argv=None) -> tuple[list[dict], list[dict]]:
    """Run the sweep; returns (benchmark rows, ablation rows)."""
    args = parse_args(argv)
    settings = BenchSettings(
        batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        device=args.device,
        amp=not args.no_amp,
        train=not args.no_train,
        memory=not args.in_process or args.device == "cuda",
        allocator=args.allocator,
        fuse=not args.no_fuse,
    )
    env = environment(settings)
    print(
        "settings: " + ", ".join(f"{k}={v}" for k, v in env.items() if v != ""),
        file=sys.stderr,
    )
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "environment.json"), "w") as f:
        json.dump(env, f, indent=1)
    jobs = [(m, s) for m in args.models for s in args.sizes]
    rows = []
    for model, size in tqdm(jobs, desc="benchmark", file=sys.stderr):
        try:
            if args.in_process:
                row = measure(model, size, settings)
            else:
                row = measure_in_subprocess(model, size, settings)
        except (RuntimeError, ValueError) as err:  # e.g. out of memory at a large size
            print(f"{model} @ {size}: failed: {str(err).strip().splitlines()[-1]}", file=sys.stderr)
            row = dict(model=model, size=size, batch=settings.batch, error=str(err)[-200:])
        rows.append(row)

    # VMamba-T vs Swin-T at the target sizes, timed side by side in one process
    paired = []
    if {"vmamba-t", "swin-t"} <= set(args.models):
        target_sizes = [s for s in args.sizes if s in THROUGHPUT_TARGETS]
        for size in tqdm(target_sizes, desc="VMamba-T vs Swin-T side by side", file=sys.stderr):
            paired.append(paired_throughput("vmamba-t", "swin-t", size, settings))

    ablation = []
    if args.ablation_model and args.ablation_sizes:
        for size in tqdm(args.ablation_sizes, desc="identity-scan ablation", file=sys.stderr):
            ablation.append(scan_ablation(args.ablation_model, size, settings))

    columns = ["model", "size", "batch", "threads", "img_s", "fwd_ms", "fwdbwd_ms"]
    columns += ["mem_fwd_MB", "mem_fwdbwd_MB", "fused", "device", "mem_method"]
    print(format_table(rows, columns[:-2]))
    if ablation:
        print("\nselective scan replaced by identity:")
        print(format_table(ablation))
    if paired:
        print("\nVMamba-T vs Swin-T, timed side by side in one process:")
        print(format_table(paired))
    print()
    for line in _targets(rows, ablation, paired):
        print(line)
    os.makedirs(args.out_dir, exist_ok=True)
    write_csv(rows, os.path.join(args.out_dir, "benchmark.csv"), columns + ["error"])
    if ablation:
        write_csv(ablation, os.path.join(args.out_dir, "scan_ablation.csv"))
    if paired:
        write_csv(paired, os.path.join(args.out_dir, "paired_throughput.csv"))
    ok_rows = [r for r in rows if "error" not in r]
    panels = [
        ("img_s", "inference img/s"),
        ("fwdbwd_ms", "forward+backward ms"),
        ("mem_fwd_MB", "peak forward memory (MB)"),
    ]
    panels = [p for p in panels if any(_number(r.get(p[0])) for r in ok_rows)] or panels[:1]
    plot_lines(
        ok_rows,
        x="size",
        ys=[p[0] for p in panels],
        group="model",
        path=os.path.join(args.out_dir, "benchmark.png"),
        title=f"{env['device_name']}, torch {env['torch']}, {env['precision']}, "
        f"batch {settings.batch}, {env['threads']} threads",
        logy=[True] * len(panels),
        ylabels=[p[1] for p in panels],
    )
    print(f"\nwrote {args.out_dir}/benchmark.csv, benchmark.png and environment.json")
    return rows, ablation


if __name__ == "__main__":
    main()

"""Benchmark the CPU selective-scan backends on VMamba-T stage shapes.

For every (resolution, stage, batch) it times the forward and forward+backward of each CPU
backend of :mod:`vmamba_ops.dispatch` ('ref': sequential reference; 'c': the fast path, the
compiled C kernel; 'torch': the chunked PyTorch scan that runs without a C compiler; the Triton
interpreter is far too slow to be worth timing; the old names 'cpu' / 'cpu-torch' are accepted
for 'c' / 'torch'), measures the machine's copy bandwidth and reports the memory-traffic floor
of the forward (bytes of u, delta, B, C read + y written, divided by the copy bandwidth) and how
far the fast path is from it.

Allocator (``--allocator``, default ``both``): glibc hands out every block over ~32 MB as fresh
pages, so an op whose output is that large pays first-touch page faults the floor's copy (into a
pre-touched buffer) does not. ``system`` times the ops with glibc's defaults, ``caching`` with
freed memory kept for reuse (:func:`mmvmamba.analysis.allocator.keep_freed_memory`, what
jemalloc / tcmalloc under ``torch.backends.xeon.run_cpu`` give), the like-for-like comparison
with the floor; ``both`` runs every backend with the defaults, then the fast path again with
the caching setting, and prints the floor ratio of each.

Shapes: VMamba-T, K = 4 directions, d_inner per direction D = 96/192/384/768 for stages 1-4,
L = (H/4 / 2^stage)^2, N = 1, G = K (one B/C per direction), dim = K * D channels.

Writes ``benchmark_ops.csv`` and ``benchmark_ops.png`` to ``--out-dir``. Example::

    python tools/analysis/benchmark_ops.py --batch 1 --resolution 224
    python tools/analysis/benchmark_ops.py --quick          # seconds, smoke test
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import csv
import math
import statistics
import time
from pathlib import Path

import torch

import vmamba_ops
from mmvmamba.analysis.allocator import keep_freed_memory

_OLD_NAMES = {"cpu": "c", "cpu-torch": "torch"}  # backend names before vmamba_ops.dispatch
STAGE_DIMS = (96, 192, 384, 768)  # VMamba-T d_inner per direction, stages 1..4
K = 4


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out-dir", default="work_dirs/benchmark_ops", help="CSV / PNG folder")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--resolution", type=int, nargs="+", default=[224, 768])
    p.add_argument(
        "--backends",
        nargs="+",
        default=["ref", "c", "torch"],
        choices=["ref", "c", "torch", *_OLD_NAMES],
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs of the fast path (median)")
    p.add_argument(
        "--ref-max-steps",
        type=int,
        default=3136,
        help="skip the reference when batch * L exceeds this (it takes minutes)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--allocator",
        choices=["both", "system", "caching"],
        default="both",
        help="glibc malloc defaults, freed memory kept for reuse, or both (see above)",
    )
    p.add_argument("--quick", action="store_true", help="tiny shapes, one run: a smoke test")
    args = p.parse_args(argv)
    args.backends = list(dict.fromkeys(_OLD_NAMES.get(b, b) for b in args.backends))
    return args


def make_inputs(batch: int, dim_per_dir: int, length: int, requires_grad: bool) -> dict:
    """SS2D-like inputs: A = -1 (A_log = 0), delta_bias = softplus^-1 of dt in [1e-3, 0.1]."""
    g = torch.Generator().manual_seed(0)
    dim = K * dim_per_dir

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_(requires_grad)

    dt = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length, scale=0.1),
        A=(-torch.ones(dim, 1)).requires_grad_(requires_grad),
        B=rnd(batch, K, 1, length),
        C=rnd(batch, K, 1, length),
        D=torch.ones(dim).requires_grad_(requires_grad),
        delta_bias=(dt + torch.log(-torch.expm1(-dt))).requires_grad_(requires_grad),
    )


def _time(fn, repeat: int, min_seconds: float = 0.2, max_repeat: int = 500) -> float:
    """Median wall time in ms after one warm-up call: ``repeat`` runs, more for fast calls
    (until ``min_seconds`` have passed, at most ``max_repeat``) so that sub-millisecond ops get
    enough samples for a stable median."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (
        len(times) < max_repeat and time.perf_counter() - start < min_seconds
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def copy_bandwidth(n_bytes: int = 1 << 28, repeat: int = 5) -> float:
    """Bytes moved per second (read + write) by a large tensor copy."""
    src = torch.ones(n_bytes // 4)
    dst = torch.zeros_like(src)  # touched: no page faults inside the timing
    ms = _time(lambda: dst.copy_(src), repeat)
    return 2 * n_bytes / (ms / 1e3)


def fresh_copy_bandwidth(n_bytes: int = 1 << 28, repeat: int = 5) -> float:
    """Bytes per second of ``clone()``: a copy into a newly allocated tensor (pays page faults
    when the allocator hands out fresh pages)."""
    src = torch.ones(n_bytes // 4)
    ms = _time(lambda: src.clone(), repeat)
    return 2 * n_bytes / (ms / 1e3)


def fwd_traffic_bytes(batch: int, dim: int, length: int, n: int = 1) -> int:
    """u, delta read + y written (float32), plus B and C (batch, K, N, L)."""
    return 4 * (3 * batch * dim * length + 2 * batch * K * n * length)


def bench_one(backend: str, batch: int, dpd: int, length: int, repeat: int) -> tuple[float, float]:
    kw = dict(delta_softplus=True, backend=backend)
    inp = make_inputs(batch, dpd, length, requires_grad=False)
    with torch.no_grad():
        fwd = _time(lambda: vmamba_ops.selective_scan(**inp, **kw), repeat)
    inp_g = make_inputs(batch, dpd, length, requires_grad=True)
    dy = torch.randn(batch, K * dpd, length)

    def fwd_bwd():
        y = vmamba_ops.selective_scan(**inp_g, **kw)
        y.backward(dy)

    fb = _time(fwd_bwd, repeat)
    return fwd, fb


def shapes(args) -> list[tuple[int, int, int, int]]:
    """(resolution, stage, D per direction, L) rows."""
    if args.quick:
        return [(32, 1, 8, 64), (32, 2, 16, 16)]
    out = []
    for res in args.resolution:
        side = res // 4
        for stage, dpd in enumerate(STAGE_DIMS, start=1):
            out.append((res, stage, dpd, (side >> (stage - 1)) ** 2))
    return out


def _progress(items, **kw):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in requirements/runtime.txt; keep working without it
        return items
    return tqdm(items, **kw)


def plot(rows: list[dict], path: Path) -> None:
    """Time vs L: a colour per (resolution, batch), a line style per (backend, allocator); the
    forward panel draws each colour's memory-traffic floor dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    groups = sorted({(r["resolution"], r["batch"]) for r in rows})
    colours = {g: f"C{i}" for i, g in enumerate(groups)}
    kinds = sorted({(r["backend"], r["allocator"]) for r in rows})
    styles = dict(zip(kinds, ["-o", "--s", "-.^", ":v", "-D", "--x"]))
    for ax, key, title in zip(axes, ("fwd_ms", "fwd_bwd_ms"), ("forward", "forward + backward")):
        for res, batch in groups:
            for backend, alloc in kinds:
                sel = [
                    r
                    for r in rows
                    if (r["backend"], r["allocator"]) == (backend, alloc)
                    and (r["resolution"], r["batch"]) == (res, batch)
                    and r[key] == r[key]  # drop skipped (NaN)
                ]
                if sel:
                    ax.plot(
                        [r["L"] for r in sel],
                        [r[key] for r in sel],
                        styles[(backend, alloc)],
                        color=colours[(res, batch)],
                        label=f"{backend} ({alloc} malloc) {res}px b{batch}",
                    )
            floor = {
                r["L"]: r["floor_fwd_ms"]
                for r in rows
                if (r["resolution"], r["batch"]) == (res, batch)
            }
            if key == "fwd_ms" and floor:
                ax.plot(
                    sorted(floor),
                    [floor[length] for length in sorted(floor)],
                    linestyle=(0, (1, 1)),
                    color=colours[(res, batch)],
                    linewidth=2,
                    label=f"memory floor {res}px b{batch}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L (stages 4 .. 1)")
        ax.set_title(f"selective scan {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms")
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _phases(args) -> list[tuple[str, list[str]]]:
    """(allocator, backends) in the order they run: the defaults first (cannot be undone)."""
    if args.allocator == "both":
        fast = [b for b in args.backends if b == "c"]
        return [("system", list(args.backends))] + ([("caching", fast)] if fast else [])
    return [(args.allocator, list(args.backends))]


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_copy = 1 << 22 if args.quick else 1 << 28
    bw = copy_bandwidth(n_copy, 2 if args.quick else 5)
    fresh_bw = fresh_copy_bandwidth(n_copy, 2 if args.quick else 5)
    rows = []
    for allocator, backends in _phases(args):
        if allocator == "caching" and not keep_freed_memory():
            print("--allocator caching: libc is not glibc, the caching setting is not available")
            continue
        jobs = [
            (shape, batch, backend)
            for shape in shapes(args)
            for batch in ([1] if args.quick else args.batch)
            for backend in backends
        ]
        for (res, stage, dpd, length), batch, backend in _progress(
            jobs, desc=f"benchmark_ops ({allocator} malloc)"
        ):
            skip = backend == "ref" and batch * length > args.ref_max_steps
            if skip:
                fwd = fb = float("nan")
            else:
                fwd, fb = bench_one(backend, batch, dpd, length, 1 if backend == "ref" else repeat)
            floor = fwd_traffic_bytes(batch, K * dpd, length) / bw * 1e3
            rows.append(
                dict(
                    resolution=res,
                    stage=stage,
                    batch=batch,
                    dim=K * dpd,
                    L=length,
                    N=1,
                    backend=backend,
                    allocator=allocator,
                    fwd_ms=round(fwd, 3),
                    fwd_bwd_ms=round(fb, 3),
                    floor_fwd_ms=round(floor, 4),
                    fwd_over_floor=round(fwd / floor, 2) if fwd == fwd else float("nan"),
                )
            )
    # speed-up of the fast path over the reference, where both ran (same allocator)
    by_key = {
        (r["resolution"], r["stage"], r["batch"], r["backend"], r["allocator"]): r for r in rows
    }
    for r in rows:
        ref = by_key.get((r["resolution"], r["stage"], r["batch"], "ref", r["allocator"]))
        ok = ref is not None and ref["fwd_ms"] == ref["fwd_ms"]
        r["fwd_speedup_vs_ref"] = round(ref["fwd_ms"] / r["fwd_ms"], 1) if ok else float("nan")
        r["fwd_bwd_speedup_vs_ref"] = (
            round(ref["fwd_bwd_ms"] / r["fwd_bwd_ms"], 1) if ok else float("nan")
        )

    csv_path, png_path = out_dir / "benchmark_ops.csv", out_dir / "benchmark_ops.png"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, png_path)

    print(
        f"\ncopy bandwidth (read + write): {bw / 1e9:.2f} GB/s into a pre-touched buffer, "
        f"{fresh_bw / 1e9:.2f} GB/s into a new one (clone); threads: {torch.get_num_threads()}"
    )
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).rjust(w) for c, w in zip(cols, widths)))
    for line in target_lines(rows):
        print(line)
    print(f"\nwrote {csv_path} and {png_path}")
    return rows


def target_lines(rows: list[dict]) -> list[str]:
    """The issue's targets for the fast path: >= 20x the reference at L=3136 (forward and
    forward+backward) and a forward within 4x of the memory-traffic floor."""
    lines = [""]
    for r in rows:
        if (
            r["backend"] == "c"
            and r["L"] == 3136
            and r["allocator"] == "system"
            and r["fwd_speedup_vs_ref"] == r["fwd_speedup_vs_ref"]
        ):
            worst = min(r["fwd_speedup_vs_ref"], r["fwd_bwd_speedup_vs_ref"])
            lines.append(
                f"c vs ref at L=3136, batch {r['batch']}: fwd {r['fwd_speedup_vs_ref']}x, "
                f"fwd+bwd {r['fwd_bwd_speedup_vs_ref']}x (target >= 20x): "
                f"{'MET' if worst >= 20 else 'MISSED'}"
            )
    for allocator in ("caching", "system"):
        fast = [r for r in rows if r["backend"] == "c" and r["allocator"] == allocator]
        if not fast:
            continue
        worst = max(fast, key=lambda r: r["fwd_over_floor"])
        verdict = "MET" if worst["fwd_over_floor"] <= 4 else "MISSED"
        what = (
            "like for like with the floor's pre-touched copy"
            if allocator == "caching"
            else "outputs over ~32 MB are fresh pages: first-touch faults included"
        )
        lines.append(
            f"c forward / memory-traffic floor, {allocator} malloc ({what}): worst "
            f"{worst['fwd_over_floor']}x (stage {worst['stage']}, {worst['resolution']}px, "
            f"batch {worst['batch']}) (target <= 4x): {verdict}"
        )
    return lines


if __name__ == "__main__":
    main()

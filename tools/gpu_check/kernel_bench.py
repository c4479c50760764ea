"""Section ``kernel_bench``: times of the selective scan and cross-scan kernels.

For each launch the models make (VMamba-T stage 1 at 224 batch 128 and at 768 batch 16, Vim-S
at 224 batch 128), float32 and bfloat16, forward and forward+backward: our Triton kernels, the
chunked PyTorch scan (``backend='torch'``, what CUDA runs without Triton), the
sequential PyTorch reference (:func:`vmamba_ops.selective_scan_ref`; forward+backward only where
the sequence is short enough to finish in the budget) and ``mamba_ssm.selective_scan_fn`` where
``mamba_ssm`` imports. Cross-scan / cross-merge: Triton against the PyTorch reference backend.
"""

from __future__ import annotations

import torch

import vmamba_ops

from .context import Context, out_of_time, time_calls
from .report import SKIP

# (name, batch, dim, groups, d_state, length, with_z)
FULL_SCANS = (
    ("vmamba-t stage1 224 b128", 128, 384, 4, 1, 56 * 56, False),
    ("vmamba-t stage1 768 b16", 16, 384, 4, 1, 192 * 192, False),
    ("vim-s 224 b128", 128, 1536, 2, 16, 197, True),
)
DRY_SCANS = (
    ("vmamba-like", 1, 8, 4, 1, 64, False),
    ("vim-like", 1, 8, 2, 4, 19, True),
)
FULL_CROSS = (("vmamba-t stage1 224 b128", (128, 96, 56, 56)), ("768 b16", (16, 96, 192, 192)))
DRY_CROSS = (("tiny", (1, 4, 6, 5)),)
REF_FWD_BWD_MAX_L = 4096  # the sequential reference's backward is one autograd node per step


def mamba_ssm_scan():
    """``mamba_ssm``'s selective_scan_fn, or None when it is not importable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or built for another torch: the column says so
        return None
    return selective_scan_fn


def _inputs(shape: tuple, dtype, device: str) -> list:
    _, batch, dim, groups, n, length, with_z = shape
    g = torch.Generator(device=device).manual_seed(0)

    def rnd(*s, low=True):
        t = torch.randn(*s, generator=g, device=device)
        return t.to(dtype) if low else t

    return [
        rnd(batch, dim, length),
        rnd(batch, dim, length) * 0.5 - 1.0,
        -torch.rand(dim, n, generator=g, device=device) - 0.5,
        rnd(batch, groups, n, length),
        rnd(batch, groups, n, length),
        rnd(dim, low=False),
        rnd(batch, dim, length) if with_z else None,
        rnd(dim, low=False) * 0.1 - 2.0,
    ]


def _timer(ctx: Context, scan, args: list, backward: bool, reps: int, max_s: float, warmup=1):
    if not backward:
        with torch.no_grad():
            return time_calls(lambda: scan(*args), ctx.device, reps, max_s, warmup)
    leaves = [a.detach().requires_grad_() if a is not None else None for a in args]
    present = [a for a in leaves if a is not None]
    dy = torch.randn_like(args[0])

    def step():
        y = scan(*leaves)
        torch.autograd.grad(y, present, dy)

    return time_calls(step, ctx.device, reps, max_s, warmup)


def bench_scan(ctx: Context, shape: tuple, dtype_name: str, backward: bool, mamba) -> dict:
    dtype = getattr(torch, dtype_name)
    args = _inputs(shape, dtype, ctx.device)
    kw = dict(delta_softplus=True)
    reps, max_s = (2, 1.0) if ctx.dry_run else (20, 2.0)
    row = {}
    row["triton_ms"] = 1e3 * _timer(
        ctx,
        lambda *a: vmamba_ops.selective_scan(*a, **kw, backend="triton"),
        args,
        backward,
        reps,
        max_s,
    )
    # the chunked PyTorch scan: what runs on CUDA without Triton
    torch_scan = lambda *a: vmamba_ops.selective_scan(*a, **kw, backend="torch")  # noqa: E731
    row["torch_chunked_ms"] = 1e3 * _timer(ctx, torch_scan, args, backward, reps, max_s)
    if backward and shape[5] > REF_FWD_BWD_MAX_L:
        row["torch_ref_ms"] = "not timed (L too long)"
    else:
        ref = lambda *a: vmamba_ops.selective_scan_ref(*a, **kw)  # noqa: E731
        row["torch_ref_ms"] = 1e3 * _timer(ctx, ref, args, backward, 1, 0.0, warmup=0)
        row["ref_over_triton"] = row["torch_ref_ms"] / row["triton_ms"]
    if mamba is None:
        row["mamba_ssm_ms"] = "not importable"
    else:
        fn = lambda *a: mamba(*a, delta_softplus=True)  # noqa: E731
        row["mamba_ssm_ms"] = 1e3 * _timer(ctx, fn, args, backward, reps, max_s)
        row["triton_over_mamba"] = row["triton_ms"] / row["mamba_ssm_ms"]
    return row


def bench_cross(ctx: Context, size: tuple, dtype_name: str) -> dict:
    dtype = getattr(torch, dtype_name)
    b, c, h, w = size
    x = torch.randn(b, c, h, w, device=ctx.device, dtype=dtype)
    y = torch.randn(b, 4, c, h, w, device=ctx.device, dtype=dtype)
    reps, max_s = (2, 1.0) if ctx.dry_run else (20, 1.0)
    row = {}
    with torch.no_grad():
        for backend, label in (("triton", "triton"), ("ref", "torch_ref")):
            row[f"scan_{label}_ms"] = 1e3 * time_calls(
                lambda be=backend: vmamba_ops.cross_scan(x, "cross", True, backend=be),
                ctx.device,
                reps,
                max_s,
            )
            row[f"merge_{label}_ms"] = 1e3 * time_calls(
                lambda be=backend: vmamba_ops.cross_merge(y, "cross", True, backend=be),
                ctx.device,
                reps,
                max_s,
            )
    return row


def run(ctx: Context) -> None:
    mamba = mamba_ssm_scan()
    if mamba is None:
        ctx.add(item="mamba_ssm.selective_scan_fn", status=SKIP, error="mamba_ssm not importable")
    for shape in DRY_SCANS if ctx.dry_run else FULL_SCANS:
        for dtype in ("float32", "bfloat16"):
            for backward in (False, True):
                label = "fwd+bwd" if backward else "fwd"
                if out_of_time(ctx, 8, f"selective_scan {shape[0]} {dtype} {label}"):
                    continue
                ctx.guarded(
                    f"selective_scan {shape[0]}",
                    lambda s=shape, d=dtype, bw=backward: bench_scan(ctx, s, d, bw, mamba),
                    dtype=dtype,
                    **{"pass": label},
                )
                _free(ctx)
    for name, size in DRY_CROSS if ctx.dry_run else FULL_CROSS:
        for dtype in ("float32", "bfloat16"):
            if out_of_time(ctx, 4, f"cross_scan {name} {dtype}"):
                continue
            ctx.guarded(
                f"cross_scan/merge {name}",
                lambda s=size, d=dtype: bench_cross(ctx, s, d),
                dtype=dtype,
                **{"pass": "fwd"},
            )


def _free(ctx: Context) -> None:
    if ctx.device == "cuda":
        torch.cuda.empty_cache()

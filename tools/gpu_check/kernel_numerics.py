"""Section ``kernel_numerics``: the Triton kernels at the models' shapes against float64.

Selective scan, forward and backward, for float32, bfloat16 and float16 inputs (parameters
A, D and delta_bias in float32, as under autocast), compared with
:func:`vmamba_ops.selective_scan_ref` run in float64 on the same (rounded) values. Errors are
norm-wise relative, ``||got - ref|| / ||ref||``, per output and per gradient; the worst one per
row is checked against the dtype's tolerance. Cross-scan / cross-merge for every pattern and
both layouts: the scan must equal the reference exactly, the merge and both backwards within a
few ulps of the dtype. Last, two backward passes of the scan must give bitwise-equal gradients.
"""

from __future__ import annotations

import traceback

import torch

import vmamba_ops

from .context import Context, out_of_time
from .report import FAIL, PASS

# (name, batch, dim, groups, d_state, length, with_z, return_last_state)
FULL_SCANS = (
    ("vmamba-t stage1 224", 1, 384, 4, 1, 56 * 56, False, False),
    ("vmamba-v0-t stage1 224", 1, 768, 4, 16, 56 * 56, False, False),
    ("vim-s 224", 2, 1536, 2, 16, 197, True, False),
    ("long row L=16384", 1, 32, 1, 1, 16384, False, True),
)
DRY_SCANS = (
    ("vmamba-like", 1, 8, 4, 1, 37, False, False),
    ("vim-like", 1, 8, 2, 4, 19, True, True),
)
# (y, gradients) norm-wise relative tolerances, by input dtype name
TOLERANCE = {"float32": (1e-4, 1e-3), "bfloat16": (1e-2, 2e-2), "float16": (2e-3, 5e-3)}
FULL_CROSS = ((2, 96, 56, 56), (1, 17, 5, 27))
DRY_CROSS = ((1, 5, 3, 7),)


def rel_err(got, ref) -> float:
    got, ref = got.detach().double(), ref.detach().double()
    if got.shape != ref.shape:
        raise ValueError(f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    if not bool(got.isfinite().all()):
        return float("inf")
    return float((got - ref).norm() / ref.norm().clamp_min(1e-30))


def _base_inputs(batch, dim, groups, n, length, with_z, device) -> dict:
    """float64 tensors whose values are exact in bfloat16 (so every dtype sees the same input)."""
    g = torch.Generator().manual_seed(0)

    def rnd(*shape, scale=1.0, shift=0.0, exact=torch.bfloat16):
        t = torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift
        return t.to(exact).double().to(device)

    return {
        "u": rnd(batch, dim, length),
        "delta": rnd(batch, dim, length, scale=0.5, shift=-1.0),
        "A": -torch.exp(rnd(dim, n, scale=0.5, exact=torch.float32)),
        "B": rnd(batch, groups, n, length),
        "C": rnd(batch, groups, n, length),
        "D": rnd(dim, exact=torch.float32),
        "z": rnd(batch, dim, length) if with_z else None,
        "delta_bias": (torch.rand(dim, generator=g, dtype=torch.float64) - 2.0)
        .float()
        .double()
        .to(device),
    }


_PARAMS = ("A", "D", "delta_bias")
_ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _scan_and_grads(inputs: dict, backend: str | None, last: bool, weights) -> tuple:
    """Outputs and gradients of ``<y, w> (+ <last, w2>)`` for every input."""
    leaves = {k: v.detach().requires_grad_() for k, v in inputs.items() if v is not None}
    args = [leaves.get(k) for k in _ORDER]
    kw = dict(delta_softplus=True, return_last_state=last)
    if backend is None:
        out = vmamba_ops.selective_scan_ref(*args, **kw)
    else:
        out = vmamba_ops.selective_scan(*args, **kw, backend=backend)
    outs = out if last else (out,)
    loss = sum((o.double() * w).sum() for o, w in zip(outs, weights))
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return outs, dict(zip(leaves, grads))


def check_scan(ctx: Context, shape: tuple, dtypes) -> None:
    name, batch, dim, groups, n, length, with_z, last = shape
    base = _base_inputs(batch, dim, groups, n, length, with_z, ctx.device)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(batch, dim, length, generator=g, dtype=torch.float64)]
    weights.append(torch.randn(batch, dim, n, generator=g, dtype=torch.float64))
    weights = [w.to(ctx.device) for w in weights]
    ref_out, ref_grads = _scan_and_grads(base, None, last, weights)
    for dtype in dtypes:
        if out_of_time(ctx, 10, f"selective_scan {name} {dtype}"):
            return

        def one(dtype=dtype):
            low = getattr(torch, dtype)
            inputs = {
                k: (None if v is None else v.float() if k in _PARAMS else v.to(low))
                for k, v in base.items()
            }
            outs, grads = _scan_and_grads(inputs, "triton", last, weights)
            errs = {"y": rel_err(outs[0], ref_out[0])}
            if last:
                errs["last_state"] = rel_err(outs[1], ref_out[1])
            grad_errs = {f"d{k}": rel_err(v, ref_grads[k]) for k, v in grads.items()}
            tol_y, tol_g = TOLERANCE[dtype]
            worst_y = max(errs.values())
            worst_g_name = max(grad_errs, key=grad_errs.get)
            ok = worst_y <= tol_y and grad_errs[worst_g_name] <= tol_g
            return {
                "err_y": worst_y,
                "tol_y": tol_y,
                "err_grad": grad_errs[worst_g_name],
                "worst_grad": worst_g_name,
                "tol_grad": tol_g,
                "status": PASS if ok else FAIL,
            }

        ctx.guarded(
            f"selective_scan {name}",
            one,
            dtype=dtype,
            shape=f"b{batch} d{dim} g{groups} n{n} L{length}" + (" z" if with_z else ""),
        )


def check_determinism(ctx: Context, shape: tuple) -> None:
    """Two backward passes of the compiled kernels give bitwise-equal gradients."""
    name, batch, dim, groups, n, length, with_z, last = shape
    base = _base_inputs(batch, dim, groups, n, length, with_z, ctx.device)
    inputs = {k: None if v is None else v.float() for k, v in base.items()}
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(batch, dim, length, generator=g, dtype=torch.float64).to(ctx.device)]

    def twice():
        first = _scan_and_grads(inputs, "triton", False, weights)[1]
        second = _scan_and_grads(inputs, "triton", False, weights)[1]
        differ = [k for k in first if not torch.equal(first[k], second[k])]
        return {"differing_grads": ", ".join(differ), "status": FAIL if differ else PASS}

    ctx.guarded(f"determinism {name}", twice, dtype="float32")


def check_cross(ctx: Context, sizes, dtypes) -> None:
    for channel_first in (True, False):
        for dtype in dtypes:
            layout = "channel-first" if channel_first else "channel-last"
            if out_of_time(ctx, 5, f"cross_scan/merge {layout} {dtype}"):
                return

            def one(dtype=dtype, channel_first=channel_first):
                low = getattr(torch, dtype)
                worst, bad = {"merge": 0.0, "scan_grad": 0.0, "merge_grad": 0.0}, []
                for b, c, h, w in sizes:
                    x = torch.randn(b, c, h, w, device=ctx.device).to(low)
                    y = torch.randn(b, 4, c, h, w, device=ctx.device).to(low)
                    if not channel_first:
                        x = x.permute(0, 2, 3, 1).contiguous()
                        y = y.permute(0, 3, 4, 1, 2).contiguous()
                    for pattern in vmamba_ops.PATTERNS:
                        errs = _cross_pair(x, y, pattern, channel_first)
                        if not errs.pop("scan_exact"):
                            bad.append(f"{pattern} {b}x{c}x{h}x{w} scan")
                        for k, v in errs.items():
                            worst[k] = max(worst[k], v)
                tol = 4 * torch.finfo(low).eps
                bad += [f"{k} {v:.2e}" for k, v in worst.items() if v > tol]
                errs = {f"err_{k}": v for k, v in worst.items()}
                return {**errs, "tol": tol, "bad": "; ".join(bad), "status": FAIL if bad else PASS}

            ctx.guarded(f"cross_scan/merge {layout}", one, dtype=dtype)


def _cross_pair(x, y, pattern: str, channel_first: bool) -> dict:
    """Triton vs reference for one pattern: scan exactness, merge and both backwards."""
    res = {}
    outs = {}
    for backend in ("triton", "ref"):
        xs = x.detach().requires_grad_()
        ys = y.detach().requires_grad_()
        scanned = vmamba_ops.cross_scan(xs, pattern, channel_first, backend=backend)
        merged = vmamba_ops.cross_merge(ys, pattern, channel_first, backend=backend)
        g = torch.Generator(device="cpu").manual_seed(2)
        w_s = torch.randn(scanned.shape, generator=g).to(scanned)
        w_m = torch.randn(merged.shape, generator=g).to(merged)
        (scanned * w_s).sum().backward()
        (merged * w_m).sum().backward()
        outs[backend] = (scanned, merged, xs.grad, ys.grad)
    tri, ref = outs["triton"], outs["ref"]
    res["scan_exact"] = bool(torch.equal(tri[0], ref[0]))
    res["merge"] = rel_err(tri[1], ref[1])
    res["scan_grad"] = rel_err(tri[2], ref[2])
    res["merge_grad"] = rel_err(tri[3], ref[3])
    return res


def run(ctx: Context) -> None:
    dtypes = ("float32", "bfloat16", "float16")
    for shape in DRY_SCANS if ctx.dry_run else FULL_SCANS:
        if out_of_time(ctx, 10, f"selective_scan {shape[0]}"):
            break
        try:
            check_scan(ctx, shape, dtypes)
        except Exception as exc:  # the float64 reference itself failed: record it, go on
            traceback.print_exc()
            ctx.add(item=f"selective_scan {shape[0]}", status=FAIL, error=f"reference: {exc}")
    check_cross(ctx, DRY_CROSS if ctx.dry_run else FULL_CROSS, dtypes)
    if not out_of_time(ctx, 5, "determinism"):
        check_determinism(ctx, (DRY_SCANS if ctx.dry_run else FULL_SCANS)[0])

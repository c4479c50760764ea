"""The compiled CPU selective scan (``ops/csrc/scan_cpu.c``), called through ctypes.

Why: the chunked PyTorch scan (:mod:`.torch_scan`) makes a dozen passes over memory per call
(cumsum, exp, products, carries); the C kernel makes one, with the recurrence in registers and
the math vectorised by the compiler. How it is built: :mod:`vmamba_ops._c_library`; when it
runs: :func:`vmamba_ops.dispatch.resolve_backend`.

The kernel computes ``dt = softplus(delta + delta_bias)`` itself; the ``silu(z)`` gate is
applied with torch around it (see the C file for its exact contract).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._c_library import I64, INT, PTR, function, ptr

_WIDTH = 8  # channels per block in the C kernel (WIDTH in scan_cpu.c)


_kernels: dict[str, object] = {}  # ctypes functions by name, declared once


def _kernel(name: str, argtypes: list):
    fn = _kernels.get(name)
    if fn is None:
        fn = _kernels[name] = function(name, argtypes)
    return fn


def _fwd(sfx: str):
    return _kernel(f"vmamba_scan_fwd_{sfx}", [I64] * 5 + [INT] + [PTR] * 9 + [INT])


def _fwd_lowrank(sfx: str):
    return _kernel(f"vmamba_scan_fwd_lowrank_{sfx}", [I64] * 7 + [INT] + [PTR] * 10 + [INT])


def _bwd(sfx: str):
    return _kernel(f"vmamba_scan_bwd_{sfx}", [I64] * 6 + [INT] + [PTR] * 17 + [INT])


def _as(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """``t`` as a contiguous tensor of ``dtype`` (no call at all when it already is one)."""
    if t is None:
        return None
    if t.dtype != dtype:
        t = t.to(dtype)
    return t if t.is_contiguous() else t.contiguous()


def _common(u, delta, delta_bias, A, B, C, D):
    """Compute dtype, sizes, kernel suffix and the inputs as contiguous buffers of that dtype."""
    ct = torch.float64 if u.dtype == torch.float64 else torch.float32
    b, dim, length = u.shape
    g, n = B.shape[1], A.shape[1]
    sfx = "f64" if ct == torch.float64 else "f32"
    ins = (u, delta, delta_bias, A, B, C, D)
    cast = [_as(t, ct) for t in ins]
    return ct, (b, g, dim // g, n, length), sfx, cast


def _forward(kernel, shape: tuple, ct: torch.dtype, z: Tensor | None, out_dtype) -> tuple:
    """Allocates y (batch, dim, L) and the last state (batch, dim, N) in ``ct``, runs
    ``kernel(y, last)`` (a C forward, 0 on success) and applies the ``silu(z)`` gate."""
    b, dim, length, n = shape
    y = torch.empty(b, dim, length, dtype=ct)
    last = torch.zeros(b, dim, n, dtype=ct)
    if y.numel() > 0 and kernel(y, last) != 0:
        raise MemoryError("selective_scan (CPU kernel): out of memory for scratch buffers")
    if z is not None:
        y.mul_(F.silu(z.to(ct)))
    return y.to(out_dtype), last


@torch.no_grad()
def selective_scan_fwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Forward; same contract as :func:`vmamba_ops.selective_scan.torch_scan.selective_scan_fwd`.

    Shapes: u, delta, z (batch, dim, L); A (dim, N); B, C (batch, G, N, L); D, delta_bias (dim,).
    """
    ct, (b, g, dg, n, length), sfx, ins = _common(u, delta, delta_bias, A, B, C, D)

    def kernel(y: Tensor, last: Tensor) -> int:
        return _fwd(sfx)(
            b, g, dg, n, length, int(delta_softplus), *map(ptr, (*ins, y, last)),
            torch.get_num_threads(),
        )  # fmt: skip

    return _forward(kernel, (b, g * dg, length, n), ct, z, u.dtype)


def _group_stride(low: Tensor) -> int | None:
    """Elements between the (b * G + g)-th (R, L) blocks of ``low`` (batch, G, R, L) if its
    layout lets the kernel read it in place (rows L apart, unit steps), else None."""
    b, g, r, length = low.shape
    if (length > 1 and low.stride(3) != 1) or (r > 1 and low.stride(2) != length):
        return None
    if g == 1:
        return low.stride(0)
    if b > 1 and low.stride(0) != g * low.stride(1):
        return None
    return low.stride(1)


@torch.no_grad()
def selective_scan_fwd_lowrank(
    u, delta_low, delta_proj, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False
):
    """Forward with ``delta`` given by its factors: channel d of group g uses
    ``delta_proj[d] @ delta_low[:, g]``; the kernel forms it per chunk (no (batch, dim, L)
    delta in memory).

    Shapes: u, z (batch, dim, L); delta_low (batch, G, R, L) (a view with contiguous rows is
    read in place, e.g. a slice of a larger projection); delta_proj (dim, R); A (dim, N);
    B, C (batch, G, N, L); D, delta_bias (dim,).
    """
    ct, (b, g, dg, n, length), sfx, ins = _common(u, None, delta_bias, A, B, C, D)
    u_c, _, bias_c, A_c, B_c, C_c, D_c = ins
    r = delta_proj.shape[1]
    low = delta_low if delta_low.dtype == ct else delta_low.to(ct)
    group_stride = _group_stride(low)
    if group_stride is None:
        low = low.contiguous()  # the standard layout: group (b * G + g) starts at its R * L
        group_stride = r * length
    proj = _as(delta_proj, ct)

    def kernel(y: Tensor, last: Tensor) -> int:
        return _fwd_lowrank(sfx)(
            b, g, dg, n, length, r, group_stride, int(delta_softplus),
            *map(ptr, (u_c, low, proj, bias_c, A_c, B_c, C_c, D_c, y, last)),
            torch.get_num_threads(),
        )  # fmt: skip

    return _forward(kernel, (b, g * dg, length, n), ct, z, u.dtype)


@torch.no_grad()
def selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dy, dlast=None):
    """Backward; same contract as :func:`vmamba_ops.selective_scan.torch_scan.selective_scan_bwd`.

    Returns (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), None for absent inputs.
    """
    ct, (b, g, dg, n, length), sfx, ins = _common(u, delta, delta_bias, A, B, C, D)
    dim = g * dg
    dy_c = dy.to(ct)
    dyc = dy_c
    if z is not None:
        zc = z.to(ct)
        sig_z = torch.sigmoid(zc)
        dyc = dy_c * zc * sig_z  # the gradient reaching y before the gate
    dyc = dyc.contiguous()
    dlast_c = dlast.to(ct).contiguous() if dlast is not None else None
    # partial dB / dC sums: S slices of channel blocks per (batch, group), summed below
    n_blocks = -(-dg // _WIDTH)
    slices = max(1, min(n_blocks, -(-2 * torch.get_num_threads() // max(b * g, 1))))
    du = torch.empty(b, dim, length, dtype=ct)
    ddelta = torch.empty(b, dim, length, dtype=ct)
    dA = torch.zeros(b, dim, n, dtype=ct)
    dD = torch.zeros(b, dim, dtype=ct)
    dbias = torch.zeros(b, dim, dtype=ct)
    dBp = torch.zeros(b * g, slices, n, length, dtype=ct)
    dCp = torch.zeros(b * g, slices, n, length, dtype=ct)
    y0 = torch.empty(b, dim, length, dtype=ct) if z is not None else None
    if du.numel() > 0:
        rc = _bwd(sfx)(
            b, g, dg, n, length, slices, int(delta_softplus),
            *map(ptr, (*ins, dyc, dlast_c, du, ddelta, dA, dBp, dCp, dD, dbias, y0)),
            torch.get_num_threads(),
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("selective_scan (CPU kernel): out of memory for scratch buffers")
    dz = None
    if z is not None:  # d silu(z) / dz = s (1 + z (1 - s))
        dz = dy_c * y0 * sig_z * (1 + zc * (1 - sig_z))
    return (
        du.to(u.dtype),
        ddelta.to(delta.dtype),
        dA.sum(0).to(A.dtype),
        dBp.sum(1).view(B.shape).to(B.dtype),
        dCp.sum(1).view(C.shape).to(C.dtype),
        dD.sum(0).to(D.dtype) if D is not None else None,
        dz.to(z.dtype) if z is not None else None,
        dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
    )


__all__ = ["selective_scan_bwd", "selective_scan_fwd", "selective_scan_fwd_lowrank"]

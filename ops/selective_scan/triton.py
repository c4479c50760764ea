"""Triton selective scan: launch plans and the forward / backward entry points.

The kernels are in :mod:`.triton_kernels`, their block sizes in :mod:`.triton_configs` (one
table). :func:`fwd_launch` / :func:`bwd_launch` turn the inputs into a
:class:`vmamba_ops.triton_aot.Launch` (grid, arguments, blocks); the entry points run it, and
the compile report builds the very same launches from shape-only tensors
(:func:`launch_for_shape`), so the report cannot drift from what runs.

Launch geometry: grid (G * ceil(dg / BLOCK_D), batch), dg = dim / G channels per B/C group.
HBM traffic per call (element sizes: inputs in their dtype, state and partials float32):

- forward: reads u, delta, z (if given) once, B and C once per program (once per channel with
  BLOCK_D = 1; L2 serves the repeats), writes y once and the last state (batch, dim, N);
- backward: reads u, delta, B twice (sweep 1 recomputes the tile-start states, stored as
  (batch, dim, ceil(L / BLOCK_L), N) float32), C, dy, z once; writes du, d delta, dz once and
  the per-program partials of dB and dC, (batch, G, ceil(dg / BLOCK_D), N, L) float32 each,
  which one ``sum`` then reduces (read once).
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from ..triton_aot import Launch
from .triton_configs import ScanBlocks, scan_blocks
from .triton_kernels import _bwd_kernel, _fwd_kernel


def _prep(u, delta, A, B, C, D, z, delta_bias):
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    f32 = torch.float32
    u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
    z = z.contiguous() if z is not None else None
    A = A.to(f32).contiguous()
    D = D.to(f32).contiguous() if D is not None else None
    delta_bias = delta_bias.to(f32).contiguous() if delta_bias is not None else None
    return u, delta, A, B, C, D, z, delta_bias


def _check_dtype(u: Tensor) -> None:
    if u.dtype == torch.float64:
        raise TypeError(
            "selective_scan: the Triton backend computes in float32; float64 inputs need "
            "backend='cpu' or 'ref'"
        )


def fwd_launch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    blocks: ScanBlocks | None = None,
) -> tuple[Launch, Tensor, Tensor]:
    """The forward launch of prepared inputs (see :func:`_prep`; B, C (batch, G, N, L)).

    Returns (launch, y, last): the outputs are allocated (uninitialised) and filled by
    ``launch.run()``. ``blocks`` overrides the table (tests force small blocks with it).
    """
    b, dim, length = u.shape
    g, n = B.shape[1], B.shape[2]
    dg = dim // g
    blocks = blocks or scan_blocks("fwd", n, length)
    y = torch.empty_like(u)
    last = torch.empty(b, dim, n, dtype=torch.float32, device=u.device)
    n_dblk = triton.cdiv(dg, blocks.block_d)
    args = dict(
        u_ptr=u,
        delta_ptr=delta,
        A_ptr=A,
        B_ptr=B,
        C_ptr=C,
        D_ptr=D if D is not None else A,
        z_ptr=z if z is not None else A,
        bias_ptr=delta_bias if delta_bias is not None else A,
        y_ptr=y,
        last_ptr=last,
        L=length,
        dim=dim,
        dg=dg,
        n_dblk=n_dblk,
        N=n,
    )
    flags = dict(
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus),
    )
    launch = Launch(
        _fwd_kernel, (g * n_dblk, b), args, {**flags, **blocks.constexprs()},
        blocks.num_warps, "selective_scan_fwd",
    )  # fmt: skip
    return launch, y, last


def bwd_launch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    dy: Tensor,
    dlast: Tensor | None,
    blocks: ScanBlocks | None = None,
) -> tuple[Launch, dict[str, Tensor | None]]:
    """The backward launch of prepared inputs; returns (launch, its output buffers by name).

    Buffers: du, ddelta, dz (like u / delta / z), dA (batch, dim, N), dB / dC partials
    (batch, G, n_dblk, N, L), dD / dbias (batch, dim), all float32 except du, ddelta, dz.
    """
    b, dim, length = u.shape
    g, n = B.shape[1], B.shape[2]
    dg = dim // g
    blocks = blocks or scan_blocks("bwd", n, length)
    n_dblk = triton.cdiv(dg, blocks.block_d)
    n_tiles = triton.cdiv(length, blocks.block_l)
    f32 = dict(dtype=torch.float32, device=u.device)
    out = dict(
        du=torch.empty_like(u),
        ddelta=torch.empty_like(delta),
        dz=torch.empty_like(z) if z is not None else None,
        dA=torch.empty(b, dim, n, **f32),
        dB=torch.empty(b, g, n_dblk, n, length, **f32),
        dC=torch.empty(b, g, n_dblk, n, length, **f32),
        dD=torch.empty(b, dim, **f32),
        dbias=torch.empty(b, dim, **f32),
    )
    starts = torch.empty(b, dim, n_tiles, n, **f32)
    args = dict(
        u_ptr=u,
        delta_ptr=delta,
        A_ptr=A,
        B_ptr=B,
        C_ptr=C,
        D_ptr=D if D is not None else A,
        z_ptr=z if z is not None else A,
        bias_ptr=delta_bias if delta_bias is not None else A,
        dy_ptr=dy,
        dlast_ptr=dlast if dlast is not None else A,
        starts_ptr=starts,
        du_ptr=out["du"],
        ddelta_ptr=out["ddelta"],
        dz_ptr=out["dz"] if z is not None else A,
        dA_ptr=out["dA"],
        dB_ptr=out["dB"],
        dC_ptr=out["dC"],
        dD_ptr=out["dD"],
        dbias_ptr=out["dbias"],
        L=length,
        dim=dim,
        dg=dg,
        n_dblk=n_dblk,
        N=n,
        n_chunks=n_tiles,
    )
    flags = dict(
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus),
        HAS_DLAST=dlast is not None,
    )
    launch = Launch(
        _bwd_kernel, (g * n_dblk, b), args, {**flags, **blocks.constexprs()},
        blocks.num_warps, "selective_scan_bwd",
    )  # fmt: skip
    return launch, out


def selective_scan_fwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    blocks: ScanBlocks | None = None,
) -> tuple[Tensor, Tensor]:
    """Triton forward; same contract as :func:`vmamba_ops.selective_scan.cpu.selective_scan_fwd`.

    ``blocks`` overrides the block table (tests use it to force several tiles and channel
    blocks on small shapes).
    """
    _check_dtype(u)
    u, delta, A, B, C, D, z, delta_bias = _prep(u, delta, A, B, C, D, z, delta_bias)
    launch, y, last = fwd_launch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, blocks)
    if u.shape[2] == 0:
        return y, last.zero_()
    launch.run()
    return y, last


def selective_scan_bwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    dy: Tensor,
    dlast: Tensor | None = None,
    blocks: ScanBlocks | None = None,
) -> tuple[Tensor | None, ...]:
    """Triton backward; same contract as ``vmamba_ops.selective_scan.cpu.selective_scan_bwd``.

    Returns the gradients of (u, delta, A, B, C, D, z, delta_bias) in their dtypes and shapes
    (None for absent inputs).
    """
    _check_dtype(u)
    orig = (u, delta, A, B, C, D, z, delta_bias)
    u, delta, A, B, C, D, z, delta_bias = _prep(u, delta, A, B, C, D, z, delta_bias)
    if u.shape[2] == 0:
        return tuple(torch.zeros_like(t) if t is not None else None for t in orig)
    dlast = dlast.to(torch.float32).contiguous() if dlast is not None else None
    launch, out = bwd_launch(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, dy.contiguous(), dlast, blocks
    )
    launch.run()
    o_u, o_delta, o_A, o_B, o_C, o_D, o_z, o_bias = orig
    return (
        out["du"],
        out["ddelta"],
        out["dA"].sum(0).to(o_A.dtype),
        out["dB"].sum(2).view(o_B.shape).to(o_B.dtype),
        out["dC"].sum(2).view(o_C.shape).to(o_C.dtype),
        out["dD"].sum(0).to(o_D.dtype) if o_D is not None else None,
        out["dz"],
        out["dbias"].sum(0).to(o_bias.dtype) if o_bias is not None else None,
    )


def launch_for_shape(
    kind: str,
    batch: int,
    dim: int,
    length: int,
    n: int,
    groups: int,
    dtype: torch.dtype,
    *,
    has_d: bool = True,
    has_z: bool = False,
    has_bias: bool = True,
    softplus: bool = True,
    has_dlast: bool = False,
    blocks: ScanBlocks | None = None,
) -> Launch:
    """The launch ``kind`` ('fwd' / 'bwd') would make for these shapes, on ``meta`` tensors.

    Inputs u, delta, B, C, z (and dy) have ``dtype``; A, D, delta_bias float32 as in the
    models. Used by the compile report and its test (nothing is allocated or run).
    """
    m = dict(device="meta")
    u = torch.empty(batch, dim, length, dtype=dtype, **m)
    bc = torch.empty(batch, groups, n, length, dtype=dtype, **m)
    A = torch.empty(dim, n, **m)
    vec = torch.empty(dim, **m)
    inputs = (
        u, u.clone(), A, bc, bc.clone(), vec if has_d else None, u.clone() if has_z else None,
        vec.clone() if has_bias else None, softplus,
    )  # fmt: skip
    if kind == "fwd":
        return fwd_launch(*inputs, blocks=blocks)[0]
    if kind != "bwd":
        raise ValueError(f"unknown scan kernel kind {kind!r}; expected 'fwd' or 'bwd'")
    dlast = torch.empty(batch, dim, n, **m) if has_dlast else None
    return bwd_launch(*inputs, u.clone(), dlast, blocks=blocks)[0]

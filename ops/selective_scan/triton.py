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

from typing import NamedTuple

import torch
import triton
from torch import Tensor

from ..triton_aot import Launch
from .triton_configs import ScanBlocks, scan_blocks
from .triton_kernels import _bwd_kernel, _fwd_kernel


class ScanInputs(NamedTuple):
    """Inputs as the kernels read them: contiguous, B / C (batch, G, N, L), A / D / bias fp32."""

    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor | None
    z: Tensor | None
    delta_bias: Tensor | None


def _prep(u, delta, A, B, C, D, z, delta_bias) -> ScanInputs:
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    f32 = torch.float32
    u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
    z = z.contiguous() if z is not None else None
    A = A.to(f32).contiguous()
    D = D.to(f32).contiguous() if D is not None else None
    delta_bias = delta_bias.to(f32).contiguous() if delta_bias is not None else None
    return ScanInputs(u, delta, A, B, C, D, z, delta_bias)


def _check_dtype(u: Tensor) -> None:
    if u.dtype == torch.float64:
        raise TypeError(
            "selective_scan: the Triton backend computes in float32; float64 inputs need "
            "backend='auto' (which runs 'ref' for them), 'ref' or 'torch'"
        )


def _common(x: ScanInputs, softplus: bool, kind: str, blocks: ScanBlocks | None) -> tuple:
    """(blocks, n_dblk, grid, input pointer arguments + sizes, option flags) of a launch."""
    b, dim, length = x.u.shape
    g, n = x.B.shape[1], x.B.shape[2]
    blocks = blocks or scan_blocks(kind, n, length)
    n_dblk = triton.cdiv(dim // g, blocks.block_d)
    # absent optional inputs: any valid pointer (A), never read (HAS_* is False)
    opt = {name: t if t is not None else x.A for name, t in zip("Dzb", (x.D, x.z, x.delta_bias))}
    args = dict(u_ptr=x.u, delta_ptr=x.delta, A_ptr=x.A, B_ptr=x.B, C_ptr=x.C,
                D_ptr=opt["D"], z_ptr=opt["z"], bias_ptr=opt["b"],
                L=length, dim=dim, dg=dim // g, n_dblk=n_dblk, N=n)  # fmt: skip
    flags = dict(HAS_D=x.D is not None, HAS_Z=x.z is not None,
                 HAS_BIAS=x.delta_bias is not None, SOFTPLUS=bool(softplus))  # fmt: skip
    return blocks, n_dblk, (g * n_dblk, b), args, flags


def fwd_launch(
    x: ScanInputs, delta_softplus: bool, blocks: ScanBlocks | None = None
) -> tuple[Launch, Tensor, Tensor]:
    """The forward launch of prepared inputs (see :func:`_prep`).

    Returns (launch, y, last): the outputs are allocated (uninitialised) and filled by
    ``launch.run()``. ``blocks`` overrides the table (tests force small blocks with it).
    """
    blocks, _, grid, args, flags = _common(x, delta_softplus, "fwd", blocks)
    y = torch.empty_like(x.u)
    last = torch.empty(*x.u.shape[:2], x.A.shape[1], dtype=torch.float32, device=x.u.device)
    args.update(y_ptr=y, last_ptr=last)
    consts = {**flags, **blocks.constexprs()}
    return Launch(_fwd_kernel, grid, args, consts, blocks.num_warps, "scan_fwd"), y, last


def bwd_launch(
    x: ScanInputs,
    delta_softplus: bool,
    dy: Tensor,
    dlast: Tensor | None,
    blocks: ScanBlocks | None = None,
) -> tuple[Launch, dict[str, Tensor | None]]:
    """The backward launch of prepared inputs; returns (launch, its output buffers by name).

    Buffers: du, ddelta, dz (like u / delta / z), dA (batch, dim, N), dB / dC partials
    (batch, G, n_dblk, N, L), dD / dbias (batch, dim), all float32 except du, ddelta, dz.
    """
    blocks, n_dblk, grid, args, flags = _common(x, delta_softplus, "bwd", blocks)
    (b, dim, length), (g, n) = x.u.shape, x.B.shape[1:3]
    n_tiles = triton.cdiv(length, blocks.block_l)
    f32 = dict(dtype=torch.float32, device=x.u.device)
    out = dict(
        du=torch.empty_like(x.u),
        ddelta=torch.empty_like(x.delta),
        dz=torch.empty_like(x.z) if x.z is not None else None,
        dA=torch.empty(b, dim, n, **f32),
        dB=torch.empty(b, g, n_dblk, n, length, **f32),
        dC=torch.empty(b, g, n_dblk, n, length, **f32),
        dD=torch.empty(b, dim, **f32),
        dbias=torch.empty(b, dim, **f32),
    )
    args.update(dy_ptr=dy, dlast_ptr=dlast if dlast is not None else x.A,
                starts_ptr=torch.empty(b, dim, n_tiles, n, **f32), n_chunks=n_tiles)  # fmt: skip
    for name in ("du", "ddelta", "dz", "dA", "dB", "dC", "dD", "dbias"):
        args[f"{name}_ptr"] = out[name] if out[name] is not None else x.A
    consts = {**flags, "HAS_DLAST": dlast is not None, **blocks.constexprs()}
    return Launch(_bwd_kernel, grid, args, consts, blocks.num_warps, "scan_bwd"), out


def selective_scan_fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
    z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
    blocks: ScanBlocks | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Triton forward; same contract as ``torch_scan.selective_scan_fwd``: returns (y, last).

    ``blocks`` overrides the block table (tests use it to force several tiles and channel
    blocks on small shapes).
    """
    _check_dtype(u)
    x = _prep(u, delta, A, B, C, D, z, delta_bias)
    launch, y, last = fwd_launch(x, delta_softplus, blocks)
    if u.shape[2] == 0:
        return y, last.zero_()
    launch.run()
    return y, last


def selective_scan_bwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool, dy: Tensor,
    dlast: Tensor | None = None, blocks: ScanBlocks | None = None,
) -> tuple[Tensor | None, ...]:  # fmt: skip
    """Triton backward; same contract as ``torch_scan.selective_scan_bwd``.

    Returns the gradients of (u, delta, A, B, C, D, z, delta_bias) in their dtypes and shapes
    (None for absent inputs).
    """
    _check_dtype(u)
    orig = (u, delta, A, B, C, D, z, delta_bias)
    if u.shape[2] == 0:
        return tuple(torch.zeros_like(t) if t is not None else None for t in orig)
    x = _prep(*orig)
    dlast = dlast.to(torch.float32).contiguous() if dlast is not None else None
    launch, out = bwd_launch(x, delta_softplus, dy.contiguous(), dlast, blocks)
    launch.run()
    sums = dict(dA=out["dA"].sum(0), dB=out["dB"].sum(2), dC=out["dC"].sum(2))
    if D is not None:
        sums["dD"] = out["dD"].sum(0)
    if delta_bias is not None:
        sums["dbias"] = out["dbias"].sum(0)
    grads = [out["du"], out["ddelta"], sums["dA"], sums["dB"], sums["dC"], sums.get("dD"),
             out["dz"], sums.get("dbias")]  # fmt: skip
    return tuple(
        g.reshape(t.shape).to(t.dtype) if g is not None and t is not None else None
        for g, t in zip(grads, orig)
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
    vec = torch.empty(dim, **m)
    x = ScanInputs(
        u, u.clone(), torch.empty(dim, n, **m), bc, bc.clone(), vec if has_d else None,
        u.clone() if has_z else None, vec.clone() if has_bias else None,
    )  # fmt: skip
    if kind == "fwd":
        return fwd_launch(x, softplus, blocks)[0]
    if kind != "bwd":
        raise ValueError(f"unknown scan kernel kind {kind!r}; expected 'fwd' or 'bwd'")
    dlast = torch.empty(batch, dim, n, **m) if has_dlast else None
    return bwd_launch(x, softplus, u.clone(), dlast, blocks)[0]

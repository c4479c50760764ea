"""The selective-scan ``torch.library`` custom ops and their autograd formula.

- ``vmamba_ops::selective_scan`` (forward) and ``vmamba_ops::selective_scan_bwd``: run the
  kernels of the backend named in their ``backend`` argument ('c', 'torch' or 'triton', as
  :func:`vmamba_ops.dispatch.resolve_backend` chose); the forward's autograd formula calls the
  backward op.
- ``vmamba_ops::selective_scan_lowrank``: the C kernel's fused low-rank forward (delta formed
  from its factors inside the kernel), inference only: no autograd formula.

Each is one node to torch.compile / torch.export, to ``torch.jit.trace`` (where the FLOP
counters read it) and to dispatch modes. Their schemas are written out once below.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..dispatch import resolve_backend
from . import c_kernel, torch_scan


def _kernels(backend: str, u: Tensor):
    """(forward, backward) of a kernel backend, looked up at call time."""
    if backend == "cpu":  # the old name, in graphs captured before the rename
        backend = resolve_backend("selective_scan", "cpu", u.device, u.dtype)
    if backend == "c":
        return c_kernel.selective_scan_fwd, c_kernel.selective_scan_bwd
    if backend == "torch":
        return torch_scan.selective_scan_fwd, torch_scan.selective_scan_bwd
    if backend == "triton":
        from . import triton as _tr  # imports triton; only reached when asked for

        return _tr.selective_scan_fwd, _tr.selective_scan_bwd
    raise ValueError(
        f"vmamba_ops::selective_scan: backend {backend!r} is not a kernel backend; expected "
        "'c', 'torch' or 'triton' (selective_scan() resolves the others)"
    )


def _fake_outputs(u: Tensor, A: Tensor) -> tuple[Tensor, Tensor]:
    """Empty y (batch, dim, L) and last state (batch, dim, N) (float32, float64 for float64)."""
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    return u.new_empty(u.shape), u.new_empty((u.shape[0], u.shape[1], A.shape[1]), dtype=dtype)


# The arguments of the ops, written once: shapes as in vmamba_ops.selective_scan, with B and C
# always (batch, G, N, L); the low-rank op takes delta_low (batch, G, R, L) and delta_proj (dim, R).
_SCAN = (
    "Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, bool delta_softplus"
)
_FWD = f"(Tensor u, Tensor delta, {_SCAN}, str backend) -> (Tensor, Tensor)"
_BWD = f"(Tensor u, Tensor delta, {_SCAN}, str backend, Tensor dy, Tensor? dlast) -> Tensor[]"
_LOWRANK = f"(Tensor u, Tensor delta_low, Tensor delta_proj, {_SCAN}) -> (Tensor, Tensor)"


@torch.library.custom_op("vmamba_ops::selective_scan", mutates_args=(), schema=_FWD)
def selective_scan_op(*args) -> tuple[Tensor, Tensor]:
    """Forward: (u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend) -> y (batch,
    dim, L) and the last state (batch, dim, N)."""
    *scan, backend = args
    y, last = _kernels(backend, scan[0])[0](*scan)
    return y, last


@selective_scan_op.register_fake
def _(*args):
    return _fake_outputs(args[0], args[2])


@torch.library.custom_op("vmamba_ops::selective_scan_bwd", mutates_args=(), schema=_BWD)
def selective_scan_bwd_op(*args) -> list[Tensor]:
    """Gradients of the 8 tensor inputs of the forward (an empty placeholder for absent ones):
    (u, ..., delta_softplus, backend, dy, dlast)."""
    *scan, backend, dy, dlast = args
    grads = _kernels(backend, scan[0])[1](*scan, dy, dlast)
    # custom ops cannot return None: absent inputs get an empty placeholder
    return [g if g is not None else scan[0].new_empty(0) for g in grads]


@selective_scan_bwd_op.register_fake
def _(*args):
    u = args[0]
    return [t.new_empty(t.shape) if t is not None else u.new_empty(0) for t in args[:8]]


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8])  # u, delta, A, B, C, D, z, delta_bias
    ctx.delta_softplus, ctx.backend = inputs[8], inputs[9]


def _backward(ctx, dy, dlast):
    present = ctx.saved_tensors
    if dy is None:
        dy = torch.zeros_like(present[0])
    grads = torch.ops.vmamba_ops.selective_scan_bwd(
        *present, ctx.delta_softplus, ctx.backend, dy, dlast
    )
    out = [g if t is not None else None for g, t in zip(grads, present)]
    return (*out, None, None)


selective_scan_op.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("vmamba_ops::selective_scan_lowrank", mutates_args=(), schema=_LOWRANK)
def selective_scan_lowrank_op(*args) -> tuple[Tensor, Tensor]:
    """Fused low-rank forward (CPU, no autograd): (u, delta_low, delta_proj, A, B, C, D, z,
    delta_bias, delta_softplus) -> y and the last state."""
    y, last = c_kernel.selective_scan_fwd_lowrank(*args)
    return y, last


@selective_scan_lowrank_op.register_fake
def _(*args):
    return _fake_outputs(args[0], args[3])


@register_flop_formula(torch.ops.vmamba_ops.selective_scan_lowrank)
def _lowrank_flops(u_shape, delta_shape, proj_shape, *args, out_shape=None, **kwargs) -> int:
    """torch.utils.flop_counter: the projection's 2 * batch * dim * R * L, as the unfused path
    counts its bmm (the counter has no formula for the scan itself)."""
    b, dim, length = u_shape
    return 2 * b * dim * proj_shape[1] * length


__all__ = ["selective_scan_bwd_op", "selective_scan_lowrank_op", "selective_scan_op"]

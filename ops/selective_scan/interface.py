"""Public selective-scan entry point: validation, backend dispatch, torch.library op, FLOPs.

`selective_scan` checks its inputs, picks a backend and calls the custom op
``vmamba_ops::selective_scan`` (forward) whose autograd formula calls
``vmamba_ops::selective_scan_bwd``. Both are opaque to torch.compile / torch.export (one node
each) and to ``torch.jit.trace`` (the node the FLOP counters key on).
"""

# no `from __future__ import annotations`: torch.library infers op schemas from real annotations
from typing import Any

import torch
from torch import Tensor

from .. import _native
from .._backend import resolve_backend
from . import cpu as _cpu
from . import native as _native_scan
from .naive import selective_scan_ref

_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _impl(backend: str):
    if backend == "triton":
        from . import triton as _tr  # imports triton; only reached when asked for

        return _tr.selective_scan_fwd, _tr.selective_scan_bwd
    return _cpu_fwd, _cpu_bwd


def _cpu_fwd(u, *args):
    """'cpu' backend: the compiled kernel on CPU tensors when it builds, else the torch scan."""
    impl = _native_scan if _native.use_native(u) else _cpu
    return impl.selective_scan_fwd(u, *args)


def _cpu_bwd(u, *args):
    impl = _native_scan if _native.use_native(u) else _cpu
    return impl.selective_scan_bwd(u, *args)


@torch.library.custom_op("vmamba_ops::selective_scan", mutates_args=())
def _selective_scan_op(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    backend: str,
) -> tuple[Tensor, Tensor]:
    y, last = _impl(backend)[0](u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return y, last


@_selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend):
    state_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    return u.new_empty(u.shape), u.new_empty(
        (u.shape[0], u.shape[1], A.shape[1]), dtype=state_dtype
    )


@torch.library.custom_op("vmamba_ops::selective_scan_bwd", mutates_args=())
def _selective_scan_bwd_op(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    backend: str,
    dy: Tensor,
    dlast: Tensor | None,
) -> list[Tensor]:
    grads = _impl(backend)[1](u, delta, A, B, C, D, z, delta_bias, delta_softplus, dy, dlast)
    # custom ops cannot return None: absent inputs get an empty placeholder
    return [g if g is not None else u.new_empty(0) for g in grads]


@_selective_scan_bwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend, dy, dlast):
    def like(t):
        return t.new_empty(t.shape) if t is not None else u.new_empty(0)

    return [like(t) for t in (u, delta, A, B, C, D, z, delta_bias)]


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
    ctx.delta_softplus = delta_softplus
    ctx.backend = backend


def _backward(ctx, dy, dlast):
    u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
    if dy is None:
        dy = torch.zeros_like(u)
    grads = torch.ops.vmamba_ops.selective_scan_bwd(
        u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, ctx.backend, dy, dlast
    )
    present = (u, delta, A, B, C, D, z, delta_bias)
    out = [g if t is not None else None for g, t in zip(grads, present)]
    return (*out, None, None)


_selective_scan_op.register_autograd(_backward, setup_context=_setup_context)


def _check(name: str, t: Tensor | None, shape: tuple, optional: bool = False) -> None:
    if t is None:
        if optional:
            return
        raise ValueError(f"selective_scan: `{name}` is required")
    if not isinstance(t, Tensor):
        raise TypeError(f"selective_scan: `{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT:
        raise TypeError(
            f"selective_scan: `{name}` has dtype {t.dtype}; expected one of float16/bfloat16/"
            "float32/float64 (complex A is not supported)"
        )
    if tuple(t.shape) != tuple(shape):
        raise ValueError(
            f"selective_scan: `{name}` has shape {tuple(t.shape)}, expected {tuple(shape)}"
        )


def validate_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise ValueError/TypeError naming the first bad argument (shapes per `selective_scan`)."""
    if not isinstance(u, Tensor) or u.dim() != 3:
        got = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
        raise ValueError(f"selective_scan: `u` must be (batch, dim, L), got {got}")
    b, dim, length = u.shape
    _check("u", u, (b, dim, length))
    _check("delta", delta, (b, dim, length))
    if not isinstance(A, Tensor) or A.dim() != 2:
        got = tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__
        raise ValueError(f"selective_scan: `A` must be (dim, N) = ({dim}, N), got {got}")
    n = A.shape[1]
    _check("A", A, (dim, n))
    if not isinstance(B, Tensor) or B.dim() not in (3, 4):
        raise ValueError(
            "selective_scan: `B` must be (batch, N, L) or (batch, G, N, L), got "
            f"{tuple(B.shape) if isinstance(B, Tensor) else type(B).__name__}"
        )
    g = B.shape[1] if B.dim() == 4 else 1
    if g < 1 or dim % g != 0:
        raise ValueError(
            f"selective_scan: dim={dim} is not divisible by the number of B/C groups G={g}"
        )
    bc_shape = (b, g, n, length) if B.dim() == 4 else (b, n, length)
    _check("B", B, bc_shape)
    _check("C", C, bc_shape)
    _check("D", D, (dim,), optional=True)
    _check("z", z, (b, dim, length), optional=True)
    _check("delta_bias", delta_bias, (dim,), optional=True)
    devices = {t.device for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(
            f"selective_scan: inputs are on different devices {sorted(map(str, devices))}"
        )


def _check_low_rank(u: Tensor, delta: Tensor, delta_proj: Tensor, B: Tensor) -> None:
    """Shapes of a low-rank delta: delta (batch, G, R, L) / (batch, R, L), delta_proj (dim, R)."""
    if not isinstance(u, Tensor) or u.dim() != 3:
        raise ValueError("selective_scan: `u` must be (batch, dim, L)")
    if not isinstance(delta_proj, Tensor) or delta_proj.dim() != 2:
        raise ValueError("selective_scan: `delta_proj` must be a (dim, R) tensor")
    b, dim, length = u.shape
    r = delta_proj.shape[1]
    _check("delta_proj", delta_proj, (dim, r))
    g = B.shape[1] if isinstance(B, Tensor) and B.dim() == 4 else 1
    want = (b, g, r, length) if isinstance(B, Tensor) and B.dim() == 4 else (b, r, length)
    if not isinstance(delta, Tensor) or tuple(delta.shape) != want:
        got = tuple(delta.shape) if isinstance(delta, Tensor) else type(delta).__name__
        raise ValueError(
            f"selective_scan: with `delta_proj` ({dim}, {r}), `delta` holds the low-rank "
            f"factors and must have shape {want} (batch, [G,] R, L), got {got}"
        )
    _check("delta", delta, want)  # its dtype
    if g < 1 or dim % g != 0:
        raise ValueError(
            f"selective_scan: dim={dim} is not divisible by the number of B/C groups G={g}"
        )


def low_rank_delta(delta: Tensor, delta_proj: Tensor) -> Tensor:
    """The (batch, dim, L) delta of low-rank factors ``delta`` (batch, G, R, L) / (batch, R, L)
    and ``delta_proj`` (dim, R) (see :func:`selective_scan`): one bmm, a grouped projection."""
    b, length, dim = delta.shape[0], delta.shape[-1], delta_proj.shape[0]
    if delta.dim() == 3:
        delta = delta.unsqueeze(1)
    g, r = delta.shape[1], delta.shape[2]
    w = delta_proj.view(g, dim // g, r).unsqueeze(0).expand(b, -1, -1, -1).reshape(b * g, -1, r)
    return torch.bmm(w, delta.reshape(b * g, r, length)).view(b, dim, length)


# Forming delta inside the kernel costs dim * L * R multiply-adds there (slower per flop than
# BLAS) and saves writing and reading the (batch, dim, L) delta: measured on VMamba-T shapes
# (2 threads) it wins at R = 6 (stage 1: 0.70x the time of bmm + scan at 768 px, 0.88x at 224)
# and loses from R = 12 (1.1-1.3x), so larger ranks keep the bmm.
_FUSE_MAX_RANK = 8


def _fuse_low_rank(backend: str, u: Tensor, delta: Tensor, delta_proj: Tensor, *others) -> bool:
    """Whether the compiled kernel may form the low-rank delta itself: a plain eager CPU call
    with a small rank that needs no gradient (the fused forward has no backward) and that
    nothing intercepts (tracing, compile / export, dispatch modes, functorch transforms see the
    ordinary ops)."""
    if backend != "cpu" or u.dtype not in (torch.float32, torch.float64):
        return False
    if delta_proj.shape[1] > _FUSE_MAX_RANK:
        return False
    others = (delta, delta_proj, *others)
    tensors = [u, *(t for t in others if t is not None)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if torch._C._len_torch_dispatch_stack() > 0:
        return False
    if any(
        type(t) is not Tensor or torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors
    ):
        return False
    return _native.use_native(u)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
    delta_proj: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan (Mamba's S6) with a float32 state, differentiable in every input.

    ``dt = softplus(delta + delta_bias)`` (bias and softplus optional);
    ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``; ``y_t = C_t . h_t + D u_t``;
    ``y *= silu(z)`` if z is given. Channel ``d`` uses B/C group ``d // (dim // G)``.

    Args:
        u: (batch, dim, L).
        delta: (batch, dim, L).
        A: (dim, N), real.
        B: (batch, G, N, L) with dim % G == 0, or (batch, N, L) for G = 1.
        C: same shape as B.
        D: optional (dim,).
        z: optional (batch, dim, L) gate.
        delta_bias: optional (dim,).
        delta_softplus: apply softplus to delta + delta_bias.
        return_last_state: also return the state after the last step.
        delta_proj: optional (dim, R): ``delta`` is then given by low-rank factors, (batch, G,
            R, L) (or (batch, R, L) for G = 1) with B/C's groups, and channel d of group g uses
            ``delta_proj[d] @ delta[:, g]`` (Mamba's dt_proj, VMamba's dt_projs). The compiled
            CPU kernel forms it on the fly when no gradient is needed; otherwise it is formed
            with one batched matmul (differentiable, and what FLOP counters see).
        backend: 'auto' (Triton for CUDA tensors when triton is installed, else 'cpu'),
            'ref' (sequential reference), 'cpu' (on CPU tensors the compiled C kernel of
            :mod:`vmamba_ops.selective_scan.native`, else the chunked PyTorch scan, which runs
            on any device; ``$VMAMBA_OPS_CPU_KERNEL`` chooses), 'triton'. A backend that
            cannot run raises RuntimeError saying why.

    Returns:
        y (batch, dim, L) in u's dtype, or (y, last_state) with last_state (batch, dim, N)
        float32 (float64 for float64 inputs). The last state's gradient is propagated.
    """
    tracing = torch.jit.is_tracing()  # (shape checks would only add TracerWarnings to a trace)
    if delta_proj is not None and not tracing:
        _check_low_rank(u, delta, delta_proj, B)
        validate_inputs(u, u, A, B, C, D, z, delta_bias)  # the others (delta: above)
    elif not tracing:
        validate_inputs(u, delta, A, B, C, D, z, delta_bias)
    backend = resolve_backend(backend, u, "selective_scan")
    if delta_proj is not None:
        if _fuse_low_rank(backend, u, delta, delta_proj, A, B, C, D, z, delta_bias):
            if B.dim() == 3:
                B, C, delta = B.unsqueeze(1), C.unsqueeze(1), delta.unsqueeze(1)
            y, last = _native_scan.selective_scan_fwd_lowrank(
                u, delta, delta_proj, A, B, C, D, z, delta_bias, delta_softplus
            )
            return (y, last) if return_last_state else y
        delta = low_rank_delta(delta, delta_proj)
    if u.numel() == 0:  # an empty batch, width or sequence: nothing to scan, the loop is exact
        backend = "ref"
    if backend == "ref":
        return selective_scan_ref(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    y, last = torch.ops.vmamba_ops.selective_scan(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend
    )
    return (y, last) if return_last_state else y


def selective_scan_flops(
    B: int, L: int, D: int, N: int, with_D: bool = True, with_Z: bool = False
) -> int:
    """FLOPs of one selective scan (state-spaces/mamba#110, as VMamba counts them).

    ``9 * B * L * D * N`` (+ ``B * D * L`` with D) (+ ``B * D * L`` with z); D = channels.
    """
    flops = 9 * B * L * D * N
    if with_D:
        flops += B * D * L
    if with_Z:
        flops += B * D * L
    return flops


def _value_shape(v: Any) -> list | None:
    """Shape of a traced graph value (torch._C.Value) or a tensor; None for None."""
    if v is None:
        return None
    if isinstance(v, Tensor):
        return list(v.shape)
    if v.type().kind() == "NoneType":
        return None
    if v.isCompleteTensor():
        return v.type().sizes()
    return None


def selective_scan_flop_handle(inputs: list, outputs: list) -> int:
    """FLOP handle for fvcore / mmengine ``FlopAnalyzer.set_op_handle`` (jit-traced op inputs)."""
    u_shape, a_shape = _value_shape(inputs[0]), _value_shape(inputs[2])
    if u_shape is None or a_shape is None:
        raise ValueError("selective_scan FLOP handle: u / A have no static shape in the trace")
    b, d, length = u_shape
    n = a_shape[1]
    with_d = _value_shape(inputs[5]) is not None
    with_z = _value_shape(inputs[6]) is not None
    return selective_scan_flops(b, length, d, n, with_D=with_d, with_Z=with_z)


def _zero_flop_handle(inputs: list, outputs: list) -> int:
    return 0


FLOP_HANDLES = {
    "vmamba_ops::selective_scan": selective_scan_flop_handle,
    # pure data movement: registered so the analyzers do not report them as unsupported
    "vmamba_ops::cross_scan": _zero_flop_handle,
    "vmamba_ops::cross_merge": _zero_flop_handle,
}

__all__ = [
    "FLOP_HANDLES",
    "low_rank_delta",
    "selective_scan",
    "selective_scan_flop_handle",
    "selective_scan_flops",
    "selective_scan_ref",
    "validate_inputs",
]

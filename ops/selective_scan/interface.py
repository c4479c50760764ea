"""Public selective-scan entry point: check the inputs, resolve the backend, call its op.

``selective_scan`` validates (:mod:`.validation`), asks :func:`vmamba_ops.dispatch.
resolve_backend` what runs (the one table), and calls the reference or the custom op of
:mod:`.custom_ops` with that backend.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..dispatch import resolve_backend
from . import custom_ops  # noqa: F401  (registers torch.ops.vmamba_ops.selective_scan*)
from .reference import selective_scan_ref
from .validation import check_low_rank, validate_inputs


def low_rank_delta(delta: Tensor, delta_proj: Tensor) -> Tensor:
    """The (batch, dim, L) delta of low-rank factors ``delta`` (batch, G, R, L) / (batch, R, L)
    and ``delta_proj`` (dim, R) (see :func:`selective_scan`): one bmm, a grouped projection."""
    b, length, dim = delta.shape[0], delta.shape[-1], delta_proj.shape[0]
    if delta.dim() == 3:
        delta = delta.unsqueeze(1)
    g, r = delta.shape[1], delta.shape[2]
    w = delta_proj.view(g, dim // g, r).unsqueeze(0).expand(b, -1, -1, -1).reshape(b * g, -1, r)
    return torch.bmm(w, delta.reshape(b * g, r, length)).view(b, dim, length)


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
        backend: 'auto', 'ref', 'torch', 'c', 'triton' (or the old 'cpu'); what each runs and
            how 'auto' chooses: :func:`vmamba_ops.dispatch.resolve_backend`. A backend that
            cannot run raises saying why.
        delta_proj: optional (dim, R): ``delta`` is then given by low-rank factors, (batch, G,
            R, L) (or (batch, R, L) for G = 1) with B/C's groups, and channel d of group g uses
            ``delta_proj[d] @ delta[:, g]`` (Mamba's dt_proj, VMamba's dt_projs). The C kernel
            forms it on the fly where the dispatch table says so (CPU inference at small R);
            otherwise it is formed with one batched matmul (differentiable, and what FLOP
            counters see).

    Returns:
        y (batch, dim, L) in u's dtype, or (y, last_state) with last_state (batch, dim, N)
        float32 (float64 for float64 inputs). The last state's gradient is propagated.
    """
    tracing = torch.jit.is_tracing()  # (shape checks would only add TracerWarnings to a trace)
    if delta_proj is not None and not tracing:
        check_low_rank(u, delta, delta_proj, B)
        validate_inputs(u, u, A, B, C, D, z, delta_bias)  # the others (delta: above)
    elif not tracing:
        validate_inputs(u, delta, A, B, C, D, z, delta_bias)
    tensors = (u, delta, A, B, C, D, z, delta_bias, delta_proj)
    backend = resolve_backend(
        "selective_scan",
        backend,
        u.device,
        u.dtype,
        needs_grad=torch.is_grad_enabled()
        and any(t is not None and t.requires_grad for t in tensors),
        low_rank=delta_proj.shape[1] if delta_proj is not None else None,
        graph=tracing or torch.compiler.is_compiling(),
    )
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    if backend == "c_lowrank":
        low = delta.unsqueeze(1) if delta.dim() == 3 else delta
        y, last = torch.ops.vmamba_ops.selective_scan_lowrank(
            u, low, delta_proj, A, B, C, D, z, delta_bias, delta_softplus
        )
        return (y, last) if return_last_state else y
    if delta_proj is not None:
        delta = low_rank_delta(delta, delta_proj)
    if backend == "ref" or (not tracing and u.numel() == 0):  # nothing to scan: the loop is exact
        return selective_scan_ref(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    y, last = torch.ops.vmamba_ops.selective_scan(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend
    )
    return (y, last) if return_last_state else y


__all__ = ["low_rank_delta", "selective_scan", "selective_scan_ref", "validate_inputs"]

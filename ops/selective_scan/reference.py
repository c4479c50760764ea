"""The sequential selective-scan reference (Mamba's S6), the oracle every backend is tested against.

Semantics (all arithmetic in float32, or float64 when the inputs are float64)::

    dt[b, d, t]   = softplus(delta[b, d, t] + delta_bias[d])     # bias / softplus optional
    h[b, d, n, -1] = 0
    h[b, d, n, t] = exp(dt[b, d, t] * A[d, n]) * h[b, d, n, t-1]
                    + dt[b, d, t] * B[b, g, n, t] * u[b, d, t]
    y[b, d, t]    = sum_n C[b, g, n, t] * h[b, d, n, t] + D[d] * u[b, d, t]
    y             = y * silu(z)                                   # if z is given

with ``g = d // (dim // G)``. The loop over ``t`` is a plain Python loop: slow and obviously right.
The steps before and after the recurrence (:func:`time_steps`, :func:`expand_groups`,
:func:`skip_and_gate`) are shared with the export decomposition, which replaces the loop by a
doubling scan.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def compute_dtype(u: Tensor) -> torch.dtype:
    """The state's dtype: float64 for float64 inputs, else float32."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def time_steps(
    delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool, dtype: torch.dtype
) -> Tensor:
    """dt = softplus(delta + delta_bias) (bias and softplus optional), (batch, dim, L) in dtype."""
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[None, :, None]
    return F.softplus(dt) if delta_softplus else dt


def expand_groups(BC: Tensor, dim: int) -> Tensor:
    """Broadcast a variable B or C to one copy per channel.

    Args:
        BC: (batch, N, L) or (batch, G, N, L); channel ``d`` uses group ``d // (dim // G)``.
        dim: number of channels ``D`` (must be divisible by G).

    Returns:
        (batch, dim, N, L) view/copy.
    """
    if BC.dim() == 3:
        BC = BC.unsqueeze(1)
    b, g, n, length = BC.shape
    return BC.unsqueeze(2).expand(b, g, dim // g, n, length).reshape(b, dim, n, length)


def skip_and_gate(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """y + D * u, then times silu(z) (each optional); y, u, z (batch, dim, L), D (dim,)."""
    if D is not None:
        y = y + D.to(y.dtype)[None, :, None] * u.to(y.dtype)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def selective_scan_ref(
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
) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential reference selective scan (differentiable through plain autograd).

    Args:
        u: (batch, dim, L) input.
        delta: (batch, dim, L) time steps (before bias / softplus).
        A: (dim, N) real state matrix (diagonal per channel).
        B: (batch, G, N, L) or (batch, N, L) input projection, dim % G == 0.
        C: same shape as B, output projection.
        D: optional (dim,) skip connection.
        z: optional (batch, dim, L) gate; the output is multiplied by silu(z).
        delta_bias: optional (dim,) added to delta before the softplus.
        delta_softplus: apply softplus to delta (+ bias).
        return_last_state: also return the final state h[..., L-1].

    Returns:
        y (batch, dim, L) in u's dtype, or (y, last_state) with last_state (batch, dim, N) in
        float32 (float64 for float64 inputs).
    """
    ct = compute_dtype(u)
    batch, dim, length = u.shape
    u_f = u.to(ct)
    dt = time_steps(delta, delta_bias, delta_softplus, ct)
    A_f = A.to(ct)
    B_f = expand_groups(B.to(ct), dim)  # (b, d, n, l)
    C_f = expand_groups(C.to(ct), dim)

    h = u_f.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, :, t, None] * A_f)  # (b, d, n)
        h = decay * h + (dt[:, :, t] * u_f[:, :, t])[:, :, None] * B_f[:, :, :, t]
        ys.append((h * C_f[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if length > 0 else u_f.new_zeros(batch, dim, 0)
    y = skip_and_gate(y, u_f, D, z).to(u.dtype)
    return (y, h) if return_last_state else y


__all__ = ["expand_groups", "selective_scan_ref", "skip_and_gate", "time_steps"]

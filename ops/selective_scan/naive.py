"""The sequential selective-scan reference (Mamba's S6), the oracle every backend is tested against.

Semantics (all arithmetic in float32, or float64 when the inputs are float64)::

    dt[b, d, t]   = softplus(delta[b, d, t] + delta_bias[d])     # bias / softplus optional
    h[b, d, n, -1] = 0
    h[b, d, n, t] = exp(dt[b, d, t] * A[d, n]) * h[b, d, n, t-1]
                    + dt[b, d, t] * B[b, g, n, t] * u[b, d, t]
    y[b, d, t]    = sum_n C[b, g, n, t] * h[b, d, n, t] + D[d] * u[b, d, t]
    y             = y * silu(z)                                   # if z is given

with ``g = d // (dim // G)``. The loop over ``t`` is a plain Python loop: slow and obviously right.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _compute_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


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
    dtype_in = u.dtype
    ct = _compute_dtype(u)
    batch, dim, length = u.shape
    u_f = u.to(ct)
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    A_f = A.to(ct)
    B_f = expand_groups(B.to(ct), dim)  # (b, d, n, l)
    C_f = expand_groups(C.to(ct), dim)
    n_state = A.shape[1]

    h = u_f.new_zeros(batch, dim, n_state)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, :, t, None] * A_f)  # (b, d, n)
        h = decay * h + (dt[:, :, t] * u_f[:, :, t])[:, :, None] * B_f[:, :, :, t]
        ys.append((h * C_f[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if length > 0 else u_f.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * u_f
    if z is not None:
        y = y * F.silu(z.to(ct))
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y

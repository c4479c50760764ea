"""RMSNorm as used by Vim (weight only, no bias, statistics in float32)."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension.

    ``y = x * rsqrt(mean(x ** 2, -1) + eps) * weight``, computed in float32 (float64 for float64
    input) and cast back to the input dtype. There is deliberately no ``bias`` parameter, so the
    state dict holds only ``weight`` (shape ``(dim,)``), matching the official Vim checkpoints.

    Args:
        dim: Size of the normalised (last) dimension.
        eps: Added to the mean square before the reciprocal square root.

    Shape:
        input ``(..., dim)`` -> output ``(..., dim)``, same dtype as the input.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(..., dim)``."""
        compute = torch.promote_types(x.dtype, torch.float32)  # fp32, or fp64 for fp64 input
        xf = x.to(compute)
        rstd = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (xf * rstd * self.weight.to(compute)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"

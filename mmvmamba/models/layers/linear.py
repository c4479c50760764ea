"""Per-pixel (and per-route) linear maps on channel-first tensors, as batched matmuls."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Linear2d", "grouped_linear"]


def grouped_linear(x: Tensor, weight: Tensor) -> Tensor:
    """One linear map per group along the channel axis of channel-first sequences.

    Equal to ``einsum('bgil,goi->bgol', x, weight)`` (a grouped 1x1 convolution), computed as one
    ``bmm``: on the CPU that is BLAS, where a grouped/1x1 ``conv`` takes PyTorch's slow
    convolution path; FLOP counters count ``bmm`` exactly.

    Shapes:
        x (B, G, C_in, L), weight (G, C_out, C_in) -> (B, G, C_out, L).
    """
    b, g, c_in, length = x.shape
    w = weight.unsqueeze(0).expand(b, -1, -1, -1).reshape(b * g, -1, c_in)
    return torch.bmm(w, x.reshape(b * g, c_in, length)).view(b, g, -1, length)


class Linear2d(nn.Linear):
    """``nn.Linear`` on the channel axis of a (B, C_in, H, W) map.

    The weight is stored as ``(C_out, C_in)`` like ``nn.Linear`` (official VMamba checkpoints use
    that shape) and applied without moving data: a channels-last map (strides of (B, H, W, C))
    is one ``F.linear`` and stays channels-last, a contiguous one is one ``bmm``.

    Shapes:
        input (B, C_in, H, W) -> output (B, C_out, H, W).
    """

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # a channel-last map (a LayerNorm2d output, the residual stream): one GEMM with the
            # bias fused, no copy; the result stays channel-last (same values, other strides)
            return F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)
        y = grouped_linear(x.reshape(b, 1, -1, h * w), self.weight.unsqueeze(0))
        y = y.view(b, -1, h, w)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

"""A Linear layer applied per pixel of a channel-first map (a 1x1 convolution)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Linear2d"]


class Linear2d(nn.Linear):
    """``nn.Linear`` on the channel axis of a (B, C_in, H, W) map.

    The weight is stored as ``(C_out, C_in)`` like ``nn.Linear`` (official VMamba checkpoints use
    that shape), and applied as a 1x1 convolution, so FLOP counters see a convolution and the
    map never leaves the channel-first layout.

    Shapes:
        input (B, C_in, H, W) -> output (B, C_out, H, W).
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)

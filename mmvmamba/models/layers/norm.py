"""Channel-first normalisation: LayerNorm over the channel axis of (B, C, H, W) maps."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerNorm2d"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channel-first map.

    Same parameters (``weight``/``bias`` of shape (C,)) and same numbers as ``nn.LayerNorm(C)``
    applied to the (B, H, W, C) permutation, so checkpoints of channel-last and channel-first
    models are interchangeable.

    Shapes:
        input (B, C, H, W) -> output (B, C, H, W).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"LayerNorm2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}"
            )
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)

"""VMamba's building blocks: the channel MLP, the VSS block and the v0 patch merging.

All take and return channel-first (B, C, H, W) maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .drop_path import DropPath
from .linear import Linear2d
from .norm import LayerNorm2d
from .ss2d import SS2D

__all__ = ["Mlp", "PatchMerging2d", "VSSBlock"]


class Mlp(nn.Module):
    """Channel MLP ``fc1 -> GELU -> fc2`` as 1x1 convs: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = Linear2d(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, channels)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class VSSBlock(nn.Module):
    """Visual state-space block: (B, C, H, W) -> (B, C, H, W).

    ``x = x + DropPath(op(norm(x)))`` with ``op`` an :class:`SS2D`, then, if ``mlp_ratio > 0``,
    ``x = x + DropPath(mlp(norm2(x)))`` (pre-norm, as the official ``post_norm=False``).
    :func:`mmvmamba.deployment.fuse_for_cpu` swaps in a fused inference twin for the CPU.
    """

    def __init__(self, dim: int, drop_path: float, mlp_ratio: float, ss2d_cfg: dict) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.op = SS2D(dim, **ss2d_cfg)
        self.drop_path = DropPath(drop_path)
        if mlp_ratio > 0:
            self.norm2 = LayerNorm2d(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        else:
            self.norm2 = self.mlp = None

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging2d(nn.Module):
    """Swin-style 2x2 patch merging of the v0 models (official ``PatchMerging2D``).

    Odd H/W are zero-padded at the bottom/right; the four sub-grids are concatenated on the
    channel axis in the order (even h, even w), (odd h, even w), (even h, odd w), (odd h, odd w),
    then ``norm`` (LayerNorm over 4C) and ``reduction`` (Linear 4C -> C_out, no bias).

    Shapes:
        input (B, C, H, W) -> output (B, C_out, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(4 * dim)
        self.reduction = Linear2d(4 * dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        x = torch.cat(
            [x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]], dim=1
        )
        return self.reduction(self.norm(x))

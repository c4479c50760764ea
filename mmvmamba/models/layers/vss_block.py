"""VMamba's building blocks: the channel MLP, the VSS block and the v0 patch merging.

All take and return channel-first (B, C, H, W) maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cpu_fusion import fusion_applies, linear_act, linear_add
from .drop_path import DropPath
from .linear import Linear2d
from .norm import LayerNorm2d
from .ss2d import SS2D

__all__ = ["Mlp", "PatchMerging2d", "VSSBlock"]


class Mlp(nn.Module):
    """Channel MLP ``fc1 -> GELU -> fc2`` as 1x1 convs: (B, C, H, W) -> (B, C, H, W).

    ``forward(x, residual)`` returns ``residual + mlp(x)``; on CPU inference with a
    channels-last ``x`` the GELU and the add run inside the GEMMs
    (:mod:`~mmvmamba.models.layers.cpu_fusion`), otherwise the modules run one by one.
    """

    def __init__(self, channels: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = Linear2d(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, channels)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if (
            isinstance(self.drop, nn.Identity)
            and x.is_contiguous(memory_format=torch.channels_last)
            and fusion_applies(x, self.fc1, self.act, self.fc2)
        ):
            hidden = linear_act(x, self.fc1, self.act)
            if hidden is not None:
                if residual is None:
                    return self.fc2(hidden)
                return linear_add(hidden, self.fc2, residual)
        y = self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
        return y if residual is None else residual + y


class VSSBlock(nn.Module):
    """Visual state-space block: (B, C, H, W) -> (B, C, H, W).

    ``x = x + DropPath(op(norm(x)))`` with ``op`` an :class:`SS2D`, then, if ``mlp_ratio > 0``,
    ``x = x + DropPath(mlp(norm2(x)))`` (pre-norm, as the official ``post_norm=False``).
    Where DropPath is the identity (eval, or rate 0) and ``op`` / ``mlp`` carry no hooks, the
    residual is handed to them so the add can be fused into their output projection.
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

    def _pass_residual(self, branch: nn.Module) -> bool:
        # hooks on the branch must see its own output, not the sum
        identity = self.drop_path.drop_prob == 0.0 or not self.training
        return identity and not (branch._forward_hooks or branch._forward_pre_hooks)

    def forward(self, x: Tensor) -> Tensor:
        if self._pass_residual(self.op):
            x = self.op(self.norm(x), residual=x)
        else:
            x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            if self._pass_residual(self.mlp):
                x = self.mlp(self.norm2(x), residual=x)
            else:
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

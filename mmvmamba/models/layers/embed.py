"""Patch embeddings and downsampling layers of the backbones, with the official module indices.

* :func:`vmamba_patch_embed`, :func:`vmamba_downsample`: VMamba's stem and stage tails, built as
  ``nn.Sequential`` whose indices match the official checkpoints (``patch_embed.{0,2,5,7}``,
  ``downsample.{1,3}``).
* :class:`VimPatchEmbed`: Vim's strided patch projection (``patch_embed.proj``).
"""

from __future__ import annotations

import torch
from torch import nn

from .norm import LayerNorm2d
from .vss_block import PatchMerging2d

__all__ = ["VimPatchEmbed", "vmamba_downsample", "vmamba_patch_embed"]

VMAMBA_PATCH_EMBEDS = ("v1", "v2")
VMAMBA_DOWNSAMPLES = ("v1", "v3")


def vmamba_patch_embed(version: str, in_channels: int, dim: int, patch_size: int) -> nn.Sequential:
    """VMamba stem: (B, C_in, H, W) -> (B, dim, H', W').

    v2 (``patch_embed.{0,2,5,7}``): two k=3, s=2, p=1 convs (for patch_size 4), so
    H' = ceil(ceil(H/2)/2). v1 (``patch_embed.{0,2}``): one k=s=patch_size conv, H' = H // 4.
    """
    if version == "v2":
        stride = patch_size // 2
        k = stride + 1
        return nn.Sequential(
            nn.Conv2d(in_channels, dim // 2, k, stride, k // 2),
            nn.Identity(),
            LayerNorm2d(dim // 2),
            nn.Identity(),
            nn.GELU(),
            nn.Conv2d(dim // 2, dim, k, stride, k // 2),
            nn.Identity(),
            LayerNorm2d(dim),
        )
    if version == "v1":
        return nn.Sequential(
            nn.Conv2d(in_channels, dim, patch_size, patch_size), nn.Identity(), LayerNorm2d(dim)
        )
    raise ValueError(
        f"VMamba arch: unknown patch_embed {version!r}; expected one of {VMAMBA_PATCH_EMBEDS}"
    )


def vmamba_downsample(version: str, dim: int, out_dim: int) -> nn.Module:
    """VMamba stage tail: (B, dim, H, W) -> (B, out_dim, ceil(H/2), ceil(W/2)).

    v3 (``downsample.{1,3}``): conv k=3, s=2, p=1 -> LN. v1 (``downsample.{norm,reduction}``):
    :class:`PatchMerging2d`.
    """
    if version == "v3":
        return nn.Sequential(
            nn.Identity(), nn.Conv2d(dim, out_dim, 3, 2, 1), nn.Identity(), LayerNorm2d(out_dim)
        )
    if version == "v1":
        return PatchMerging2d(dim, out_dim)
    raise ValueError(
        f"VMamba arch: unknown downsample {version!r}; expected one of {VMAMBA_DOWNSAMPLES}"
    )


class VimPatchEmbed(nn.Module):
    """Vim patch embedding: ``Conv2d(in_channels, C, kernel=patch_size, stride=stride)``.

    Shape: ``(B, in_channels, H, W)`` -> ``(B, C, h, w)`` with
    ``h = (H - patch_size) // stride + 1`` (likewise ``w``).
    """

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.stride = stride
        self.proj = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=stride)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid ``(h, w)`` for an ``H x W`` input."""
        return (
            (height - self.patch_size) // self.stride + 1,
            (width - self.patch_size) // self.stride + 1,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)

"""Reusable layers: SS2D (VMamba's 2D selective scan), the VSS block, Vim's bidirectional
mixer and channel-first building blocks. The fused CPU inference twins live in
:mod:`~mmvmamba.models.layers.cpu_fusion` (swapped in by
:func:`mmvmamba.deployment.fuse_for_cpu`, never implicitly)."""

from .bimamba import BiMambaV2
from .drop_path import DropPath
from .linear import Linear2d
from .norm import LayerNorm2d
from .ss2d import SS2D
from .vss_block import Mlp, PatchMerging2d, VSSBlock

__all__ = [
    "SS2D",
    "BiMambaV2",
    "DropPath",
    "LayerNorm2d",
    "Linear2d",
    "Mlp",
    "PatchMerging2d",
    "VSSBlock",
]

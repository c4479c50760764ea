"""Reusable layers: SS2D (VMamba's 2D selective scan) and channel-first building blocks."""

from .drop_path import DropPath
from .linear import Linear2d
from .norm import LayerNorm2d
from .ss2d import SS2D

__all__ = ["SS2D", "DropPath", "LayerNorm2d", "Linear2d"]

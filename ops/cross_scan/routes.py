"""The cross-scan routes: the one table of which order each sequence reads the (H, W) grid in.

A pattern unfolds a feature map into K = 4 sequences (routes) of length L = H * W. Every route
reads the grid in one *order*, given by three things: whether it runs along rows or columns
(``major``) and whether it counts rows from the bottom (``flip_h``) and columns from the right
(``flip_w``). Pixel (h, w) then sits at position

    l = h' * W + w'   (major 'row')        l = w' * H + h'   (major 'col')

with ``h' = H - 1 - h`` if flip_h else h, and ``w' = W - 1 - w`` if flip_w else w
(:func:`position`). Flipping both reverses the whole sequence.

Patterns:

- ``cross``: row-major, column-major, both reversed (VMamba's SS2D, "cross2d").
- ``unidi``: row-major, four copies.
- ``bidi``: row-major twice, reversed row-major twice.
- ``cascade``: each row / column is its own sequence (Cascade-Scan): rows left->right, rows
  right->left, columns top->bottom, columns bottom->top. Routes 0/1 are H segments of length W,
  routes 2/3 are W segments of length H (see ``vmamba_ops.segment_length``).

Every Python implementation reads :data:`ROUTES`: the reference gathers with
:func:`route_index`, the PyTorch backend turns each order into flips and a transpose
(:mod:`.torch_views`, also the export decomposition), the Triton kernel takes each route's
order as a compile-time code (``triton.order_code``) and applies :func:`position`. The C kernel
(``csrc/cross_scan_cpu.c``) keeps its own index arithmetic; a test checks it against this table.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Order(NamedTuple):
    """How a route orders the pixels of the grid (see the module docstring)."""

    major: str  # 'row' or 'col'
    flip_h: bool
    flip_w: bool


ROW = Order("row", False, False)  # l = h*W + w
ROW_REV = Order("row", True, True)  # l = L-1 - (h*W + w)
ROW_FLIPW = Order("row", False, True)  # l = h*W + W-1-w (each row reversed on its own)
COL = Order("col", False, False)  # l = w*H + h
COL_REV = Order("col", True, True)  # l = L-1 - (w*H + h)
COL_FLIPH = Order("col", True, False)  # l = w*H + H-1-h (each column reversed on its own)

ROUTES: dict[str, tuple[Order, ...]] = {
    "cross": (ROW, COL, ROW_REV, COL_REV),
    "unidi": (ROW, ROW, ROW, ROW),
    "bidi": (ROW, ROW, ROW_REV, ROW_REV),
    "cascade": (ROW, ROW_FLIPW, COL, COL_FLIPH),
}
PATTERNS = tuple(ROUTES)
K_OF_PATTERN = {pattern: len(orders) for pattern, orders in ROUTES.items()}


def routes(pattern: str) -> tuple[Order, ...]:
    """The K orders of ``pattern``; ValueError naming the patterns for an unknown one."""
    if pattern not in ROUTES:
        raise ValueError(f"unknown cross-scan pattern {pattern!r}; expected one of {PATTERNS}")
    return ROUTES[pattern]


def position(order: Order, h, w, H: int, W: int):
    """Sequence position of pixel (h, w) in a route of ``order`` (ints or integer tensors)."""
    hh = H - 1 - h if order.flip_h else h
    ww = W - 1 - w if order.flip_w else w
    return hh * W + ww if order.major == "row" else ww * H + hh


def route_index(pattern: str, H: int, W: int) -> Tensor:
    """Flat pixel index read by every route: ``idx[k, l] = h * W + w`` of the pixel at
    position l of route k; (K, H*W) int64, built with plain loops over the grid."""
    orders = routes(pattern)
    idx = [[0] * (H * W) for _ in orders]
    for k, order in enumerate(orders):
        for h in range(H):
            for w in range(W):
                idx[k][position(order, h, w, H, W)] = h * W + w
    return torch.tensor(idx, dtype=torch.long).view(len(orders), H * W)


__all__ = ["K_OF_PATTERN", "PATTERNS", "ROUTES", "Order", "position", "route_index", "routes"]

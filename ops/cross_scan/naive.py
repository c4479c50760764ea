"""Reference cross-scan / cross-merge: explicit index formulas, gather and scatter-add.

A *route* k reads the (H, W) grid in some order: position ``l`` of sequence ``k`` is pixel
``route_index(pattern, H, W)[k, l]`` (a flat row-major index ``h * W + w``).

Patterns (K = 4 routes each, L = H * W):

- ``cross``: [row-major (l = h*W + w), column-major (l = w*H + h), reverse of row-major,
  reverse of column-major] -- VMamba's SS2D ("cross2d").
- ``unidi``: row-major, four copies.
- ``bidi``: [row-major, row-major, reversed row-major, reversed row-major].
- ``cascade``: each row / column is its *own* sequence (Cascade-Scan). Routes:
  0 = rows left->right (l = h*W + j reads pixel (h, j)), 1 = rows right->left
  (l = h*W + j reads (h, W-1-j)), 2 = columns top->bottom (l = w*H + j reads (j, w)),
  3 = columns bottom->top (l = w*H + j reads (H-1-j, w)). Routes 0/1 are H segments of
  length W, routes 2/3 are W segments of length H (see ``segment_length``).

cross_merge is the adjoint of cross_scan: it scatters every route back to its pixel and sums.
"""

from __future__ import annotations

import torch
from torch import Tensor

PATTERNS = ("cross", "unidi", "bidi", "cascade")
K_OF_PATTERN = {"cross": 4, "unidi": 4, "bidi": 4, "cascade": 4}


def route_index(pattern: str, H: int, W: int) -> Tensor:
    """Flat pixel index read by every route, built with plain loops.

    Args:
        pattern: one of ``PATTERNS``.
        H, W: grid size.

    Returns:
        (K, H*W) int64 tensor; ``idx[k, l]`` = ``h * W + w`` of the pixel at position l of route k.
    """
    L = H * W
    row = [0] * L
    col = [0] * L
    row_rev_each = [0] * L
    col_rev_each = [0] * L
    for h in range(H):
        for w in range(W):
            row[h * W + w] = h * W + w
            col[w * H + h] = h * W + w
            row_rev_each[h * W + w] = h * W + (W - 1 - w)
            col_rev_each[w * H + h] = (H - 1 - h) * W + w
    if pattern == "cross":
        routes = [row, col, row[::-1], col[::-1]]
    elif pattern == "unidi":
        routes = [row, row, row, row]
    elif pattern == "bidi":
        routes = [row, row, row[::-1], row[::-1]]
    elif pattern == "cascade":
        routes = [row, row_rev_each, col, col_rev_each]
    else:
        raise ValueError(f"unknown cross-scan pattern {pattern!r}; expected one of {PATTERNS}")
    return torch.tensor(routes, dtype=torch.long).view(len(routes), L)


def cross_scan_ref(x: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Reference cross-scan.

    Args:
        x: (B, C, H, W) if channel_first else (B, H, W, C).

    Returns:
        (B, K, C, H*W) if channel_first else (B, H*W, K, C).
    """
    if not channel_first:
        x = x.permute(0, 3, 1, 2)
    b, c, h, w = x.shape
    idx = route_index(pattern, h, w).to(x.device)
    k = idx.shape[0]
    flat = x.reshape(b, c, h * w)
    ys = flat.index_select(2, idx.reshape(-1)).view(b, c, k, h * w).transpose(1, 2)
    if not channel_first:
        return ys.permute(0, 3, 1, 2).contiguous()
    return ys.contiguous()


def cross_merge_ref(y: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Reference cross-merge (adjoint of cross_scan): sum of all routes on the grid.

    Args:
        y: (B, K, C, H, W) if channel_first else (B, H, W, K, C); the last two (first two)
            spatial axes only carry H and W, the sequence order is position l = i*W + j.

    Returns:
        (B, C, H, W) if channel_first else (B, H, W, C).
    """
    if not channel_first:
        y = y.permute(0, 3, 4, 1, 2)
    b, k, c, h, w = y.shape
    idx = route_index(pattern, h, w).to(y.device)
    seqs = y.reshape(b, k, c, h * w).transpose(1, 2).reshape(b, c, k * h * w)
    out = seqs.new_zeros(b, c, h * w).index_add_(2, idx.reshape(-1), seqs)
    out = out.view(b, c, h, w)
    if not channel_first:
        return out.permute(0, 2, 3, 1).contiguous()
    return out

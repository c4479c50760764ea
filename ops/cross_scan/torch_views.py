"""Cross-scan / cross-merge in plain PyTorch (flips, transposes, reshapes): the 'torch' backend.

Each route's order (:mod:`.routes`) becomes flips of the grid and, for column-major routes, a
transpose; no index tensors, so it runs at memory-copy speed on any device, and it is also the
export decomposition of the ops (:mod:`mmvmamba.deployment.decompose`): only shape-generic
tensor ops, valid for symbolic H and W.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .routes import Order, routes


def _flip_dims(order: Order) -> list[int]:
    return [d for d, flipped in ((2, order.flip_h), (3, order.flip_w)) if flipped]


def _reverses(order: Order) -> bool:
    """Both axes flipped: the route is its un-flipped order read backwards."""
    return order.flip_h and order.flip_w


def _to_sequence(x: Tensor, order: Order) -> Tensor:
    """(B, C, H, W) -> (B, C, H*W) in ``order``."""
    if _reverses(order):
        return _to_sequence(x, Order(order.major, False, False)).flip(-1)
    dims = _flip_dims(order)
    if dims:
        x = x.flip(dims)
    if order.major == "col":
        x = x.transpose(2, 3)
    return x.flatten(2)


def _to_grid(seq: Tensor, order: Order, h: int, w: int) -> Tensor:
    """(B, C, H*W) in ``order`` -> (B, C, H, W): the inverse of :func:`_to_sequence`."""
    b, c = seq.shape[0], seq.shape[1]
    if _reverses(order):
        return _to_grid(seq.flip(-1), Order(order.major, False, False), h, w)
    grid = seq.reshape(b, c, h, w) if order.major == "row" else seq.reshape(b, c, w, h)
    if order.major == "col":
        grid = grid.transpose(2, 3)
    dims = _flip_dims(order)
    return grid.flip(dims) if dims else grid


def cross_scan_torch(x: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Cross-scan: (B, C, H, W) -> (B, K, C, H*W), or (B, H, W, C) -> (B, H*W, K, C)."""
    orders = routes(pattern)
    if channel_first:
        return torch.stack([_to_sequence(x, o) for o in orders], dim=1)
    # routes of a channel-first *view*, stacked straight into (B, L, K, C)
    cf = x.permute(0, 3, 1, 2)
    return torch.stack([_to_sequence(cf, o).transpose(1, 2) for o in orders], dim=2)


def cross_merge_torch(y: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Cross-merge (adjoint of cross_scan, the sum of the routes on the grid):
    (B, K, C, H, W) -> (B, C, H, W), or (B, H, W, K, C) -> (B, H, W, C).

    Routes of the same order, read forwards or backwards, are summed as sequences first, so
    e.g. 'cross' puts two sequences back on the grid instead of four.
    """
    orders = routes(pattern)
    if not channel_first:
        y = y.permute(0, 3, 4, 1, 2)  # (B, K, C, H, W) view
    b, k, c, h, w = y.shape
    seqs = y.reshape(b, k, c, h * w)
    sums: dict[Order, list] = {}  # un-reversed order -> [sum read forwards, sum read backwards]
    for i, order in enumerate(orders):
        backwards = _reverses(order)
        base = Order(order.major, False, False) if backwards else order
        acc = sums.setdefault(base, [None, None])
        acc[backwards] = seqs[:, i] if acc[backwards] is None else acc[backwards] + seqs[:, i]
    out = None
    for base, (fwd, bwd) in sums.items():
        seq = fwd if bwd is None else bwd.flip(-1) if fwd is None else fwd + bwd.flip(-1)
        grid = _to_grid(seq, base, h, w)
        out = grid if out is None else out + grid
    if not channel_first:
        return out.permute(0, 2, 3, 1).contiguous()
    return out.contiguous()


__all__ = ["cross_merge_torch", "cross_scan_torch"]

"""Reference cross-scan / cross-merge: a gather and a scatter-add with the index table.

Position ``l`` of route ``k`` reads pixel ``route_index(pattern, H, W)[k, l]`` (a flat row-major
index ``h * W + w``); the routes of every pattern are defined in :mod:`.routes`.
cross_merge is the adjoint of cross_scan: it scatters every route back to its pixel and sums.
"""

from __future__ import annotations

from torch import Tensor

from .routes import route_index


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


__all__ = ["cross_merge_ref", "cross_scan_ref"]

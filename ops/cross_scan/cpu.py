"""Cross-scan / cross-merge with tensor views (flip / transpose / stack): the default off-GPU path.

Same semantics and layouts as :mod:`vmamba_ops.cross_scan.naive` (read its docstring for the
route definitions); this version avoids index tensors and runs at memory-copy speed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _routes_cf(x: Tensor, pattern: str) -> list[Tensor]:
    """The K routes of a channel-first map x (B, C, H, W), each (B, C, H*W)."""
    row = x.flatten(2)
    if pattern == "unidi":
        return [row, row, row, row]
    if pattern == "bidi":
        rev = row.flip(-1)
        return [row, row, rev, rev]
    col = x.transpose(2, 3).flatten(2)
    if pattern == "cross":
        return [row, col, row.flip(-1), col.flip(-1)]
    # cascade: every row / column reversed on its own
    return [row, x.flip(3).flatten(2), col, x.flip(2).transpose(2, 3).flatten(2)]


def cross_scan_cpu(x: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Cross-scan: (B, C, H, W) -> (B, K, C, H*W), or (B, H, W, C) -> (B, H*W, K, C)."""
    if channel_first:
        return torch.stack(_routes_cf(x, pattern), dim=1)
    # (B, H, W, C) -> routes on a channel-first *view*, stacked straight into (B, L, K, C)
    routes = _routes_cf(x.permute(0, 3, 1, 2), pattern)  # each (B, C, L), strided views
    return torch.stack([r.transpose(1, 2) for r in routes], dim=2)


def cross_merge_cpu(y: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Cross-merge (adjoint of cross_scan): (B, K, C, H, W) -> (B, C, H, W), or
    (B, H, W, K, C) -> (B, H, W, C)."""
    if not channel_first:
        y = y.permute(0, 3, 4, 1, 2)  # (B, K, C, H, W) view
    b, _, c, h, w = y.shape
    ys = y.reshape(b, 4, c, h * w)
    if pattern == "unidi":
        out = ys.sum(1).view(b, c, h, w)
    elif pattern == "bidi":
        out = (ys[:, 0] + ys[:, 1] + (ys[:, 2] + ys[:, 3]).flip(-1)).view(b, c, h, w)
    elif pattern == "cross":
        a = ys[:, 0] + ys[:, 2].flip(-1)
        t = ys[:, 1] + ys[:, 3].flip(-1)
        out = a.view(b, c, h, w) + t.view(b, c, w, h).transpose(2, 3)
    else:  # cascade
        out = (
            ys[:, 0].view(b, c, h, w)
            + ys[:, 1].view(b, c, h, w).flip(3)
            + ys[:, 2].view(b, c, w, h).transpose(2, 3)
            + ys[:, 3].view(b, c, w, h).flip(3).transpose(2, 3)
        )
    if not channel_first:
        return out.permute(0, 2, 3, 1).contiguous()
    return out.contiguous()

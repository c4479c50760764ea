"""Public cross-scan / cross-merge: validation, backend dispatch and torch.library ops.

``vmamba_ops::cross_scan`` and ``vmamba_ops::cross_merge`` are each other's adjoint, so each
one's backward is the other op.
"""

# no `from __future__ import annotations`: torch.library infers op schemas from real annotations
import torch
from torch import Tensor

from ..dispatch import resolve_backend
from . import c_kernel, reference, torch_views
from .routes import K_OF_PATTERN, PATTERNS


def _impl(op: str, backend: str, x: Tensor, channel_first: bool):
    """The function of ``backend`` for ``op`` ('cross_scan' / 'cross_merge'), looked up at
    call time."""
    if backend == "cpu":  # the old name, in graphs captured before the rename
        backend = resolve_backend(op, "cpu", x.device, x.dtype, channel_first=channel_first)
    if backend == "triton":
        from . import triton  # imports triton; only reached when asked for

        return getattr(triton, f"{op}_triton")
    if backend == "c":
        return getattr(c_kernel, f"{op}_c")
    if backend not in ("ref", "torch"):
        raise ValueError(f"vmamba_ops::{op}: unknown backend {backend!r}")
    return getattr(reference if backend == "ref" else torch_views, f"{op}_{backend}")


@torch.library.custom_op("vmamba_ops::cross_scan", mutates_args=())
def _cross_scan_op(x: Tensor, pattern: str, channel_first: bool, backend: str) -> Tensor:
    return _impl("cross_scan", backend, x, channel_first)(x, pattern, channel_first)


@_cross_scan_op.register_fake
def _(x, pattern, channel_first, backend):
    k = K_OF_PATTERN[pattern]
    if channel_first:
        b, c, h, w = x.shape
        return x.new_empty((b, k, c, h * w))
    b, h, w, c = x.shape
    return x.new_empty((b, h * w, k, c))


@torch.library.custom_op("vmamba_ops::cross_merge", mutates_args=())
def _cross_merge_op(y: Tensor, pattern: str, channel_first: bool, backend: str) -> Tensor:
    return _impl("cross_merge", backend, y, channel_first)(y, pattern, channel_first)


@_cross_merge_op.register_fake
def _(y, pattern, channel_first, backend):
    if channel_first:
        b, _, c, h, w = y.shape
        return y.new_empty((b, c, h, w))
    b, h, w, _, c = y.shape
    return y.new_empty((b, h, w, c))


def _scan_setup(ctx, inputs, output):
    x, ctx.pattern, ctx.channel_first, ctx.backend = inputs
    ctx.hw = (x.shape[2], x.shape[3]) if ctx.channel_first else (x.shape[1], x.shape[2])


def _scan_backward(ctx, gy):
    h, w = ctx.hw
    if ctx.channel_first:  # (B, K, C, L) -> (B, K, C, H, W)
        gy = gy.reshape(gy.shape[0], gy.shape[1], gy.shape[2], h, w)
    else:  # (B, L, K, C) -> (B, H, W, K, C)
        gy = gy.reshape(gy.shape[0], h, w, gy.shape[2], gy.shape[3])
    gx = torch.ops.vmamba_ops.cross_merge(gy, ctx.pattern, ctx.channel_first, ctx.backend)
    return gx, None, None, None


def _merge_setup(ctx, inputs, output):
    _, ctx.pattern, ctx.channel_first, ctx.backend = inputs


def _merge_backward(ctx, gx):
    gy = torch.ops.vmamba_ops.cross_scan(gx, ctx.pattern, ctx.channel_first, ctx.backend)
    b = gx.shape[0]
    if ctx.channel_first:
        _, c, h, w = gx.shape
        gy = gy.reshape(b, gy.shape[1], c, h, w)
    else:
        _, h, w, c = gx.shape
        gy = gy.reshape(b, h, w, gy.shape[2], c)
    return gy, None, None, None


_cross_scan_op.register_autograd(_scan_backward, setup_context=_scan_setup)
_cross_merge_op.register_autograd(_merge_backward, setup_context=_merge_setup)


def _check_pattern(pattern: str, op: str) -> None:
    if pattern not in PATTERNS:
        raise ValueError(f"{op}: unknown pattern {pattern!r}; expected one of {PATTERNS}")


def cross_scan(
    x: Tensor, pattern: str = "cross", channel_first: bool = True, backend: str = "auto"
) -> Tensor:
    """Unfold a feature map into K 1-D sequences (routes), see :mod:`vmamba_ops.cross_scan.routes`.

    Args:
        x: (B, C, H, W) if channel_first else (B, H, W, C). Any H, W >= 1.
        pattern: 'cross' | 'unidi' | 'bidi' | 'cascade'.
        channel_first: layout of x and of the result.
        backend: 'auto' | 'ref' | 'torch' | 'c' | 'triton' (or the old 'cpu'); see
            :func:`vmamba_ops.dispatch.resolve_backend`.

    Returns:
        (B, K, C, H*W) if channel_first else (B, H*W, K, C); K = K_OF_PATTERN[pattern] (4).
    """
    _check_pattern(pattern, "cross_scan")
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        layout = "(B, C, H, W)" if channel_first else "(B, H, W, C)"
        raise ValueError(f"cross_scan: x must be {layout}, got {got}")
    backend = resolve_backend("cross_scan", backend, x.device, x.dtype, channel_first=channel_first)
    return torch.ops.vmamba_ops.cross_scan(x, pattern, channel_first, backend)


def cross_merge(
    y: Tensor, pattern: str = "cross", channel_first: bool = True, backend: str = "auto"
) -> Tensor:
    """Sum K route sequences back onto the grid: the adjoint of :func:`cross_scan`.

    Args:
        y: (B, K, C, H, W) if channel_first else (B, H, W, K, C): the scan output with its
            sequence axis L viewed as (H, W) (position l = i * W + j), e.g.
            ``ys.view(B, K, C, H, W)``.
        pattern: 'cross' | 'unidi' | 'bidi' | 'cascade'.
        channel_first: layout of y and of the result.
        backend: 'auto' | 'ref' | 'torch' | 'c' | 'triton' (or the old 'cpu'); see
            :func:`vmamba_ops.dispatch.resolve_backend`.

    Returns:
        (B, C, H, W) if channel_first else (B, H, W, C).
    """
    _check_pattern(pattern, "cross_merge")
    k = K_OF_PATTERN[pattern]
    if not isinstance(y, Tensor) or y.dim() != 5:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        layout = "(B, K, C, H, W)" if channel_first else "(B, H, W, K, C)"
        raise ValueError(f"cross_merge: y must be {layout}, got {got}")
    k_got = y.shape[1] if channel_first else y.shape[3]
    if not torch.jit.is_tracing() and k_got != k:
        raise ValueError(f"cross_merge: pattern {pattern!r} has K={k} routes, y has {k_got}")
    backend = resolve_backend(
        "cross_merge", backend, y.device, y.dtype, channel_first=channel_first
    )
    return torch.ops.vmamba_ops.cross_merge(y, pattern, channel_first, backend)


def segment_length(pattern: str, H: int, W: int) -> list[int]:
    """Length of the independent sequences inside each route (K entries).

    For 'cross'/'unidi'/'bidi' every route is one sequence of length H*W. For 'cascade' routes
    0/1 are H rows of length W and routes 2/3 are W columns of length H: scan them with
    :func:`to_segments` so that no state flows from one row (column) into the next.
    """
    _check_pattern(pattern, "segment_length")
    if pattern == "cascade":
        return [W, W, H, H]
    return [H * W] * K_OF_PATTERN[pattern]


def to_segments(seq: Tensor, seg_len: int) -> Tensor:
    """(B, C, L) route sequence -> (B * L // seg_len, C, seg_len): one batch row per segment."""
    b, c, length = seq.shape
    if length % seg_len:
        raise ValueError(f"to_segments: L={length} is not a multiple of seg_len={seg_len}")
    n = length // seg_len
    return seq.reshape(b, c, n, seg_len).permute(0, 2, 1, 3).reshape(b * n, c, seg_len)


def from_segments(seg: Tensor, batch: int) -> Tensor:
    """Inverse of :func:`to_segments`: (B * n, C, T) -> (B, C, n * T)."""
    bn, c, t = seg.shape
    n = bn // batch
    return seg.reshape(batch, n, c, t).permute(0, 2, 1, 3).reshape(batch, c, n * t)

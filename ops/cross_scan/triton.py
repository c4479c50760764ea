"""Triton cross-scan / cross-merge (one kernel, both directions, any layout via strides).

Each program handles BLOCK_P pixels (flat index p = h * W + w) x BLOCK_C channels of one image
and computes, per pixel, the sequence position of every route: the orders of
:data:`vmamba_ops.cross_scan.routes.ROUTES` arrive as compile-time codes (:func:`order_code`) and
``_position`` is :func:`~vmamba_ops.cross_scan.routes.position` written for Triton. Scan
copies the pixel to its K positions; merge loads the K positions and stores their sum (so
merge needs no atomics and is deterministic). Layouts are expressed through runtime strides;
only the route orders and the direction are compile-time.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..triton_aot import Launch
from .routes import Order, routes


def order_code(order: Order) -> int:
    """A route's :class:`~vmamba_ops.cross_scan.routes.Order` as one compile-time int:
    bit 0 column-major, bit 1 flip_h, bit 2 flip_w (decoded by ``_position``)."""
    return int(order.major == "col") | int(order.flip_h) << 1 | int(order.flip_w) << 2


@triton.jit
def _position(ORDER: tl.constexpr, h, w, H, W):
    """:func:`vmamba_ops.cross_scan.routes.position` of pixel (h, w) for an encoded order."""
    if ORDER & 2:
        hh = H - 1 - h
    else:
        hh = h
    if ORDER & 4:
        ww = W - 1 - w
    else:
        ww = w
    if ORDER & 1:
        r = ww * H + hh
    else:
        r = hh * W + ww
    return r


@triton.jit
def _route(
    k: tl.constexpr,
    R0: tl.constexpr,
    R1: tl.constexpr,
    R2: tl.constexpr,
    R3: tl.constexpr,
    h,
    w,
    H,
    W,
):
    if k == 0:
        r = _position(R0, h, w, H, W)
    elif k == 1:
        r = _position(R1, h, w, H, W)
    elif k == 2:
        r = _position(R2, h, w, H, W)
    else:
        r = _position(R3, h, w, H, W)
    return r


@triton.jit(do_not_specialize=["C", "H", "W"])
def _cross_kernel(
    x_ptr,
    y_ptr,
    C,
    H,
    W,
    sxb,
    sxc,
    sxh,
    sxw,  # strides of the map x (B, C, H, W) view
    syb,
    syk,
    syc,
    syl,  # strides of the sequences y (B, K, C, L) view
    R0: tl.constexpr,  # the encoded order of each route (order_code)
    R1: tl.constexpr,
    R2: tl.constexpr,
    R3: tl.constexpr,
    MERGE: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (offs_p < H * W)[:, None] & (offs_c < C)[None, :]
    h = offs_p // W
    w = offs_p % W
    x_off = pid_b * sxb + offs_c[None, :] * sxc + (h * sxh + w * sxw)[:, None]
    y_base = pid_b * syb + offs_c[None, :] * syc
    if MERGE:
        acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        for k in tl.static_range(4):
            r = _route(k, R0, R1, R2, R3, h, w, H, W)
            acc += tl.load(y_ptr + y_base + k * syk + r[:, None] * syl, mask=mask, other=0.0).to(
                tl.float32
            )
        tl.store(x_ptr + x_off, acc.to(x_ptr.dtype.element_ty), mask=mask)
    else:
        v = tl.load(x_ptr + x_off, mask=mask, other=0.0)
        for k in tl.static_range(4):
            r = _route(k, R0, R1, R2, R3, h, w, H, W)
            tl.store(y_ptr + y_base + k * syk + r[:, None] * syl, v, mask=mask)


# pixels x channels per program (a (64, 16) tile: 8 values per thread with 4 warps)
BLOCK_P, BLOCK_C, NUM_WARPS = 64, 16, 4


def cross_launch(
    x: Tensor, y: Tensor, pattern: str, merge: bool, x_view: Tensor, y_view: Tensor
) -> Launch:
    """The launch of one scan (``merge=False``: x -> y) or merge (y -> x).

    x_view: x seen as (B, C, H, W); y_view: y seen as (B, K, C, L) (permuted views of the
    same storage). Grid: (ceil(H*W / BLOCK_P), ceil(C / BLOCK_C), B).
    """
    b, c, h, w = x_view.shape
    args = dict(x_ptr=x, y_ptr=y, C=c, H=h, W=w)
    args.update(zip(("sxb", "sxc", "sxh", "sxw"), x_view.stride()))
    args.update(zip(("syb", "syk", "syc", "syl"), y_view.stride()))
    grid = (triton.cdiv(h * w, BLOCK_P), triton.cdiv(c, BLOCK_C), b)
    codes = {f"R{k}": order_code(order) for k, order in enumerate(routes(pattern))}
    consts = dict(**codes, MERGE=merge, BLOCK_P=BLOCK_P, BLOCK_C=BLOCK_C)
    return Launch(
        _cross_kernel, grid, args, consts, NUM_WARPS, "cross_" + ("merge" if merge else "scan")
    )


def _scan_plan(x: Tensor, pattern: str, channel_first: bool) -> tuple[Launch, Tensor]:
    if channel_first:
        b, c, h, w = x.shape
        y = x.new_empty(b, 4, c, h * w)
        return cross_launch(x, y, pattern, False, x, y), y
    b, h, w, c = x.shape
    y = x.new_empty(b, h * w, 4, c)
    return cross_launch(x, y, pattern, False, x.permute(0, 3, 1, 2), y.permute(0, 2, 3, 1)), y


def _merge_plan(y: Tensor, pattern: str, channel_first: bool) -> tuple[Launch, Tensor]:
    if channel_first:
        b, k, c, h, w = y.shape
        x = y.new_empty(b, c, h, w)
        return cross_launch(x, y, pattern, True, x, y.view(b, k, c, h * w)), x
    b, h, w, k, c = y.shape
    x = y.new_empty(b, h, w, c)
    y_view = y.view(b, h * w, k, c).permute(0, 2, 3, 1)
    return cross_launch(x, y, pattern, True, x.permute(0, 3, 1, 2), y_view), x


def cross_scan_triton(x: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """(B, C, H, W) -> (B, K, C, H*W), or (B, H, W, C) -> (B, H*W, K, C)."""
    launch, y = _scan_plan(x, pattern, channel_first)
    if x.numel():
        launch.run()
    return y


def cross_merge_triton(y: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """(B, K, C, H, W) -> (B, C, H, W), or (B, H, W, K, C) -> (B, H, W, C)."""
    launch, x = _merge_plan(y.contiguous(), pattern, channel_first)
    if x.numel():
        launch.run()
    return x


def launch_for_shape(
    batch: int,
    channels: int,
    h: int,
    w: int,
    dtype: torch.dtype,
    pattern: str,
    merge: bool,
    channel_first: bool = True,
) -> Launch:
    """The launch a scan / merge of these shapes makes, on ``meta`` tensors (for the report)."""
    if channel_first:
        shape = (batch, 4, channels, h, w) if merge else (batch, channels, h, w)
    else:
        shape = (batch, h, w, 4, channels) if merge else (batch, h, w, channels)
    t = torch.empty(shape, dtype=dtype, device="meta")
    plan = _merge_plan if merge else _scan_plan
    return plan(t, pattern, channel_first)[0]


__all__ = ["cross_launch", "cross_merge_triton", "cross_scan_triton", "launch_for_shape"]

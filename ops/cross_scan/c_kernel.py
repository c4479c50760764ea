"""The compiled CPU cross-scan / cross-merge (``ops/csrc/cross_scan_cpu.c``), called through ctypes.

Why: the view-based PyTorch version (:mod:`.torch_views`) makes a copy per transpose, flip and stack
(cross_scan 'cross': about seven passes over the data) and cross_merge a pass per flip and add;
the C kernels read the input once and write the output once, one (batch, channel) plane at a
time while it sits in cache. Only the channel-first layout in float32 / float64 (the dispatch
table sends everything else to the PyTorch code). How the library is built:
:mod:`vmamba_ops._c_library`; the routes: :mod:`.routes` (the kernel's own table in
``csrc/cross_scan_cpu.c`` is checked against it by the tests).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._c_library import I64, INT, PTR, function, ptr
from .routes import PATTERNS

_SFX = {torch.float32: "f32", torch.float64: "f64"}
_ARGTYPES = [I64] * 4 + [INT, PTR, PTR, INT]


def _call(op: str, inp: Tensor, out: Tensor, b: int, c: int, h: int, w: int, pattern: str):
    if out.numel() == 0:
        return
    fn = function(f"vmamba_{op}_{_SFX[inp.dtype]}", _ARGTYPES)
    rc = fn(b, c, h, w, PATTERNS.index(pattern), ptr(inp), ptr(out), torch.get_num_threads())
    if rc == -2:  # (patterns are checked before the call; a new one the kernel lacks)
        raise ValueError(f"{op} (CPU kernel): pattern {pattern!r} is not in the compiled kernel")
    if rc != 0:
        raise MemoryError(f"{op} (CPU kernel): out of memory (code {rc})")


def to_channel_first(x: Tensor) -> Tensor:
    """``x.contiguous()`` for a (B, C, H, W) map; a channels-last one (memory (B, H, W, C))
    is transposed by the compiled kernel (one pass in 8x8 register tiles, faster than torch's
    copy for this permutation)."""
    if x.is_contiguous() or x.dim() != 4 or x.dtype not in _SFX or x.device.type != "cpu":
        return x.contiguous()
    if not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous()
    b, c, h, w = x.shape
    out = torch.empty(b, c, h, w, dtype=x.dtype)
    if out.numel() > 0:
        fn = function(f"vmamba_to_channel_first_{_SFX[x.dtype]}", [I64] * 3 + [PTR, PTR, INT])
        if fn(b, c, h * w, ptr(x), ptr(out), torch.get_num_threads()) != 0:
            raise MemoryError("to_channel_first (CPU kernel): out of memory")
    return out


def _check_layout(channel_first: bool) -> None:
    if not channel_first:
        raise ValueError("the C cross-scan kernels take channel-first maps only")


def cross_scan_c(x: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Cross-scan (B, C, H, W) -> (B, 4, C, H*W) of a float32 / float64 CPU map."""
    _check_layout(channel_first)
    x = to_channel_first(x)
    b, c, h, w = x.shape
    out = torch.empty(b, 4, c, h * w, dtype=x.dtype)
    _call("cross_scan", x, out, b, c, h, w, pattern)
    return out


def cross_merge_c(y: Tensor, pattern: str = "cross", channel_first: bool = True) -> Tensor:
    """Cross-merge (B, 4, C, H, W) -> (B, C, H, W): the sum of the routes on the grid."""
    _check_layout(channel_first)
    y = y.contiguous()
    b, _, c, h, w = y.shape
    out = torch.empty(b, c, h, w, dtype=y.dtype)
    _call("cross_merge", y, out, b, c, h, w, pattern)
    return out


__all__ = ["cross_merge_c", "cross_scan_c", "to_channel_first"]

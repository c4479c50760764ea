"""The compiled CPU cross-scan / cross-merge (``ops/csrc/cross_scan_cpu.c``), called through ctypes.

Why: the view-based PyTorch version (:mod:`.cpu`) makes a copy per transpose, flip and stack
(cross_scan 'cross': about seven passes over the data) and cross_merge a pass per flip and add;
the C kernels read the input once and write the output once, one (batch, channel) plane at a
time while it sits in cache. Only the channel-first layout in float32 / float64
(:func:`supported`); everything else keeps the PyTorch code. How the library is built and
chosen: :mod:`vmamba_ops._native`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._native import I64, INT, PTR, function, ptr
from .naive import PATTERNS

_SFX = {torch.float32: "f32", torch.float64: "f64"}
_ARGTYPES = [I64] * 4 + [INT, PTR, PTR, INT]


def supported(x: Tensor, channel_first: bool) -> bool:
    """Whether the C kernels handle this input: channel-first, float32 or float64, on the CPU."""
    return channel_first and x.dtype in _SFX and x.device.type == "cpu"


def _call(op: str, inp: Tensor, out: Tensor, b: int, c: int, h: int, w: int, pattern: str):
    if out.numel() == 0:
        return
    fn = function(f"vmamba_{op}_{_SFX[inp.dtype]}", _ARGTYPES)
    rc = fn(b, c, h, w, PATTERNS.index(pattern), ptr(inp), ptr(out), torch.get_num_threads())
    if rc != 0:
        raise MemoryError(f"{op} (CPU kernel): failed with code {rc}")


def channel_first(x: Tensor) -> Tensor:
    """``x.contiguous()`` for a (B, C, H, W) map; a channels-last one (memory (B, H, W, C))
    is transposed by the compiled kernel, ~3x faster here than torch's copy for it."""
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


def cross_scan_native(x: Tensor, pattern: str = "cross") -> Tensor:
    """Cross-scan (B, C, H, W) -> (B, 4, C, H*W); see :mod:`vmamba_ops.cross_scan.naive`."""
    x = channel_first(x)
    b, c, h, w = x.shape
    out = torch.empty(b, 4, c, h * w, dtype=x.dtype)
    _call("cross_scan", x, out, b, c, h, w, pattern)
    return out


def cross_merge_native(y: Tensor, pattern: str = "cross") -> Tensor:
    """Cross-merge (B, 4, C, H, W) -> (B, C, H, W): the sum of the routes on the grid."""
    y = y.contiguous()
    b, _, c, h, w = y.shape
    out = torch.empty(b, c, h, w, dtype=y.dtype)
    _call("cross_merge", y, out, b, c, h, w, pattern)
    return out


__all__ = ["channel_first", "cross_merge_native", "cross_scan_native", "supported"]

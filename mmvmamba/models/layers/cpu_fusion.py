"""Fused projection + activation / residual for CPU inference (oneDNN post-ops).

On the CPU, an elementwise op after a GEMM or a depthwise conv is a full extra pass over a
large activation (at 768x768 VMamba-T's MLP hidden map is 56 MB). PyTorch's oneDNN ops
``mkldnn::_linear_pointwise`` and ``mkldnn::_convolution_pointwise`` (the ones inductor's CPU
fusion emits) apply the activation, or the residual add, while the output tile is still in
cache. Same math: erf-GELU, SiLU, exact add; the tests compare with the unfused ops.

Used only where nothing can tell the difference, see :func:`fusion_applies`: CPU float32
tensors, no autograd graph to record, not tracing / compiling / exporting / under a dispatch
mode or functorch transform (FLOP counters, ``torch.compile`` and ONNX see the ordinary ops), no
hooks on the modules involved, the ops
present in this torch build (checked once with a tiny call). ``MMVMAMBA_CPU_FUSION=0`` turns
it off.

Layout: every helper takes channels-last (B, C, H, W) maps (memory in (B, H, W, C) order, what
VMamba's LayerNorm2d and residual stream hold) and returns one.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ONEDNN_ACTS", "conv_act", "fusion_applies", "linear_act", "linear_add"]

# our activation modules -> oneDNN post-op names
ONEDNN_ACTS = {nn.GELU: "gelu", nn.SiLU: "swish", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}


def _act_name(act: nn.Module) -> str | None:
    if type(act) is nn.GELU and act.approximate != "none":
        return None
    return ONEDNN_ACTS.get(type(act))


@functools.cache
def _ops_work() -> bool:
    """Whether this torch build has the oneDNN pointwise ops and they give the plain results."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, 3, 8, generator=g)
        w, b = torch.randn(4, 8, generator=g), torch.randn(4, generator=g)
        r = torch.randn(1, 3, 3, 4, generator=g)
        with torch.no_grad():
            ok = torch.allclose(
                torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none"),
                F.gelu(F.linear(x, w, b)),
                atol=1e-5,
            ) and torch.allclose(
                torch.ops.mkldnn._linear_pointwise.binary(x, r, w, b, "add"),
                F.linear(x, w, b) + r,
                atol=1e-5,
            )
            xc = x.permute(0, 3, 1, 2)  # channels-last (1, 8, 3, 3)
            wc = torch.randn(8, 1, 3, 3, generator=g)
            ok = ok and torch.allclose(
                torch.ops.mkldnn._convolution_pointwise(
                    xc, wc, None, [1, 1], [1, 1], [1, 1], 8, "swish", [], "none"
                ),
                F.silu(F.conv2d(xc, wc, None, 1, 1, 1, 8)),
                atol=1e-5,
            )
        return bool(ok)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def fusion_applies(x: Tensor, *modules: nn.Module) -> bool:
    """Whether the fused CPU path may replace ``modules`` applied to ``x`` (see module doc)."""
    if os.environ.get("MMVMAMBA_CPU_FUSION", "1") == "0":
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    # dispatch modes (e.g. torch.utils.flop_counter) and functorch transforms see aten ops
    if torch._C._len_torch_dispatch_stack() > 0 or torch._C._functorch.is_functorch_wrapped_tensor(
        x
    ):
        return False
    if torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for m in modules for p in m.parameters())
    ):
        return False
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return False
    if any(_hooked(m) for m in modules):
        return False
    return _ops_work()


def _last(x: Tensor) -> Tensor:
    """A channels-last (B, C, H, W) map as the (B, H, W, C) tensor oneDNN's linear takes."""
    return x.permute(0, 2, 3, 1).contiguous()  # a view: the memory already is (B, H, W, C)


def linear_act(x: Tensor, linear: nn.Linear, act: nn.Module) -> Tensor | None:
    """``act(linear(x))`` for a channels-last (B, C_in, H, W) map in one oneDNN call, as a
    channels-last (B, C_out, H, W) map; None if ``act`` has no oneDNN post-op (the caller then
    runs the modules)."""
    name = _act_name(act)
    if name is None:
        return None
    out = torch.ops.mkldnn._linear_pointwise(_last(x), linear.weight, linear.bias, name, [], "none")
    return out.permute(0, 3, 1, 2)


def linear_add(x: Tensor, linear: nn.Linear, residual: Tensor) -> Tensor:
    """``residual + linear(x)`` for channels-last (B, C_in, H, W) / (B, C_out, H, W) maps in one
    oneDNN call, as a channels-last (B, C_out, H, W) map."""
    out = torch.ops.mkldnn._linear_pointwise.binary(
        _last(x), _last(residual), linear.weight, linear.bias, "add"
    )
    return out.permute(0, 3, 1, 2)


def conv_act(x: Tensor, conv: nn.Conv2d, act: nn.Module) -> Tensor | None:
    """``act(conv(x))`` for a channels-last map in one oneDNN call; None when not expressible
    (other activation, padding mode, or a layout oneDNN would have to convert)."""
    name = _act_name(act)
    if name is None or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    if not x.is_contiguous(memory_format=torch.channels_last):
        return None
    return torch.ops.mkldnn._convolution_pointwise(
        x,
        conv.weight,
        conv.bias,
        list(conv.padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
        name,
        [],
        "none",
    )

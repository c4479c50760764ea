"""CPU inference twins of VMamba's blocks, with the elementwise ops fused into oneDNN calls.

On the CPU, an elementwise op after a GEMM or a depthwise conv is a full extra pass over a
large activation. PyTorch's oneDNN ops ``mkldnn::_linear_pointwise`` and
``mkldnn::_convolution_pointwise`` (the ones inductor's CPU fusion emits) apply the activation,
or the residual add, while the output tile is still in cache. Same math: erf-GELU, SiLU, exact
add; the tests compare the twins with the plain modules.

The twins (:class:`FusedVSSBlock`, :class:`FusedSS2D`, :class:`FusedMlp`) subclass the plain
modules and hold the *same* parameter and submodule objects (built by :meth:`from_plain`,
nothing copied), so their state dicts are the plain ones. They are inference only: no dropout,
no drop-path, no gradients. Nothing swaps them in implicitly;
:func:`mmvmamba.deployment.fuse_for_cpu` does, once, and says so.

Layout: the fused calls take channels-last (B, C, H, W) maps (memory in (B, H, W, C) order, what
VMamba's LayerNorm2d and residual stream hold); other layouts run the plain modules.
"""

from __future__ import annotations

import functools
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear import Linear2d
from .ss2d import SS2D
from .vss_block import Mlp, VSSBlock

__all__ = [
    "ONEDNN_ACTS",
    "FusedMlp",
    "FusedSS2D",
    "FusedVSSBlock",
    "conv_act",
    "linear_act",
    "linear_add",
    "onednn_fusion_available",
]

# our activation modules -> oneDNN post-op names
ONEDNN_ACTS = {nn.GELU: "gelu", nn.SiLU: "swish", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _act_name(act: nn.Module) -> str | None:
    if type(act) is nn.GELU and act.approximate != "none":
        return None
    return ONEDNN_ACTS.get(type(act))


@functools.cache
def onednn_fusion_available() -> bool:
    """Whether this torch build has the oneDNN pointwise ops and they give the plain results
    (checked once, on tiny inputs)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, 3, 8, generator=g)
        w, b = torch.randn(4, 8, generator=g), torch.randn(4, generator=g)
        r = torch.randn(1, 3, 3, 4, generator=g)
        xc = x.permute(0, 3, 1, 2)  # channels-last (1, 8, 3, 3)
        wc = torch.randn(8, 1, 3, 3, generator=g)
        with torch.no_grad():
            pairs = [
                (
                    torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none"),
                    F.gelu(F.linear(x, w, b)),
                ),
                (
                    torch.ops.mkldnn._linear_pointwise.binary(x, r, w, b, "add"),
                    F.linear(x, w, b) + r,
                ),
                (
                    torch.ops.mkldnn._convolution_pointwise(
                        xc, wc, None, [1, 1], [1, 1], [1, 1], 8, "swish", [], "none"
                    ),
                    F.silu(F.conv2d(xc, wc, None, 1, 1, 1, 8)),
                ),
            ]
        return all(torch.allclose(got, want, atol=1e-5) for got, want in pairs)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def _channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last)


def _last(x: Tensor) -> Tensor:
    """A channels-last (B, C, H, W) map as the (B, H, W, C) tensor oneDNN's linear takes."""
    return x.permute(0, 2, 3, 1).contiguous()  # a view when the memory already is (B, H, W, C)


def linear_act(x: Tensor, linear: Linear2d, act: nn.Module) -> Tensor:
    """``act(linear(x))`` for a (B, C_in, H, W) map -> (B, C_out, H, W).

    One oneDNN call (output channels-last) when ``x`` is channels-last and ``act`` has a oneDNN
    post-op (erf-GELU, SiLU, ReLU, sigmoid); otherwise the two modules.
    """
    name = _act_name(act)
    if name is None or not _channels_last(x):
        return act(linear(x))
    out = torch.ops.mkldnn._linear_pointwise(_last(x), linear.weight, linear.bias, name, [], "none")
    return out.permute(0, 3, 1, 2)


def linear_add(x: Tensor, linear: Linear2d, residual: Tensor) -> Tensor:
    """``residual + linear(x)`` for (B, C_in, H, W) / (B, C_out, H, W) maps -> (B, C_out, H, W).

    One oneDNN call (output channels-last) when ``x`` is channels-last; otherwise the module and
    an add.
    """
    if not _channels_last(x):
        return residual + linear(x)
    out = torch.ops.mkldnn._linear_pointwise.binary(
        _last(x), _last(residual), linear.weight, linear.bias, "add"
    )
    return out.permute(0, 3, 1, 2)


def conv_act(x: Tensor, conv: nn.Conv2d | None, act: nn.Module) -> Tensor:
    """``act(conv(x))`` (``act(x)`` when ``conv`` is None) for a (B, C, H, W) map.

    One oneDNN call when ``x`` is channels-last, the conv pads with zeros by numbers and ``act``
    has a oneDNN post-op; otherwise the modules (oneDNN would have to convert the layout).
    """
    if conv is None:
        return act(x)
    name = _act_name(act)
    if (
        name is None
        or conv.padding_mode != "zeros"
        or isinstance(conv.padding, str)
        or not _channels_last(x)
    ):
        return act(conv(x))
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


def _twin(plain: nn.Module, cls: type[ModuleT]) -> ModuleT:
    """A ``cls`` instance (a subclass of ``type(plain)``) holding ``plain``'s attributes,
    parameters, buffers and submodules: the same objects, nothing copied or re-initialised."""
    twin = cls.__new__(cls)
    nn.Module.__init__(twin)
    own = vars(twin)  # nn.Module's bookkeeping, fresh (no hooks)
    for name, value in vars(plain).items():
        if name not in own:  # plain attributes: sizes, options, scan_fn
            own[name] = value
    for name, param in plain.named_parameters(recurse=False):
        twin.register_parameter(name, param)
    for name, buf in plain.named_buffers(recurse=False):
        twin.register_buffer(name, buf, persistent=name not in plain._non_persistent_buffers_set)
    for name, child in plain.named_children():
        twin.add_module(name, child)
    twin.training = plain.training
    return twin


class FusedMlp(Mlp):
    """Inference twin of :class:`Mlp`: ``residual + fc2(GELU(fc1(x)))`` as two oneDNN GEMMs
    (GELU fused into fc1, the residual add into fc2). (B, C, H, W) maps."""

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return linear_add(linear_act(x, self.fc1, self.act), self.fc2, residual)


class FusedSS2D(SS2D):
    """Inference twin of :class:`SS2D`: ``residual + SS2D(x)``, the depthwise conv's activation
    fused into the conv and the residual add into ``out_proj``. (B, d_model, H, W) maps."""

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        h = self.in_proj(x)
        h, z = h.chunk(2, dim=1) if self.gated else (h, None)
        y = self.out_norm(self.scan_2d(conv_act(h, self.conv2d, self.act))).to(h.dtype)
        if z is not None:
            y = y * self.act(z)
        return linear_add(y, self.out_proj, residual)


class FusedVSSBlock(VSSBlock):
    """Inference twin of :class:`VSSBlock` on the CPU: (B, C, H, W) -> (B, C, H, W).

    Same parameters (the plain block's objects) and the same result as the plain block in eval
    mode; its ``op`` is a :class:`FusedSS2D` and its ``mlp`` a :class:`FusedMlp`, each of which
    adds the residual inside its output projection. Build it with :meth:`from_plain`.
    """

    @classmethod
    def from_plain(cls, block: VSSBlock) -> FusedVSSBlock:
        """The twin of ``block``, sharing its parameters (``block`` itself is left unchanged)."""
        fused = _twin(block, cls)
        fused.op = _twin(block.op, FusedSS2D)
        if block.mlp is not None:
            fused.mlp = _twin(block.mlp, FusedMlp)
        return fused

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            raise RuntimeError(
                "FusedVSSBlock is for inference (no dropout, drop-path or gradients) but is in "
                "training mode; train the plain model, or call .eval()"
            )
        if torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        ):
            # the oneDNN fused ops have no backward: autograd would drop their gradients
            raise RuntimeError(
                "FusedVSSBlock computes no gradients; run it under torch.no_grad() or "
                "torch.inference_mode(), or use the plain model where gradients are needed"
            )
        x = self.op(self.norm(x), residual=x)
        if self.mlp is not None:
            x = self.mlp(self.norm2(x), residual=x)
        return x

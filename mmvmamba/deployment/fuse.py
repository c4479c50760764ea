"""CPU inference fusion as an explicit step, as mmcv's ``fuse_conv_bn``.

:func:`fuse_for_cpu` swaps every :class:`~mmvmamba.models.layers.vss_block.VSSBlock` of a model
for its :class:`~mmvmamba.models.layers.cpu_fusion.FusedVSSBlock` twin: the same parameters
(shared objects, the state dict keeps its keys), GELU fused into ``fc1``, the activation into
the depthwise conv, the residual adds into ``fc2`` / ``out_proj`` (oneDNN post-ops). The plain
model is what trains, takes hooks and exports; the fused one is for CPU float32 inference.
"""

from __future__ import annotations

import copy
import itertools
import logging

import torch
from mmengine.logging import print_log
from torch import nn

from ..models.layers.cpu_fusion import FusedVSSBlock, onednn_fusion_available
from ..models.layers.vss_block import VSSBlock

__all__ = ["fuse_for_cpu", "shared_copy"]


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree that holds the same parameter and buffer objects
    (no tensor is copied): fusing it leaves ``model`` plain, and training ``model`` updates
    both."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def _check(model: nn.Module, blocks: list[tuple[str, VSSBlock]]) -> None:
    """Raise an error naming what keeps ``blocks`` of ``model`` from CPU fusion."""
    name = type(model).__name__
    if not onednn_fusion_available():
        raise RuntimeError(
            "fuse_for_cpu: this torch build has no working oneDNN pointwise ops "
            "(torch.ops.mkldnn._linear_pointwise); run the plain model"
        )
    if model.training or any(block.training for _, block in blocks):
        raise ValueError(
            f"fuse_for_cpu: {name} is in training mode; the fused blocks are for inference "
            "(no dropout, drop-path or gradients). Call model.eval() first, and keep the plain "
            "model for training (fuse_for_cpu(model, inplace=False) leaves it plain)"
        )
    for block_name, block in blocks:
        for param in block.parameters():
            if param.device.type != "cpu":
                raise ValueError(
                    f"fuse_for_cpu: {block_name} of {name} is on {param.device}; the fused "
                    "blocks run oneDNN CPU kernels. Move the model with model.cpu(), or run "
                    "the plain model on that device"
                )
            if param.dtype != torch.float32:
                raise ValueError(
                    f"fuse_for_cpu: {block_name} of {name} holds {param.dtype} parameters; the "
                    "fused blocks are float32 only. Call model.float(), or run the plain model"
                )
        for sub_name, sub in block.named_modules(prefix=block_name):
            if sub._forward_hooks or sub._forward_pre_hooks:
                raise ValueError(
                    f"fuse_for_cpu: {sub_name} of {name} has forward hooks, which the fused "
                    "block would not run as registered; remove them, or run the plain model"
                )


def fuse_for_cpu(model: nn.Module, inplace: bool = True) -> nn.Module:
    """Swap every ``VSSBlock`` of ``model`` for its fused CPU inference twin; return the model.

    Args:
        model: any module (a VMamba backbone, a classifier / detector / segmentor holding one,
            or a single block), in eval mode, float32, on the CPU.
        inplace: swap the blocks inside ``model`` (as mmcv's ``fuse_conv_bn``); False fuses a
            :func:`shared_copy` and leaves ``model`` plain (both share their parameters).

    Returns:
        The fused model (``model`` itself when ``inplace``). Its outputs equal the plain model's
        in eval mode to float32 rounding; its state dict has the same keys and tensors. A
        one-line summary of what was swapped is logged. Modules without VSSBlocks (e.g. Vim,
        Swin) are returned unchanged.

    Raises:
        ValueError: the model is in training mode, not on the CPU, not float32, or a block
            carries forward hooks (the message names the block and the fix).
        RuntimeError: this torch build lacks the oneDNN ops (and the model has VSSBlocks).
    """
    blocks = [(n, m) for n, m in model.named_modules() if type(m) is VSSBlock]
    already = sum(isinstance(m, FusedVSSBlock) for m in model.modules())
    if not blocks and not already:
        print_log(
            f"fuse_for_cpu: {type(model).__name__} has no VSSBlock; nothing fused",
            logger="current",
            level=logging.INFO,
        )
        return model
    _check(model, blocks)
    if not inplace:
        model = shared_copy(model)
        blocks = [(n, m) for n, m in model.named_modules() if type(m) is VSSBlock]
    for name, block in blocks:
        fused = FusedVSSBlock.from_plain(block)
        if not name:  # the model is a single block
            model = fused
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, fused)
    summary = f"fuse_for_cpu: {type(model).__name__}: {len(blocks)} VSSBlock -> FusedVSSBlock"
    summary += " (GELU into fc1, activation into the depthwise conv, residual adds into fc2 and"
    summary += " out_proj; oneDNN, CPU float32 inference)"
    if already:
        summary += f"; {already} already fused"
    print_log(summary, logger="current", level=logging.INFO)
    return model

"""VMamba backbone (v2 "VMamba" and v0 "vanilla VMamba") for mmpretrain, mmdet and mmseg.

Paper: Yue Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024,
https://arxiv.org/abs/2401.10166. Official code: https://github.com/MzeroMiko/VMamba
(``classification/models/vmamba.py``). Our own implementation of the same model, channel-first
throughout; module and parameter names follow the official ones, so the official
classification / detection / segmentation checkpoints load strictly, converted while they load
(:mod:`mmvmamba.checkpoint.vmamba` names the few differences, :mod:`mmvmamba.checkpoint.hooks`
wires them into ``load_state_dict``).

Network (stage i has width ``dims[i]``, input (B, C_in, H, W))::

    patch_embed   v2: conv3x3/2 -> LN -> GELU -> conv3x3/2 -> LN   (B, dims[0], ~H/4, ~W/4)
                  v1: conv4x4/4 -> LN                             (v0 models)
    layers[i].blocks     VSSBlock x depths[i]:  x + DropPath(SS2D(LN(x)))
                                                x + DropPath(MLP(LN(x)))   (if mlp_ratio > 0)
    layers[i].downsample v3: conv3x3/2 -> LN; v1: 2x2 patch merging (v0); none after the last
    outnorm{i}           LN of the blocks' output of stage i (before its downsample)

The mmpretrain classifier is ``ImageClassifier(backbone=VMamba(out_indices=(3,)),
neck=GlobalAveragePooling, head=LinearClsHead)``: the official ``classifier.norm`` is our
``outnorm3`` and ``classifier.head`` is ``head.fc``, so official weights give official logits.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint.vmamba import HEAD_PREFIX, is_official_vmamba, rename_vmamba_keys
from ...registry import register_model
from ..layers.embed import vmamba_downsample, vmamba_patch_embed
from ..layers.norm import LayerNorm2d
from ..layers.ss2d import SS2D
from ..layers.vss_block import PatchMerging2d, VSSBlock
from .base import MambaBackbone

__all__ = ["VMamba", "VSSBlock", "PatchMerging2d"]

_OUTNORM = re.compile(r"^outnorm(\d+)\.")

_V2 = dict(
    d_state=1,
    dt_rank="auto",
    d_conv=3,
    conv_bias=False,
    forward_type="v05_noz",
    mlp_ratio=4.0,
    patch_embed="v2",
    downsample="v3",
)
_V0 = dict(
    d_state=16,
    ssm_ratio=2.0,
    dt_rank="auto",
    d_conv=3,
    conv_bias=True,
    forward_type="v0",
    mlp_ratio=0.0,
    patch_embed="v1",
    downsample="v1",
)


@register_model
class VMamba(MambaBackbone):
    """VMamba backbone: a tuple of channel-first feature maps, one per ``out_indices``.

    Args:
        arch: a name of :attr:`arch_zoo` (``'tiny'``/``'t'`` = VMamba-T[s1l8], ``'small'``/
            ``'s'`` = S[s2l15], ``'base'``/``'b'`` = B[s2l15], ``'tiny-s2l5'``/``'t-s2l5'``,
            ``'v0-tiny'``/``'v0-t'``, ``'v0-small'``/``'v0-s'``, ``'v0-base'``/``'v0-b'``), or a
            dict with the keys :attr:`arch_required_keys` (+ optional keys, defaults in
            :attr:`arch_defaults`). ``dims`` may be an
            int ``d`` (= ``[d, 2d, 4d, 8d]``) or one width per stage. The SS2D ablations are arch
            keys: ``scan``, ``d_conv``, ``act``, ``out_norm``, ``ssm_init`` (see :class:`SS2D`).
        in_channels: input image channels.
        out_indices: stages whose (normed) output is returned; negative counts from the end.
            A LayerNorm ``outnorm{i}`` is built for each.
        frozen_stages: -1 freezes nothing; 0 freezes ``patch_embed``; k >= 1 also freezes
            stages 0..k-1 (blocks, their tail downsample and their ``outnorm``): no gradient,
            eval mode.
        norm_eval: keep every norm layer in eval mode while training (matters only for norms
            with running statistics; VMamba's LayerNorms have none).
        with_cp: gradient checkpointing of every block (less memory, same gradients).
        drop_path_rate: stochastic depth, linearly increasing from 0 over all blocks (official:
            0.2 tiny, 0.3 small, 0.6 base).
        init_cfg: None = the official init (trunc-normal 0.02 Linear weights, zero biases,
            LayerNorm 1/0, SS2D Mamba init). ``dict(type='Pretrained', checkpoint=PATH_OR_URL,
            prefix=None, strict=True, use_ema=False, map_location='cpu')`` loads an official or
            converted checkpoint (URLs are downloaded once into torch hub's cache; see
            :meth:`~.base.MambaBackbone.load_pretrained`), strictly: any missing or unexpected
            key raises :class:`~mmvmamba.checkpoint.CheckpointError` listing them. Any other
            mmengine init_cfg is applied by mmengine.

    Checkpoints convert while they load, whichever way they are loaded (``init_cfg``,
    ``load_from``, ``load_checkpoint``, ``load_state_dict``; :mod:`mmvmamba.checkpoint.hooks`):
    official names become ours, the official ``classifier.norm`` is ``outnorm{last}`` and, in
    a classifier holding this backbone, ``classifier.head`` is ``head.fc``. Two documented
    exceptions to an exact key match (logged): ``outnorm{i}`` of stages not in ``out_indices``
    are dropped, and when the checkpoint is a *classification* one (only the last stage's norm)
    the other ``outnorm{i}`` keep their initialisation.

    Shapes:
        input (B, in_channels, H, W) float, H and W >= the patch size (4), any value otherwise;
        output i: (B, dims[i], H_i, W_i) with strides 4, 8, 16, 32 (v2: H_1 = ceil(ceil(H/2)/2),
        then ceil halving; v0: H_1 = H // 4, then ceil halving).
    """

    arch_required_keys = frozenset(
        {
            "dims",
            "depths",
            "d_state",
            "ssm_ratio",
            "forward_type",
            "mlp_ratio",
            "patch_embed",
            "downsample",
        }
    )
    arch_defaults = dict(
        dt_rank="auto",
        d_conv=3,
        conv_bias=False,
        act="silu",
        scan="cross",
        out_norm="ln",
        ssm_init="mamba",
        patch_size=4,
    )
    checkpoint_head_prefix = HEAD_PREFIX

    arch_zoo = {
        # VMamba v2 (NeurIPS 2024): paper T = s1l8, S = B = s2l15
        **dict.fromkeys(["t", "tiny"], dict(dims=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, **_V2)),
        **dict.fromkeys(["s", "small"], dict(dims=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, **_V2)),
        **dict.fromkeys(["b", "base"], dict(dims=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, **_V2)),
        **dict.fromkeys(
            ["t-s2l5", "tiny-s2l5"], dict(dims=96, depths=(2, 2, 5, 2), ssm_ratio=2.0, **_V2)
        ),
        # vanilla VMamba (v0, first release)
        **dict.fromkeys(["v0-t", "v0-tiny"], dict(dims=96, depths=(2, 2, 9, 2), **_V0)),
        **dict.fromkeys(["v0-s", "v0-small"], dict(dims=96, depths=(2, 2, 27, 2), **_V0)),
        **dict.fromkeys(["v0-b", "v0-base"], dict(dims=128, depths=(2, 2, 27, 2), **_V0)),
    }

    def __init__(
        self,
        arch: str | dict = "tiny",
        in_channels: int = 3,
        out_indices: int | Sequence[int] = (3,),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        drop_path_rate: float = 0.0,
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        arch = self.arch_settings = self.resolve_arch(arch)
        depths = tuple(int(d) for d in arch["depths"])
        dims = arch["dims"]
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(len(depths))]
        dims = tuple(int(d) for d in dims)
        if len(dims) != len(depths) or not depths or min(depths) < 1 or min(dims) < 1:
            raise ValueError(
                f"VMamba arch: 'dims' {arch['dims']} and 'depths' {arch['depths']} must give one "
                "positive width and one positive depth per stage"
            )
        patch_size = int(arch["patch_size"])
        if patch_size < 2 or patch_size % 2:
            raise ValueError(f"VMamba arch: patch_size must be even and >= 2, got {patch_size}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"VMamba: in_channels must be a positive int, got {in_channels!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"VMamba: drop_path_rate must be in [0, 1), got {drop_path_rate}")

        self.depths, self.dims, self.num_stages = depths, dims, len(depths)
        self.in_channels, self.patch_size = in_channels, patch_size
        self.out_indices = self.resolve_indices(out_indices, self.num_stages, "stages")
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f"VMamba: frozen_stages must be an int in [-1, {self.num_stages}], "
                f"got {frozen_stages!r}"
            )
        self.frozen_stages, self.norm_eval, self.with_cp = frozen_stages, norm_eval, with_cp

        ss2d_cfg = dict(
            d_state=arch["d_state"],
            ssm_ratio=arch["ssm_ratio"],
            dt_rank=arch["dt_rank"],
            act=arch["act"],
            d_conv=arch["d_conv"],
            conv_bias=arch["conv_bias"],
            forward_type=arch["forward_type"],
            scan=arch["scan"],
            out_norm=arch["out_norm"],
            init=arch["ssm_init"],
        )
        self.patch_embed = vmamba_patch_embed(arch["patch_embed"], in_channels, dims[0], patch_size)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            blocks = nn.Sequential(
                *[
                    VSSBlock(dims[i], dpr[sum(depths[:i]) + j], arch["mlp_ratio"], ss2d_cfg)
                    for j in range(depth)
                ]
            )
            downsample = (
                vmamba_downsample(arch["downsample"], dims[i], dims[i + 1])
                if i < self.num_stages - 1
                else nn.Identity()
            )
            self.layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=downsample)))
        for i in self.out_indices:
            self.add_module(f"outnorm{i}", LayerNorm2d(dims[i]))

        self._official_init()
        self._channels_last_convs()
        self._freeze_stages()

    @torch.no_grad()
    def _channels_last_convs(self) -> None:
        """Store the dense convs' weights channels-last (same values and shape, other strides).

        The residual stream is channels-last (LayerNorm2d returns a permuted view), so the stem
        and downsample convs run PyTorch's channels-last path, which otherwise converts the
        weight in every call. Depthwise convs are left as they are: their inputs come contiguous
        from a projection.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.groups == 1:
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)

    # --- initialisation ----------------------------------------------------------------------
    @torch.no_grad()
    def _official_init(self) -> None:
        """Official init: Linear (incl. 1x1 Linear2d) ~ trunc_normal(0.02), bias 0; LayerNorm
        weight 1, bias 0; convs keep PyTorch's default; SS2D parameters their own init."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, SS2D):
                m.reset_ssm_parameters()

    # --- checkpoint names ------------------------------------------------------------------
    def rename_checkpoint_keys(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return rename_vmamba_keys(state)

    def is_official_checkpoint(self, state: Mapping) -> bool:
        return is_official_vmamba(state)

    def adapt_state_dict(self, state: dict[str, Tensor]) -> None:
        """Fit the checkpoint's output norms to ``out_indices``: drop those of other stages;
        a classification checkpoint (only the last stage's norm) leaves the others at their
        current values. Both logged."""
        norms = {int(m.group(1)) for k in state if (m := _OUTNORM.match(k))}
        dropped = sorted(
            k for k in state if (m := _OUTNORM.match(k)) and int(m.group(1)) not in self.out_indices
        )
        for key in dropped:
            del state[key]
        if dropped:
            print_log(
                f"VMamba: not loading the output norms of stages outside out_indices "
                f"{self.out_indices}: {dropped}",
                logger="current",
                level=logging.INFO,
            )
        if norms != {self.num_stages - 1}:
            return
        kept = []
        for i in self.out_indices:
            for name, tensor in getattr(self, f"outnorm{i}").state_dict().items():
                if f"outnorm{i}.{name}" not in state:
                    state[f"outnorm{i}.{name}"] = tensor
                    kept.append(f"outnorm{i}.{name}")
        if kept:
            print_log(
                f"VMamba: a classification checkpoint (one output norm); {kept} keep their "
                "initialisation",
                logger="current",
                level=logging.WARNING,
            )

    # --- freezing ----------------------------------------------------------------------------
    def _freeze_stages(self) -> None:
        frozen: list[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen.append(self.patch_embed)
        for i in range(self.frozen_stages):
            frozen.append(self.layers[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f"outnorm{i}"))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> VMamba:
        """Set the mode, then keep frozen stages (and, with ``norm_eval``, norms) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (_BatchNorm, nn.LayerNorm, nn.GroupNorm)):
                    m.eval()
        return self

    # --- forward -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(B, C_in, H, W) -> tuple of (B, dims[i], H_i, W_i) for i in ``out_indices``."""
        self.check_input(x, self.patch_size)
        x = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            for block in layer.blocks:
                if self.with_cp and self.training and torch.is_grad_enabled():
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if i in self.out_indices:
                outs.append(getattr(self, f"outnorm{i}")(x).contiguous())
            x = layer.downsample(x)
        return tuple(outs)

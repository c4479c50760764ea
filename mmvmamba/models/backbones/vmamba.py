"""VMamba backbone (v2 "VMamba" and v0 "vanilla VMamba") for mmpretrain, mmdet and mmseg.

Paper: Yue Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024,
https://arxiv.org/abs/2401.10166. Official code: https://github.com/MzeroMiko/VMamba
(``classification/models/vmamba.py``). Our own implementation of the same model, channel-first
throughout; module and parameter names follow the official ones, so the official
classification / detection / segmentation checkpoints load strictly through
:func:`mmvmamba.checkpoint.vmamba.convert_vmamba_checkpoint` (nearly the identity).

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

import copy
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint.io import load_checkpoint_file, load_state_dict_checked
from ...checkpoint.vmamba import convert_vmamba_checkpoint
from ...registry import register_model
from ..layers.norm import LayerNorm2d
from ..layers.ss2d import SS2D
from ..layers.vss_block import PatchMerging2d, VSSBlock

__all__ = ["VMamba", "VSSBlock", "PatchMerging2d"]


def _patch_embed(version: str, in_channels: int, dim: int, patch_size: int) -> nn.Sequential:
    """Stem: (B, C_in, H, W) -> (B, dim, H', W'); Sequential indices as in the official code.

    v2 (``patch_embed.{0,2,5,7}``): two k=3, s=2, p=1 convs (for patch_size 4), so
    H' = ceil(ceil(H/2)/2). v1 (``patch_embed.{0,2}``): one k=s=patch_size conv, H' = H // 4.
    """
    if version == "v2":
        stride = patch_size // 2
        k = stride + 1
        return nn.Sequential(
            nn.Conv2d(in_channels, dim // 2, k, stride, k // 2),
            nn.Identity(),
            LayerNorm2d(dim // 2),
            nn.Identity(),
            nn.GELU(),
            nn.Conv2d(dim // 2, dim, k, stride, k // 2),
            nn.Identity(),
            LayerNorm2d(dim),
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, dim, patch_size, patch_size), nn.Identity(), LayerNorm2d(dim)
    )


def _downsample(version: str, dim: int, out_dim: int) -> nn.Module:
    """Stage tail: (B, dim, H, W) -> (B, out_dim, ceil(H/2), ceil(W/2)).

    v3 (``downsample.{1,3}``): conv k=3, s=2, p=1 -> LN. v1 (``downsample.{norm,reduction}``):
    :class:`PatchMerging2d`.
    """
    if version == "v3":
        return nn.Sequential(
            nn.Identity(), nn.Conv2d(dim, out_dim, 3, 2, 1), nn.Identity(), LayerNorm2d(out_dim)
        )
    return PatchMerging2d(dim, out_dim)


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
class VMamba(BaseBackbone):
    """VMamba backbone: a tuple of channel-first feature maps, one per ``out_indices``.

    Args:
        arch: a name of :attr:`arch_zoo` (``'tiny'``/``'t'`` = VMamba-T[s1l8], ``'small'``/
            ``'s'`` = S[s2l15], ``'base'``/``'b'`` = B[s2l15], ``'tiny-s2l5'``/``'t-s2l5'``,
            ``'v0-tiny'``/``'v0-t'``, ``'v0-small'``/``'v0-s'``, ``'v0-base'``/``'v0-b'``), or a
            dict with the keys :attr:`arch_required_keys` (+ optional
            :attr:`arch_optional_keys`, defaults in :attr:`arch_defaults`). ``dims`` may be an
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
            converted checkpoint (URLs are downloaded once into torch hub's cache) through
            :func:`convert_vmamba_checkpoint`, strictly: any missing
            or unexpected key raises :class:`~mmvmamba.checkpoint.CheckpointError` listing them.
            Two documented exceptions (logged): ``outnorm{i}`` of stages not in
            ``out_indices`` are dropped, and when the checkpoint is a *classification* one
            (only the last stage's norm, from ``classifier.norm``) the other ``outnorm{i}`` keep
            their init. ``strict=False`` loads whatever matches and logs the rest. Any other
            mmengine init_cfg is applied by mmengine.

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
    arch_optional_keys = frozenset(arch_defaults)

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

    _PATCH_EMBEDS = ("v1", "v2")
    _DOWNSAMPLES = ("v1", "v3")
    _PRETRAINED_KEYS = frozenset(
        {"type", "checkpoint", "prefix", "strict", "use_ema", "map_location"}
    )

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
        arch = self._resolve_arch(arch)
        self.arch_settings = arch
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
        if arch["patch_embed"] not in self._PATCH_EMBEDS:
            raise ValueError(
                f"VMamba arch: unknown patch_embed {arch['patch_embed']!r}; "
                f"expected one of {self._PATCH_EMBEDS}"
            )
        if arch["downsample"] not in self._DOWNSAMPLES:
            raise ValueError(
                f"VMamba arch: unknown downsample {arch['downsample']!r}; "
                f"expected one of {self._DOWNSAMPLES}"
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
        self.out_indices = self._resolve_out_indices(out_indices)
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
        self.patch_embed = _patch_embed(arch["patch_embed"], in_channels, dims[0], patch_size)
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
                _downsample(arch["downsample"], dims[i], dims[i + 1])
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

    # --- construction helpers ----------------------------------------------------------------
    @classmethod
    def _resolve_arch(cls, arch: str | dict) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f"VMamba: unknown arch {arch!r}; choose one of {sorted(cls.arch_zoo)} "
                    "or pass a dict"
                )
            arch = cls.arch_zoo[key]
        elif not isinstance(arch, dict):
            raise TypeError(f"VMamba: arch must be a str or a dict, got {type(arch).__name__}")
        missing = cls.arch_required_keys - set(arch)
        unknown = set(arch) - cls.arch_required_keys - cls.arch_optional_keys
        assert not missing and not unknown, (
            f"Custom arch needs the keys {sorted(cls.arch_required_keys)} (optional: "
            f"{sorted(cls.arch_optional_keys)}); missing {sorted(missing)}, unknown "
            f"{sorted(unknown)}"
        )
        return {**cls.arch_defaults, **copy.deepcopy(dict(arch))}

    def _resolve_out_indices(self, out_indices: int | Sequence[int]) -> tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        if not isinstance(out_indices, Sequence) or not out_indices:
            raise TypeError(
                f"VMamba: out_indices must be an int or a non-empty sequence of ints, "
                f"got {out_indices!r}"
            )
        resolved = []
        for index in out_indices:
            if not isinstance(index, int) or not -self.num_stages <= index < self.num_stages:
                raise ValueError(
                    f"VMamba: out_indices entry {index!r} is not a stage index in "
                    f"[-{self.num_stages}, {self.num_stages - 1}]"
                )
            resolved.append(index % self.num_stages)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"VMamba: out_indices {tuple(out_indices)} has duplicates")
        return tuple(sorted(resolved))

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

    def _pretrained_cfg(self) -> dict | None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            return dict(cfg)
        if isinstance(cfg, (list, tuple)) and any(
            isinstance(c, dict) and c.get("type") == "Pretrained" for c in cfg
        ):
            raise ValueError(
                "VMamba: a Pretrained init_cfg must be given alone, as a dict, not in a list "
                f"(got {cfg!r})"
            )
        return None

    def init_weights(self) -> None:
        """Initialise per ``init_cfg`` (see the class docstring); called by the runner."""
        pretrained = self._pretrained_cfg()
        if pretrained is None or self._is_init:  # mmengine warns about a second call
            if self.init_cfg is None and not self._is_init:
                self._official_init()
            super().init_weights()
            return
        self.load_pretrained(**{k: v for k, v in pretrained.items() if k != "type"})
        self._is_init = True

    def load_pretrained(
        self,
        checkpoint: str | None = None,
        prefix: str | None = None,
        strict: bool = True,
        use_ema: bool = False,
        map_location: str = "cpu",
        **unknown,
    ) -> None:
        """Load an official VMamba (classification / detection / segmentation) or mmvmamba
        checkpoint file into this backbone, strictly by default (see the class docstring).

        Raises:
            ValueError: unknown options, or no ``checkpoint``.
            CheckpointError: the file is unreadable, or the keys do not fit (lists them).
        """
        if unknown:
            raise ValueError(
                f"VMamba: unknown keys {sorted(unknown)} in the Pretrained init_cfg; allowed: "
                f"{sorted(self._PRETRAINED_KEYS)}"
            )
        if not checkpoint:
            raise ValueError("VMamba: init_cfg type='Pretrained' needs checkpoint=PATH")
        ckpt = load_checkpoint_file(checkpoint, map_location=map_location)
        state = convert_vmamba_checkpoint(ckpt, use_ema=use_ema, target="backbone", prefix=prefix)
        own = self.state_dict()
        pattern = re.compile(r"^outnorm(\d+)\.")
        ckpt_norms = {int(m.group(1)) for k in state if (m := pattern.match(k))}
        dropped = sorted(
            k for k in state if (m := pattern.match(k)) and int(m.group(1)) not in self.out_indices
        )
        for k in dropped:
            del state[k]
        if dropped:
            print_log(
                f"VMamba: dropped output norms of stages not in out_indices {self.out_indices}: "
                f"{dropped}",
                logger="current",
                level=logging.INFO,
            )
        if ckpt_norms == {self.num_stages - 1}:  # a classifier: only classifier.norm
            kept = sorted(k for k in own if pattern.match(k) and k not in state)
            for k in kept:
                state[k] = own[k]
            if kept:
                print_log(
                    f"VMamba: {checkpoint} is a classification checkpoint; the output norms "
                    f"{kept} keep their initialisation",
                    logger="current",
                    level=logging.WARNING,
                )
        load_state_dict_checked(self, state, strict=strict, source=str(checkpoint))
        print_log(f"VMamba: loaded {checkpoint}", logger="current", level=logging.INFO)

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
    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"VMamba expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(
                f"VMamba expects a (B, C, H, W) tensor, got shape {tuple(x.shape)} "
                f"({x.dim()} dims)"
            )
        if x.shape[0] == 0:
            raise ValueError(
                f"VMamba got an empty batch (batch size 0, shape {tuple(x.shape)}); "
                "pass at least one image"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"VMamba expects a floating-point input, got dtype {x.dtype}; "
                "convert with x.float() (and normalise it)"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"VMamba was built with in_channels={self.in_channels}, got an input with "
                f"{x.shape[1]} channels (shape {tuple(x.shape)})"
            )
        h, w = x.shape[-2:]
        if h < self.patch_size or w < self.patch_size:
            raise ValueError(
                f"VMamba: input {h}x{w} is smaller than the patch size {self.patch_size}; "
                f"H and W must be >= {self.patch_size}"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(B, C_in, H, W) -> tuple of (B, dims[i], H_i, W_i) for i in ``out_indices``."""
        self._check_input(x)
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

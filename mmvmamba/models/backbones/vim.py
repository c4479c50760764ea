"""Vim (Vision Mamba) backbone for mmpretrain and mmseg.

Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with Bidirectional State
Space Model", ICML 2024. Official code: https://github.com/hustvl/Vim (``vim/models_mamba.py``).

Data flow (``C`` = embed dims, ``(h, w)`` = patch grid, ``M = h * w``, ``p = M // 2``)::

    (B, 3, H, W) --patch_embed.proj (Conv2d k=patch, s=stride)--> (B, C, h, w)
      --flatten row-major--> (B, M, C) --insert cls_token at p--> (B, M + 1, C)
      --+ pos_embed (resized to (h, w), cls slot kept at p)--> residual stream r_0 (float32)
    r_{i+1} = r_i + DropPath_i(BiMambaV2_i(RMSNorm_i(r_i)))        for i = 0 .. depth - 1
    last output: norm_f(r_depth)

This is the official "add -> norm -> mixer" block written as a plain pre-norm residual network
(the same computation, drop-path rate ``linspace(0, rate, depth)[i]`` on block ``i``'s output).
Parameter names equal the official ones (``patch_embed.proj``, ``pos_embed``, ``cls_token``,
``layers.{i}.mixer.*``, ``layers.{i}.norm``, ``norm_f``), so official weights load strictly;
the classifier head lives in mmpretrain's ``LinearClsHead`` (``head.fc``).

Outputs (``out_type``), one per ``out_indices`` entry, taken from the residual stream after
that block (``norm_f`` applied to the last block when ``final_norm``):

* ``'cls_token'``: ``(B, C)`` the class token (what the official classifier feeds its head).
* ``'featmap'``: ``(B, C, h, w)`` the patch tokens as an NCHW map (class token dropped).
* ``'avg_featmap'``: ``(B, C)`` mean of the patch tokens.
* ``'raw'``: ``(B, M + 1, C)`` all tokens.

Dense taps come from the residual stream, not from the mixer outputs that the official Vim-T
segmentation code tapped: the residual stream is what every later block reads, it carries the
pretrained features of all earlier blocks, and the official Vim-S segmentation code uses it too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from torch import nn

from ...checkpoint.vim import (
    HEAD_PREFIX,
    check_vim_release,
    infer_vim_grid,
    is_official_vim,
    resize_middle_cls,
    resize_vim_pos_embed,
    vim_release_name,
)
from ...registry import register_model
from ..layers.bimamba import BiMambaV2
from ..layers.drop_path import DropPath
from ..layers.embed import VimPatchEmbed
from ..layers.rms_norm import RMSNorm
from .base import MambaBackbone

__all__ = ["Vim"]


class VimBlock(nn.Module):
    """One Vim layer: ``r + DropPath(mixer(norm(r)))`` on a float32 residual stream.

    Args:
        embed_dims: ``C``.
        mixer_cfg: keyword arguments of :class:`BiMambaV2` (besides ``d_model``).
        drop_path: stochastic-depth rate of the mixer branch.
        norm_eps: RMSNorm epsilon.

    Shape: residual ``(B, L, C)`` float32 -> ``(B, L, C)`` float32.
    """

    def __init__(
        self, embed_dims: int, mixer_cfg: dict, drop_path: float = 0.0, norm_eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.mixer = BiMambaV2(embed_dims, **mixer_cfg)
        self.norm = RMSNorm(embed_dims, eps=norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, residual: torch.Tensor, act_dtype: torch.dtype | None = None) -> torch.Tensor:
        """``act_dtype``: dtype the mixer runs in (the embedding's dtype); the residual stays
        float32 as in the official ``residual_in_fp32=True``."""
        hidden = self.norm(residual)
        if act_dtype is not None:
            hidden = hidden.to(act_dtype)
        return residual + self.drop_path(self.mixer(hidden)).to(residual.dtype)


@register_model
class Vim(MambaBackbone):
    """Vision Mamba backbone (middle class token, bidirectional "v2" Mamba mixers).

    Args:
        arch: a name from :attr:`arch_zoo` (``'tiny'``, ``'small'``, ``'base'``, ``'tiny-s8'``,
            ``'small-s8'`` and aliases) or a dict with at least ``embed_dims`` and
            ``num_layers`` (optional: ``patch_size`` 16, ``stride`` = patch size, ``d_state`` 16,
            ``expand`` 2, ``d_conv`` 4).
        img_size: ``int`` or ``(H, W)``: the size whose patch grid ``pos_embed`` is stored for.
            Other input sizes work too (the position embedding is resized at run time).
        in_channels: image channels.
        out_indices: block indices (negative counts from the end) to return features of.
        out_type: ``'cls_token'``, ``'featmap'``, ``'avg_featmap'`` or ``'raw'`` (module doc).
        drop_rate: dropout after adding the position embedding.
        drop_path_rate: stochastic depth; block ``i`` uses ``linspace(0, rate, depth)[i]``.
        final_norm: apply ``norm_f`` to the output of the last block.
        norm_eps: RMSNorm epsilon.
        frozen_stages: freeze the embeddings and the first ``frozen_stages`` blocks (-1: none).
        with_cp: gradient checkpointing of each block during training.
        scan_backend: ``backend`` of :func:`vmamba_ops.selective_scan`.
        init_cfg: ``None`` for the official initialisation, or
            ``dict(type='Pretrained', checkpoint=PATH, use_ema=False, prefix=None, strict=True)``
            where PATH is an official Vim file or one converted by
            ``tools/model_converters/vim_to_mmvmamba.py`` (see
            :meth:`~.base.MambaBackbone.load_pretrained`). Loading is strict and names any bad
            key; the classifier head in the file is dropped (logged).

    Checkpoints convert while they load, whichever way they are loaded (``init_cfg``,
    ``load_from``, ``load_checkpoint``, ``load_state_dict``; :mod:`mmvmamba.checkpoint.hooks`):
    a ``pos_embed`` stored for another patch grid is resized to ``img_size``'s (bicubic, the
    middle class token kept), and an official classification file loaded into the classifier
    holding this backbone has its ``head.*`` mapped to ``head.fc.*``.

    Example:
        >>> model = Vim(arch='tiny', out_type='featmap', out_indices=(5, 11, 17, 23))
        >>> [f.shape for f in model(torch.rand(1, 3, 64, 96))]  # 4 x (1, 192, 4, 6)
    """

    arch_zoo = {
        **dict.fromkeys(["t", "ti", "tiny"], {"embed_dims": 192, "num_layers": 24, "stride": 16}),
        **dict.fromkeys(["s", "small"], {"embed_dims": 384, "num_layers": 24, "stride": 16}),
        **dict.fromkeys(["b", "base"], {"embed_dims": 768, "num_layers": 24, "stride": 16}),
        **dict.fromkeys(
            ["tiny-s8", "t-s8", "ti-s8", "tiny+", "ti+"],
            {"embed_dims": 192, "num_layers": 24, "stride": 8},
        ),
        **dict.fromkeys(
            ["small-s8", "s-s8", "small+", "s+"], {"embed_dims": 384, "num_layers": 24, "stride": 8}
        ),
    }
    arch_required_keys = frozenset({"embed_dims", "num_layers"})
    # stride None: the patch size (non-overlapping patches)
    arch_defaults = {"patch_size": 16, "stride": None, "d_state": 16, "expand": 2, "d_conv": 4}
    checkpoint_head_prefix = HEAD_PREFIX
    OUT_TYPES = ("cls_token", "featmap", "avg_featmap", "raw")

    def __init__(
        self,
        arch: str | dict = "tiny",
        img_size: int | Sequence[int] = 224,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        out_type: str = "cls_token",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        final_norm: bool = True,
        norm_eps: float = 1e-5,
        frozen_stages: int = -1,
        with_cp: bool = False,
        scan_backend: str = "auto",
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        s = self.arch_settings = self.resolve_arch(arch)
        if s["stride"] is None:
            s["stride"] = s["patch_size"]
        self.embed_dims = s["embed_dims"]
        self.num_layers = s["num_layers"]
        self.patch_size = s["patch_size"]
        self.stride = s["stride"]

        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        if len(tuple(img_size)) != 2 or min(img_size) < self.patch_size:
            raise ValueError(
                f"img_size must be an int or (H, W) of at least patch_size={self.patch_size}, "
                f"got {img_size}"
            )
        self.img_size = tuple(int(v) for v in img_size)
        self.in_channels = in_channels
        if out_type not in self.OUT_TYPES:
            raise ValueError(f"out_type must be one of {self.OUT_TYPES}, got {out_type!r}")
        self.out_type = out_type
        self.out_indices = self.resolve_indices(out_indices, self.num_layers, "layers")
        self.final_norm = final_norm
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

        self.patch_embed = VimPatchEmbed(in_channels, self.embed_dims, self.patch_size, self.stride)
        self.patch_grid = self.patch_embed.grid_size(*self.img_size)
        num_patches = self.patch_grid[0] * self.patch_grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, self.embed_dims))
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        mixer_cfg = dict(
            d_state=s["d_state"],
            d_conv=s["d_conv"],
            expand=s["expand"],
            divide_out=True,
            backend=scan_backend,
        )
        dpr = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.layers = nn.ModuleList(
            VimBlock(self.embed_dims, mixer_cfg, drop_path=dpr[i], norm_eps=norm_eps)
            for i in range(self.num_layers)
        )
        self.norm_f = RMSNorm(self.embed_dims, eps=norm_eps)
        self._official_init()
        self._freeze_stages()

    # ------------------------------------------------------------------ initialisation
    def _official_init(self) -> None:
        """Initialisation of the official ``VisionMamba`` (for training from scratch)."""
        proj = self.patch_embed.proj
        fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
        # lecun normal (truncated at 2 std, std corrected for the truncation as in timm)
        std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
        nn.init.trunc_normal_(proj.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(proj.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            bias = getattr(module, "bias", None) if isinstance(module, nn.Linear) else None
            if bias is not None and not getattr(bias, "_no_reinit", False):
                nn.init.zeros_(bias)
        for layer in self.layers:
            weight = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            with torch.no_grad():
                weight /= math.sqrt(self.num_layers)

    # ------------------------------------------------------------------ checkpoint names
    def rename_checkpoint_keys(self, state: Mapping[str, torch.Tensor]) -> dict:
        """Official names are ours; refuses the early RoPE releases."""
        check_vim_release(state)
        return dict(state)

    def is_official_checkpoint(self, state: Mapping) -> bool:
        return is_official_vim(state)

    def check_checkpoint(self, checkpoint: Mapping) -> None:
        """Refuse the early releases; warn when the file's patch stride differs from ours."""
        check_vim_release(checkpoint)
        trained_as = vim_release_name(checkpoint)
        if trained_as and ("stride8" in trained_as) != (self.stride == 8):
            print_log(
                f"Vim: the checkpoint was trained as {trained_as} but this model has patch "
                f"stride {self.stride}; use arch 'tiny-s8'/'small-s8' for the stride-8 (+) "
                "checkpoints and 'tiny'/'small'/'base' otherwise",
                logger="current",
                level=logging.WARNING,
            )

    def adapt_state_dict(self, state: dict) -> None:
        """Resize a ``pos_embed`` stored for another (square) patch grid to ours."""
        pos = state.get("pos_embed")
        if pos is None or pos.dim() != 3 or pos.shape[1] == self.pos_embed.shape[1]:
            return
        src = infer_vim_grid(pos.shape[1])
        print_log(
            f"Vim: resizing the checkpoint's pos_embed from grid {src} to {self.patch_grid} "
            "(bicubic, middle class token kept)",
            logger="current",
            level=logging.INFO,
        )
        state["pos_embed"] = resize_vim_pos_embed(pos, src, self.patch_grid)

    # ------------------------------------------------------------------ forward
    def get_pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embedding ``(1, h * w + 1, C)`` for patch grid ``grid = (h, w)``.

        Resized from the stored grid (bicubic, class slot kept in the middle) when the grids
        differ, so gradients reach ``pos_embed`` through the resize.

        Under ``torch.export`` the grid may be symbolic: the resize is traced for any grid (no
        ``int()``, no comparison with the stored grid), so the exported graph keeps H and W
        dynamic; at the stored grid it returns ``pos_embed``'s values exactly.
        """
        if torch.compiler.is_exporting():
            return resize_middle_cls(self.pos_embed, self.patch_grid, grid)
        grid = (int(grid[0]), int(grid[1]))
        if grid == self.patch_grid:
            return self.pos_embed
        return resize_vim_pos_embed(self.pos_embed, self.patch_grid, grid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Images ``(B, in_channels, H, W)`` -> tuple of features, one per ``out_indices``."""
        self.check_input(x, self.patch_size)
        batch = x.shape[0]
        x = self.patch_embed(x)  # (B, C, h, w)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (B, M, C), row-major patches
        mid = x.shape[1] // 2
        cls = self.cls_token.to(x.dtype).expand(batch, -1, -1)
        x = torch.cat([x[:, :mid], cls, x[:, mid:]], dim=1)  # (B, M + 1, C)
        x = self.drop_after_pos(x + self.get_pos_embed(grid).to(x.dtype))
        act_dtype = x.dtype
        residual = x.to(torch.promote_types(x.dtype, torch.float32))  # fp32 (fp64 stays)

        outs = []
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            if self.with_cp and self.training and residual.requires_grad:
                residual = cp.checkpoint(layer, residual, act_dtype, use_reentrant=False)
            else:
                residual = layer(residual, act_dtype)
            if i in self.out_indices:
                feat = self.norm_f(residual) if (i == last and self.final_norm) else residual
                outs.append(self._format_output(feat.to(act_dtype), mid, grid))
        return tuple(outs)

    def _format_output(self, tokens: torch.Tensor, mid: int, grid: tuple[int, int]):
        if self.out_type == "raw":
            return tokens
        if self.out_type == "cls_token":
            return tokens[:, mid]
        patches = torch.cat([tokens[:, :mid], tokens[:, mid + 1 :]], dim=1)  # (B, M, C)
        if self.out_type == "avg_featmap":
            return patches.mean(dim=1)
        batch, _, channels = patches.shape
        return patches.transpose(1, 2).reshape(batch, channels, grid[0], grid[1])

    # ------------------------------------------------------------------ training utilities
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        self.pos_embed.requires_grad = False
        self.cls_token.requires_grad = False
        self.patch_embed.eval()
        for param in self.patch_embed.parameters():
            param.requires_grad = False
        for layer in self.layers[: self.frozen_stages]:
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False
        if self.frozen_stages >= self.num_layers and self.final_norm:
            for param in self.norm_f.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """Layer id for layer-wise learning-rate decay (mmpretrain's
        ``LearningRateDecayOptimWrapperConstructor``): embeddings 0, block ``i`` -> ``i + 1``,
        the rest ``num_layers + 1``. Returns ``(layer_depth, num_layers + 2)``."""
        num_total = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_total - 1, num_total
        name = param_name[len(prefix) :]
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0, num_total
        if name.startswith("layers."):
            return int(name.split(".")[1]) + 1, num_total
        return num_total - 1, num_total

"""Layer-wise learning-rate decay for Vim (BEiT-style), as an mmengine optimizer constructor.

mmseg's ``LayerDecayOptimizerConstructor`` only knows BEiT / MAE / ConvNeXt parameter names, so
the official Vim segmentation recipe is written here once for every Vim config::

    optim_wrapper = dict(
        type="OptimWrapper",
        optimizer=dict(type="AdamW", lr=2e-4, weight_decay=0.1),
        constructor="VimLayerDecayOptimizerConstructor",
        paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.92, norm_decay_mult=0.0, ...),
    )

Block ``i`` of ``num_layers`` gets ``lr * rate ** (num_layers - i)``, the patch embedding,
``pos_embed`` and ``cls_token`` ``lr * rate ** (num_layers + 1)``, everything else (final norm,
neck, heads) ``lr``. No weight decay on 1-D parameters of the blocks (norms, ``D``, biases),
``pos_embed`` and ``cls_token``. Other ``paramwise_cfg`` options (and ``custom_keys``, which win
over the generated ones) work as in :class:`mmengine.optim.DefaultOptimWrapperConstructor`.
"""

from __future__ import annotations

import importlib

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ["VimLayerDecayOptimizerConstructor", "vim_layer_decay_keys"]

_BLOCK_1D = (
    "norm.",
    "mixer.D",
    "mixer.conv1d.bias",
    "mixer.conv1d_b.bias",
    "mixer.dt_proj.bias",
    "mixer.dt_proj_b.bias",
)


def vim_layer_decay_keys(num_layers: int, rate: float, prefix: str = "backbone.") -> dict:
    """``custom_keys`` for mmengine's constructor implementing the rule of the module docstring."""
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    if not 0 < rate <= 1:
        raise ValueError(f"layer_decay_rate must be in (0, 1], got {rate!r}")
    keys = {}
    for i in range(num_layers):
        lr_mult = rate ** (num_layers - i)
        keys[f"{prefix}layers.{i}."] = dict(lr_mult=lr_mult)
        for name in _BLOCK_1D:
            keys[f"{prefix}layers.{i}.{name}"] = dict(lr_mult=lr_mult, decay_mult=0.0)
    embed = rate ** (num_layers + 1)
    keys[f"{prefix}patch_embed.proj.weight"] = dict(lr_mult=embed)
    for name in ("patch_embed.proj.bias", "pos_embed", "cls_token"):
        keys[prefix + name] = dict(lr_mult=embed, decay_mult=0.0)
    return keys


class VimLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """:class:`DefaultOptimWrapperConstructor` plus ``paramwise_cfg`` keys ``num_layers`` and
    ``layer_decay_rate`` (and optional ``layer_decay_prefix``, default ``'backbone.'``)."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        cfg = dict(paramwise_cfg or {})
        missing = [k for k in ("num_layers", "layer_decay_rate") if k not in cfg]
        if missing:
            raise KeyError(
                f"VimLayerDecayOptimizerConstructor needs paramwise_cfg keys {missing} "
                "(e.g. num_layers=24, layer_decay_rate=0.92)"
            )
        keys = vim_layer_decay_keys(
            cfg.pop("num_layers"),
            cfg.pop("layer_decay_rate"),
            cfg.pop("layer_decay_prefix", "backbone."),
        )
        keys.update(cfg.get("custom_keys") or {})
        cfg["custom_keys"] = keys
        super().__init__(optim_wrapper_cfg, cfg)


OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=VimLayerDecayOptimizerConstructor, force=True)
for _name in ("mmpretrain.registry", "mmdet.registry", "mmseg.registry"):
    try:
        importlib.import_module(_name).OPTIM_WRAPPER_CONSTRUCTORS.register_module(
            module=VimLayerDecayOptimizerConstructor, force=True
        )
    except ImportError:
        continue

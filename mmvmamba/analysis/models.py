"""Building the models the analysis tools measure: from configs, VMamba arch names, or the zoo
of comparison backbones (mmpretrain's Swin-T, ConvNeXt-T, DeiT-S, and our Vim-S).

Every built model is wrapped in :class:`TensorForward`, an ``nn.Module`` whose ``forward`` takes
one image batch (B, 3, H, W) and returns the framework's raw tensors (what mmdet/mmseg/mmpretrain
return in ``mode='tensor'``), so FLOP counters, timers and gradient probes see one signature.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "BENCHMARK_MODELS",
    "TensorForward",
    "build_backbone",
    "build_benchmark_model",
    "build_from_config",
    "build_vmamba_classifier",
    "framework_of",
    "load_config",
    "vmamba_classifier_cfg",
]

_SCOPES = {"mmpretrain": "mmpretrain", "mmdet": "mmdet", "mmseg": "mmseg"}


def load_config(config):
    """An ``mmengine.Config`` from a path or a dict (a Config is returned as is)."""
    from mmengine.config import Config

    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return Config(config)
    if not isinstance(config, (str, os.PathLike)) or not os.path.isfile(config):
        raise FileNotFoundError(f"config file {config!r} does not exist")
    return Config.fromfile(str(config))


def framework_of(cfg) -> str:
    """'mmpretrain', 'mmdet' or 'mmseg': which framework builds ``cfg.model``.

    Read from ``default_scope``; without one, from the model type (a detector type from mmdet,
    ``EncoderDecoder`` from mmseg, anything else from mmpretrain).
    """
    scope = cfg.get("default_scope")
    if scope in _SCOPES:
        return scope
    model_type = str(cfg.model.get("type", ""))
    if "::" in model_type or "." in model_type:
        prefix = model_type.replace("::", ".").split(".")[0]
        if prefix in _SCOPES:
            return prefix
    if model_type in ("EncoderDecoder", "CascadeEncoderDecoder"):
        return "mmseg"
    if model_type in ("MaskRCNN", "FasterRCNN", "RetinaNet", "CascadeRCNN", "FCOS"):
        return "mmdet"
    return "mmpretrain"


def _import_plugins(cfg) -> None:
    import mmvmamba  # noqa: F401  (registers VMamba / Vim)

    custom = cfg.get("custom_imports")
    if custom:
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**custom)


def _registry(framework: str):
    from mmengine.registry import init_default_scope

    init_default_scope(framework)
    return importlib.import_module(f"{framework}.registry").MODELS


def build_from_config(config, checkpoint: str | None = None) -> tuple[nn.Module, str]:
    """Build ``cfg.model`` with its framework's registry; optionally load a checkpoint.

    Args:
        config: a config path, dict or ``mmengine.Config``.
        checkpoint: a ``.pth`` file whose ``state_dict`` (or the whole file) holds the model's
            weights; loaded strictly with
            :func:`mmvmamba.checkpoint.io.load_state_dict_checked`.

    Returns:
        (model in eval mode, framework name).
    """
    cfg = load_config(config)
    framework = framework_of(cfg)
    _import_plugins(cfg)
    model = _registry(framework).build(cfg.model)
    if checkpoint is not None:
        from mmvmamba.checkpoint.io import (
            load_checkpoint_file,
            load_state_dict_checked,
            unwrap_checkpoint,
        )

        state = unwrap_checkpoint(load_checkpoint_file(checkpoint))
        load_state_dict_checked(model, state, strict=True)
    elif hasattr(model, "init_weights"):
        _quiet_init(model)
    return model.eval(), framework


def _quiet_init(model: nn.Module) -> None:
    """``model.init_weights()`` without mmengine's per-parameter INFO log."""
    import logging

    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


class TensorForward(nn.Module):
    """``forward(x)`` = the framework's tensor-mode forward of ``model`` on images ``x``.

    * mmpretrain: ``model(x, mode='tensor')`` (logits of a classifier, features otherwise).
    * mmdet: ``model._forward(x, data_samples)`` with one sample per image holding the
      ``img_shape``/``pad_shape``/``batch_input_shape`` metainfo (as mmdet's ``get_flops``).
    * mmseg: ``model._forward(x)`` (the decode head's logits, as mmseg's ``get_flops``).
    * ``'backbone'``: ``model(x)`` (a bare backbone returning a tuple of maps).

    Shapes: x (B, 3, H, W) -> whatever the model returns (tensor or tuple of tensors).
    """

    def __init__(self, model: nn.Module, framework: str) -> None:
        super().__init__()
        if framework not in (*_SCOPES, "backbone"):
            raise ValueError(f"unknown framework {framework!r}; expected one of {(*_SCOPES,)}")
        self.model, self.framework = model, framework

    def forward(self, x: Tensor):
        if self.framework == "mmpretrain":
            return self.model(x, mode="tensor")
        if self.framework == "mmseg":
            return self.model._forward(x)
        if self.framework == "mmdet":
            return self.model._forward(x, _det_samples(x))
        return self.model(x)

    def backbone(self) -> nn.Module:
        """The backbone inside (the model itself for a bare backbone)."""
        return getattr(self.model, "backbone", self.model)


def _det_samples(x: Tensor) -> list:
    from mmdet.structures import DetDataSample

    h, w = int(x.shape[-2]), int(x.shape[-1])
    meta = dict(
        img_shape=(h, w),
        ori_shape=(h, w),
        pad_shape=(h, w),
        batch_input_shape=(h, w),
        scale_factor=(1.0, 1.0),
    )
    return [DetDataSample(metainfo=meta) for _ in range(x.shape[0])]


# --------------------------------------------------------------------------------------------
# VMamba classifier from an arch name


def vmamba_classifier_cfg(arch: str | dict = "tiny", num_classes: int = 1000) -> dict:
    """The mmpretrain ``ImageClassifier`` config of a bare VMamba classifier.

    ``VMamba(out_indices=(3,))`` (its ``outnorm3`` = the official ``classifier.norm``) ->
    ``GlobalAveragePooling`` -> ``LinearClsHead`` (= ``classifier.head``); the head's
    ``in_channels`` is the last stage width of ``arch``.
    """
    import mmvmamba  # noqa: F401
    from mmvmamba.models.backbones.vmamba import VMamba

    settings = VMamba.resolve_arch(arch)
    dims = settings["dims"]
    last = dims * 2 ** (len(settings["depths"]) - 1) if isinstance(dims, int) else dims[-1]
    return dict(
        type="ImageClassifier",
        backbone=dict(type="VMamba", arch=arch, out_indices=(3,)),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=num_classes, in_channels=int(last)),
    )


def build_vmamba_classifier(arch: str | dict = "tiny", num_classes: int = 1000) -> nn.Module:
    """:func:`vmamba_classifier_cfg` built and wrapped in :class:`TensorForward` (eval mode)."""
    model, framework = build_from_config(
        dict(model=vmamba_classifier_cfg(arch, num_classes), default_scope="mmpretrain")
    )
    return TensorForward(model, framework).eval()


# --------------------------------------------------------------------------------------------
# the comparison zoo of benchmark.py


def _cls(backbone: dict, channels: int, head: str = "LinearClsHead", gap: bool = True) -> dict:
    neck = dict(type="GlobalAveragePooling") if gap else None
    model = dict(
        type="ImageClassifier",
        backbone=backbone,
        head=dict(type=head, num_classes=1000, in_channels=channels),
    )
    if neck:
        model["neck"] = neck
    return model


def _vmamba(arch: str) -> Callable[[int], dict]:
    return lambda size: vmamba_classifier_cfg(arch)


BENCHMARK_MODELS: dict[str, Callable[[int], dict]] = {
    "vmamba-t": _vmamba("tiny"),
    "vmamba-s": _vmamba("small"),
    "vmamba-b": _vmamba("base"),
    # img_size matters for DeiT (pos_embed sized for the input, no per-forward resize) and is
    # harmless for Swin (mmpretrain pads to the window grid at any size)
    "swin-t": lambda size: _cls(
        dict(
            type="SwinTransformer",
            arch="tiny",
            img_size=size,
            drop_path_rate=0.0,
            pad_small_map=True,
        ),
        768,
    ),
    # mmpretrain's ConvNeXt pools before its final norm (the official order): no neck
    "convnext-t": lambda size: _cls(dict(type="ConvNeXt", arch="tiny"), 768, gap=False),
    "deit-s": lambda size: _cls(
        dict(type="VisionTransformer", arch="deit-small", img_size=size, patch_size=16),
        384,
        head="VisionTransformerClsHead",
        gap=False,
    ),
    "vim-s": lambda size: _cls(
        dict(type="Vim", arch="small", img_size=size, out_type="cls_token"), 384, gap=False
    ),
}


def vim_registered() -> bool:
    """Whether ``Vim`` is importable and registered in mmpretrain's MODELS."""
    try:
        from mmpretrain.registry import MODELS

        import mmvmamba  # noqa: F401
    except ImportError:
        return False
    return MODELS.get("Vim") is not None


def build_benchmark_model(spec: str, img_size: int = 224) -> nn.Module:
    """A :class:`TensorForward` model (eval mode) from a zoo name or a config path.

    Args:
        spec: a key of :data:`BENCHMARK_MODELS` (``'vmamba-t'``, ``'swin-t'``, ...),
            ``'vmamba:<arch>'`` for any VMamba arch name, or a config file path.
        img_size: the input side the model is built for (pos-embed sizes of DeiT/Vim).
    """
    if spec in BENCHMARK_MODELS:
        cfg = dict(model=BENCHMARK_MODELS[spec](img_size), default_scope="mmpretrain")
    elif spec.startswith("vmamba:"):
        cfg = dict(model=vmamba_classifier_cfg(spec.split(":", 1)[1]), default_scope="mmpretrain")
    elif os.path.isfile(spec):
        cfg = spec
    else:
        raise ValueError(
            f"unknown model {spec!r}: use one of {sorted(BENCHMARK_MODELS)}, 'vmamba:<arch>' or "
            "a config file path"
        )
    model, framework = build_from_config(cfg)
    return TensorForward(model, framework).eval()


# backbone kwargs that make each zoo backbone return its last feature map (B, C, h, w)
_FEATURE_MAP_KWARGS = {
    "ConvNeXt": dict(gap_before_final_norm=False),
    "VisionTransformer": dict(out_type="featmap"),
    "Vim": dict(out_type="featmap"),
}


def build_backbone(spec: str, img_size: int = 224, checkpoint: str | None = None) -> nn.Module:
    """The backbone of :func:`build_benchmark_model`'s model, returning feature maps.

    The backbone is rebuilt so that it returns its last stage as a (B, C, h, w) map (ConvNeXt
    without pooling, DeiT/Vim ``out_type='featmap'``). ``checkpoint`` (a classifier checkpoint
    of the same model) is loaded into the whole classifier first, strictly.

    Returns:
        :class:`TensorForward` with framework ``'backbone'``: x (B, 3, H, W) -> tuple of maps.
    """
    if spec in BENCHMARK_MODELS:
        model_cfg = BENCHMARK_MODELS[spec](img_size)
    elif spec.startswith("vmamba:"):
        model_cfg = vmamba_classifier_cfg(spec.split(":", 1)[1])
    elif os.path.isfile(spec):
        model_cfg = load_config(spec).model.to_dict()
    else:
        raise ValueError(
            f"unknown model {spec!r}: use one of {sorted(BENCHMARK_MODELS)}, 'vmamba:<arch>' or "
            "a config file path"
        )
    model_cfg = dict(model_cfg)
    backbone = dict(model_cfg["backbone"])
    backbone.update(_FEATURE_MAP_KWARGS.get(str(backbone.get("type")), {}))
    model_cfg["backbone"] = backbone
    cfg = spec if os.path.isfile(spec) else None
    cfg = load_config(cfg) if cfg else load_config(dict(default_scope="mmpretrain"))
    cfg.model = model_cfg
    model, _ = build_from_config(cfg, checkpoint)
    return TensorForward(getattr(model, "backbone", model), "backbone").eval()


def first_tensor(out) -> Tensor:
    """The first tensor in a (nested) tuple/list/dict output, for losses and probes."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            t = first_tensor(item)
            if t is not None:
                return t
    return None


def sum_outputs(out) -> Tensor:
    """Sum of every tensor in a (nested) output: a scalar whose backward reaches all of them."""
    if isinstance(out, Tensor):
        return out.float().sum()
    if isinstance(out, dict):
        out = list(out.values())
    total = torch.zeros(())
    for item in out if isinstance(out, (tuple, list)) else ():
        total = total + sum_outputs(item)
    return total

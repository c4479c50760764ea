"""Registration of mmvmamba hooks in mmengine's ``HOOKS`` and in the frameworks' registries."""

from __future__ import annotations

import importlib
from typing import TypeVar

from mmengine.registry import HOOKS

T = TypeVar("T", bound=type)

_FRAMEWORK_REGISTRIES = ("mmpretrain.registry", "mmdet.registry", "mmseg.registry")


def register_hook(cls: T) -> T:
    """Class decorator: register ``cls`` in mmengine's ``HOOKS`` and in the ``HOOKS`` registry of
    every installed framework, so ``custom_hooks=[dict(type=cls.__name__)]`` resolves under any
    ``default_scope``."""
    HOOKS.register_module(module=cls, force=True)
    for module_name in _FRAMEWORK_REGISTRIES:
        try:
            registry = importlib.import_module(module_name).HOOKS
        except ImportError:
            continue
        registry.register_module(module=cls, force=True)
    return cls

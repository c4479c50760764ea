"""Registration of mmvmamba classes into the OpenMMLab registries that are installed.

mmpretrain is a hard dependency; mmdet and mmseg are optional. A class decorated with
:func:`register_model` is registered under its own name in the ``MODELS`` registry of every
available framework, so ``type='VMamba'`` works in mmpretrain, mmdet and mmseg configs alike once
``custom_imports=dict(imports=['mmvmamba'])`` is set; :func:`register_hook` does the same for
``HOOKS`` (and mmengine's root ``HOOKS``), so ``custom_hooks=[dict(type=...)]`` resolves under
any ``default_scope``.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

T = TypeVar("T", bound=type)

_FRAMEWORKS = ("mmpretrain", "mmdet", "mmseg")


def available_registries(kind: str) -> list:
    """The ``kind`` registries (``'MODELS'``, ``'HOOKS'``) of the installed frameworks,
    mmpretrain first."""
    registries = []
    for framework in _FRAMEWORKS:
        try:
            module = importlib.import_module(f"{framework}.registry")
        except ImportError:
            continue
        registries.append(getattr(module, kind))
    return registries


def register_model(cls: T) -> T:
    """Class decorator: register ``cls`` in every available framework ``MODELS`` registry."""
    for registry in available_registries("MODELS"):
        registry.register_module(module=cls, force=True)
    return cls


def register_hook(cls: T) -> T:
    """Class decorator: register ``cls`` in mmengine's ``HOOKS`` and in every available
    framework's ``HOOKS`` registry."""
    from mmengine.registry import HOOKS

    for registry in [HOOKS, *available_registries("HOOKS")]:
        registry.register_module(module=cls, force=True)
    return cls

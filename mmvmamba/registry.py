"""Registration of mmvmamba modules into the OpenMMLab registries that are installed.

mmpretrain is a hard dependency; mmdet and mmseg are optional. A class decorated with
:func:`register_model` is registered under its own name in every available ``MODELS`` registry,
so ``type='VMamba'`` works in mmpretrain, mmdet and mmseg configs alike once
``custom_imports=dict(imports=['mmvmamba'])`` is set.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

T = TypeVar("T", bound=type)

_FRAMEWORK_REGISTRIES = ("mmpretrain.registry", "mmdet.registry", "mmseg.registry")


def available_model_registries() -> list:
    """The ``MODELS`` registries of the installed frameworks, mmpretrain first."""
    registries = []
    for module_name in _FRAMEWORK_REGISTRIES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        registries.append(module.MODELS)
    return registries


def register_model(cls: T) -> T:
    """Class decorator: register ``cls`` in every available framework ``MODELS`` registry."""
    for registry in available_model_registries():
        registry.register_module(module=cls, force=True)
    return cls

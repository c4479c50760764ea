"""Checkpoint conversion while a state dict loads: one path for every way of loading.

mmvmamba's backbones translate foreign checkpoints inside ``load_state_dict`` itself, with
load-state-dict pre-hooks (as mmpretrain's ``VisionTransformer`` resizes its position embedding),
so ``init_cfg=dict(type='Pretrained')``, a runner's ``load_from`` / ``--resume``, mmengine's
``load_checkpoint`` (and through it mmpretrain's ``get_model(..., pretrained=...)``) and a plain
``model.load_state_dict(official_state_dict)`` all convert the same way. Two hooks:

* **own keys** (:func:`enable_load_conversion`, registered by the backbone on itself): the keys
  under the backbone's prefix are handed to ``backbone.convert_state_dict(state, prefix)``
  (official names -> ours, VMamba's output norms, Vim's position-embedding resize).
* **the parent's keys**: torch hands each submodule only the keys under its own prefix, so an
  official *classification* file (``model`` wrapper, backbone keys without ``backbone.``, the
  official head) loaded into the model that holds the backbone (mmpretrain's
  ``ImageClassifier``) must be translated one level up. When a module that has
  ``convert_parent_state_dict`` is assigned as a child (``classifier.backbone = VMamba(...)``),
  a pre-hook is registered on the parent that calls
  ``child.convert_parent_state_dict(state, prefix, child_name, parent)``. This uses torch's
  global module-registration hook, installed when this module is imported; it does nothing for
  any other module.

Both conversions are idempotent (already converted keys pass unchanged), so
:func:`convert_for_loading` can apply them ahead of a load to compare keys (the one key diff of
:mod:`mmvmamba.checkpoint.io`) without loading anything.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["convert_for_loading", "enable_load_conversion"]

_OWN_MARK = "_mmvmamba_converts_own_keys"
_PARENT_MARK = "_mmvmamba_converted_children"  # names of the children a parent converts for


def _own_hook(module: nn.Module, state_dict: dict, prefix: str, *_args) -> None:
    module.convert_state_dict(state_dict, prefix)


def _parent_hook(parent: nn.Module, state_dict: dict, prefix: str, *_args, child_name: str) -> None:
    child = getattr(parent, child_name, None)
    if hasattr(child, "convert_parent_state_dict"):
        child.convert_parent_state_dict(state_dict, prefix, child_name, parent)


def enable_load_conversion(module: nn.Module) -> None:
    """Make ``module.load_state_dict`` pass the keys under its prefix through
    ``module.convert_state_dict(state_dict, prefix)`` (in place) before they load."""
    module.__dict__[_OWN_MARK] = True
    module.register_load_state_dict_pre_hook(_own_hook)


def _on_child_registered(parent: nn.Module, name: str, child: object) -> None:
    """Global module-registration hook: a converting child makes its parent convert too."""
    if not hasattr(type(child), "convert_parent_state_dict"):
        return
    names = parent.__dict__.setdefault(_PARENT_MARK, set())
    if name not in names:
        names.add(name)
        parent.register_load_state_dict_pre_hook(functools.partial(_parent_hook, child_name=name))


torch.nn.modules.module.register_module_module_registration_hook(_on_child_registered)


def convert_for_loading(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """What ``model.load_state_dict(state_dict)`` would load after mmvmamba's conversions.

    Applies, in load order, the conversions of every converting submodule of ``model`` to a
    copy of ``state_dict``; nothing is loaded and ``state_dict`` is not modified. Keys of other
    modules pass unchanged.

    Args:
        model: the module that will load ``state_dict`` (not a DDP wrapper).
        state_dict: keys as given to ``model.load_state_dict``.

    Returns:
        A new dict, keyed like ``model.state_dict()`` where the conversions apply.
    """
    state = dict(state_dict)
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for child_name in sorted(module.__dict__.get(_PARENT_MARK, ())):
            _parent_hook(module, state, prefix, child_name=child_name)
        if module.__dict__.get(_OWN_MARK):
            module.convert_state_dict(state, prefix)
    return state

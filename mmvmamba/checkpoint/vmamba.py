"""Official VMamba (MzeroMiko/VMamba) checkpoint names -> mmvmamba names.

Our :class:`~mmvmamba.models.backbones.VMamba` keeps the official module and parameter names
(``patch_embed.*``, ``layers.{i}.blocks.{j}.{norm,op,norm2,mlp}.*``, ``layers.{i}.downsample.*``,
the raw SS2D parameters ``x_proj_weight``, ``A_logs``, ``Ds``, ``dt_projs_weight``,
``dt_projs_bias``, and ``outnorm{i}`` of the detection / segmentation backbones), so the mapping
(:func:`rename_vmamba_keys`) is short:

* legacy v0 names: ``patch_embed.proj`` -> ``patch_embed.0``, ``patch_embed.norm`` ->
  ``patch_embed.2``, ``blocks.{j}.ln_1`` -> ``.norm``, ``blocks.{j}.self_attention`` -> ``.op``,
  top-level ``norm`` -> ``classifier.norm``, ``head`` -> ``classifier.head``;
* ``classifier.norm`` -> ``outnorm{last}`` (the norm of the last stage);
* ``classifier.head`` is the classifier's linear layer: mmpretrain's ``head.fc``
  (:data:`HEAD_PREFIX`, split off by the callers).

The same functions serve the load-time conversion of the backbone
(:meth:`VMamba.convert_state_dict`, see :mod:`mmvmamba.checkpoint.hooks`) and the offline
converter :func:`convert_vmamba_checkpoint` (``tools/model_converters/vmamba_to_mmvmamba.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .io import classifier_layout, select_prefix, split_prefix, unwrap_checkpoint

__all__ = ["HEAD_PREFIX", "convert_vmamba_checkpoint", "is_official_vmamba", "rename_vmamba_keys"]

HEAD_PREFIX = "classifier.head."  # the official classifier's linear layer (after renaming)
_TARGETS = ("classifier", "backbone")

# (pattern, replacement) applied in order to every key of a legacy v0 checkpoint
_LEGACY_RENAMES = (
    (re.compile(r"^patch_embed\.proj\."), "patch_embed.0."),
    (re.compile(r"^patch_embed\.norm\."), "patch_embed.2."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.ln_1\."), r"\1.norm."),
    (re.compile(r"^(layers\.\d+\.blocks\.\d+)\.self_attention\."), r"\1.op."),
    (re.compile(r"^norm\."), "classifier.norm."),
    (re.compile(r"^head\."), "classifier.head."),
)
_STAGE = re.compile(r"^layers\.(\d+)\.")


def is_official_vmamba(state: Mapping) -> bool:
    """Whether ``state`` holds VMamba backbone keys without a prefix (any release)."""
    return any(k.startswith("patch_embed.") for k in state) and any(
        k.startswith("layers.") for k in state
    )


def rename_vmamba_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official VMamba keys (no prefix, any release) -> our names; ours pass unchanged.

    ``classifier.norm`` becomes ``outnorm{last}`` (``last`` = the highest ``layers.{i}``);
    ``classifier.head.*`` keeps its name (see :data:`HEAD_PREFIX`). A new dict; tensors shared.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in _LEGACY_RENAMES:
            key = pattern.sub(repl, key)
        renamed[key] = value
    stages = [int(m.group(1)) for k in renamed if (m := _STAGE.match(k))]
    last = max(stages) if stages else 3
    norm = "classifier.norm."
    return {
        (f"outnorm{last}." + k[len(norm) :] if k.startswith(norm) else k): v
        for k, v in renamed.items()
    }


def _is_native_classifier(state: Mapping) -> bool:
    return "head.fc.weight" in state and all(k.startswith(("backbone.", "head.")) for k in state)


def convert_vmamba_checkpoint(
    ckpt_or_state_dict: Mapping,
    use_ema: bool = False,
    target: str = "classifier",
    prefix: str | None = None,
) -> dict[str, torch.Tensor]:
    """Map an official VMamba checkpoint (any release) to mmvmamba keys, offline. Pure: the
    input is not modified; tensors are shared, not copied.

    Args:
        ckpt_or_state_dict: a loaded checkpoint (``{'model': ..., 'model_ema': ...}``,
            ``{'state_dict': ...}``) or a flat state dict, official or already converted.
        use_ema: take ``model_ema`` instead of ``model``.
        target: ``'classifier'`` (mmpretrain ``ImageClassifier``: ``backbone.*`` + ``head.fc.*``)
            or ``'backbone'`` (a bare ``VMamba``; the classifier head is dropped).
        prefix: keep only the keys under this prefix (stripped) before mapping, e.g.
            ``'backbone.'``. By default ``'backbone.'`` is used when any key carries it.

    Returns:
        A new ``{name: tensor}`` dict in the target's naming. Already converted (native) input
        is returned unchanged (as a new dict).

    Raises:
        ValueError: unknown ``target``.
        CheckpointError: no ``model_ema`` with ``use_ema``, non-tensor entries, or a ``prefix``
            that no key carries.
    """
    if target not in _TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {_TARGETS}")
    if not isinstance(ckpt_or_state_dict, Mapping):
        raise TypeError(
            f"expected a checkpoint dict or state dict, got {type(ckpt_or_state_dict).__name__}"
        )
    state = unwrap_checkpoint(ckpt_or_state_dict, use_ema)
    if target == "classifier" and prefix is None and _is_native_classifier(state):
        return dict(state)
    if prefix is None and any(k.startswith("backbone.") for k in state):
        prefix = "backbone."
    if prefix:
        state = select_prefix(state, prefix)
    backbone, head = split_prefix(rename_vmamba_keys(state), HEAD_PREFIX)
    return backbone if target == "backbone" else classifier_layout(backbone, head)

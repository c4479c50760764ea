"""Official VMamba (MzeroMiko/VMamba) checkpoints -> mmvmamba state dicts.

Our :class:`~mmvmamba.models.backbones.VMamba` keeps the official module and parameter names
(``patch_embed.*``, ``layers.{i}.blocks.{j}.{norm,op,norm2,mlp}.*``, ``layers.{i}.downsample.*``,
the raw SS2D parameters ``x_proj_weight``, ``A_logs``, ``Ds``, ``dt_projs_weight``,
``dt_projs_bias``, and ``outnorm{i}`` of the detection / segmentation backbones), so the mapping
is short:

* unwrap ``model`` (or ``model_ema`` with ``use_ema=True``) of the classification releases, or
  ``state_dict`` of mmengine (detection / segmentation / mmpretrain) files;
* keep only the ``backbone.`` keys of detection / segmentation / mmpretrain files (the prefix
  is stripped; necks and heads are not part of a backbone);
* legacy v0 names: ``patch_embed.proj`` -> ``patch_embed.0``, ``patch_embed.norm`` ->
  ``patch_embed.2``, ``blocks.{j}.ln_1`` -> ``.norm``, ``blocks.{j}.self_attention`` -> ``.op``,
  top-level ``norm`` -> ``classifier.norm``, ``head`` -> ``classifier.head``;
* the classifier: ``classifier.norm`` -> ``outnorm{last}`` (the norm of the last stage) and
  ``classifier.head`` -> ``head.fc`` (mmpretrain ``LinearClsHead``), dropped for a backbone.

``target='classifier'`` gives the keys of mmpretrain's ``ImageClassifier`` (``backbone.*``,
``head.fc.*``); ``target='backbone'`` the keys of a bare :class:`VMamba`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .io import CheckpointError

__all__ = ["convert_vmamba_checkpoint"]

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


def _unwrap(ckpt: Mapping, use_ema: bool) -> dict:
    """The flat ``{name: tensor}`` dict inside a checkpoint (or the dict itself)."""
    if use_ema:
        if "model_ema" not in ckpt:
            raise CheckpointError(
                "use_ema=True but the checkpoint has no 'model_ema' entry "
                f"(top-level keys: {sorted(ckpt)[:10]}); load it with use_ema=False"
            )
        state = ckpt["model_ema"]
    elif "model" in ckpt and isinstance(ckpt["model"], Mapping):
        state = ckpt["model"]
    elif "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):
        state = ckpt["state_dict"]
    else:
        state = ckpt
    if isinstance(state, Mapping) and "module" in state and isinstance(state["module"], Mapping):
        state = state["module"]  # timm ModelEma wrappers
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"not a VMamba state dict: entries {bad[:5]} are not tensors "
            "(expected a checkpoint with 'model'/'model_ema'/'state_dict' or a flat state dict)"
        )
    return dict(state)


def _is_native_classifier(state: Mapping) -> bool:
    return "head.fc.weight" in state and all(k.startswith(("backbone.", "head.")) for k in state)


def convert_vmamba_checkpoint(
    ckpt_or_state_dict: Mapping,
    use_ema: bool = False,
    target: str = "classifier",
    prefix: str | None = None,
) -> dict[str, torch.Tensor]:
    """Map an official VMamba checkpoint (any release) to mmvmamba keys. Pure: the input is not
    modified; tensors are shared, not copied.

    Args:
        ckpt_or_state_dict: a loaded checkpoint (``{'model': ..., 'model_ema': ...}``,
            ``{'state_dict': ...}``) or a flat state dict, official or already converted.
        use_ema: take ``model_ema`` instead of ``model``.
        target: ``'classifier'`` (mmpretrain ``ImageClassifier``: ``backbone.*`` + ``head.fc.*``)
            or ``'backbone'`` (a bare ``VMamba``).
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
    state = _unwrap(ckpt_or_state_dict, use_ema)
    if target == "classifier" and prefix is None and _is_native_classifier(state):
        return dict(state)

    if prefix is None and any(k.startswith("backbone.") for k in state):
        prefix = "backbone."
    if prefix:
        selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            raise CheckpointError(
                f"no key of the checkpoint starts with prefix {prefix!r} "
                f"(first keys: {list(state)[:5]}); drop the prefix option"
            )
        state = selected

    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in _LEGACY_RENAMES:
            key = pattern.sub(repl, key)
        renamed[key] = value

    stages = [int(m.group(1)) for k in renamed if (m := _STAGE.match(k))]
    last = max(stages) if stages else 3
    out: dict[str, torch.Tensor] = {}
    for key, value in renamed.items():
        if key.startswith("classifier.norm."):
            key = f"outnorm{last}." + key[len("classifier.norm.") :]
        elif key.startswith("classifier.head."):
            if target == "backbone":
                continue
            key = "head.fc." + key[len("classifier.head.") :]
            out[key] = value
            continue
        out[key if target == "backbone" else "backbone." + key] = value
    return out

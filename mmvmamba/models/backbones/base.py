"""The skeleton shared by mmvmamba's backbones (:class:`VMamba`, :class:`Vim`).

One place each for: the arch table lookup (:meth:`MambaBackbone.resolve_arch`), ``out_indices``
(:meth:`~MambaBackbone.resolve_indices`), the input checks (:meth:`~MambaBackbone.check_input`),
the ``init_cfg=dict(type='Pretrained', ...)`` loader (:meth:`~MambaBackbone.load_pretrained`)
and the conversion of official checkpoints while they load
(:meth:`~MambaBackbone.convert_state_dict`, :meth:`~MambaBackbone.convert_parent_state_dict`,
wired into ``load_state_dict`` by :mod:`mmvmamba.checkpoint.hooks`). A subclass supplies its
arch table and the names of its family's checkpoints (:meth:`~MambaBackbone.rename_checkpoint_keys`,
:meth:`~MambaBackbone.is_official_checkpoint`, :attr:`~MambaBackbone.checkpoint_head_prefix`),
plus what its own layout needs (:meth:`~MambaBackbone.adapt_state_dict`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mmengine.logging import print_log
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor, nn

from ...checkpoint.hooks import enable_load_conversion
from ...checkpoint.io import (
    load_checkpoint_file,
    load_state_dict_checked,
    select_prefix,
    split_prefix,
    unwrap_checkpoint,
)

__all__ = ["MambaBackbone"]

_PRETRAINED_KEYS = frozenset({"type", "checkpoint", "prefix", "strict", "use_ema", "map_location"})


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger="current", level=level)


def _weights_of(state: Mapping) -> tuple[dict, list[str]]:
    """``(weights, ignored entries)``: an official training file keeps the weights under
    ``model``, beside its training state (optimizer, epoch, args, ...)."""
    if isinstance(state.get("model"), Mapping):
        return dict(state["model"]), sorted(k for k in state if k != "model")
    return dict(state), []


class MambaBackbone(BaseBackbone):
    """Base of mmvmamba's backbones: see the module docstring.

    Class attributes of a subclass:
        arch_zoo: ``{name: settings}``; names are matched in lower case.
        arch_required_keys: keys a custom arch dict must have.
        arch_defaults: optional keys and their defaults.
        checkpoint_head_prefix: the key prefix of the official classifier's linear layer
            (mapped to mmpretrain's ``head.fc.``).
    """

    arch_zoo: ClassVar[dict] = {}
    arch_required_keys: ClassVar[frozenset] = frozenset()
    arch_defaults: ClassVar[dict] = {}
    checkpoint_head_prefix: ClassVar[str] = "head."
    in_channels: int

    def __init__(self, init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=copy.deepcopy(init_cfg))
        enable_load_conversion(self)

    # --- construction helpers ----------------------------------------------------------------
    @classmethod
    def resolve_arch(cls, arch: str | Mapping) -> dict:
        """The settings of ``arch``: an :attr:`arch_zoo` name, or a dict with every key of
        :attr:`arch_required_keys` and optional keys of :attr:`arch_defaults` (filled in).

        Raises:
            ValueError: unknown name, or a dict with missing or unknown keys.
            TypeError: ``arch`` is neither a str nor a dict.
        """
        name = cls.__name__
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ValueError(
                    f"{name}: unknown arch {arch!r}; choose one of {sorted(cls.arch_zoo)} or pass "
                    f"a dict with the keys {sorted(cls.arch_required_keys)}"
                )
            arch = cls.arch_zoo[arch.lower()]
        elif not isinstance(arch, Mapping):
            raise TypeError(f"{name}: arch must be a str or a dict, got {type(arch).__name__}")
        missing = cls.arch_required_keys - set(arch)
        unknown = set(arch) - cls.arch_required_keys - set(cls.arch_defaults)
        if missing or unknown:
            raise ValueError(
                f"{name}: a custom arch needs the keys {sorted(cls.arch_required_keys)} "
                f"(optional: {sorted(cls.arch_defaults)}); missing {sorted(missing)}, "
                f"unknown {sorted(unknown)}"
            )
        return {**copy.deepcopy(cls.arch_defaults), **copy.deepcopy(dict(arch))}

    def resolve_indices(
        self, indices: int | Sequence[int], count: int, unit: str
    ) -> tuple[int, ...]:
        """``out_indices`` as sorted non-negative indices into ``count`` ``unit`` (e.g. stages).

        Negative entries count from the end. Raises ``TypeError`` for a non-int entry or an
        empty sequence, ``ValueError`` for an entry out of range or one listed twice (also as
        ``i`` and ``i - count``).
        """
        name = type(self).__name__
        if isinstance(indices, int):
            indices = (indices,)
        if isinstance(indices, str) or not isinstance(indices, Sequence) or not indices:
            raise TypeError(
                f"{name}: out_indices must be an int or a non-empty sequence of ints, "
                f"got {indices!r}"
            )
        resolved = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"{name}: out_indices entry {index!r} is not an int")
            if not -count <= index < count:
                raise ValueError(
                    f"{name}: out_indices entry {index} is out of range for {count} {unit} "
                    f"(valid: -{count} .. {count - 1})"
                )
            resolved.append(index % count)
        repeated = sorted({i for i in resolved if resolved.count(i) > 1})
        if repeated:
            raise ValueError(
                f"{name}: out_indices {tuple(indices)} has duplicates: {unit} {repeated} "
                "listed more than once (negative entries count from the end); list each once"
            )
        return tuple(sorted(resolved))

    def check_input(self, x: Any, min_size: int) -> None:
        """Raise a clear error unless ``x`` is a non-empty float ``(B, in_channels, H, W)``
        batch with ``H, W >= min_size``."""
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
        shape = tuple(x.shape)
        if x.dim() != 4:
            raise ValueError(
                f"{name} expects images of shape (B, C, H, W), got {shape} ({x.dim()} dims)"
            )
        if shape[0] == 0:
            raise ValueError(
                f"{name} got an empty batch (batch size 0, shape {shape}); pass at least one image"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{name} expects a floating-point input, got dtype {x.dtype} (shape {shape}); "
                "convert with x.float() (and normalise it)"
            )
        if shape[1] != self.in_channels:
            raise ValueError(
                f"{name} was built with in_channels={self.in_channels} but got an input with "
                f"{shape[1]} channels (shape {shape}); set in_channels accordingly"
            )
        if shape[2] < min_size or shape[3] < min_size:
            raise ValueError(
                f"{name}: input {shape[2]}x{shape[3]} is smaller than the patch size {min_size} "
                f"(shape {shape}); resize or pad the images to at least {min_size}x{min_size}"
            )

    # --- checkpoint names (the family's; see mmvmamba.checkpoint.<family>) -------------------
    def rename_checkpoint_keys(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Official keys (no prefix) -> ours; ours pass unchanged. A new dict."""
        return dict(state)

    def is_official_checkpoint(self, state: Mapping) -> bool:
        """Whether ``state`` holds this family's backbone keys without a prefix."""
        raise NotImplementedError

    def check_checkpoint(self, checkpoint: Mapping) -> None:
        """Refuse (raise) or warn about a checkpoint file by its metadata; default: accept."""

    def adapt_state_dict(self, state: dict[str, Tensor]) -> None:
        """Fit this model's own layout (in place, keys without prefix); default: nothing."""

    # --- conversion while loading (see mmvmamba.checkpoint.hooks) ----------------------------
    def convert_state_dict(self, state_dict: dict, prefix: str) -> None:
        """Convert, in place, the keys of ``state_dict`` under ``prefix`` (this backbone's):
        an official ``model`` wrapper is opened, official names become ours, then
        :meth:`adapt_state_dict`. Called by ``load_state_dict`` before anything loads; already
        converted keys pass unchanged."""
        keys = [k for k in state_dict if k.startswith(prefix)]
        if not keys:
            return
        sub = {k[len(prefix) :]: state_dict.pop(k) for k in keys}
        weights, ignored = _weights_of(sub)
        if ignored:
            self.check_checkpoint(sub)
            _log(f"{type(self).__name__}: loading the 'model' weights; ignored {ignored}")
        weights = self.rename_checkpoint_keys(weights)
        self.adapt_state_dict(weights)
        state_dict.update({prefix + k: v for k, v in weights.items()})

    def convert_parent_state_dict(
        self, state_dict: dict, prefix: str, name: str, parent: nn.Module
    ) -> None:
        """Convert, in place, an official classification checkpoint loaded into ``parent``
        (the module holding this backbone as ``name``, e.g. mmpretrain's ``ImageClassifier``):
        its backbone keys move under ``name.``, its linear head to ``head.fc.`` when ``parent``
        has one (otherwise the head keys keep their names and show as unexpected). Anything
        else, including every already converted layout, passes unchanged."""
        sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        weights, ignored = _weights_of(sub)
        converted = any(k.startswith(f"{name}.") for k in weights)
        if converted or not self.is_official_checkpoint(weights):
            return
        self.check_checkpoint(sub)
        renamed = self.rename_checkpoint_keys(weights)
        backbone, head = split_prefix(renamed, self.checkpoint_head_prefix)
        linear_head = isinstance(getattr(getattr(parent, "head", None), "fc", None), nn.Module)
        head_prefix = "head.fc." if linear_head else self.checkpoint_head_prefix
        for key in sub:
            del state_dict[prefix + key]
        state_dict.update({f"{prefix}{name}.{k}": v for k, v in backbone.items()})
        state_dict.update({f"{prefix}{head_prefix}{k}": v for k, v in head.items()})
        _log(
            f"{type(self).__name__}: converted an official checkpoint for "
            f"{type(parent).__name__} ({name}.*, {head_prefix}*)"
            + (f"; ignored {ignored}" if ignored else "")
        )

    # --- init_cfg ----------------------------------------------------------------------------
    def _official_init(self) -> None:
        """The official initialisation (subclasses)."""

    def _pretrained_cfg(self) -> dict | None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            return dict(cfg)
        if isinstance(cfg, (list, tuple)) and any(
            isinstance(c, dict) and c.get("type") == "Pretrained" for c in cfg
        ):
            raise ValueError(
                f"{type(self).__name__}: a Pretrained init_cfg must be given alone, as a dict, "
                f"not in a list (got {cfg!r})"
            )
        return None

    def init_weights(self) -> None:
        """``init_cfg=None``: the official initialisation; ``dict(type='Pretrained', ...)``:
        :meth:`load_pretrained`; any other init_cfg is applied by mmengine."""
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
        **unknown: Any,
    ) -> None:
        """Load an official or mmvmamba checkpoint file (path or URL) into this backbone.

        The weights are unwrapped (``use_ema`` takes ``model_ema``), the keys under ``prefix``
        kept (``None``: ``'backbone.'`` when any key has it; necks and heads outside it are
        skipped, logged), the official classifier head dropped (logged), and the rest loaded
        through ``load_state_dict`` (which converts, see :meth:`convert_state_dict`), strictly
        unless ``strict=False``.

        Raises:
            ValueError: unknown options, or no ``checkpoint``.
            CheckpointError: unreadable file, or keys that do not fit (all named; nothing loaded).
        """
        name = type(self).__name__
        if unknown:
            raise ValueError(
                f"{name}: unknown keys {sorted(unknown)} in the Pretrained init_cfg; allowed: "
                f"{sorted(_PRETRAINED_KEYS)}"
            )
        if not checkpoint:
            raise ValueError(f"{name}: init_cfg type='Pretrained' needs checkpoint=PATH")
        ckpt = load_checkpoint_file(checkpoint, map_location=map_location)
        self.check_checkpoint(ckpt)
        state = unwrap_checkpoint(ckpt, use_ema=use_ema)
        if prefix is None and any(k.startswith("backbone.") for k in state):
            prefix = "backbone."
        if prefix:
            outside = [k for k in state if not k.startswith(prefix)]
            state = select_prefix(state, prefix)
            if outside:
                _log(f"{name}: not loading {len(outside)} keys outside {prefix!r}: {outside[:4]}")
        state, head = split_prefix(self.rename_checkpoint_keys(state), self.checkpoint_head_prefix)
        if head:
            dropped = sorted(self.checkpoint_head_prefix + k for k in head)
            _log(f"{name}: the classifier head {dropped} of {checkpoint} is not loaded")
        load_state_dict_checked(self, state, strict=strict, source=f"checkpoint '{checkpoint}'")
        _log(f"{name}: loaded {checkpoint}")

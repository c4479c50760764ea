"""Safe checkpoint reading and checked state-dict loading.

Every checkpoint mmvmamba reads goes through :func:`load_checkpoint_file`:
``torch.load(weights_only=True)`` with a narrow allow-list, so a pickle that would run code is
refused, and a missing, truncated or corrupt file fails with one clear :class:`CheckpointError`
naming the file. :func:`unwrap_checkpoint` is the one rule for finding the weights inside a file
(``state_dict`` of mmengine, ``model`` / ``model_ema`` of the official releases, ``module`` /
``module.`` of model wrappers). :func:`diff_state_dict` is the one key comparison, used by
:func:`load_state_dict_checked`, which names each missing, unexpected and mis-shaped key instead
of loading part of a model in silence.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .hooks import convert_for_loading

__all__ = [
    "CheckpointError",
    "LoadReport",
    "allow_safe_globals",
    "diff_state_dict",
    "load_checkpoint_file",
    "load_state_dict_checked",
    "local_checkpoint_path",
    "classifier_layout",
    "select_prefix",
    "split_prefix",
    "unwrap_checkpoint",
]

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be read, or does not fit the model it is loaded into."""


class _YacsCfgNodeStandIn(dict):
    """Unpickles the ``yacs.config.CfgNode`` that official VMamba checkpoints store under
    ``config``, as a plain dict, without importing or running yacs."""

    def __setstate__(self, state: dict) -> None:  # CfgNode pickles its __dict__ flags
        self.__dict__.update(state)


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` a checkpoint may call: mmengine's HistoryBuffer pickles its
    statistics methods as ``getattr(HistoryBuffer, 'mean')``. Anything else is refused, since a
    free ``getattr`` would let a pickle reach arbitrary attributes (and from there, code)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f"Unsupported global: GLOBAL getattr({getattr(obj, '__name__', type(obj).__name__)}, "
        f"{name!r}) is not on mmvmamba's allow-list"
    )


def _mmengine_globals() -> list:
    """The classes mmengine 0.10.x puts into the checkpoints it writes (message hub, meta)."""
    found: list = []
    try:
        from mmengine.logging.history_buffer import HistoryBuffer

        found += [HistoryBuffer, (_history_buffer_getattr, "builtins.getattr")]
    except ImportError:  # mmengine is optional for vmamba_ops users of this module
        pass
    try:
        from mmengine.config.config import ConfigDict

        found.append(ConfigDict)
    except ImportError:
        pass
    return found


def _numpy_globals() -> list:
    """numpy reconstructors needed for arrays and scalars in mmengine's message hub."""
    import numpy as np

    found: list = [np.ndarray, np.dtype]
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    found += [_reconstruct, scalar]
    # dtype classes (numpy >= 1.25 pickles e.g. numpy.dtypes.Float64DType)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


_ALLOWED_REGISTERED = False


def allow_safe_globals() -> None:
    """Allow-list, for ``torch.load(weights_only=True)``, exactly the non-tensor classes found in
    the checkpoints we read: mmengine's (resume of a Runner), numpy arrays/scalars in its logs,
    ``argparse.Namespace`` (official Vim and VMamba files) and yacs ``CfgNode`` (read as a dict).

    Idempotent; called when :mod:`mmvmamba` is imported.
    """
    global _ALLOWED_REGISTERED
    if _ALLOWED_REGISTERED:
        return
    safe: list = [argparse.Namespace, (_YacsCfgNodeStandIn, "yacs.config.CfgNode")]
    safe += _mmengine_globals() + _numpy_globals()
    torch.serialization.add_safe_globals(safe)
    _ALLOWED_REGISTERED = True


def local_checkpoint_path(checkpoint: str | os.PathLike) -> Path:
    """A local path for ``checkpoint``: an ``http(s)://`` URL is downloaded once into torch hub's
    cache (``$TORCH_HOME/hub/checkpoints``, where mmengine keeps them too); paths are unchanged."""
    text = str(checkpoint)
    if not text.startswith(("http://", "https://")):
        return Path(checkpoint)
    from urllib.parse import urlparse

    dst = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(text).path)
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        logger.info(f"downloading {text} to {dst}")
        torch.hub.download_url_to_file(text, str(dst), progress=True)
    return dst


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint file safely.

    Args:
        path: a ``.pth``/``.pt`` file written by ``torch.save``, or an ``http(s)://`` URL
            (downloaded once, see :func:`local_checkpoint_path`).
        map_location: passed to ``torch.load`` (default: CPU).

    Returns:
        The unpickled object; must be a dict (a checkpoint or a plain state dict).

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, holds a pickled global outside
            the allow-list (for instance code a malicious file would run), or is not a dict.
    """
    allow_safe_globals()
    path = local_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: '{path}'")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint file '{path}' is empty (an interrupted download or save?)"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        msg = str(err)
        if "Unsupported global" in msg or "not an allowed global" in msg or "GLOBAL" in msg:
            first = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln), msg)
            raise CheckpointError(
                f"refused to load '{path}': it pickles a Python object that is not on mmvmamba's "
                f"allow-list ({first}). mmvmamba never unpickles arbitrary code; if you trust the "
                "file, re-save its tensors with torch.save(state_dict) and load that."
            ) from err
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated: {msg}") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or truncated ({type(err).__name__}: {err}); "
            "download or save it again"
        ) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint '{path}' holds a {type(obj).__name__}, expected a dict "
            "(a state dict or a checkpoint with 'state_dict'/'model')"
        )
    return dict(obj)


@dataclass
class LoadReport:
    """Which keys of a state dict did not fit a module."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, ckpt, model

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        def listing(items: list[str]) -> str:
            more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {listing(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {listing(self.unexpected)}")
        if self.mismatched:
            shapes = [
                f"{k} (checkpoint {list(c)} vs model {list(m)})" for k, c, m in self.mismatched
            ]
            parts.append(f"shape mismatches ({len(shapes)}): {listing(shapes)}")
        return "; ".join(parts) if parts else "all keys match"


def unwrap_checkpoint(checkpoint: Mapping, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` weights inside a loaded checkpoint.

    The rules, in order: ``model_ema`` when ``use_ema``; else ``state_dict`` (mmengine) or
    ``model`` (official VMamba / Vim releases, timm); else the dict itself. A nested ``module``
    dict (timm's ``ModelEma``) is opened, and a ``module.`` prefix carried by every key
    (``DistributedDataParallel``) is stripped. Tensors are shared, not copied.

    Raises:
        CheckpointError: ``use_ema`` without a ``model_ema`` entry, or non-tensor entries.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"expected a dict checkpoint, got {type(checkpoint).__name__}")
    if use_ema:
        if not isinstance(checkpoint.get("model_ema"), Mapping):
            raise CheckpointError(
                "use_ema=True but the checkpoint has no 'model_ema' entry (top-level keys: "
                f"{sorted(checkpoint)[:10]}); load its 'model' weights with use_ema=False"
            )
        state = checkpoint["model_ema"]
    else:
        state = next(
            (
                checkpoint[k]
                for k in ("state_dict", "model")
                if isinstance(checkpoint.get(k), Mapping)
            ),
            checkpoint,
        )
    if isinstance(state.get("module"), Mapping):
        state = state["module"]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"not a state dict: entries {bad[:5]} are not tensors (expected a checkpoint with "
            "'state_dict', 'model' or 'model_ema', or a flat {name: tensor} dict)"
        )
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def split_prefix(
    state: Mapping[str, torch.Tensor], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(entries not under prefix, entries under prefix with it stripped)``."""
    rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
    under = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return rest, under


def select_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix`` (e.g. ``'backbone.'``), with it stripped.

    Raises:
        CheckpointError: no key starts with ``prefix``.
    """
    selected = split_prefix(state, prefix)[1]
    if not selected:
        raise CheckpointError(
            f"no key of the checkpoint starts with prefix {prefix!r} (first keys: "
            f"{list(state)[:5]}); check the prefix option or drop it"
        )
    return selected


def classifier_layout(
    backbone: Mapping[str, torch.Tensor], head: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Keys of mmpretrain's ``ImageClassifier`` with a ``LinearClsHead``: ``backbone.*`` for
    the backbone's state, ``head.fc.*`` for a linear head's ``weight`` / ``bias``."""
    out = {f"backbone.{k}": v for k, v in backbone.items()}
    out.update({f"head.fc.{k}": v for k, v in head.items()})
    return out


def diff_state_dict(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> LoadReport:
    """Compare the keys and shapes of ``state`` with a model's own state dict ``own``."""
    report = LoadReport()
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        shape = tuple(getattr(value, "shape", ()))
        if shape != tuple(own[key].shape):
            report.mismatched.append((key, shape, tuple(own[key].shape)))
    report.missing = [k for k in own if k not in state]
    return report


def load_state_dict_checked(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
    logger: logging.Logger | Any | None = None,
    source: str = "state dict",
) -> LoadReport:
    """Load ``state_dict`` into ``module``, naming every key that does not fit.

    The keys are compared after the conversions the module's submodules apply while loading
    (official names, resized position embeddings: :func:`.hooks.convert_for_loading`).

    Args:
        module: the model to load into.
        state_dict: tensors keyed like ``module.state_dict()``.
        strict: if True (the default), any missing, unexpected or mis-shaped key raises and
            nothing is loaded. If False, the matching keys are loaded and the rest is logged.
        logger: where the report of a partial load goes (default: this module's logger).
        source: a name for the state dict in messages (e.g. the checkpoint path).

    Returns:
        The :class:`LoadReport`.

    Raises:
        CheckpointError: strict loading and the keys do not match.
    """
    state_dict = convert_for_loading(module, state_dict)
    own = module.state_dict()
    report = diff_state_dict(own, state_dict)
    bad = set(report.unexpected) | {k for k, _, _ in report.mismatched}
    loadable = {k: v for k, v in state_dict.items() if k not in bad}
    if not report.ok:
        if strict:
            raise CheckpointError(
                f"{source} does not fit {type(module).__name__}: {report.describe()}. "
                "Nothing was loaded. Pass strict=False (e.g. init_cfg=dict(type='Pretrained', "
                "checkpoint=..., strict=False)) to load the matching keys anyway."
            )
        (logger or globals()["logger"]).warning(
            f"partial load of {source} into {type(module).__name__}: {report.describe()}"
        )
    module.load_state_dict(loadable, strict=False)
    return report

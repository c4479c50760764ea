"""Where mmvmamba's configs and model index live, and its models in mmpretrain's model hub.

A checkout keeps them beside the package (``configs/``, ``model-index.yml``); a built wheel
installs copies inside it (``mmvmamba/.mim/configs``, ``mmvmamba/.mim/model-index.yml``, as
every OpenMMLab package does). :func:`resource_root` finds whichever is there, so
``mmpretrain.get_model('vmamba-tiny_8xb128_in1k')`` and ``tools/train.py vmamba-tiny_8xb128_in1k``
work the same from the repository and from an installed wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_INDEX = "model-index.yml"
# the metafile whose models mmpretrain's hub builds (detection / segmentation models are built by
# mmdet / mmseg from their configs, not by mmpretrain.get_model)
CLASSIFICATION_METAFILE = "configs/classification/metafile.yml"

_registered = False


def resource_root() -> Path:
    """The folder holding ``configs/`` and ``model-index.yml``.

    ``mmvmamba/.mim`` in an installed wheel, else the checkout the package was imported from.
    Raises ``FileNotFoundError`` when neither has them (a broken install).
    """
    for root in (PACKAGE_DIR / ".mim", PACKAGE_DIR.parent):
        if (root / MODEL_INDEX).is_file() and (root / "configs").is_dir():
            return root
    raise FileNotFoundError(
        f"mmvmamba's configs and {MODEL_INDEX} are neither in {PACKAGE_DIR / '.mim'} (installed "
        f"wheel) nor in {PACKAGE_DIR.parent} (checkout); reinstall mmvmamba"
    )


def model_index() -> dict[str, dict]:
    """Every model of ``model-index.yml`` (all its metafiles) by lower-case name.

    Each entry is the metafile's mapping (``Name``, ``Config``, ``Weights``, ...) with
    ``Config`` made absolute.
    """
    root = resource_root()
    index = yaml.safe_load((root / MODEL_INDEX).read_text())
    models: dict[str, dict] = {}
    for rel in index.get("Import", []):
        for model in yaml.safe_load((root / rel).read_text()).get("Models", []):
            models[model["Name"].lower()] = dict(model, Config=str(root / model["Config"]))
    return models


def register_model_index() -> None:
    """Register the classification models with mmpretrain's ``ModelHub`` (once per process).

    After this, ``mmpretrain.list_models('*vmamba*')``, ``get_model(name, pretrained=...)``,
    ``ImageClassificationInferencer(name)`` and ``FeatureExtractor(name)`` know them by name.
    """
    global _registered
    if _registered:
        return
    from mmpretrain.apis import ModelHub

    root = resource_root()
    ModelHub.register_model_index(root / CLASSIFICATION_METAFILE, config_prefix=root)
    _registered = True


def resolve_config(config: str | os.PathLike) -> str:
    """The config file for ``config``: a path, a model name, or a path inside the package.

    Tried in order: an existing file; a model name of ``model-index.yml``
    (``vmamba-tiny_8xb128_in1k``); a path relative to the installed configs
    (``configs/classification/vmamba-tiny_8xb128_in1k.py`` or
    ``classification/vmamba-tiny_8xb128_in1k.py``). Raises ``FileNotFoundError`` naming it.
    """
    config = os.fspath(config)
    if os.path.isfile(config):
        return config
    root = resource_root()
    model = model_index().get(config.lower())
    if model is not None:
        return model["Config"]
    for candidate in (root / config, root / "configs" / config):
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"config file {config!r} does not exist and is no model name of {root / MODEL_INDEX} "
        "(configs live under configs/{classification,detection,segmentation,demo}/; "
        "mmpretrain.list_models('*vmamba*') lists the classification names)"
    )

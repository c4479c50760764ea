"""mmvmamba: VMamba and Vim visual state-space backbones for mmpretrain, mmdet and mmseg.

Importing this package (``custom_imports=dict(imports=['mmvmamba'])`` in a config) registers the
models in every installed OpenMMLab registry, registers the classification models of
``model-index.yml`` with mmpretrain's model hub
(``mmpretrain.get_model('vmamba-tiny_8xb128_in1k')``) and allow-lists, for
``torch.load(weights_only=True)``, exactly the classes mmengine's checkpoints hold, so
``--resume`` works on torch >= 2.6 without turning ``weights_only`` off.
"""

import warnings

from .utils.quiet import known_warnings_quieted
from .version import __version__

# the frameworks' import-time deprecation noise (pkg_resources) is not the user's business
with known_warnings_quieted():
    from .checkpoint.io import allow_safe_globals

    allow_safe_globals()
    # registers the models and hooks; needs the allow-list first
    from . import engine, hub, models

    try:
        hub.register_model_index()
    except FileNotFoundError as exc:  # a wheel built without its configs: models still register
        warnings.warn(f"mmvmamba models are not in mmpretrain's model hub: {exc}", stacklevel=2)

__all__ = ["__version__", "engine", "hub", "models"]

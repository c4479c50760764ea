"""mmvmamba: VMamba and Vim visual state-space backbones for mmpretrain, mmdet and mmseg.

Importing this package (``custom_imports=dict(imports=['mmvmamba'])`` in a config) registers the
models in every installed OpenMMLab registry and allow-lists, for ``torch.load(weights_only=True)``,
exactly the classes mmengine's checkpoints hold, so ``--resume`` works on torch >= 2.6 without
turning ``weights_only`` off.
"""

from .checkpoint.io import allow_safe_globals
from .version import __version__

allow_safe_globals()

# registers the models and hooks; needs the allow-list first
from . import engine, models  # noqa: E402

__all__ = ["__version__", "engine", "models"]

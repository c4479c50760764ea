"""The old home of the tools' helpers, split by job (kept until every importer has moved).

:mod:`.task` (detect_task, apply_task_defaults), :mod:`.launcher` (setup_distributed),
:mod:`.cpu_ddp` (CPUDistributedDataParallel), :mod:`.errors` (config_errors, SetupDoneHook).
"""

from __future__ import annotations

from ..hub import resolve_config
from .cpu_ddp import CPUDistributedDataParallel
from .errors import SetupDoneHook, config_errors
from .launcher import setup_distributed
from .task import TASKS, apply_task_defaults, detect_task

__all__ = [
    "CPUDistributedDataParallel",
    "SetupDoneHook",
    "TASKS",
    "apply_task_defaults",
    "check_config_file",
    "config_errors",
    "detect_task",
    "setup_distributed",
]


def check_config_file(path: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` if it is neither a config nor a model name."""
    resolve_config(path)

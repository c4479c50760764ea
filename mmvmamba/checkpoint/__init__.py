"""Checkpoint reading (safe, allow-listed) and the converters from official checkpoints."""

from .io import (
    CheckpointError,
    LoadReport,
    allow_safe_globals,
    load_checkpoint_file,
    load_state_dict_checked,
)

__all__ = [
    "CheckpointError",
    "LoadReport",
    "allow_safe_globals",
    "load_checkpoint_file",
    "load_state_dict_checked",
]

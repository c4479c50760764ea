"""Checkpoint reading (safe, allow-listed), the one unwrapping rule and key diff, the official
checkpoint names of each family, and their conversion while a state dict loads (``hooks``)."""

from .hooks import convert_for_loading
from .io import (
    CheckpointError,
    LoadReport,
    allow_safe_globals,
    diff_state_dict,
    load_checkpoint_file,
    load_state_dict_checked,
    unwrap_checkpoint,
)

__all__ = [
    "CheckpointError",
    "LoadReport",
    "allow_safe_globals",
    "convert_for_loading",
    "diff_state_dict",
    "load_checkpoint_file",
    "load_state_dict_checked",
    "unwrap_checkpoint",
]

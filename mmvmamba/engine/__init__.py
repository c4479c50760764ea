"""Runner-side helpers: hooks, the CPU (gloo) distributed wrapper, tool utilities."""

from .atomic_checkpoint import AtomicCheckpointHook, AtomicLocalBackend, atomic_write_bytes
from .hooks import CheckpointKeysHook
from .launch import (
    CPUDistributedDataParallel,
    SetupDoneHook,
    apply_task_defaults,
    config_errors,
    detect_task,
    setup_distributed,
)
from .layer_decay import VimLayerDecayOptimizerConstructor, vim_layer_decay_keys
from .nan_detect import NaNDetectHook, NonFiniteError

__all__ = [
    "AtomicCheckpointHook",
    "AtomicLocalBackend",
    "NaNDetectHook",
    "NonFiniteError",
    "atomic_write_bytes",
    "CPUDistributedDataParallel",
    "CheckpointKeysHook",
    "SetupDoneHook",
    "apply_task_defaults",
    "config_errors",
    "detect_task",
    "setup_distributed",
    "VimLayerDecayOptimizerConstructor",
    "vim_layer_decay_keys",
]

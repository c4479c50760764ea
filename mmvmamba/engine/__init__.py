"""Runner-side helpers: hooks, the CPU (gloo) distributed wrapper, what the tools share.

One module per job: :mod:`.task` (which framework a config belongs to, its tool defaults),
:mod:`.launcher` (launcher environment, process group), :mod:`.cpu_ddp` (DDP on CPUs),
:mod:`.errors` (which exceptions are config mistakes, the one-line report).
"""

from .atomic_checkpoint import AtomicCheckpointHook, AtomicLocalBackend, atomic_write_bytes
from .cpu_ddp import CPUDistributedDataParallel
from .errors import SetupDoneHook, config_errors, is_config_mistake
from .hooks import CheckpointKeysHook
from .launcher import setup_distributed
from .layer_decay import VimLayerDecayOptimizerConstructor, vim_layer_decay_keys
from .nan_detect import NaNDetectHook, NonFiniteError
from .task import apply_task_defaults, detect_task

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
    "is_config_mistake",
    "setup_distributed",
    "VimLayerDecayOptimizerConstructor",
    "vim_layer_decay_keys",
]

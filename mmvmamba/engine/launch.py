"""What ``tools/train.py`` and ``tools/test.py`` share: task detection, CPU-only distributed
runs (gloo), and one-line errors for configuration mistakes.

mmengine 0.10.7 assumes a GPU once a launcher is set: ``_init_dist_pytorch`` calls
``torch.cuda.set_device(local_rank)`` before ``init_process_group`` (``RuntimeError: Found no
NVIDIA driver`` on a CPU machine), the runner wraps the model in DDP with
``device_ids=[LOCAL_RANK]`` (rejected for CPU modules), and SyncBN refuses CPU tensors. On a
machine without CUDA, :func:`setup_distributed` therefore initialises the process group itself
with the ``gloo`` backend (mmengine then sees it initialised and skips its own init) and selects
:class:`CPUDistributedDataParallel` as the model wrapper. With CUDA nothing changes: mmengine
initialises NCCL (``env_cfg.dist_cfg.backend``) as usual.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS

TASKS = ("classification", "detection", "segmentation")
_SCOPE_TO_TASK = {"mmpretrain": "classification", "mmdet": "detection", "mmseg": "segmentation"}


def detect_task(cfg: Config) -> str:
    """The task of a config: ``'classification'``, ``'detection'`` or ``'segmentation'``.

    Read from ``default_scope`` (set by every framework's ``default_runtime``); configs without
    one are recognised by their data preprocessor / model type.
    """
    scope = cfg.get("default_scope")
    if scope in _SCOPE_TO_TASK:
        return _SCOPE_TO_TASK[scope]
    model = cfg.get("model", {}) or {}
    kinds = " ".join(
        str(x) for x in (model.get("type"), (model.get("data_preprocessor") or {}).get("type"))
    )
    if "Seg" in kinds or "EncoderDecoder" in kinds:
        return "segmentation"
    if "Det" in kinds or "RCNN" in kinds:
        return "detection"
    if "Cls" in kinds or "ImageClassifier" in kinds:
        return "classification"
    raise ValueError(
        f"cannot tell the task of this config (default_scope={scope!r}, model.type="
        f"{model.get('type')!r}); set default_scope to 'mmpretrain', 'mmdet' or 'mmseg'"
    )


def apply_task_defaults(cfg: Config) -> str:
    """Apply the per-framework defaults their own tools add; return the task.

    A config's local ``CheckpointHook`` becomes :class:`AtomicCheckpointHook` (same arguments).

    mmpretrain's ``tools/train.py``/``test.py`` give every dataloader
    ``collate_fn=default_collate`` (mmengine's default is ``pseudo_collate``) and
    ``persistent_workers``; mmdet and mmseg configs carry everything themselves.
    """
    task = detect_task(cfg)
    # checkpoints are written then renamed, so a kill during a save never loses the last good one
    ckpt_hook = cfg.get("default_hooks", {}).get("checkpoint")
    local_plain_hook = (
        ckpt_hook is not None
        and ckpt_hook.get("type") in ("CheckpointHook", "mmengine.CheckpointHook")
        and ckpt_hook.get("backend_args") is None
        and ckpt_hook.get("file_client_args") is None
    )
    if local_plain_hook:
        ckpt_hook["type"] = "AtomicCheckpointHook"
    if task == "classification":
        for field in ("train_dataloader", "val_dataloader", "test_dataloader"):
            loader = cfg.get(field)
            if not loader:
                continue
            loader.setdefault("collate_fn", dict(type="default_collate"))
            loader.setdefault("pin_memory", True)
            loader.setdefault("persistent_workers", loader.get("num_workers", 0) > 0)
    return task


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for CPU processes (gloo): no ``device_ids``.

    torch's SyncBN only runs on accelerators, so SyncBN layers are reverted to BatchNorm:
    each process normalises with its own batch statistics, and after every training step the
    floating-point buffers (BatchNorm running mean/var) are averaged over the processes, so
    every rank holds the same model at all times (as SyncBN's global statistics would give).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device_ids: list | None = None,
        broadcast_buffers: bool = False,
        find_unused_parameters: bool = False,
        **kwargs,
    ) -> None:
        del device_ids  # the runner passes [LOCAL_RANK]; CPU modules must get None
        super().__init__(
            module=revert_sync_batchnorm(module),
            device_ids=None,
            broadcast_buffers=broadcast_buffers,
            find_unused_parameters=find_unused_parameters,
            **kwargs,
        )

    def train_step(self, data, optim_wrapper):  # noqa: D102
        log_vars = super().train_step(data, optim_wrapper)
        world = torch_dist.get_world_size()
        with torch.no_grad():
            for buf in self.module.buffers():
                if buf.is_floating_point():
                    torch_dist.all_reduce(buf)
                    buf.div_(world)
        return log_vars


def _slurm_master_addr() -> str:
    nodes = os.environ["SLURM_NODELIST"]
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[0]


def _rank_env(launcher: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the launcher's environment; sets MASTER_* vars."""
    env = os.environ
    if launcher == "pytorch":
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise ValueError(
                f"--launcher pytorch needs the environment of torchrun, missing {missing}; "
                "start with tools/dist_train.sh CONFIG NPROC (it runs torchrun)"
            )
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if launcher == "slurm":
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        env.setdefault("MASTER_PORT", env.get("PORT", "29500"))
        if "MASTER_ADDR" not in env:
            env["MASTER_ADDR"] = _slurm_master_addr()
        return rank, world, int(env.get("SLURM_LOCALID", 0))
    if launcher == "mpi":
        rank, world = int(env["OMPI_COMM_WORLD_RANK"]), int(env["OMPI_COMM_WORLD_SIZE"])
        env.setdefault("MASTER_PORT", "29500")
        if "MASTER_ADDR" not in env:
            raise ValueError("--launcher mpi needs MASTER_ADDR in the environment")
        return rank, world, int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", 0))
    raise ValueError(f"unknown launcher {launcher!r}; use none, pytorch, slurm or mpi")


def setup_distributed(cfg: Config, launcher: str) -> str | None:
    """Prepare ``cfg`` for ``launcher``; return the torch.distributed backend that will be used.

    ``None`` for ``launcher='none'``. With CUDA the config's ``env_cfg.dist_cfg.backend``
    (NCCL in every OpenMMLab runtime) is kept and mmengine initialises it. Without CUDA the
    backend becomes ``gloo``, the process group is initialised here, and the model wrapper is
    :class:`CPUDistributedDataParallel`.
    """
    cfg.launcher = launcher
    if launcher == "none":
        return None
    env_cfg = cfg.setdefault("env_cfg", {})
    dist_cfg = env_cfg.setdefault("dist_cfg", {})
    if torch.cuda.is_available():
        return dist_cfg.get("backend", "nccl")
    dist_cfg["backend"] = "gloo"
    rank, world, local_rank = _rank_env(launcher)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank))
    if not torch_dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k not in ("backend", "timeout")}
        if "timeout" in dist_cfg:
            import datetime

            kwargs["timeout"] = datetime.timedelta(seconds=dist_cfg["timeout"])
        torch_dist.init_process_group(backend="gloo", rank=rank, world_size=world, **kwargs)
    wrapper = cfg.get("model_wrapper_cfg") or {}
    if wrapper.get("type", "MMDistributedDataParallel") == "MMDistributedDataParallel":
        cfg.model_wrapper_cfg = dict(wrapper, type="CPUDistributedDataParallel")
    if "SyncBN" in str(cfg.get("model", "")):
        warnings.warn(
            "CPU distributed run: SyncBN layers run as per-process BatchNorm "
            "(running statistics are averaged over the processes after every step)",
            stacklevel=2,
        )
    return "gloo"


class SetupDoneHook(Hook):
    """Marks the moment the runner finished building (loops, data, weights, resume state).

    Errors raised before it are configuration errors (shown as one line by
    :func:`config_errors`); errors after it are run-time failures (full traceback).
    """

    priority = "HIGHEST"

    def __init__(self) -> None:
        self.done = False

    def before_train(self, runner) -> None:  # noqa: D102
        self.done = True

    def before_test(self, runner) -> None:  # noqa: D102
        self.done = True

    def before_val(self, runner) -> None:  # noqa: D102
        self.done = True


_CONFIG_ERRORS = (
    FileNotFoundError,
    KeyError,
    TypeError,
    ValueError,
    AssertionError,
    SyntaxError,
    ImportError,
    AttributeError,
    RuntimeError,
)


@contextmanager
def config_errors(debug: bool = False, setup_hook: SetupDoneHook | None = None) -> Iterator[None]:
    """Turn exceptions raised while a run is being set up into a one-line ``error:`` message.

    Covers a missing config or base file, an unknown ``type`` (registry ``KeyError``), an
    unknown argument (``TypeError``), bad values, a missing dataset file and an unloadable
    checkpoint. Once ``setup_hook`` has fired (training/testing started) exceptions propagate
    with their traceback. ``debug=True`` (``--debug`` or ``MMVMAMBA_DEBUG=1``) always re-raises.
    Exits with status 2 after printing.
    """
    try:
        yield
    except _CONFIG_ERRORS as exc:
        if debug or os.environ.get("MMVMAMBA_DEBUG") == "1":
            raise
        if setup_hook is not None and setup_hook.done:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        msg = " ".join(str(msg).split())
        print(
            f"error: {type(exc).__name__}: {msg}\n"
            "(rerun with --debug or MMVMAMBA_DEBUG=1 for the full traceback)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def check_config_file(path: str) -> None:
    """Raise ``FileNotFoundError`` naming ``path`` (and the fix) if it is not a config file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config file {path!r} does not exist (configs live under configs/"
            "{classification,detection,segmentation,demo}/)"
        )

"""The launcher environment (torchrun, slurm, mpi) and the process group of a distributed run.

mmengine 0.10.7 assumes a GPU once a launcher is set: ``_init_dist_pytorch`` calls
``torch.cuda.set_device(local_rank)`` before ``init_process_group`` (``RuntimeError: Found no
NVIDIA driver`` on a CPU machine), the runner wraps the model in DDP with
``device_ids=[LOCAL_RANK]`` (rejected for CPU modules), and SyncBN refuses CPU tensors. On a
machine without CUDA, :func:`setup_distributed` therefore initialises the process group itself
with the ``gloo`` backend (mmengine then sees it initialised and skips its own init) and selects
:class:`~mmvmamba.engine.cpu_ddp.CPUDistributedDataParallel` as the model wrapper. With CUDA
nothing changes: mmengine initialises NCCL (``env_cfg.dist_cfg.backend``) as usual.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import warnings

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from .cpu_ddp import CPUDistributedDataParallel

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def _slurm_master_addr() -> str:
    nodes = os.environ["SLURM_NODELIST"]
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[0]


def rank_env(launcher: str) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's environment.

    Sets ``MASTER_PORT`` (and ``MASTER_ADDR`` under slurm) where the launcher leaves them out.
    Raises ``ValueError`` naming the missing variables or the unknown launcher.
    """
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
    raise ValueError(f"unknown launcher {launcher!r}; use one of {', '.join(LAUNCHERS)}")


def setup_distributed(cfg: Config, launcher: str) -> str | None:
    """Prepare ``cfg`` for ``launcher``; return the torch.distributed backend that will be used.

    ``None`` for ``launcher='none'``. With CUDA the config's ``env_cfg.dist_cfg.backend``
    (NCCL in every OpenMMLab runtime) is kept and mmengine initialises it. Without CUDA the
    backend becomes ``gloo``, the process group is initialised here, and the model wrapper is
    :class:`~mmvmamba.engine.cpu_ddp.CPUDistributedDataParallel`.
    """
    cfg.launcher = launcher
    if launcher == "none":
        return None
    env_cfg = cfg.setdefault("env_cfg", {})
    dist_cfg = env_cfg.setdefault("dist_cfg", {})
    if torch.cuda.is_available():
        return dist_cfg.get("backend", "nccl")
    dist_cfg["backend"] = "gloo"
    rank, world, local_rank = rank_env(launcher)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank))
    if not torch_dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k not in ("backend", "timeout")}
        if "timeout" in dist_cfg:
            kwargs["timeout"] = datetime.timedelta(seconds=dist_cfg["timeout"])
        torch_dist.init_process_group(backend="gloo", rank=rank, world_size=world, **kwargs)
    wrapper = cfg.get("model_wrapper_cfg") or {}
    if wrapper.get("type", "MMDistributedDataParallel") == "MMDistributedDataParallel":
        cfg.model_wrapper_cfg = dict(wrapper, type=CPUDistributedDataParallel.__name__)
    if "SyncBN" in str(cfg.get("model", "")):
        warnings.warn(
            "CPU distributed run: SyncBN layers run as per-process BatchNorm "
            "(running statistics are averaged over the processes after every step)",
            stacklevel=2,
        )
    return "gloo"

"""What a benchmark's numbers depend on besides the models, saved beside them
(``environment.json`` of ``tools/analysis/benchmark.py``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

import vmamba_ops

from ..models.layers.cpu_fusion import onednn_fusion_available

if TYPE_CHECKING:
    from .benchmark import BenchSettings

__all__ = ["environment"]

# environment variables that change what the benchmark measures (allocator, threads, kernels)
_ENV_VARS = (
    "LD_PRELOAD",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "OMP_NUM_THREADS",
    "VMAMBA_OPS_CPU_KERNEL",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def environment(settings: BenchSettings) -> dict:
    """What a benchmark's numbers depend on besides the models: versions, the device, threads,
    precision, whether CPU inference ran fused (:func:`mmvmamba.deployment.fuse_for_cpu`), the
    selective-scan backend setting (:func:`vmamba_ops.get_backend`), the backend switches
    (TF32, cuDNN, oneDNN), and the environment variables that change the allocator or the
    kernels. Printed and saved beside the results so that a number can be reproduced (or a
    difference explained)."""
    import mmvmamba

    env = dict(
        torch=torch.__version__,
        mmvmamba=mmvmamba.__version__,
        device=settings.device,
        device_name=torch.cuda.get_device_name() if settings.device == "cuda" else _cpu_model(),
        cpu_count=os.cpu_count(),
        threads=int(settings.threads) if settings.threads is not None else torch.get_num_threads(),
        batch=settings.batch,
        warmup=settings.warmup,
        repeats=settings.repeats,
        allocator=settings.allocator,
        cpu_fusion=settings.device == "cpu" and settings.fuse and onednn_fusion_available(),
        scan_backend=vmamba_ops.get_backend(settings.device),
        precision="float16 autocast" if settings.device == "cuda" and settings.amp else "float32",
        tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        tf32_cudnn=torch.backends.cudnn.allow_tf32,
        cudnn_enabled=torch.backends.cudnn.enabled,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        mkldnn=torch.backends.mkldnn.is_available(),
    )
    env.update({f"env_{name}": os.environ.get(name, "") for name in _ENV_VARS})
    return env

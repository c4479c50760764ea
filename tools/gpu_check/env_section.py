"""Section ``env``: the device, driver and library versions printed at the top of the report,
and the imports every later section needs (so a missing package fails here, first and clearly).
"""

from __future__ import annotations

import importlib
import platform
import subprocess
from pathlib import Path

from .context import Context
from .report import FAIL, SKIP

# what the later sections import; a failure here names the package to carry (prepare_wheels.sh)
REQUIRED_IMPORTS = (
    "torch",
    "numpy",
    "timm",
    "mmengine",
    "mmcv",
    "mmpretrain",
    "vmamba_ops",
    "mmvmamba",
    "mmvmamba.models.backbones.vmamba",
    "mmvmamba.models.backbones.vim",
)


def _version(module: str) -> str:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "?"))
    except Exception as exc:  # an optional package: its absence is a value, not a failure
        return f"not importable ({type(exc).__name__})"


def _driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "nvidia-smi failed"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "no nvidia-smi"


def _git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def environment(ctx: Context) -> dict:
    """Versions and device facts (the report's header)."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "triton": _version("triton"),
        "timm": _version("timm"),
        "mmengine": _version("mmengine"),
        "mmcv": _version("mmcv"),
        "mmpretrain": _version("mmpretrain"),
        "mamba_ssm": _version("mamba_ssm"),
        "git_commit": _git_commit(ctx.repo),
        "mode": "dry-run (CPU rehearsal)" if ctx.dry_run else "full",
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            device=props.name,
            capability=f"sm_{props.major}{props.minor}",
            sm_count=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            driver=_driver(),
        )
    else:
        info.update(device=f"cpu ({platform.processor() or platform.machine()})", driver="none")
    return info


def run(ctx: Context) -> None:
    for module in REQUIRED_IMPORTS:
        ctx.guarded(f"import {module}", lambda m=module: {"version": _version_or_raise(m)})
    import torch

    header = environment(ctx)
    ctx.add(item="environment", **{"header": header})
    if not ctx.dry_run and not torch.cuda.is_available():
        ctx.add(item="cuda", status=FAIL, error="no CUDA device visible to torch")
    elif ctx.dry_run:
        ctx.add(item="cuda", status=SKIP, error="dry run: CPU rehearsal")


def _version_or_raise(module: str) -> str:
    return str(getattr(importlib.import_module(module), "__version__", "-"))

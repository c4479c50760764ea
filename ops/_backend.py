"""The one place that knows which backends exist and which one runs a given call."""

from __future__ import annotations

import importlib.util

from torch import Tensor

BACKENDS = ("auto", "ref", "cpu", "triton")


# Found once at import without importing triton itself (keeps `import vmamba_ops` light and
# lets torch.compile read a plain constant); a broken install fails when the kernels load.
_HAS_TRITON = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Whether the `triton` package is installed."""
    return _HAS_TRITON


def triton_interpret() -> bool:
    """Whether Triton runs in interpreter mode (``TRITON_INTERPRET=1``), which also works on CPU."""
    import os

    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available_backends(device: str = "cpu") -> list[str]:
    """Backends that can run on tensors of `device` ('cpu' or 'cuda') in this environment."""
    out = ["ref", "cpu"]
    if triton_available() and (device.startswith("cuda") or triton_interpret()):
        out.append("triton")
    return out


def resolve_backend(backend: str, x: Tensor, op: str) -> str:
    """Turn 'auto' into a concrete backend, and check that a forced one can run on `x`.

    Raises:
        ValueError: unknown backend name.
        RuntimeError: the backend cannot run here (says why and what to do).
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op}: unknown backend {backend!r}; expected one of {BACKENDS}")
    on_cuda = x.device.type == "cuda"
    if backend == "auto":
        return "triton" if on_cuda and triton_available() else "cpu"
    if backend == "triton":
        if not triton_available():
            raise RuntimeError(
                f"{op}: backend='triton' needs the `triton` package, which cannot be imported; "
                "install it (`pip install triton`, it ships with CUDA builds of torch) or use "
                "backend='auto'/'cpu'."
            )
        if not on_cuda and not triton_interpret():
            raise RuntimeError(
                f"{op}: backend='triton' needs CUDA tensors (got device {x.device}); move the "
                "inputs to a GPU, set TRITON_INTERPRET=1 (slow, for testing), or use "
                "backend='cpu'."
            )
    return backend

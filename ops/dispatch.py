"""Which code runs a vmamba_ops call: the backends, the process setting and the one `auto` table.

Backends, named for what runs:

- ``ref``: the sequential reference (a Python loop over L; the oracle). Any device.
- ``torch``: plain PyTorch: the chunked scan (:mod:`.selective_scan.torch_scan`), flips and
  transposes for cross-scan (:mod:`.cross_scan.torch_views`). Any device.
- ``c``: the compiled C kernels (``csrc/``, built by :mod:`._c_library`). CPU tensors.
- ``triton``: the Triton kernels. CUDA tensors (any device under ``TRITON_INTERPRET=1``).
- ``auto``: the table of :func:`resolve_backend`.
- ``cpu``: the old name, still accepted: ``c`` where the C kernels build, else ``torch``.
  CPU tensors.

A call's ``backend='auto'`` first becomes the process setting (:func:`set_backend`,
:func:`use_backend`), which is ``'auto'`` unless changed; the environment variable
``VMAMBA_OPS_CPU_KERNEL`` (``auto`` | ``c`` | ``torch``; ``native`` = ``c``) is read once, at
import, as the default setting for CPU tensors. ``TRITON_INTERPRET`` is read once, the first
time a Triton backend is checked (Triton itself reads it when it is imported). Nothing here
reads the environment per call.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Iterator

import torch

from . import _c_library

BACKENDS = ("auto", "ref", "torch", "c", "triton", "cpu")
LOW_RANK_MAX = 8  # largest delta_proj rank the C kernel's fused low-rank forward takes

# Found once at import without importing triton itself (keeps `import vmamba_ops` light and
# lets torch.compile read a plain constant); a broken install fails when the kernels load.
_HAS_TRITON = importlib.util.find_spec("triton") is not None
_interpret: bool | None = None  # TRITON_INTERPRET, read on first use
_settings: dict[str, str] = {}  # device type, or '*' for every device -> backend for 'auto'
_warned: set[str] = set()


def _cpu_default(value: str | None) -> str:
    """The CPU setting that ``VMAMBA_OPS_CPU_KERNEL=value`` asks for."""
    choice = (value or "auto").strip().lower() or "auto"
    named = {"auto": "auto", "c": "c", "native": "c", "torch": "torch"}
    if choice not in named:
        raise ValueError(
            f"VMAMBA_OPS_CPU_KERNEL={value!r} is not one of 'auto' (the C kernels when a C "
            "compiler works, else the chunked PyTorch scan), 'c' (the C kernels or an error; "
            "'native' is the old name) or 'torch' (the chunked PyTorch scan)"
        )
    return named[choice]


def triton_available() -> bool:
    """Whether the `triton` package is installed."""
    return _HAS_TRITON


@torch.compiler.assume_constant_result
def triton_interpret() -> bool:
    """Whether Triton runs in interpreter mode (``TRITON_INTERPRET=1``, read on the first call),
    which also runs the kernels on CPU tensors."""
    global _interpret
    if _interpret is None:
        _interpret = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    return _interpret


@torch.compiler.assume_constant_result
def _c_available() -> bool:
    return _c_library.available()


@torch.compiler.assume_constant_result
def _c_or_torch() -> str:
    """'c' where the C kernels build, else 'torch' with one warning saying why."""
    if _c_library.available():
        return "c"
    _warn_once(
        "c",
        f"vmamba_ops: running the slower PyTorch code on the CPU, because "
        f"{_c_library.why_not()}\nvmamba_ops.set_backend('torch', device='cpu') (or "
        "VMAMBA_OPS_CPU_KERNEL=torch) silences this warning.",
    )
    return "torch"


@torch.compiler.assume_constant_result
def _torch_without_triton() -> str:
    _warn_once(
        "triton",
        "vmamba_ops: CUDA tensors and no `triton` package: the selective scan runs as the "
        "chunked PyTorch scan (slow, with host synchronisations). Install Triton to run the "
        "GPU kernels: `pip install triton` (it ships with the CUDA builds of torch on Linux).",
    )
    return "torch"


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=6)  # the caller of the op


def _device_type(device: torch.device | str) -> str:
    if isinstance(device, torch.device):
        return device.type
    return device if device in ("cpu", "cuda", "meta") else torch.device(device).type


def _check_name(backend: str, where: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"{where}: unknown backend {backend!r}; expected one of {BACKENDS}")


def set_backend(backend: str, device: str | None = None) -> None:
    """Set what calls with ``backend='auto'`` (the default everywhere) run.

    Args:
        backend: one of :data:`BACKENDS`; ``'auto'`` restores the table.
        device: a device type ('cpu', 'cuda', ...) to set it for tensors there only; None
            sets it for every device (and drops the per-device settings).
    """
    _check_name(backend, "set_backend")
    if device is None:
        _settings.clear()
        key = "*"
    else:
        key = _device_type(device)
    if backend == "auto":
        _settings.pop(key, None)
    else:
        _settings[key] = backend


def get_backend(device: str | None = None) -> str:
    """The current setting for tensors on ``device`` (None: the one for every device)."""
    if device is None:
        return _settings.get("*", "auto")
    return _settings.get(_device_type(device), _settings.get("*", "auto"))


@contextlib.contextmanager
def use_backend(backend: str, device: str | None = None) -> Iterator[None]:
    """``with vmamba_ops.use_backend('torch'):`` :func:`set_backend` for the block, then
    restore the previous settings. Process-wide (not per thread)."""
    saved = dict(_settings)
    set_backend(backend, device)
    try:
        yield
    finally:
        _settings.clear()
        _settings.update(saved)


def available_backends(device: str = "cpu") -> list[str]:
    """Backends that can run on tensors of ``device`` here ('auto' and 'cpu' aside)."""
    dev = _device_type(device)
    out = ["ref", "torch"]
    if dev == "cpu" and _c_available():
        out.append("c")
    if _HAS_TRITON and (dev == "cuda" or triton_interpret()):
        out.append("triton")
    return out


def _c_applies(op: str, dtype: torch.dtype, channel_first: bool) -> bool:
    """The C cross-scan kernels take channel-first float32 / float64 maps; the scan any dtype."""
    return op == "selective_scan" or (channel_first and dtype in (torch.float32, torch.float64))


def _auto(op: str, dev: str, dtype: torch.dtype, channel_first: bool) -> str:
    if dev == "cpu":
        return _c_or_torch() if _c_applies(op, dtype, channel_first) else "torch"
    if dev == "cuda":
        if dtype == torch.float64:  # the Triton kernels hold float32 state
            return "ref" if op == "selective_scan" else "torch"
        if _HAS_TRITON:
            return "triton"
        return _torch_without_triton() if op == "selective_scan" else "torch"
    return "torch"


def _forced(
    op: str, backend: str, dev: str, dtype: torch.dtype, channel_first: bool, setting: bool
) -> str:
    if backend in ("ref", "torch"):
        return backend
    if backend in ("c", "cpu"):
        if dev != "cpu":
            raise ValueError(
                f"{op}: backend={backend!r} runs the C kernels on CPU tensors, but the inputs "
                f"are on {dev!r}; for {dev} tensors use one of {available_backends(dev)} or "
                "'auto', or move the inputs to the CPU"
            )
        if not _c_applies(op, dtype, channel_first):
            if backend == "cpu" or setting:  # (a setting covers the maps with no C kernel)
                return "torch"
            layout = "channel-first" if channel_first else "channel-last"
            raise ValueError(
                f"{op}: backend='c' takes channel-first float32/float64 maps, got a {layout} "
                f"{dtype} map; use backend='torch' or 'auto'"
            )
        if backend == "cpu":
            return _c_or_torch()
        if not _c_available():
            raise RuntimeError(
                f"{op}: backend='c' but the C kernels cannot be used: {_c_library.why_not()}"
            )
        return "c"
    if not _HAS_TRITON:
        raise RuntimeError(
            f"{op}: backend='triton' needs the `triton` package, which is not installed; "
            "install it (`pip install triton`, it ships with CUDA builds of torch on Linux) or "
            "use backend='auto'/'torch'."
        )
    if dev != "cuda" and not triton_interpret():
        raise RuntimeError(
            f"{op}: backend='triton' needs CUDA tensors (got device {dev}); move the inputs to a "
            "GPU, set TRITON_INTERPRET=1 before triton is imported (slow, for testing), or use "
            "backend='auto'/'torch'."
        )
    return "triton"


def resolve_backend(
    op: str,
    backend: str,
    device: torch.device | str,
    dtype: torch.dtype,
    *,
    needs_grad: bool = False,
    low_rank: int | None = None,
    graph: bool = False,
    channel_first: bool = True,
) -> str:
    """What runs a call: the one place that turns ``backend`` into the code to run.

    ``'auto'`` first becomes the process setting for the device (:func:`set_backend`); if that
    is ``'auto'`` too, this table decides (first matching row):

    ======  =============  ======  =========  ==============  ===============================
    device  dtype          grad    low-rank   selective_scan  cross_scan / cross_merge
    ======  =============  ======  =========  ==============  ===============================
    cpu     fp32 / fp64    no      R <= 8     c_lowrank (a)
    cpu     any            any     any        c (b)           c (channel-first fp32 / fp64
                                                              maps), else torch
    cuda    fp64           any     any        ref             torch
    cuda    fp32/bf16/fp16 any     any        triton (c)      triton, else torch
    other   any            any     any        torch           torch
    ======  =============  ======  =========  ==============  ===============================

    (a) The C kernel's fused low-rank forward: it forms delta from its factors itself, as its
    own custom op (``vmamba_ops::selective_scan_lowrank``, one node to dispatch modes and
    FLOP counters), where the kernel runs and no graph is being captured. Why these limits:
    the fused forward has no backward (so no gradient may be needed); forming delta costs the
    kernel ``dim * L * R`` multiply-adds, which beat writing and reading the (batch, dim, L)
    delta only at small ranks (larger ones form delta with one bmm first); and a captured
    graph (``torch.jit.trace``, ``torch.compile``, ``torch.export``) keeps the bmm and the
    scan op, so FLOP counters and the export decompositions see the projection. The decision
    reads only public state (grad mode, ``requires_grad``, ``torch.jit.is_tracing``,
    ``torch.compiler.is_compiling``); anything else that intercepts ops sees the one op node.
    The same row applies when ``'c'`` / ``'cpu'`` are named.
    (b) ``torch``, with one warning saying why, where the C kernels cannot be built.
    (c) Without the triton package: ``torch`` with one warning saying how to install it.

    A backend named explicitly (or by the setting) is checked: ``'ref'`` / ``'torch'`` run
    anywhere; ``'c'`` and ``'cpu'`` need CPU tensors (ValueError naming the device and what
    applies there), ``'c'`` needs the C kernels to build (RuntimeError saying why) and, named
    in the call, a map they take (a setting leaves the other maps to ``'torch'``);
    ``'triton'`` needs the package (RuntimeError saying how to install it) and CUDA tensors or
    ``TRITON_INTERPRET=1``.

    Args:
        op: 'selective_scan', 'cross_scan' or 'cross_merge' (column and error messages).
        backend: the call's backend, one of :data:`BACKENDS`.
        device, dtype: of the call's main input.
        needs_grad: a gradient will flow through the call.
        low_rank: the rank R of ``delta_proj``, None without a low-rank delta.
        graph: a graph is being captured (tracing, compiling, exporting).
        channel_first: layout of a cross-scan map.

    Returns:
        'ref', 'torch', 'c', 'c_lowrank' or 'triton'.
    """
    _check_name(backend, op)
    dev = _device_type(device)
    setting = backend == "auto"
    if setting:
        backend = get_backend(dev)
    if backend == "auto":
        chosen = _auto(op, dev, dtype, channel_first)
    else:
        chosen = _forced(op, backend, dev, dtype, channel_first, setting)
    fuse = (
        chosen == "c"
        and not graph  # (first: while tracing, low_rank may be a traced value)
        and not needs_grad
        and low_rank is not None
        and low_rank <= LOW_RANK_MAX
        and dtype in (torch.float32, torch.float64)
    )
    return "c_lowrank" if fuse else chosen


_default = _cpu_default(os.environ.get("VMAMBA_OPS_CPU_KERNEL"))
if _default != "auto":
    set_backend(_default, device="cpu")

__all__ = [
    "BACKENDS",
    "LOW_RANK_MAX",
    "available_backends",
    "get_backend",
    "resolve_backend",
    "set_backend",
    "triton_available",
    "triton_interpret",
    "use_backend",
]

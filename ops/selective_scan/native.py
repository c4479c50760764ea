"""The compiled CPU selective scan: a small C kernel (``csrc/scan_cpu.c``) built on first use.

Why: the chunked PyTorch scan (:mod:`.cpu`) makes a dozen passes over memory per call (cumsum,
exp, products, carries); the C kernel makes one, with the recurrence in registers and the math
vectorised by the compiler. It is plain C (no torch headers, no CUDA): the system C compiler
builds it in about a second into ``~/.cache/mmvmamba/kernels/<key>/`` (``$VMAMBA_OPS_CACHE``
overrides the folder); the key covers the sources, the compiler and the CPU, so a home folder
shared by different machines gets one build per CPU type. It is called through ``ctypes`` on
contiguous float32 / float64 buffers and runs on ``torch.get_num_threads()`` threads.

``$VMAMBA_OPS_CPU_KERNEL`` chooses the implementation behind ``backend='cpu'`` on CPU tensors:
``auto`` (default: this kernel, or the PyTorch path with one warning when no compiler works),
``native`` (this kernel or an error saying why not) or ``torch`` (always the PyTorch path).

The kernel computes ``dt = softplus(delta + delta_bias)`` itself; the ``silu(z)`` gate is
applied with torch around it (see the C file for its exact contract).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

_SRC_DIR = Path(__file__).resolve().parent / "csrc"
_SOURCES = ("scan_cpu.c", "scan_cpu_impl.h")
_FLAGS = (
    "-O3",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp-simd",
    "-fPIC",
    "-shared",
    "-pthread",
    "-std=gnu11",
)
_ABI_VERSION = 1
_MODES = ("auto", "native", "torch")
_WIDTH = 8  # channels per block in the C kernel (WIDTH in scan_cpu.c)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None  # why the kernel cannot be used, once known
_warned = False


def mode() -> str:
    """The value of ``$VMAMBA_OPS_CPU_KERNEL`` (checked)."""
    value = os.environ.get("VMAMBA_OPS_CPU_KERNEL", "auto").strip().lower() or "auto"
    if value not in _MODES:
        raise ValueError(
            f"VMAMBA_OPS_CPU_KERNEL={value!r} is not one of {_MODES}: 'auto' (compiled kernel "
            "when a C compiler works), 'native' (compiled kernel or an error), 'torch' (the "
            "chunked PyTorch scan)"
        )
    return value


def _compiler() -> str | None:
    for cand in (os.environ.get("CC"), (sysconfig.get_config_var("CC") or "").split(" ")[0], "cc"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _cpu_signature() -> str:
    """What the build depends on besides the sources: machine, CPU features (-march=native)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line
                    break
    except OSError:
        pass
    return f"{platform.machine()}|{platform.processor()}|{flags}"


def cache_dir() -> Path:
    """Where built kernels live: ``$VMAMBA_OPS_CACHE`` or ``~/.cache/mmvmamba/kernels``."""
    if os.environ.get("VMAMBA_OPS_CACHE"):
        return Path(os.environ["VMAMBA_OPS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmvmamba" / "kernels"


def _build(cc: str) -> Path:
    """Compile the kernel (cached); returns the shared library's path or raises RuntimeError."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_SRC_DIR / name).read_bytes())
    digest.update("|".join((cc, version, " ".join(_FLAGS), _cpu_signature())).encode())
    out_dir = cache_dir() / digest.hexdigest()[:16]
    lib = out_dir / "libvmamba_scan.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for arch in (["-march=native"], []):  # -march=native may be refused (some clang / arm)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = [cc, *_FLAGS, *arch, str(_SRC_DIR / "scan_cpu.c"), "-o", tmp, "-lm"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode == 0:
            os.replace(tmp, lib)  # atomic: a concurrent process sees no half-written library
            return lib
        os.unlink(tmp)
        errors.append(f"$ {' '.join(cmd)}\n{res.stderr.strip()[-2000:]}")
    raise RuntimeError("compiling the CPU selective-scan kernel failed:\n" + "\n".join(errors))


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for sfx in ("f32", "f64"):
        fwd = getattr(lib, f"vmamba_scan_fwd_{sfx}")
        fwd.argtypes = [i64] * 5 + [cint] + [ptr] * 9 + [cint]
        fwd.restype = cint
        bwd = getattr(lib, f"vmamba_scan_bwd_{sfx}")
        bwd.argtypes = [i64] * 6 + [cint] + [ptr] * 17 + [cint]
        bwd.restype = cint


def load() -> ctypes.CDLL:
    """The compiled kernel library (built on first call). Raises RuntimeError saying why not."""
    global _lib, _error
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        if _error is not None:
            raise RuntimeError(_error)
        try:
            cc = _compiler()
            if cc is None:
                raise RuntimeError(
                    "no C compiler found (looked at $CC, Python's CC and `cc`); install one "
                    "(Debian/Ubuntu: `apt install gcc`) to build the CPU selective-scan kernel"
                )
            lib = ctypes.CDLL(str(_build(cc)))
            _declare(lib)
            if lib.vmamba_scan_abi_version() != _ABI_VERSION:
                raise RuntimeError("the cached CPU kernel has a different ABI; delete the cache")
        except (OSError, RuntimeError) as exc:
            _error = f"{exc}\n(cache folder: {cache_dir()})"
            raise RuntimeError(_error) from exc
        _lib = lib
        return lib


def use_native(u: Tensor) -> bool:
    """Whether ``backend='cpu'`` runs this kernel for ``u`` (else the PyTorch chunked scan)."""
    global _warned
    if u.device.type != "cpu":
        return False
    m = mode()
    if m == "torch":
        return False
    try:
        load()
    except RuntimeError as exc:
        if m == "native":
            raise RuntimeError(
                f"VMAMBA_OPS_CPU_KERNEL=native but the kernel cannot be used: {exc}"
            ) from exc
        if not _warned:
            _warned = True
            warnings.warn(
                f"vmamba_ops: using the slower PyTorch selective scan on the CPU, because {exc}\n"
                "Set VMAMBA_OPS_CPU_KERNEL=torch to silence this warning.",
                RuntimeWarning,
                stacklevel=3,
            )
        return False
    return True


# --- the two calls ------------------------------------------------------------------------
def _ptr(t: Tensor | None) -> int | None:
    return t.data_ptr() if t is not None else None


def _common(u, delta, delta_bias, A, B, C, D):
    """Compute dtype, sizes, kernel suffix and the inputs as contiguous buffers of that dtype."""
    ct = torch.float64 if u.dtype == torch.float64 else torch.float32
    b, dim, length = u.shape
    g, n = B.shape[1], A.shape[1]
    sfx = "f64" if ct == torch.float64 else "f32"
    ins = (u, delta, delta_bias, A, B, C, D)
    cast = [t.to(ct).contiguous() if t is not None else None for t in ins]
    return ct, (b, g, dim // g, n, length), sfx, cast


@torch.no_grad()
def selective_scan_fwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[Tensor, Tensor]:
    """Forward; same contract as :func:`vmamba_ops.selective_scan.cpu.selective_scan_fwd`.

    Shapes: u, delta, z (batch, dim, L); A (dim, N); B, C (batch, G, N, L); D, delta_bias (dim,).
    """
    lib = load()
    ct, (b, g, dg, n, length), sfx, ins = _common(u, delta, delta_bias, A, B, C, D)
    y = torch.empty(b, g * dg, length, dtype=ct)
    last = torch.zeros(b, g * dg, n, dtype=ct)
    if y.numel() > 0:
        rc = getattr(lib, f"vmamba_scan_fwd_{sfx}")(
            b, g, dg, n, length, int(delta_softplus), *map(_ptr, (*ins, y, last)),
            torch.get_num_threads(),
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("selective_scan (CPU kernel): out of memory for scratch buffers")
    if z is not None:
        y.mul_(F.silu(z.to(ct)))
    return y.to(u.dtype), last


@torch.no_grad()
def selective_scan_bwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    dy: Tensor,
    dlast: Tensor | None = None,
) -> tuple[Tensor | None, ...]:
    """Backward; same contract as :func:`vmamba_ops.selective_scan.cpu.selective_scan_bwd`.

    Returns (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), None for absent inputs.
    """
    lib = load()
    ct, (b, g, dg, n, length), sfx, ins = _common(u, delta, delta_bias, A, B, C, D)
    dim = g * dg
    dyc = dy.to(ct)
    if z is not None:
        zc = z.to(ct)
        sig_z = torch.sigmoid(zc)
        dyc = dyc * zc * sig_z  # the gradient reaching y before the gate
    dyc = dyc.contiguous()
    dlast_c = dlast.to(ct).contiguous() if dlast is not None else None
    # partial dB / dC sums: S slices of channel blocks per (batch, group), summed below
    n_blocks = -(-dg // _WIDTH)
    slices = max(1, min(n_blocks, -(-2 * torch.get_num_threads() // max(b * g, 1))))
    du = torch.empty(b, dim, length, dtype=ct)
    ddelta = torch.empty(b, dim, length, dtype=ct)
    dA = torch.zeros(b, dim, n, dtype=ct)
    dD = torch.zeros(b, dim, dtype=ct)
    dbias = torch.zeros(b, dim, dtype=ct)
    dBp = torch.zeros(b * g, slices, n, length, dtype=ct)
    dCp = torch.zeros(b * g, slices, n, length, dtype=ct)
    y0 = torch.empty(b, dim, length, dtype=ct) if z is not None else None
    if du.numel() > 0:
        rc = getattr(lib, f"vmamba_scan_bwd_{sfx}")(
            b, g, dg, n, length, slices, int(delta_softplus),
            *map(_ptr, (*ins, dyc, dlast_c, du, ddelta, dA, dBp, dCp, dD, dbias, y0)),
            torch.get_num_threads(),
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("selective_scan (CPU kernel): out of memory for scratch buffers")
    dz = None
    if z is not None:  # d silu(z) / dz = s (1 + z (1 - s))
        dz = dy.to(ct) * y0 * sig_z * (1 + zc * (1 - sig_z))
    return (
        du.to(u.dtype),
        ddelta.to(delta.dtype),
        dA.sum(0).to(A.dtype),
        dBp.sum(1).view(B.shape).to(B.dtype),
        dCp.sum(1).view(C.shape).to(C.dtype),
        dD.sum(0).to(D.dtype) if D is not None else None,
        dz.to(z.dtype) if z is not None else None,
        dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
    )


__all__ = ["cache_dir", "load", "mode", "selective_scan_bwd", "selective_scan_fwd", "use_native"]

if __name__ == "__main__":  # `python -m vmamba_ops.selective_scan.native`: build now, say where
    print(load()._name)
    sys.exit(0)

"""Build, cache and load the compiled CPU kernels (``ops/csrc/*.c``): one shared library.

Why: PyTorch ops make one pass over memory each; the scan (:mod:`.selective_scan.c_kernel`) and
cross-scan kernels (:mod:`.cross_scan.c_kernel`) make one pass in all, with the math vectorised
by the compiler. They are plain C (no torch headers, no CUDA): the system C compiler builds them
on first use into ``~/.cache/mmvmamba/kernels/<key>/`` (``$VMAMBA_OPS_CACHE`` overrides the
folder); the key covers the sources, the compiler and the CPU, so a home folder shared by
different machines gets one build per CPU type. They are called through ``ctypes`` on
contiguous buffers and run on ``torch.get_num_threads()`` threads (ctypes releases the GIL
during the call).

Whether a call runs them is decided by :func:`vmamba_ops.dispatch.resolve_backend`;
:func:`available` says whether they can be built here (tried once per process).
``python -m vmamba_ops._c_library`` builds them ahead of time and prints where.
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
from pathlib import Path

from torch import Tensor

_SRC_DIR = Path(__file__).resolve().parent / "csrc"
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
# the calling convention of the library; passed to the compiler, which bakes it into
# vmamba_ops_abi_version() (csrc/scan_cpu.c), so this is its one definition
_ABI_VERSION = 2
_FLAGS += (f"-DVMAMBA_OPS_ABI_VERSION={_ABI_VERSION}",)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None  # why the kernel cannot be used, once known


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
    sources = sorted(_SRC_DIR.glob("*.c"))
    digest = hashlib.sha256()
    for path in sorted(_SRC_DIR.glob("*.[ch]")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update("|".join((cc, version, " ".join(_FLAGS), _cpu_signature())).encode())
    out_dir = cache_dir() / digest.hexdigest()[:16]
    lib = out_dir / "libvmamba_ops.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    # -march=native may be refused (some clang / arm); -fopenmp needs an OpenMP runtime (the
    # kernels then share torch's libgomp threads, see csrc/pool.h), else pthreads are used
    for extra in (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], []):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = [cc, *_FLAGS, *extra, *map(str, sources), "-o", tmp, "-lm"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode == 0:
            os.replace(tmp, lib)  # atomic: a concurrent process sees no half-written library
            return lib
        os.unlink(tmp)
        errors.append(f"$ {' '.join(cmd)}\n{res.stderr.strip()[-2000:]}")
    raise RuntimeError("compiling the CPU kernels of vmamba_ops failed:\n" + "\n".join(errors))


I64, PTR, INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int


def function(name: str, argtypes: list, restype=ctypes.c_int):
    """A kernel of the library with its C signature declared (builds the library if needed)."""
    fn = getattr(load(), name)
    if fn.argtypes is None:
        fn.argtypes, fn.restype = argtypes, restype
    return fn


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
                    "(Debian/Ubuntu: `apt install gcc`) to build the CPU kernels of vmamba_ops"
                )
            lib = ctypes.CDLL(str(_build(cc)))
            if lib.vmamba_ops_abi_version() != _ABI_VERSION:
                raise RuntimeError("the cached CPU kernel has a different ABI; delete the cache")
        except (OSError, RuntimeError) as exc:
            _error = f"{exc}\n(cache folder: {cache_dir()})"
            raise RuntimeError(_error) from exc
        _lib = lib
        return lib


def available() -> bool:
    """Whether the kernels can be used here: builds (or finds) the library on the first call
    and remembers the answer; :func:`why_not` says why not."""
    try:
        load()
    except RuntimeError:
        return False
    return True


def why_not() -> str:
    """Why :func:`available` is False (empty while it is True or not yet asked)."""
    return _error or ""


def ptr(t: Tensor | None) -> int | None:
    """The data pointer to pass to a kernel (None for an absent optional input)."""
    return t.data_ptr() if t is not None else None


__all__ = ["available", "cache_dir", "function", "load", "ptr", "why_not"]

if __name__ == "__main__":  # `python -m vmamba_ops._c_library`: build now, say where
    print(load()._name)
    sys.exit(0)

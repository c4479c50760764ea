"""Triton launches as data, and their ahead-of-time compilation for a GPU without one.

A :class:`Launch` is everything one kernel launch needs (kernel, grid, runtime arguments,
compile-time constants, warps). The launch helpers of ``vmamba_ops`` build one and run it; the
compile report (``tools/analysis/triton_report.py``) and its CI test build the same objects from
shape-only ("meta") tensors and compile them for NVIDIA sm_80 / sm_90 or AMD gfx942 with
:func:`compile_launch`, so what is reported is what runs.

Compilation mimics a real launch's specialisation (triton's own ``specialize_impl``):
16-byte-aligned pointers and integers divisible by 16 get ``tt.divisibility = 16``, integers
equal to 1 become constants, except for the kernel's ``do_not_specialize`` arguments. The
register and spill counts come from the ``ptxas -v`` log (NVIDIA) or the AMDGCN metadata (AMD).
No driver or GPU is needed. Triton is imported lazily: this module imports without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import re
from dataclasses import dataclass
from typing import Any

# name -> (backend, arch, warp size)
TARGETS: dict[str, tuple[str, Any, int]] = {
    "sm_80": ("cuda", 80, 32),
    "sm_90": ("cuda", 90, 32),
    "gfx942": ("hip", "gfx942", 64),
}
# per-block shared memory a launch may opt into (bytes)
SHARED_LIMIT = {"sm_80": 166_912, "sm_90": 232_448, "gfx942": 65_536}
# multiprocessors of the reference card of each target (A100, H100 SXM, MI300X)
SM_COUNT = {"sm_80": 108, "sm_90": 132, "gfx942": 304}


@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel[grid](**args, **constexprs, num_warps=num_warps)``.

    ``args`` holds every runtime argument by name (tensors or ints); ``constexprs`` the
    compile-time ones. Tensors may live on the ``meta`` device when the launch is only compiled.
    """

    kernel: Any
    grid: tuple[int, ...]
    args: dict[str, Any]
    constexprs: dict[str, Any]
    num_warps: int = 4
    name: str = ""

    @property
    def programs(self) -> int:
        """Number of programs (thread blocks) launched."""
        return math.prod(self.grid)

    def run(self) -> None:
        """Launch on the tensors' device (or in the interpreter)."""
        self.kernel[self.grid](**self.args, **self.constexprs, num_warps=self.num_warps)


@dataclass(frozen=True)
class KernelStats:
    """Resources of one compiled kernel on one target.

    NVIDIA: registers per thread, spill / stack bytes per thread. AMD: ``registers`` are
    VGPRs, ``spill_stores`` / ``spill_loads`` the spilled VGPRs + SGPRs (a count, not bytes).
    ``shared`` is the shared (LDS) memory of one program in bytes.
    """

    target: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    shared: int
    num_warps: int

    def resident_programs(self) -> int:
        """Programs an SM (CU) can hold at once, limited by registers and shared memory."""
        if TARGETS[self.target][0] == "cuda":
            regs = max(self.registers, 1)
            regs = -(-regs // 8) * 8  # allocation granularity: 8 registers per thread
            by_regs = 65_536 // (regs * 32 * self.num_warps)
            by_warps = 64 // self.num_warps
        else:  # CDNA3: 512 VGPRs per lane per SIMD, 4 SIMDs, at most 8 waves per SIMD
            waves_per_simd = min(8, 512 // max(self.registers, 1))
            by_regs = 4 * waves_per_simd // self.num_warps
            by_warps = by_regs
        by_smem = SHARED_LIMIT[self.target] // self.shared if self.shared else by_regs
        return max(0, min(by_regs, by_warps, by_smem, 32))


def _specialization(launch: Launch) -> tuple[dict, dict, dict]:
    """(signature, constexprs, attrs) as ``JITFunction.run`` would derive them."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    fn = launch.kernel
    signature, constexprs, attrs = {}, {}, {}
    for p in fn.params:
        name = p.name
        if name in launch.constexprs:
            signature[name] = "constexpr"
            constexprs[name] = launch.constexprs[name]
            continue
        if name not in launch.args:
            raise KeyError(f"{launch.name or fn.__name__}: no value for argument {name!r}")
        ty, spec = native_specialize_impl(
            BaseBackend,
            launch.args[name],
            p.is_const,
            not p.do_not_specialize,
            not p.do_not_specialize_on_alignment,
        )
        signature[name] = ty
        if ty == "constexpr":
            constexprs[name] = spec
        elif isinstance(spec, str) and "D" in spec:
            attrs[(p.num,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


_PTXAS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
}


def _parse_ptxas(log: str) -> dict[str, int]:
    out = {}
    for key, pat in _PTXAS.items():
        found = [int(v) for v in pat.findall(log)]
        if not found and key == "registers":
            raise RuntimeError(f"no register count in the ptxas log:\n{log}")
        out[key] = max(found, default=0)
    return out


def _amd_value(asm: str, key: str) -> int:
    found = re.findall(rf"^\s*\.{key}:\s*(\d+)", asm, flags=re.M)
    return max((int(v) for v in found), default=0)


def compile_launch(launch: Launch, target: str) -> KernelStats:
    """Compile ``launch`` for ``target`` (a key of :data:`TARGETS`) and read its resources.

    Raises:
        ValueError: unknown target.
        triton errors (``CompilationError``, ``PTXASError``) as a GPU launch would.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {sorted(TARGETS)}")
    import triton
    from triton.backends.compiler import GPUTarget

    backend, arch, warp = TARGETS[target]
    signature, constexprs, attrs = _specialization(launch)
    src = triton.compiler.ASTSource(launch.kernel, signature, constexprs, attrs)
    options = {"num_warps": launch.num_warps}
    buf = io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(triton.knobs.compilation.scope())
        stack.enter_context(triton.knobs.nvidia.scope())
        triton.knobs.compilation.always_compile = True
        triton.knobs.nvidia.dump_ptxas_log = True
        stack.enter_context(contextlib.redirect_stdout(buf))
        compiled = triton.compile(src, target=GPUTarget(backend, arch, warp), options=options)
    shared = int(compiled.metadata.shared)
    if backend == "cuda":
        r = _parse_ptxas(buf.getvalue())
        return KernelStats(target, r["registers"], r["spill_stores"], r["spill_loads"],
                           r["stack"], shared, launch.num_warps)  # fmt: skip
    asm = compiled.asm["amdgcn"]
    spills = _amd_value(asm, "vgpr_spill_count") + _amd_value(asm, "sgpr_spill_count")
    return KernelStats(
        target, _amd_value(asm, "vgpr_count"), spills, spills, 0, shared, launch.num_warps
    )


def compile_key(launch: Launch, target: str) -> tuple:
    """Launches with equal keys compile to the same binary (dedupe before compiling)."""
    signature, constexprs, attrs = _specialization(launch)
    return (
        launch.kernel.fn.__qualname__,
        target,
        launch.num_warps,
        tuple(sorted(signature.items())),
        tuple(sorted((k, str(v)) for k, v in constexprs.items())),
        tuple(sorted(attrs)),
    )


def try_compile(launch: Launch, target: str) -> KernelStats | str:
    """:func:`compile_launch`, with a failure returned as a one-line "Type: message" string."""
    try:
        return compile_launch(launch, target)
    except Exception as exc:  # reported per launch by the callers, never hidden
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def toolchain_missing(target: str) -> str | None:
    """Why ``target`` cannot be compiled here (None when it can)."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if TARGETS[target][0] == "cuda":
        from triton.backends.nvidia import compiler as nv

        try:
            tool = nv.get_ptxas(TARGETS[target][1])
        except Exception as exc:  # the knob raises when no ptxas runs
            return f"triton's bundled ptxas cannot run ({type(exc).__name__}: {exc})"
        return None if tool is not None else "triton's bundled ptxas is missing"
    if importlib.util.find_spec("triton.backends.amd") is None:
        return "triton has no HIP backend"
    return None

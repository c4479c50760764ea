"""The compiled CPU selective-scan kernel: build, build failures, float32 edge values."""

from __future__ import annotations

import platform

import pytest
import torch
from ops_test_utils import args_of, assert_close_rel, grads, make_inputs

import vmamba_ops
from vmamba_ops import _c_library as clib
from vmamba_ops import dispatch


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """A loader with no cached library or error, building into an empty cache folder."""
    monkeypatch.setattr(clib, "_lib", None)
    monkeypatch.setattr(clib, "_error", None)
    monkeypatch.setattr(dispatch, "_warned", set())
    monkeypatch.setattr(dispatch, "_settings", {})
    monkeypatch.setenv("VMAMBA_OPS_CACHE", str(tmp_path / "kernels"))
    return tmp_path / "kernels"


def test_builds_into_the_cache_and_reuses_it(fresh_loader):
    lib = clib.load()
    built = list(fresh_loader.glob("*/libvmamba_ops.so"))
    assert len(built) == 1 and lib._name == str(built[0])
    mtime = built[0].stat().st_mtime_ns
    clib._lib = None  # a new process: finds the library instead of compiling again
    clib.load()
    assert built[0].stat().st_mtime_ns == mtime


def test_no_compiler_falls_back_with_one_warning(fresh_loader, monkeypatch):
    monkeypatch.setattr(clib, "_compiler", lambda: None)
    inp = make_inputs(1, 4, 20, 2, 1, requires_grad=False)
    with pytest.warns(RuntimeWarning, match="no C compiler found"):
        y = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True, backend="cpu")
    y_ref = vmamba_ops.selective_scan_ref(*args_of(inp), delta_softplus=True)
    assert_close_rel(y, y_ref, 1e-5, 1e-6, "y")
    assert vmamba_ops.available_backends("cpu") == ["ref", "torch"]
    with pytest.raises(RuntimeError, match="(?s)backend='c' but the C kernels.*no C compiler"):
        vmamba_ops.selective_scan(*args_of(inp), backend="c")
    with vmamba_ops.use_backend("c", device="cpu"), pytest.raises(RuntimeError, match="no C"):
        vmamba_ops.selective_scan(*args_of(inp))  # the setting asks for the kernel: no fallback


def test_compile_error_is_reported_with_the_command(fresh_loader, monkeypatch, tmp_path):
    fake_cc = tmp_path / "cc"
    fake_cc.write_text("#!/bin/sh\necho 'fake-cc: internal error' >&2\nexit 1\n")
    fake_cc.chmod(0o755)
    monkeypatch.setattr(clib, "_compiler", lambda: str(fake_cc))
    with pytest.raises(RuntimeError, match="compiling the CPU kernels of vmamba_ops failed"):
        clib.load()
    with pytest.raises(RuntimeError, match="fake-cc: internal error"):  # remembered, not retried
        clib.load()


@pytest.mark.parametrize("scale", [1e-3, 30.0])
def test_float32_extreme_time_steps_match_float64_reference(scale):
    """Tiny and huge dt * A: the kernel's own exp/softplus (vectorised, not libm) underflow to 0
    and saturate like the float64 loop, in the output and in every gradient."""
    inp = make_inputs(2, 16, 150, 4, 2, with_z=True, dt_scale=scale)
    with torch.no_grad():
        inp["delta"].mul_(scale)
    ref_in = {k: (v.detach().double().requires_grad_() if v is not None else None)
              for k, v in inp.items()}  # fmt: skip
    y = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True, backend="c")
    y_ref = vmamba_ops.selective_scan_ref(*args_of(ref_in), delta_softplus=True)
    # float32 rounding of values up to ~1e4 (scale 30): errors relative to the largest value
    assert_close_rel(y, y_ref.float(), 1e-5, 1e-6 * float(y_ref.detach().abs().max()), "y")
    g, g_ref = grads(y, inp), grads(y_ref, ref_in)
    for name in g:
        top = float(g_ref[name].abs().max())
        assert_close_rel(g[name], g_ref[name].float(), 2e-5, 2e-6 * top, f"d{name}")


def test_threads_split_the_work_without_changing_the_result():
    """Three threads (channel blocks and dB/dC slices spread over them) give what one thread
    gives in float64, forward and every gradient; big enough that every thread gets work."""
    inp = make_inputs(2, 72, 1100, 2, 4, with_z=True)
    ref_in = {k: (v.detach().double().requires_grad_() if v is not None else None)
              for k, v in inp.items()}  # fmt: skip
    kw = dict(delta_softplus=True, return_last_state=True, backend="c")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        out = vmamba_ops.selective_scan(*args_of(inp), **kw)
        g = grads(out, inp)
        torch.set_num_threads(1)
        out_ref = vmamba_ops.selective_scan(*args_of(ref_in), **kw)
        g_ref = grads(out_ref, ref_in)
    finally:
        torch.set_num_threads(threads)
    for got, want, name in [(out[0], out_ref[0], "y"), (out[1], out_ref[1], "last")]:
        assert_close_rel(got, want.detach().float(), 1e-5, 1e-5, name)
    for name in g:
        top = float(g_ref[name].abs().max())
        assert_close_rel(g[name], g_ref[name].float(), 2e-5, 2e-6 * top, f"d{name}")


def test_outputs_over_32mb_are_prefaulted_forward_and_backward():
    """y, du and ddelta from 32 MB on are prefaulted (madvise) before the kernel writes them:
    same values as the chunked PyTorch scan (an independent implementation), every gradient."""
    inp = make_inputs(1, 64, 131072, 1, 4)  # (1, 64, 131072) float32 = 33.5 MB per output
    y = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True, backend="c")
    g = grads(y, inp)
    y_t = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True, backend="torch")
    g_t = grads(y_t, inp)
    assert_close_rel(y, y_t, 1e-4, 1e-5, "y")
    for name in ("u", "delta"):
        assert_close_rel(g[name], g_t[name], 1e-4, 1e-5 * float(g_t[name].abs().max()), name)


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"),
    reason="flush-to-zero is set through the x86 MXCSR register",
)
def test_kernel_flushes_subnormals_and_restores_the_callers_mode():
    """Inside the kernels subnormal floats count as zero (they cost ~100x on the CPU: Vim's
    backward spent most of its time on them); the caller's floating-point mode is restored."""
    inp = make_inputs(1, 8, 16, 1, 1, requires_grad=False)
    tiny = torch.finfo(torch.float32).tiny  # smallest normal float32
    u = torch.full_like(inp["u"], tiny / 4)  # subnormal
    B, C = torch.zeros_like(inp["B"]), torch.zeros_like(inp["C"])
    D = torch.ones_like(inp["D"])
    y = vmamba_ops.selective_scan(u, inp["delta"], inp["A"], B, C, D=D, backend="c")
    assert torch.equal(y, torch.zeros_like(y))  # y = D * u = u, read as 0
    ref = vmamba_ops.selective_scan_ref(u, inp["delta"], inp["A"], B, C, D=D)
    assert (ref > 0).all()  # the reference keeps them
    # back in PyTorch on this thread, subnormals are numbers again
    assert float(torch.tensor([tiny / 4]) * 1.0) > 0

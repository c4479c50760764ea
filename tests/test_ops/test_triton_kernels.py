"""Triton kernels against the references: compiled on a CUDA machine, else interpreted on the
CPU with TRITON_INTERPRET=1.

Triton reads TRITON_INTERPRET when a ``@triton.jit`` function is *decorated*, which for its own
standard library (tl.sigmoid, tl.sum, ...) happens at ``import triton``. So on a CPU-only machine
this module sets the variable before anything imports triton (module collection time). If
triton was already imported in compiled mode, the tests re-run this file in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

CUDA = torch.cuda.is_available()
_PREIMPORTED = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
if not CUDA and not _PREIMPORTED:
    os.environ["TRITON_INTERPRET"] = "1"

from ops_test_utils import args_of, assert_close_rel, grads, make_inputs  # noqa: E402

import vmamba_ops  # noqa: E402

pytestmark = pytest.mark.triton
pytest.importorskip("triton")
DEVICE = "cuda" if CUDA else "cpu"
needs_this_process = pytest.mark.skipif(
    _PREIMPORTED and not CUDA, reason="triton imported before TRITON_INTERPRET was set"
)


@pytest.mark.skipif(not _PREIMPORTED or CUDA, reason="triton interpreter already active")
def test_in_a_fresh_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _to(inp: dict) -> dict:
    return {
        k: (v.detach().to(DEVICE).requires_grad_(v.requires_grad) if v is not None else None)
        for k, v in inp.items()
    }


CASES = [
    # (batch, dim, L, N, G, D, z, bias, softplus, last_state)
    pytest.param(2, 8, 37, 4, 4, True, True, True, True, True, id="L37-N4-G4-all"),
    pytest.param(1, 6, 70, 1, 2, True, False, True, True, False, id="L70-N1-G2-vmamba"),
    pytest.param(2, 4, 5, 16, 1, False, False, False, False, False, id="L5-N16-bare"),
    pytest.param(1, 3, 1, 3, 1, True, True, True, True, True, id="L1-N3"),
]


@needs_this_process
@pytest.mark.parametrize("b, dim, L, n, g, with_d, with_z, with_bias, softplus, last", CASES)
def test_selective_scan_matches_reference(
    b, dim, L, n, g, with_d, with_z, with_bias, softplus, last, nan_poison
):
    inp = make_inputs(b, dim, L, n, g, with_d=with_d, with_z=with_z, with_bias=with_bias)
    if not softplus:
        inp["delta"] = torch.nn.functional.softplus(inp["delta"]).detach().requires_grad_()
    kw = dict(delta_softplus=softplus, return_last_state=last)
    out_ref = vmamba_ops.selective_scan_ref(*args_of(inp), **kw)
    inp_dev = _to(inp)
    out = vmamba_ops.selective_scan(*args_of(inp_dev), **kw, backend="triton")
    for got, want, name in zip(
        out if last else (out,), out_ref if last else (out_ref,), ("y", "last")
    ):
        assert_close_rel(got, want, 6e-4, 2e-3, name)
    g_ref, g_tri = grads(out_ref, inp), grads(out, inp_dev)
    for name in g_ref:
        assert_close_rel(g_tri[name], g_ref[name], 6e-4, 2e-3, f"d{name}")


@needs_this_process
def test_selective_scan_bf16_in_bf16_out():
    inp = make_inputs(1, 4, 20, 2, 2, dtype=torch.bfloat16, requires_grad=False)
    y = vmamba_ops.selective_scan(*args_of(_to(inp)), delta_softplus=True, backend="triton")
    y_cpu = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True, backend="cpu")
    assert y.dtype == torch.bfloat16
    assert_close_rel(y.float().cpu(), y_cpu.float(), 2e-2, 2e-2, "y")


@needs_this_process
@pytest.mark.parametrize("h, w", [(1, 1), (3, 5), (5, 27)], ids=["1x1", "3x5", "5x27"])
@pytest.mark.parametrize("channel_first", [True, False], ids=["cf", "cl"])
def test_cross_scan_and_merge_match_reference(h, w, channel_first, nan_poison):
    x = torch.randn(2, 17, h, w)  # 17 channels: a partial channel block
    y = torch.randn(2, 4, 17, h, w)
    if not channel_first:
        x, y = x.permute(0, 2, 3, 1).contiguous(), y.permute(0, 3, 4, 1, 2).contiguous()
    for pattern in vmamba_ops.PATTERNS:
        scan_ref = vmamba_ops.cross_scan(x, pattern, channel_first, backend="ref")
        scan_tri = vmamba_ops.cross_scan(x.to(DEVICE), pattern, channel_first, backend="triton")
        assert torch.equal(scan_tri.cpu(), scan_ref), pattern
        merge_ref = vmamba_ops.cross_merge(y, pattern, channel_first, backend="ref")
        merge_tri = vmamba_ops.cross_merge(y.to(DEVICE), pattern, channel_first, backend="triton")
        torch.testing.assert_close(merge_tri.cpu(), merge_ref, msg=pattern)


@needs_this_process
def test_float64_is_refused_with_a_hint():
    inp = make_inputs(1, 2, 3, 1, 1, dtype=torch.float64, requires_grad=False)
    with pytest.raises(TypeError, match="backend='cpu' or 'ref'"):
        vmamba_ops.selective_scan(*args_of(_to(inp)), backend="triton")

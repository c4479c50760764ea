"""Triton kernels against the references: compiled on a CUDA machine, else interpreted on the
CPU with TRITON_INTERPRET=1.

Triton reads TRITON_INTERPRET when a ``@triton.jit`` function is *decorated*, which for its own
standard library (tl.sigmoid, tl.sum, ...) happens at ``import triton``. So on a CPU-only machine
this module sets the variable before anything imports triton (module collection time). If
triton was already imported in compiled mode, the tests re-run this file in a fresh interpreter.
"""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch

CUDA = torch.cuda.is_available()
_PREIMPORTED = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
if not CUDA and not _PREIMPORTED:
    os.environ["TRITON_INTERPRET"] = "1"

from ops_test_utils import (  # noqa: E402
    args_of,
    assert_close_rel,
    grads,
    make_inputs,
    run_interpreted,
)

import vmamba_ops  # noqa: E402

pytestmark = pytest.mark.triton
triton = pytest.importorskip("triton")
DEVICE = "cuda" if CUDA else "cpu"
needs_this_process = pytest.mark.skipif(
    _PREIMPORTED and not CUDA, reason="triton imported before TRITON_INTERPRET was set"
)


@pytest.mark.skipif(not _PREIMPORTED or CUDA, reason="triton interpreter already active")
def test_in_a_fresh_interpreter():
    summary = run_interpreted(__file__)
    # every case ran there; the one skip is this test itself ("interpreter already active")
    assert re.match(r"\d+ passed, 1 skipped", summary), summary


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


def _kernels():
    from vmamba_ops.selective_scan import triton as tri
    from vmamba_ops.selective_scan.triton_configs import ScanBlocks

    return tri, ScanBlocks


def _ref_fwd_bwd(inp: dict, softplus: bool, dy: torch.Tensor, dlast: torch.Tensor | None):
    """float64 reference outputs and the gradients of <y, dy> + <last, dlast>."""
    ref = {
        k: (v.detach().double().requires_grad_() if v is not None else None) for k, v in inp.items()
    }
    y, last = vmamba_ops.selective_scan_ref(
        *args_of(ref), delta_softplus=softplus, return_last_state=True
    )
    loss = (y * dy.double()).sum()
    if dlast is not None:
        loss = loss + (last * dlast.double()).sum()
    names = [k for k in ref if ref[k] is not None]
    grads_ = torch.autograd.grad(loss, [ref[k] for k in names])
    return y, last, dict(zip(names, grads_))


# (batch, dim, L, N, G, dtype, D, z, bias, softplus, dlast, BLOCK_D, BLOCK_L): small forced
# blocks so that every case walks several tiles (ragged last tile) and several channel blocks
# (a partial last block where BLOCK_D does not divide dim / G)
KERNEL_CASES = [
    pytest.param(2, 12, 45, 1, 4, torch.float32, True, False, True, True, False, 2, 8,
                 id="vmamba-N1-G4-ragged"),
    pytest.param(1, 10, 33, 3, 2, torch.float32, True, True, True, True, True, 2, 4,
                 id="N3-G2-z-dlast-partial-dblock"),
    pytest.param(2, 8, 17, 16, 2, torch.float32, False, True, False, False, True, 2, 8,
                 id="N16-G2-bare-z"),
    pytest.param(1, 4, 1, 2, 1, torch.float32, True, True, True, True, True, 1, 4, id="L1"),
    pytest.param(1, 8, 40, 1, 2, torch.bfloat16, True, False, True, True, False, 2, 16,
                 id="bf16-N1"),
    pytest.param(1, 6, 23, 4, 3, torch.float16, True, True, True, True, True, 1, 8,
                 id="fp16-N4-G3-z"),
]  # fmt: skip


@needs_this_process
@pytest.mark.parametrize(
    "b, dim, L, n, g, dtype, with_d, with_z, with_bias, softplus, with_dlast, bd, bl",
    KERNEL_CASES,
)
def test_kernels_match_float64_reference_with_forced_small_blocks(
    b, dim, L, n, g, dtype, with_d, with_z, with_bias, softplus, with_dlast, bd, bl, nan_poison
):
    tri, ScanBlocks = _kernels()
    inp = make_inputs(b, dim, L, n, g, dtype=dtype, with_d=with_d, with_z=with_z,
                      with_bias=with_bias, requires_grad=False)  # fmt: skip
    if not softplus:
        inp["delta"] = torch.nn.functional.softplus(inp["delta"].float()).to(dtype)
    gen = torch.Generator().manual_seed(3)
    dy = torch.randn(b, dim, L, generator=gen).to(dtype)
    dlast = torch.randn(b, dim, n, generator=gen) if with_dlast else None
    y_ref, last_ref, g_ref = _ref_fwd_bwd(inp, softplus, dy, dlast)

    blocks = ScanBlocks(bd, triton.next_power_of_2(n), bl, 1)
    dev = _to(inp)
    args = (*args_of(dev), softplus)
    assert triton.cdiv(dim // g, bd) > 1 and triton.cdiv(L, bl) > 1 or L == 1
    y, last = tri.selective_scan_fwd(*args, blocks=blocks)
    d_args = (dy.to(DEVICE), dlast.to(DEVICE) if dlast is not None else None)
    got = tri.selective_scan_bwd(*args, *d_args, blocks=blocks)
    # fp32 state and arithmetic against float64: 1e-5 of each tensor's scale; 16-bit inputs:
    # y / du / ddelta / dz / dB / dC are rounded to the input dtype (8 or 11 mantissa bits)
    rtol = 1e-5 if dtype == torch.float32 else 1e-2
    assert y.dtype == dtype and last.dtype == torch.float32
    _close(y, y_ref, rtol, "y")
    _close(last, last_ref, rtol, "last")
    for name, grad in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), got):
        if inp[name] is None:
            assert grad is None, name
            continue
        assert grad.shape == inp[name].shape and grad.dtype == inp[name].dtype, name
        _close(grad, g_ref[name], rtol, f"d{name}")


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float, name: str) -> None:
    """Elementwise |got - want| <= rtol * (|want| + max |want|)."""
    assert_close_rel(got.cpu(), want, rtol, rtol * want.abs().max().item(), name)


def test_block_table_rows_fit_the_kernels():
    """Every row: powers of two, N bucket holds N, tile at most 8 float32 values per thread in
    the forward (the register budget) and at most 16 in the backward."""
    from vmamba_ops.selective_scan import triton_configs as tc

    for kind in tc.KINDS:
        for cfg in tc.all_scan_blocks(kind):
            for v in (cfg.block_d, cfg.block_n, cfg.block_l, cfg.num_warps):
                assert v & (v - 1) == 0, cfg
            per_thread = cfg.block_d * cfg.block_n * cfg.block_l // (32 * cfg.num_warps)
            assert per_thread <= (8 if kind == "fwd" else 16), (kind, cfg)
    assert tc.scan_blocks("fwd", 1, 3136).block_d == 1  # VMamba v2: one channel per program
    assert tc.scan_blocks("bwd", 3, 10).block_n == 4
    with pytest.raises(ValueError, match="N <= 256"):
        tc.scan_blocks("fwd", 300, 10)


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
    with pytest.raises(TypeError, match="'ref' or 'torch'"):
        vmamba_ops.selective_scan(*args_of(_to(inp)), backend="triton")

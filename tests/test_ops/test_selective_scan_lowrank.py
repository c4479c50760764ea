"""selective_scan(..., delta_proj=W): delta given by low-rank factors.

The compiled CPU kernel forms ``delta = W @ delta_low`` per chunk where the dispatch table says so
(CPU, float32/float64, rank <= 8, no gradient, no graph capture; its own custom op); everything
else expands it with one bmm first. Both are checked against the float64
sequential reference run on a delta expanded by einsum (independent of the code under test).
"""

from __future__ import annotations

import pytest
import torch

import vmamba_ops
from vmamba_ops import selective_scan, selective_scan_ref
from vmamba_ops.selective_scan import c_kernel


@pytest.fixture(autouse=True)
def c_backend(monkeypatch):
    """'auto' on CPU tensors means the C kernel here (whatever VMAMBA_OPS_CPU_KERNEL says)."""
    monkeypatch.setattr(vmamba_ops.dispatch, "_settings", {"cpu": "c"})


def _inputs(b, g, dg, n, r, length, dtype, seed=0, view=True):
    gen = torch.Generator().manual_seed(seed)
    dim = g * dg

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    # as SS2D passes it: a slice of a larger projection (rows L apart, groups R+2N rows apart)
    low = rnd(b, g, r + 2 * n, length, scale=0.5)[:, :, :r] if view else rnd(b, g, r, length)
    return dict(
        u=rnd(b, dim, length),
        delta=low,
        A=-torch.rand(dim, n, generator=gen).to(dtype) - 0.1,
        B=rnd(b, g, n, length),
        C=rnd(b, g, n, length),
        D=rnd(dim),
        z=rnd(b, dim, length),
        delta_bias=rnd(dim, scale=0.3),
        delta_proj=rnd(dim, r, scale=0.5),
    )


def _expected(inp, g, use_d, use_z, use_bias, softplus):
    """float64 reference on the delta expanded by einsum."""
    d = {k: v.double() for k, v in inp.items()}
    b, dim, length = d["u"].shape
    r = d["delta_proj"].shape[1]
    full = torch.einsum("gdr,bgrl->bgdl", d["delta_proj"].view(g, dim // g, r), d["delta"])
    return selective_scan_ref(
        d["u"],
        full.reshape(b, dim, length),
        d["A"],
        d["B"],
        d["C"],
        d["D"] if use_d else None,
        d["z"] if use_z else None,
        d["delta_bias"] if use_bias else None,
        softplus,
        True,
    )


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []
    original = c_kernel.selective_scan_fwd_lowrank

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(c_kernel, "selective_scan_fwd_lowrank", counting)
    return calls


@pytest.mark.parametrize(
    "b,g,dg,n,r,length",
    [(1, 4, 16, 1, 6, 130), (2, 4, 5, 4, 3, 37), (3, 1, 9, 16, 1, 1), (1, 2, 24, 1, 8, 65)],
)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.float64, 1e-10)])
@pytest.mark.parametrize("flags", [(True, False, True, True), (False, True, False, False)])
def test_fused_forward_matches_reference(b, g, dg, n, r, length, dtype, tol, flags, fused_calls):
    use_d, use_z, use_bias, softplus = flags
    inp = _inputs(b, g, dg, n, r, length, dtype)
    with torch.no_grad():
        y, last = selective_scan(
            inp["u"],
            inp["delta"],
            inp["A"],
            inp["B"],
            inp["C"],
            D=inp["D"] if use_d else None,
            z=inp["z"] if use_z else None,
            delta_bias=inp["delta_bias"] if use_bias else None,
            delta_softplus=softplus,
            return_last_state=True,
            delta_proj=inp["delta_proj"],
        )
    assert fused_calls == [1]
    want_y, want_last = _expected(inp, g, use_d, use_z, use_bias, softplus)
    assert y.dtype == dtype and last.shape == want_last.shape
    torch.testing.assert_close(y.double(), want_y, rtol=tol, atol=tol)
    torch.testing.assert_close(last.double(), want_last, rtol=tol, atol=tol)


def test_single_group_with_three_dim_factors(fused_calls):
    inp = _inputs(2, 1, 12, 4, 5, 33, torch.float32, view=False)
    low3, b3, c3 = inp["delta"][:, 0], inp["B"][:, 0], inp["C"][:, 0]
    with torch.no_grad():
        y = selective_scan(
            inp["u"], low3, inp["A"], b3, c3, D=inp["D"], delta_proj=inp["delta_proj"]
        )
    want, _ = _expected(inp, 1, True, False, False, False)
    torch.testing.assert_close(y.double(), want, rtol=2e-4, atol=2e-4)
    assert fused_calls == [1]


def test_large_rank_keeps_the_bmm_and_matches_the_reference(fused_calls):
    # above dispatch.LOW_RANK_MAX the in-kernel projection costs more than the bmm it saves
    inp = _inputs(1, 4, 8, 1, 48, 40, torch.float32)
    inp.pop("z")
    with torch.no_grad():
        y = selective_scan(**inp, delta_softplus=True, return_last_state=True)[0]
    assert fused_calls == []
    want, _ = _expected(inp, 4, True, False, True, True)
    torch.testing.assert_close(y.double(), want, rtol=1e-3, atol=1e-3)


def test_gradients_flow_through_the_expanded_delta(fused_calls):
    """With gradients the delta is expanded by a bmm: grads of the factors and of delta_proj
    equal autograd through the float64 reference."""
    inp = _inputs(2, 4, 3, 2, 2, 9, torch.float64, view=False)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    y = selective_scan(
        leaves["u"],
        leaves["delta"],
        leaves["A"],
        leaves["B"],
        leaves["C"],
        D=leaves["D"],
        delta_bias=leaves["delta_bias"],
        delta_softplus=True,
        delta_proj=leaves["delta_proj"],
    )
    assert fused_calls == []  # no fused forward when a gradient is needed
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, [leaves["delta"], leaves["delta_proj"], leaves["u"]], gy)
    ref_leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    want_y, _ = _expected(ref_leaves, 4, True, False, True, True)
    want = torch.autograd.grad(
        want_y, [ref_leaves["delta"], ref_leaves["delta_proj"], ref_leaves["u"]], gy
    )
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


def test_traced_graph_shows_the_projection_and_the_scan(fused_calls):
    inp = _inputs(1, 4, 4, 1, 2, 8, torch.float32, view=False)

    class Scan(torch.nn.Module):
        def forward(self, u, low):
            return selective_scan(
                u, low, inp["A"], inp["B"], inp["C"], D=inp["D"], delta_proj=inp["delta_proj"]
            )

    with torch.no_grad():
        graph = torch.jit.trace(Scan(), (inp["u"], inp["delta"]), check_trace=False).graph
    kinds = {node.kind() for node in graph.nodes()}
    assert {"aten::bmm", "vmamba_ops::selective_scan"} <= kinds
    assert fused_calls == []


def test_dispatch_modes_see_one_op_that_counts_the_projection(fused_calls):
    """Under a dispatch mode the fused forward is one op node, vmamba_ops::selective_scan_lowrank,
    whose FLOP formula counts the projection as the unfused path's bmm is counted."""
    from torch.utils.flop_counter import FlopCounterMode

    inp = _inputs(1, 4, 4, 1, 2, 8, torch.float32, view=False)
    inp.pop("z")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        selective_scan(**inp)
    assert fused_calls == [1]
    assert counter.get_total_flops() == 2 * 16 * 2 * 8  # 2 * dim * R * L
    with torch.no_grad(), vmamba_ops.use_backend("torch"), FlopCounterMode(display=False) as c2:
        selective_scan(**inp)  # unfused: the bmm
    assert c2.get_total_flops() == counter.get_total_flops() and fused_calls == [1]


def test_fused_op_flop_handle_counts_scan_and_projection():
    inp = _inputs(2, 4, 3, 2, 5, 7, torch.float32, view=False)
    args = [inp["u"], inp["delta"], inp["delta_proj"], inp["A"], inp["B"], inp["C"], inp["D"]]
    handle = vmamba_ops.FLOP_HANDLES["vmamba_ops::selective_scan_lowrank"]
    got = handle([*args, None, None, True], [])
    assert got == vmamba_ops.selective_scan_flops(2, 7, 12, 2, with_D=True) + 2 * 12 * 5 * 7


def test_low_rank_delta_is_the_grouped_projection():
    inp = _inputs(2, 4, 3, 1, 5, 7, torch.float64, view=True)
    got = vmamba_ops.low_rank_delta(inp["delta"], inp["delta_proj"])
    want = torch.einsum("gdr,bgrl->bgdl", inp["delta_proj"].view(4, 3, 5), inp["delta"])
    torch.testing.assert_close(got, want.reshape(2, 12, 7))


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(delta=torch.randn(2, 12, 7)), r"delta_proj.*\(2, 4, 5, 7\)"),
        (dict(delta_proj=torch.randn(12)), r"delta_proj` must be a \(dim, R\)"),
        (dict(delta_proj=torch.randn(11, 5)), r"delta_proj` has shape \(11, 5\)"),
        (dict(delta=torch.randn(2, 4, 5, 7, dtype=torch.float64).to(torch.int64)), "dtype"),
    ],
)
def test_bad_low_rank_inputs_name_the_argument(change, match):
    inp = _inputs(2, 4, 3, 1, 5, 7, torch.float32, view=False)
    inp.update(change)
    inp.pop("z")
    with pytest.raises((ValueError, TypeError), match=match):
        selective_scan(**inp)

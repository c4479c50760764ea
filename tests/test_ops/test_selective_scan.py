"""vmamba_ops.selective_scan: the C kernel and the chunked torch scan against the reference."""

from __future__ import annotations

import pytest
import torch
from ops_test_utils import args_of, assert_close_rel, grads, make_inputs

import vmamba_ops
from vmamba_ops.selective_scan import linear_recurrence, torch_scan
from vmamba_ops.selective_scan.linear_recurrence import chunk_scan

# upstream mamba_ssm test tolerances for float32
RTOL, ATOL = 6e-4, 2e-3


@pytest.fixture(autouse=True, params=["c", "torch"])
def cpu_kernel(request):
    """Run every test with both CPU backends behind 'auto' (the compiled C kernel and the
    chunked PyTorch scan); 'c' fails rather than falls back if the kernel cannot build."""
    with vmamba_ops.use_backend(request.param, device="cpu"):
        yield request.param


CASES = [
    # (batch, dim, L, N, G, D, z, bias, softplus, last_state)
    pytest.param(2, 8, 1, 1, 1, True, False, True, True, True, id="L1-N1-G1"),
    pytest.param(2, 8, 37, 4, 4, True, True, True, True, True, id="L37-N4-G4-all"),
    pytest.param(1, 4, 130, 16, 1, False, False, False, True, False, id="L130pad-N16-bare"),
    pytest.param(2, 8, 300, 1, 4, True, False, True, True, False, id="L300-N1-G4-vmamba"),
    pytest.param(1, 8, 49, 16, 1, True, True, True, True, True, id="L49-N16-vim"),
    pytest.param(1, 6, 129, 4, 2, True, True, False, False, True, id="L129-nosoftplus"),
]


@pytest.mark.parametrize("b, dim, L, n, g, with_d, with_z, with_bias, softplus, last", CASES)
def test_cpu_matches_reference_fp32(b, dim, L, n, g, with_d, with_z, with_bias, softplus, last):
    inp = make_inputs(b, dim, L, n, g, with_d=with_d, with_z=with_z, with_bias=with_bias)
    if not softplus:  # raw delta is the time step itself: keep it positive (decaying state)
        inp["delta"] = torch.nn.functional.softplus(inp["delta"]).detach().requires_grad_()
    kw = dict(delta_softplus=softplus, return_last_state=last)
    out_ref = vmamba_ops.selective_scan_ref(*args_of(inp), **kw)
    out = vmamba_ops.selective_scan(*args_of(inp), **kw)
    if last:
        assert_close_rel(out[0], out_ref[0], RTOL, ATOL, "y")
        assert_close_rel(out[1], out_ref[1], RTOL, ATOL, "last_state")
        assert out[1].dtype == torch.float32
    else:
        assert_close_rel(out, out_ref, RTOL, ATOL, "y")
    g_ref, g_cpu = grads(out_ref, inp), grads(out, inp)
    for name in g_ref:
        assert_close_rel(g_cpu[name], g_ref[name], RTOL, ATOL, f"d{name}")


def test_cpu_float64_long_sequence_is_exact():
    """Many chunks and strong decay: catches cancellation in the chunked (reverse) scans."""
    inp = make_inputs(1, 4, 700, 4, 2, dtype=torch.float64, with_z=True)
    out_ref = vmamba_ops.selective_scan_ref(*args_of(inp), delta_softplus=True)
    out = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True)
    assert_close_rel(out, out_ref, 1e-9, 1e-10, "y")
    g_ref, g_cpu = grads(out_ref, inp), grads(out, inp)
    for name in g_ref:
        assert_close_rel(g_cpu[name], g_ref[name], 1e-9, 1e-10, f"d{name}")


@pytest.mark.parametrize(
    "dt_scale, a_sign",
    [pytest.param(40.0, -1, id="huge-decay-fallback"), pytest.param(1.0, 1, id="positive-A")],
)
def test_cpu_unusual_ranges_match_reference(dt_scale, a_sign):
    """Chunks whose log-decay range would overflow exp() take the stable doubling path; A > 0
    (growth) and negative dt (no softplus) take the general range check."""
    inp = make_inputs(1, 4, 200, 2, 1, dtype=torch.float64, dt_scale=dt_scale)
    softplus = a_sign < 0
    if a_sign > 0:
        with torch.no_grad():
            inp["A"].copy_(inp["A"].abs() * 0.05)
    out_ref = vmamba_ops.selective_scan_ref(*args_of(inp), delta_softplus=softplus)
    out = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=softplus)
    assert_close_rel(out, out_ref, 1e-8, 1e-9, "y")
    g_ref, g_cpu = grads(out_ref, inp), grads(out, inp)
    for name in g_ref:
        assert_close_rel(g_cpu[name], g_ref[name], 1e-7, 1e-9, f"d{name}")


def test_cpu_gradcheck_float64():
    inp = make_inputs(2, 4, 9, 2, 2, dtype=torch.float64, with_z=True)

    def fn(*args):
        y, last = vmamba_ops.selective_scan(*args, delta_softplus=True, return_last_state=True)
        return y, last

    assert torch.autograd.gradcheck(fn, args_of(inp), eps=1e-6, atol=1e-6)


def test_bc_without_group_axis_equals_one_group():
    inp = make_inputs(2, 4, 11, 3, 1, bc_3d=True)
    y3 = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True)
    args4 = list(args_of(inp))
    args4[3], args4[4] = args4[3].unsqueeze(1), args4[4].unsqueeze(1)
    y4 = vmamba_ops.selective_scan(*args4, delta_softplus=True)
    torch.testing.assert_close(y3, y4)
    g = grads(y3, inp)
    assert g["B"].shape == inp["B"].shape


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_in_same_dtype_out_and_close(dtype):
    inp = make_inputs(2, 8, 64, 4, 4, dtype=dtype, with_z=True)
    y, last = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True, return_last_state=True)
    assert y.dtype == dtype and last.dtype == torch.float32
    ref32 = make_inputs(2, 8, 64, 4, 4, dtype=dtype, with_z=True, requires_grad=False)
    ref32 = {k: (v.float() if v is not None else None) for k, v in ref32.items()}
    y_ref = vmamba_ops.selective_scan_ref(*args_of(ref32), delta_softplus=True)
    assert_close_rel(y.float(), y_ref, 3e-2, 5e-2, "y")
    g = grads(y, inp)
    for name, t in g.items():
        assert t.dtype == inp[name].dtype and torch.isfinite(t.float()).all(), name


def test_outputs_are_fully_written(nan_poison):
    """Every output element is written even though scratch/outputs start as NaN."""
    inp = make_inputs(2, 8, 150, 4, 4, with_z=True)
    y, last = vmamba_ops.selective_scan(*args_of(inp), delta_softplus=True, return_last_state=True)
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    for name, t in grads((y, last), inp).items():
        assert torch.isfinite(t).all(), name


def test_chunk_scan_forward_and_reverse_match_loops():
    g = torch.Generator().manual_seed(0)
    la = -torch.rand(3, 333, generator=g, dtype=torch.float64)
    x = torch.randn(3, 333, generator=g, dtype=torch.float64)
    fwd, rev = torch.empty_like(x), torch.empty_like(x)
    h = torch.zeros(3, dtype=torch.float64)
    for t in range(333):
        h = la[:, t].exp() * h + x[:, t]
        fwd[:, t] = h
    h = torch.zeros(3, dtype=torch.float64)
    for t in reversed(range(333)):
        h = (la[:, t + 1].exp() * h if t + 1 < 333 else 0) + x[:, t]
        rev[:, t] = h
    torch.testing.assert_close(chunk_scan(la, x), fwd, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunk_scan(la, x, reverse=True), rev, rtol=1e-12, atol=1e-12)


def test_reference_matches_hand_computed_values():
    """dim=1, N=1, L=2: h0 = dt0 B0 u0, h1 = exp(dt1 A) h0 + dt1 B1 u1, y = C h + D u."""
    u = torch.tensor([[[1.0, 2.0]]])
    delta = torch.tensor([[[0.5, 0.25]]])
    A = torch.tensor([[-2.0]])
    B = torch.tensor([[[3.0, -1.0]]])
    C = torch.tensor([[[2.0, 4.0]]])
    D = torch.tensor([0.5])
    h0 = 0.5 * 3.0 * 1.0
    h1 = torch.exp(torch.tensor(0.25 * -2.0)).item() * h0 + 0.25 * -1.0 * 2.0
    expected = torch.tensor([[[2.0 * h0 + 0.5 * 1.0, 4.0 * h1 + 0.5 * 2.0]]])
    for fn in (vmamba_ops.selective_scan_ref, vmamba_ops.selective_scan):
        y, last = fn(u, delta, A, B, C, D, return_last_state=True)
        torch.testing.assert_close(y, expected)
        torch.testing.assert_close(last, torch.tensor([[[h1]]]))


def test_chunk_scan_long_decay_uses_safe_carry():
    """Total log-decay far beyond float64's exp range (-1500) but small per chunk."""
    la = torch.full((2, 3000), -0.5, dtype=torch.float64)
    x = torch.randn(2, 3000, dtype=torch.float64)
    expected = torch.empty_like(x)
    h = torch.zeros(2, dtype=torch.float64)
    for t in range(3000):
        h = la[:, t].exp() * h + x[:, t]
        expected[:, t] = h
    torch.testing.assert_close(chunk_scan(la, x), expected, rtol=1e-10, atol=1e-12)
    flipped = chunk_scan(la.flip(-1), x.flip(-1)).flip(-1)
    # reverse scan with the same decays shifted by one step equals the flipped forward scan
    shifted = torch.cat([la[:, :1], la[:, :-1]], dim=1)
    torch.testing.assert_close(
        chunk_scan(shifted, x, reverse=True), flipped, rtol=1e-10, atol=1e-12
    )


def test_chunk_shrinks_for_fast_decays_instead_of_falling_back():
    """Vim/v0 shapes (A down to -16, dt up to ~0.1) need chunks short enough for exp(-S)."""
    delta = torch.full((1, 4, 197), 0.1)
    A = -torch.arange(1.0, 17.0).repeat(4, 1)
    limit = torch_scan._chunk_limit(delta, None, A, softplus=False)
    assert limit == int(linear_recurrence.MAX_LOG_RANGE / (0.1 * 16))
    chunk = linear_recurrence.pick_chunk(197, limit)
    assert chunk <= limit and chunk & (chunk - 1) == 0  # 197 is prime: a power-of-two chunk
    pick = linear_recurrence.pick_chunk
    assert pick(3136, 128) == 64 and pick(3136, 50) == 49

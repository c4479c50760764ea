"""Property-based tests (hypothesis) of vmamba_ops and of the export decompositions.

The oracle is ``vmamba_ops.selective_scan_ref`` (sequential float64 loop) and the reference
cross-scan (explicit index tables). Shapes and values are drawn at random; each property states
something every correct implementation satisfies.
"""

from __future__ import annotations

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import vmamba_ops  # noqa: E402
from mmvmamba.deployment.decompose import (  # noqa: E402
    cross_merge_decomposed,
    cross_scan_decomposed,
    selective_scan_decomposed,
)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def scan_inputs(draw, dtype=torch.float64):
    """Random selective-scan inputs: batch, groups, dim, N, L and the optional parts."""
    b = draw(st.integers(1, 2))
    g = draw(st.sampled_from([1, 2]))
    dim = g * draw(st.integers(1, 3))
    n = draw(st.integers(1, 4))
    length = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    kw = dict(
        u=rnd(b, dim, length),
        delta=rnd(b, dim, length) * scale,
        A=-torch.rand(dim, n, generator=gen, dtype=torch.float64).to(dtype) * scale - 0.01,
        B=rnd(b, g, n, length),
        C=rnd(b, g, n, length),
        D=rnd(dim) if draw(st.booleans()) else None,
        z=rnd(b, dim, length) if draw(st.booleans()) else None,
        delta_bias=rnd(dim) if draw(st.booleans()) else None,
        delta_softplus=draw(st.booleans()),
    )
    if not kw["delta_softplus"]:  # keep dt >= 0 (a decay) without softplus
        kw["delta"] = kw["delta"].abs()
        kw["delta_bias"] = None
    return kw


@SETTINGS
@given(scan_inputs())
def test_decomposed_scan_matches_reference(kw):
    y_ref, last_ref = vmamba_ops.selective_scan_ref(**kw, return_last_state=True)
    y, last = selective_scan_decomposed(**kw)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(scan_inputs(), st.sampled_from(["c", "torch", "ref"]))
def test_scan_is_causal(kw, backend):
    """Changing the inputs at t >= t0 never changes the outputs at t < t0."""
    length = kw["u"].shape[-1]
    t0 = length // 2
    y = vmamba_ops.selective_scan(**kw, backend=backend)
    kw2 = dict(kw)
    for key in ("u", "delta", "z"):
        if kw2[key] is not None:
            kw2[key] = kw2[key].clone()
            kw2[key][..., t0:] += 1.0
    for key in ("B", "C"):
        kw2[key] = kw2[key].clone()
        kw2[key][..., t0:] -= 1.0
    y2 = vmamba_ops.selective_scan(**kw2, backend=backend)
    assert torch.equal(y[..., :t0], y2[..., :t0]) or torch.allclose(
        y[..., :t0], y2[..., :t0], rtol=1e-12, atol=1e-12
    )
    if t0 < length:
        assert not torch.allclose(y[..., t0:], y2[..., t0:])


@SETTINGS
@given(scan_inputs(), st.floats(-3, 3), st.floats(-3, 3))
def test_scan_is_linear_in_u(kw, a, c):
    """Without the gate z, y(a u1 + c u2) = a y(u1) + c y(u2) for fixed delta, A, B, C, D."""
    kw = dict(kw, z=None)
    u1, u2 = kw["u"], torch.randn_like(kw["u"])
    for backend in ("torch", "cpu"):
        y1 = vmamba_ops.selective_scan(**dict(kw, u=u1), backend=backend)
        y2 = vmamba_ops.selective_scan(**dict(kw, u=u2), backend=backend)
        y12 = vmamba_ops.selective_scan(**dict(kw, u=a * u1 + c * u2), backend=backend)
        torch.testing.assert_close(y12, a * y1 + c * y2, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(
    st.integers(1, 64),
    st.floats(1.0, 1e4),
    st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_scan_stays_finite_under_extreme_decay(length, magnitude, dtype):
    """Huge dt * |A| (exp(-S) would overflow a naive cumsum formulation) gives finite output
    equal to the reference, in float32 and bfloat16."""
    gen = torch.Generator().manual_seed(length)
    u = torch.randn(1, 2, length, generator=gen).to(dtype)
    delta = (torch.rand(1, 2, length, generator=gen) * magnitude).to(dtype)
    A = -torch.rand(2, 3, generator=gen).add(0.5).to(dtype)
    B = torch.randn(1, 3, length, generator=gen).to(dtype)
    C = torch.randn(1, 3, length, generator=gen).to(dtype)
    ref = vmamba_ops.selective_scan_ref(u, delta, A, B, C)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for backend in ("torch", "cpu"):
        y = vmamba_ops.selective_scan(u, delta, A, B, C, backend=backend)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), ref.float(), rtol=tol, atol=tol)


@SETTINGS
@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 9),
    st.integers(1, 9),
    st.sampled_from(list(vmamba_ops.PATTERNS)),
    st.booleans(),
)
def test_decomposed_cross_scan_and_merge_match_the_ops(b, c, h, w, pattern, channel_first):
    gen = torch.Generator().manual_seed(b * 1000 + c * 100 + h * 10 + w)
    shape = (b, c, h, w) if channel_first else (b, h, w, c)
    x = torch.randn(*shape, generator=gen)
    ys = vmamba_ops.cross_scan(x, pattern, channel_first, backend="ref")
    assert torch.equal(cross_scan_decomposed(x, pattern, channel_first), ys)
    y_shape = (b, 4, c, h, w) if channel_first else (b, h, w, 4, c)
    y = torch.randn(*y_shape, generator=gen)
    merged = vmamba_ops.cross_merge(y, pattern, channel_first, backend="ref")
    torch.testing.assert_close(cross_merge_decomposed(y, pattern, channel_first), merged)


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7))
def test_cross_merge_is_the_adjoint_of_cross_scan(b, c, h, w):
    """<cross_scan(x), y> == <x, cross_merge(y)> for every pattern and backend."""
    gen = torch.Generator().manual_seed(h * 8 + w)
    x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    y = torch.randn(b, 4, c, h, w, generator=gen, dtype=torch.float64)
    for pattern in vmamba_ops.PATTERNS:
        for backend in ("ref", "torch", "cpu"):
            lhs = (vmamba_ops.cross_scan(x, pattern, backend=backend).flatten() * y.flatten()).sum()
            rhs = (x * vmamba_ops.cross_merge(y, pattern, backend=backend)).sum()
            torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_bf16_inputs_keep_a_float32_state():
    """bf16 u/delta/B/C: the state is accumulated in float32 (returned as float32), so over a
    long sequence the error stays at the level of rounding the *output* to bf16. A bf16 state
    would accumulate rounding error at every one of the L steps."""
    gen = torch.Generator().manual_seed(0)
    b, dim, n, length = 1, 4, 4, 2048
    u = torch.randn(b, dim, length, generator=gen).bfloat16()
    delta = (torch.rand(b, dim, length, generator=gen) * 0.01).bfloat16()  # slow decay
    A = -torch.rand(dim, n, generator=gen).add(0.1).bfloat16()
    B = torch.randn(b, n, length, generator=gen).bfloat16()
    C = torch.randn(b, n, length, generator=gen).bfloat16()
    for backend in ("cpu", "torch", "ref"):
        y, last = vmamba_ops.selective_scan(
            u, delta, A, B, C, return_last_state=True, backend=backend
        )
        assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
        y64, last64 = vmamba_ops.selective_scan_ref(
            *(t.double() for t in (u, delta, A, B, C)), return_last_state=True
        )
        # output: one bf16 rounding (rel 2^-8); state: float32 accumulation only
        torch.testing.assert_close(y.double(), y64, rtol=8e-3, atol=8e-3 * y64.abs().max())
        torch.testing.assert_close(last.double(), last64, rtol=1e-4, atol=1e-4)

"""The compiled CPU cross-scan / cross-merge (ops/csrc/cross_scan_cpu.c) against the reference."""

from __future__ import annotations

import pytest
import torch

import vmamba_ops
from vmamba_ops.cross_scan import c_kernel as c_cs
from vmamba_ops.cross_scan.reference import cross_merge_ref, cross_scan_ref
from vmamba_ops.cross_scan.routes import ROUTES, position

# (H, W): single pixel / row / column, smaller than one 8x8 block, ragged edges, whole blocks
SIZES = [(1, 1), (1, 5), (5, 1), (3, 4), (7, 6), (13, 17), (16, 24), (40, 33)]
SIZE_PARAMS = [pytest.param(h, w, id=f"{h}x{w}") for h, w in SIZES]
PATTERNS = [pytest.param(p, id=p) for p in vmamba_ops.PATTERNS]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


@pytest.fixture
def c_calls(monkeypatch):
    """Makes 'auto' run the compiled kernels (or fail) and records which of them ran."""
    monkeypatch.setattr(vmamba_ops.dispatch, "_settings", {"cpu": "c"})
    calls = []
    for name in ("cross_scan_c", "cross_merge_c"):
        original = getattr(c_cs, name)

        def spy(*args, _original=original, _name=name):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(c_cs, name, spy)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h, w", SIZE_PARAMS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_matches_reference(c_calls, nan_poison, pattern, h, w, dtype):
    """Scan is a copy (exact); merge sums 4 values per pixel (the reference's order, too)."""
    x = torch.randn(2, 3, h, w, dtype=dtype)
    y = torch.randn(2, 4, 3, h, w, dtype=dtype)
    assert torch.equal(vmamba_ops.cross_scan(x, pattern, backend="c"), cross_scan_ref(x, pattern))
    merged = vmamba_ops.cross_merge(y, pattern, backend="c")
    assert merged.shape == x.shape and merged.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(merged, cross_merge_ref(y, pattern), rtol=tol, atol=tol)
    assert c_calls == ["cross_scan_c", "cross_merge_c"]


@pytest.mark.parametrize("h, w", [(1, 1), (3, 4), (11, 19), (17, 8)])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_route_follows_the_python_route_table(c_calls, pattern, h, w):
    """The kernel keeps its own index arithmetic (csrc/cross_scan_cpu.c): scanning a map that
    holds each pixel's flat index gives, per route, the pixel at every position, which must be
    the one the table's formula (vmamba_ops.cross_scan.routes.position) puts there."""
    pixels = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    got = vmamba_ops.cross_scan(pixels, pattern, backend="c")[0, :, 0]  # (K, L)
    for k, order in enumerate(ROUTES[pattern]):
        want = torch.empty(h * w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                want[position(order, i, j, h, w)] = i * w + j
        assert torch.equal(got[k], want), (pattern, k, order)
    assert c_calls == ["cross_scan_c"]


@pytest.mark.parametrize("h, w", [(1, 1), (7, 6), (13, 17)])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_gradients_match_reference(c_calls, pattern, h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 3, h, w, dtype=torch.float64, requires_grad=True)
    gs = torch.randn(2, 4, 3, h * w, dtype=torch.float64)
    gm = torch.randn(2, 3, h, w, dtype=torch.float64)
    got = torch.autograd.grad(
        [vmamba_ops.cross_scan(x, pattern, backend="c"), vmamba_ops.cross_merge(y, pattern)],
        [x, y],
        [gs, gm],
    )
    want = torch.autograd.grad(
        [cross_scan_ref(x, pattern), cross_merge_ref(y, pattern)], [x, y], [gs, gm]
    )
    torch.testing.assert_close(got[0], want[0], rtol=1e-14, atol=1e-14)
    assert torch.equal(got[1], want[1])  # d merge / dy is a scan: a copy
    assert sorted(set(c_calls)) == ["cross_merge_c", "cross_scan_c"]


def test_non_contiguous_inputs(c_calls):
    x = torch.randn(2, 5, 9, 11).to(memory_format=torch.channels_last)
    y = torch.randn(2, 5, 4, 11, 9).permute(0, 2, 1, 4, 3)  # (B, K, C, H, W), strided
    for pattern in vmamba_ops.PATTERNS:
        assert torch.equal(vmamba_ops.cross_scan(x, pattern), cross_scan_ref(x, pattern))
        torch.testing.assert_close(vmamba_ops.cross_merge(y, pattern), cross_merge_ref(y, pattern))
    assert len(c_calls) == 2 * len(vmamba_ops.PATTERNS)


def test_several_threads(c_calls):
    """Enough planes for several tasks and threads (the split depends on the sizes)."""
    x = torch.randn(3, 16, 40, 33)
    y = torch.randn(3, 4, 16, 40, 33)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for pattern in vmamba_ops.PATTERNS:
            assert torch.equal(vmamba_ops.cross_scan(x, pattern), cross_scan_ref(x, pattern))
            torch.testing.assert_close(
                vmamba_ops.cross_merge(y, pattern), cross_merge_ref(y, pattern)
            )
    finally:
        torch.set_num_threads(threads)


def test_other_layouts_and_dtypes_keep_the_torch_code(c_calls):
    x = torch.randn(2, 3, 5, 7)
    for xi, channel_first in ((x.to(torch.bfloat16), True), (x.permute(0, 2, 3, 1), False)):
        ys = vmamba_ops.cross_scan(xi, "cross", channel_first=channel_first)
        assert torch.equal(ys, cross_scan_ref(xi, "cross", channel_first=channel_first))
    assert c_calls == []


def test_empty_batch(c_calls):
    assert vmamba_ops.cross_scan(torch.randn(0, 3, 4, 5)).shape == (0, 4, 3, 20)
    assert vmamba_ops.cross_merge(torch.randn(2, 4, 0, 4, 5)).shape == (2, 0, 4, 5)


def test_outputs_over_32mb_are_prefaulted_and_exact(c_calls):
    """Outputs from 32 MB on are prefaulted (madvise) before the kernel writes them."""
    x = torch.randn(1, 9, 512, 512)  # scan output 4 * 9 * 512 * 512 floats = 37.7 MB
    assert torch.equal(vmamba_ops.cross_scan(x, "cross"), cross_scan_ref(x, "cross"))
    assert c_calls == ["cross_scan_c"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(2, 13, 7, 5), (1, 8, 8, 8), (3, 2, 4, 9), (2, 96, 9, 11), (1, 24, 40, 33)]
)
def test_channels_last_maps_are_transposed_by_the_kernel(monkeypatch, shape, dtype):
    """A channels-last map becomes channel-first in the compiled transpose (8 x 8 register
    tiles, ragged channel and pixel edges): the same values as torch's copy, and cross_scan of
    it reads the kernel's result."""
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    ran = []
    fn = c_cs.function  # the ctypes lookup the transpose goes through

    def spy(name, *args, **kwargs):
        ran.append(name)
        return fn(name, *args, **kwargs)

    monkeypatch.setattr(c_cs, "function", spy)
    out = c_cs.to_channel_first(x)
    assert out.is_contiguous() and torch.equal(out, x.contiguous())
    assert torch.equal(vmamba_ops.cross_scan(x, "cross"), cross_scan_ref(x.contiguous(), "cross"))
    sfx = "f32" if dtype == torch.float32 else "f64"
    assert ran.count(f"vmamba_to_channel_first_{sfx}") == 2


def test_channel_first_leaves_other_layouts_to_torch():
    x = torch.randn(2, 3, 4, 5)
    assert c_cs.to_channel_first(x) is x  # already channel-first: no copy
    odd = torch.randn(2, 5, 4, 3).permute(0, 3, 2, 1)  # neither layout
    assert torch.equal(c_cs.to_channel_first(odd), odd.contiguous())
    half = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert torch.equal(c_cs.to_channel_first(half), half.contiguous())

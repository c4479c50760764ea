"""vmamba_ops.cross_scan / cross_merge: the route table, layouts, adjointness, autograd."""

from __future__ import annotations

import pytest
import torch

import vmamba_ops
from vmamba_ops.cross_scan.routes import ROUTES, position, route_index

SIZES = [
    pytest.param(1, 1, id="1x1"),
    pytest.param(1, 7, id="1x7"),
    pytest.param(5, 1, id="5x1"),
    pytest.param(3, 5, id="3x5"),
    pytest.param(4, 4, id="4x4"),
]
LAYOUTS = [pytest.param(True, id="channel_first"), pytest.param(False, id="channel_last")]
PATTERNS = [pytest.param(p, id=p) for p in vmamba_ops.PATTERNS]


def test_route_formulas_by_hand():
    """2x3 grid, pixels numbered p = h*3 + w."""
    cross = route_index("cross", 2, 3).tolist()
    assert cross[0] == [0, 1, 2, 3, 4, 5]  # row-major
    assert cross[1] == [0, 3, 1, 4, 2, 5]  # column-major: l = w*H + h
    assert cross[2] == [5, 4, 3, 2, 1, 0]
    assert cross[3] == [5, 2, 4, 1, 3, 0]
    assert route_index("unidi", 2, 3).tolist() == [[0, 1, 2, 3, 4, 5]] * 4
    assert route_index("bidi", 2, 3).tolist() == [[0, 1, 2, 3, 4, 5]] * 2 + [[5, 4, 3, 2, 1, 0]] * 2
    cascade = route_index("cascade", 2, 3).tolist()
    assert cascade[0] == [0, 1, 2, 3, 4, 5]  # rows left -> right
    assert cascade[1] == [2, 1, 0, 5, 4, 3]  # rows right -> left, row by row
    assert cascade[2] == [0, 3, 1, 4, 2, 5]  # columns top -> bottom
    assert cascade[3] == [3, 0, 4, 1, 5, 2]  # columns bottom -> top, column by column
    assert vmamba_ops.segment_length("cascade", 2, 3) == [3, 3, 2, 2]
    assert vmamba_ops.segment_length("cross", 2, 3) == [6] * 4


def test_route_table_formula():
    """The table's one formula, by hand on a 2x3 grid, and the index table built from it."""
    row, col, row_rev, col_rev = ROUTES["cross"]
    assert [position(row, 1, 2, 2, 3), position(col, 1, 2, 2, 3)] == [5, 5]
    assert [position(row, 0, 1, 2, 3), position(col, 0, 1, 2, 3)] == [1, 2]
    assert [position(row_rev, 0, 1, 2, 3), position(col_rev, 0, 1, 2, 3)] == [4, 3]
    _, row_flipw, _, col_fliph = ROUTES["cascade"]
    assert [position(row_flipw, 0, 0, 2, 3), position(col_fliph, 0, 0, 2, 3)] == [2, 1]
    assert {len(orders) for orders in ROUTES.values()} == {4}


@pytest.mark.parametrize("h, w", SIZES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("channel_first", LAYOUTS)
def test_backends_match_reference_and_are_adjoint(h, w, pattern, channel_first):
    b, c = 2, 3
    x = torch.randn(b, c, h, w, dtype=torch.float64)
    y = torch.randn(b, 4, c, h, w, dtype=torch.float64)
    if not channel_first:
        x = x.permute(0, 2, 3, 1).contiguous()
        y = y.permute(0, 3, 4, 1, 2).contiguous()
    backends = ("ref", "torch", "cpu")  # 'cpu': the C kernel where it takes the layout
    scans = [vmamba_ops.cross_scan(x, pattern, channel_first, backend=be) for be in backends]
    merges = [vmamba_ops.cross_merge(y, pattern, channel_first, backend=be) for be in backends]
    expected_scan = (b, 4, c, h * w) if channel_first else (b, h * w, 4, c)
    assert scans[0].shape == expected_scan and merges[0].shape == x.shape
    for scan, merge in zip(scans[1:], merges[1:]):
        assert torch.equal(scans[0], scan)
        torch.testing.assert_close(merges[0], merge)
    # <scan(x), y> == <x, merge(y)>; y's sequence axis is (H, W) in row-major order
    lhs = (scans[1].reshape(-1) * y.reshape(-1)).sum()
    rhs = (x * merges[1]).sum()
    torch.testing.assert_close(lhs, rhs)


def test_layouts_agree():
    x = torch.randn(2, 5, 3, 4)
    ys_cf = vmamba_ops.cross_scan(x, "cross")
    ys_cl = vmamba_ops.cross_scan(x.permute(0, 2, 3, 1), "cross", channel_first=False)
    assert torch.equal(ys_cf, ys_cl.permute(0, 2, 3, 1))


def test_autograd_is_the_adjoint():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 4, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    for pattern in vmamba_ops.PATTERNS:
        assert torch.autograd.gradcheck(lambda t, p=pattern: vmamba_ops.cross_scan(t, p), (x,))
        assert torch.autograd.gradcheck(lambda t, p=pattern: vmamba_ops.cross_merge(t, p), (y,))
        assert torch.autograd.gradcheck(
            lambda t, p=pattern: vmamba_ops.cross_scan(t, p, channel_first=False),
            (x.detach().permute(0, 2, 3, 1).requires_grad_(),),
        )


def test_segments_roundtrip_and_cascade_rows():
    b, c, h, w = 2, 3, 4, 5
    x = torch.randn(b, c, h, w)
    xs = vmamba_ops.cross_scan(x, "cascade")  # (B, 4, C, L)
    rows = vmamba_ops.to_segments(xs[:, 1], w)  # (B*H, C, W): each row reversed
    assert rows.shape == (b * h, c, w)
    assert torch.equal(rows.view(b, h, c, w)[:, 2], x[:, :, 2].flip(-1))
    assert torch.equal(vmamba_ops.from_segments(rows, b), xs[:, 1])


def test_outputs_are_fully_written(nan_poison):
    x = torch.randn(2, 3, 5, 7)
    for pattern in vmamba_ops.PATTERNS:
        assert torch.isfinite(vmamba_ops.cross_scan(x, pattern)).all()
        assert torch.isfinite(vmamba_ops.cross_merge(torch.randn(2, 4, 3, 5, 7), pattern)).all()


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown pattern 'diag'"):
        vmamba_ops.cross_scan(torch.randn(1, 2, 3, 3), "diag")
    with pytest.raises(ValueError, match=r"x must be \(B, H, W, C\)"):
        vmamba_ops.cross_scan(torch.randn(2, 3, 4), channel_first=False)
    with pytest.raises(ValueError, match="K=4 routes, y has 2"):
        vmamba_ops.cross_merge(torch.randn(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="unknown backend"):
        vmamba_ops.cross_scan(torch.randn(1, 2, 3, 3), backend="cuda")

"""Activation maps: the scan matrix against the sequential reference scan, the route/grid
bookkeeping against SS2D's own merged output, and the tool's files."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmpretrain")

from analysis_helpers import assert_png, load_tool, read_csv, write_tiny_config  # noqa: E402

import vmamba_ops  # noqa: E402
from mmvmamba.analysis.activation import (  # noqa: E402
    activation_maps,
    route_positions,
    scan_matrix,
    scan_matrix_row,
)
from mmvmamba.analysis.scan_hooks import capture_scan_inputs  # noqa: E402


def _inputs(b=1, g=2, dg=3, n=4, length=7):
    d = g * dg
    f64 = dict(dtype=torch.float64)
    return dict(
        u=torch.randn(b, d, length, **f64),
        delta=torch.randn(b, d, length, **f64),
        A=-2 * torch.rand(d, n, **f64),
        B=torch.randn(b, g, n, length, **f64),
        C=torch.randn(b, g, n, length, **f64),
        delta_bias=torch.randn(d, **f64),
    )


@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "raw-delta"])
def test_scan_matrix_reproduces_the_reference_scan(softplus):
    t = _inputs()
    delta = t["delta"] if softplus else t["delta"].abs()
    y = vmamba_ops.selective_scan_ref(
        t["u"], delta, t["A"], t["B"], t["C"], None, None, t["delta_bias"].abs(), softplus
    )
    M = scan_matrix(delta[0], t["A"], t["B"][0], t["C"][0], t["delta_bias"].abs(), softplus)
    assert M.shape == (6, 7, 7)
    assert torch.all(M.triu(1) == 0)  # causal
    torch.testing.assert_close(torch.einsum("dts,ds->dt", M, t["u"][0]), y[0])


def test_scan_matrix_row_per_channel_rows():
    t = _inputs()
    M = scan_matrix(t["delta"][0], t["A"], t["B"][0], t["C"][0], t["delta_bias"], True)
    rows_t = torch.tensor([0, 3, 6, 2, 5, 1])
    got = scan_matrix_row(
        t["delta"][0], t["A"], t["B"][0], t["C"][0], rows_t, t["delta_bias"], True
    )
    torch.testing.assert_close(got, M[torch.arange(6), rows_t])


def test_route_positions_of_a_2x3_grid():
    # grid 0 1 2 / 3 4 5: row-major, column-major, and both reversed
    expected = [[0, 1, 2, 3, 4, 5], [0, 3, 1, 4, 2, 5], [5, 4, 3, 2, 1, 0], [5, 2, 4, 1, 3, 0]]
    assert route_positions(2, 3).tolist() == expected


def test_merged_map_matches_ss2d_merged_scan_output():
    from mmvmamba.models.layers.ss2d import SS2D

    layer = SS2D(d_model=8, d_state=2, ssm_ratio=1.0).double().eval()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    with torch.no_grad(), capture_scan_inputs(layer) as records:
        layer(x)
    assert len(records) == 1 and records[0]["hw"] == (3, 4)
    rec = records[0]
    query = (1, 2)
    maps = activation_maps(rec, query)
    assert maps["routes"].shape == (4, 3, 4) and maps["merged"].shape == (3, 4)
    assert maps["qk"].sum() == pytest.approx(1.0)
    # the merged scan output (no D skip) at the query, from the reference scan + cross_merge
    ys = vmamba_ops.selective_scan_ref(
        rec["u"], rec["delta"], rec["A"], rec["B"], rec["C"], None, None, rec["delta_bias"], True
    )
    y = vmamba_ops.cross_merge(ys.view(1, 4, 8, 3, 4), backend="ref")[0, :, 1, 2]
    x_grid = rec["u"][0, :8].view(8, 3, 4)  # route 0 is row-major = the grid
    got = (torch.as_tensor(maps["merged_signed"]) * x_grid).sum(dim=(1, 2))
    torch.testing.assert_close(got, y)
    with pytest.raises(ValueError, match="outside"):
        activation_maps(rec, (3, 0))


def test_activation_map_tool_writes_files(tmp_path):
    cfg = write_tiny_config(tmp_path / "tiny.py")
    out = tmp_path / "out"
    maps = load_tool("activation_map").main(
        ["--model", cfg, "--size", "64", "--stage", "1", "--query", "0.5", "0.25",
         "--out-dir", str(out)]
    )  # fmt: skip
    assert maps["layer"].endswith("layers.1.blocks.0.op")
    assert tuple(maps["hw"]) == (8, 8) and tuple(maps["query"]) == (4, 2)
    assert [r["map"] for r in read_csv(out / "activation_map.csv")] == [
        "route 0", "route 1", "route 2", "route 3", "merged", "qk",
    ]  # fmt: skip
    assert_png(out / "activation_map.png")
    assert (out / "activation_map.npz").is_file()

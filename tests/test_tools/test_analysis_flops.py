"""FLOP counting: the scan handle against the formula, an SS2D layer counted by hand, the tool's
files, and (slow) the paper's numbers for every released VMamba variant."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

pytest.importorskip("mmpretrain")

from analysis_helpers import assert_png, load_tool, read_csv, write_tiny_config  # noqa: E402

import vmamba_ops  # noqa: E402
from mmvmamba.analysis.flops import count_flops, count_params  # noqa: E402


class _ScanOnly(nn.Module):
    """Calls the selective scan on fixed shapes: u (2, 32, 30), A (32, 2), B/C (2, 4, 2, 30)."""

    def __init__(self, with_d: bool) -> None:
        super().__init__()
        self.A = nn.Parameter(-torch.rand(32, 2))
        self.D = nn.Parameter(torch.ones(32)) if with_d else None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        bc = u[:, :8].reshape(2, 4, 2, 30)
        return vmamba_ops.selective_scan(u, u, self.A, bc, bc, self.D, delta_softplus=True)


@pytest.mark.parametrize("with_d, expected", [(True, 36480), (False, 34560)])
def test_scan_handle_matches_formula(with_d, expected):
    # 9 * B * L * D * N (+ B * D * L with D) = 9 * 2 * 30 * 32 * 2 (+ 2 * 32 * 30)
    assert vmamba_ops.selective_scan_flops(2, 30, 32, 2, with_D=with_d) == expected
    report = count_flops(_ScanOnly(with_d), inputs=(torch.randn(2, 32, 30),))
    assert report.by_operator == {"selective_scan": expected}
    assert report.flops == expected


def test_ss2d_layer_counted_by_hand():
    from mmvmamba.models.layers.ss2d import SS2D

    layer = SS2D(d_model=8, d_state=1, ssm_ratio=1.0)  # Di = 8, R = ceil(8/16) = 1, K = 4
    report = count_flops(layer, (1, 8, 4, 4))  # L = 16
    by_hand = {
        # depthwise 3x3 8*9*16; the per-pixel maps on contiguous maps run as bmm: in_proj
        # 8*8*16 + x_proj 4*(1+2)*8*16 + dt_proj 4*8*1*16; out_proj reads the channels-last
        # out_norm output and runs as linear: 8*8*16
        "conv": 1152,
        "bmm": 1024 + 1536 + 512,
        "linear": 1024,
        "selective_scan": 9 * 1 * 16 * 32 * 1 + 1 * 32 * 16,  # B=1, L=16, D=K*Di=32, N=1
        "layer_norm": 5 * 8 * 16,  # out_norm over Di channels
    }
    assert report.by_operator == by_hand
    assert report.flops == sum(by_hand.values()) == 11008
    assert report.params == count_params(layer) == sum(p.numel() for p in layer.parameters())
    assert not report.unsupported


def test_count_flops_rejects_bad_shape():
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(nn.Conv2d(3, 3, 1), (3, 8))


def test_get_flops_tool_writes_files(tmp_path):
    cfg = write_tiny_config(tmp_path / "tiny.py")
    tool = load_tool("get_flops")
    out = tmp_path / "out"
    rows = tool.main([cfg, "--sizes", "32", "64", "--out-dir", str(out)])
    assert [r["H"] for r in rows] == [32, 64]
    csv_rows = read_csv(out / "flops.csv")
    assert len(csv_rows) == 2 and float(csv_rows[1]["GFLOPs"]) > float(csv_rows[0]["GFLOPs"]) > 0
    # linear in pixels up to the constant head: 4x the pixels, a bit under 4x the flops
    ratio = float(csv_rows[1]["GFLOPs"]) / float(csv_rows[0]["GFLOPs"])
    assert 3.0 < ratio <= 4.0
    assert_png(out / "flops.png")


@pytest.mark.parametrize(
    "config",
    [
        "configs/demo/upernet_vmamba-demo_shapes-128x128.py",
        "configs/demo/mask-rcnn_vmamba-demo_fpn_shapes.py",
    ],
)
def test_get_flops_tool_det_seg_configs(tmp_path, config):
    pytest.importorskip("mmseg" if "upernet" in config else "mmdet")
    from analysis_helpers import REPO

    path = os.path.join(REPO, config)
    if not os.path.isfile(path):
        pytest.skip(f"{config} not in this checkout")
    rows = load_tool("get_flops").main([path, "--shape", "64", "64", "--out-dir", str(tmp_path)])
    assert rows[0]["GFLOPs"] > 0 and rows[0]["params"] > 0
    assert rows[0]["scan_G"] > 0  # the VMamba backbone's scans were counted


# (arch, GFLOPs, params) of the released models, from the official fvcore count at 224
PAPER = [
    ("tiny", 4.905610, 30_249_064),
    ("small", 8.715775, 50_147_752),
    ("base", 15.358944, 88_557_800),
    ("tiny-s2l5", 4.857742, 30_705_832),
    ("v0-tiny", 5.626895, 22_893_448),
    ("v0-small", 11.231523, 44_417_416),
    ("v0-base", 18.020115, 76_254_056),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch, gflops, params", PAPER, ids=[p[0] for p in PAPER])
def test_paper_flops_and_params(arch, gflops, params):
    from mmvmamba.analysis.models import build_vmamba_classifier

    report = count_flops(build_vmamba_classifier(arch), (1, 3, 224, 224))
    assert report.params == params
    assert abs(report.gflops - gflops) / gflops < 1e-3  # the issue asks 1%; we are exact
    assert not report.unsupported
    if arch == "tiny":  # the official breakdown
        ops = {k: v / 1e9 for k, v in report.by_operator.items()}
        # the official "conv" count holds the 1x1 maps, which run as bmm (contiguous maps) or
        # linear (channels-last maps) here; "linear" also holds the head (0.000768)
        head = 0.000768
        assert ops["conv"] + ops["bmm"] + ops["linear"] - head == pytest.approx(4.8119, abs=1e-4)
        assert ops["selective_scan"] == pytest.approx(0.0632, abs=1e-4)
        assert ops["layer_norm"] == pytest.approx(0.0297, abs=1e-4)

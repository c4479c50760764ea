"""ERF: exact support of a conv stack, CNN more local than VMamba (numerically), tool files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("mmpretrain")

from analysis_helpers import (  # noqa: E402
    TINY_ARCH,
    assert_png,
    load_tool,
    read_csv,
    write_tiny_config,
)

from mmvmamba.analysis.erf import area_ratio, central_mass, compute_erf, random_images  # noqa: E402


def _conv_stack(depth: int) -> nn.Module:
    layers = []
    for i in range(depth):
        layers += [nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_erf_of_conv_stack_has_exact_support():
    # n stacked 3x3 convs see exactly a (2n+1)^2 window around the centre
    erf = compute_erf(_conv_stack(3), random_images(3, 33), progress=False)
    assert erf.shape == (33, 33)
    inside = np.zeros_like(erf, dtype=bool)
    inside[16 - 3 : 16 + 4, 16 - 3 : 16 + 4] = True
    assert erf[~inside].max() == 0.0 and erf[inside].min() > 0.0
    assert central_mass(erf, 0.25) == pytest.approx(1.0)


def test_statistics_on_hand_made_maps():
    point = np.zeros((9, 9))
    point[4, 4] = 1.0
    assert central_mass(point, 1 / 9) == 1.0 and area_ratio(point, 0.99) == pytest.approx(1 / 81)
    flat = np.ones((8, 8))
    assert central_mass(flat, 0.5) == pytest.approx(16 / 64)
    # centred odd boxes 1, 3, 5, 7 px: 25/64 < 50% <= 49/64
    assert area_ratio(flat, 0.5) == pytest.approx(49 / 64)
    with pytest.raises(ValueError, match="threshold"):
        area_ratio(flat, 0.0)


def test_cnn_is_more_local_than_vmamba():
    from mmpretrain.models import ResNet

    from mmvmamba.models.backbones.vmamba import VMamba

    torch.manual_seed(0)
    images = random_images(2, 64)
    resnet = ResNet(depth=18, out_indices=(3,))
    resnet.init_weights()
    vmamba = VMamba(arch=TINY_ARCH, out_indices=(3,))
    erf_cnn = compute_erf(resnet, images, progress=False)
    erf_ssm = compute_erf(vmamba, images, progress=False)
    mass_cnn, mass_ssm = central_mass(erf_cnn, 0.25), central_mass(erf_ssm, 0.25)
    area_cnn, area_ssm = area_ratio(erf_cnn, 0.5), area_ratio(erf_ssm, 0.5)
    assert mass_cnn > mass_ssm + 0.1, (mass_cnn, mass_ssm)
    assert area_cnn < area_ssm, (area_cnn, area_ssm)


def test_erf_tool_writes_files(tmp_path):
    cfg = write_tiny_config(tmp_path / "tiny.py")
    out = tmp_path / "out"
    rows = load_tool("erf").main(
        ["--models", cfg, cfg, "--checkpoints", "none", "none", "--size", "32", "--num", "2",
         "--out-dir", str(out)]
    )  # fmt: skip
    assert len(rows) == 2 and 0 < rows[0]["centre_quarter_mass"] <= 1
    assert len(read_csv(out / "erf.csv")) == 2
    assert_png(out / "erf.png")
    assert len(list(out.glob("erf_*.npy"))) == 1  # same model twice: same file name


def test_erf_tool_rejects_mismatched_checkpoints():
    with pytest.raises(SystemExit):
        load_tool("erf").parse_args(["--models", "a", "b", "--checkpoints", "none"])


def test_channel_sum_after_layernorm_needs_relu():
    # LayerNorm outputs sum to zero over channels: without the ReLU the ERF vanishes
    from mmvmamba.models.layers.norm import LayerNorm2d

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), LayerNorm2d(8))
    images = random_images(1, 9)
    zero = compute_erf(model, images, relu=False, progress=False)
    assert np.abs(zero).max() < 1e-6
    assert compute_erf(model, images, relu=True, progress=False).max() > 1e-3

"""tools/test.py --fuse: the checkpoint is tested with the fused CPU blocks, with the plain
model's metrics; a model that is not on the CPU is refused with the fix."""

from __future__ import annotations

import types

import pytest
from torch import nn

pytest.importorskip("mmseg")

from tool_helpers import load_tool, write_config  # noqa: E402


@pytest.fixture(scope="module")
def test_tool():
    return load_tool("test")


def test_fuse_refuses_a_model_off_the_cpu(test_tool):
    runner = types.SimpleNamespace(model=nn.Linear(2, 2).to("meta"))
    with pytest.raises(ValueError, match=r"--fuse is for CPU inference, but the model is on meta"):
        test_tool.fuse_model_for_cpu(runner)


def test_fuse_option_is_parsed(test_tool):
    assert test_tool.parse_args(["c.py", "w.pth", "--fuse"]).fuse
    assert not test_tool.parse_args(["c.py", "w.pth"]).fuse


@pytest.mark.slow
def test_fused_test_run_gives_the_plain_metrics(test_tool, tmp_path, monkeypatch):
    import mmvmamba.deployment as deployment
    from mmvmamba.datasets import make_ade_demo
    from mmvmamba.models.layers.cpu_fusion import FusedVSSBlock

    data = make_ade_demo(tmp_path / "ade", 2, 4, 96, seed=1)
    cfg = write_config(tmp_path / "seg.py", "seg", data, max_iters=1, ckpt_interval=1)
    work = tmp_path / "work"
    load_tool("train").main([str(cfg), "--work-dir", str(work)])
    ckpt = str(work / "iter_1.pth")
    plain = test_tool.main([str(cfg), ckpt, "--work-dir", str(tmp_path / "plain")])

    fused_blocks = []
    real = deployment.fuse_for_cpu

    def spy(model, *args, **kwargs):
        model = real(model, *args, **kwargs)
        fused_blocks.append(sum(isinstance(m, FusedVSSBlock) for m in model.modules()))
        return model

    monkeypatch.setattr(deployment, "fuse_for_cpu", spy)
    fused = test_tool.main([str(cfg), ckpt, "--work-dir", str(tmp_path / "fused"), "--fuse"])
    assert len(fused_blocks) == 1 and fused_blocks[0] > 0
    assert set(fused) == set(plain) >= {"aAcc", "mIoU"}
    for key in plain:
        assert fused[key] == pytest.approx(plain[key], abs=1e-3), key

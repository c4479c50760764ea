"""tools/train.py and tools/test.py: one-line config errors (and tracebacks for errors inside a
model), train -> test, kill -> --resume, and an official-format Mask R-CNN checkpoint evaluated
with the COCO metric."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")
pytest.importorskip("pycocotools")

from tool_helpers import REPO, load_tool, make_data, python, write_config  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def train_tool():
    return load_tool("train")


@pytest.fixture(scope="module")
def test_tool():
    return load_tool("test")


def _error_line(tool, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        tool.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and "--debug" in lines[1], err
    return lines[0]


def test_config_mistakes_give_one_line(train_tool, data, tmp_path, capsys):
    cfg = write_config(tmp_path / "seg.py", "seg", data["ade"], 2, 2)
    work = ["--work-dir", str(tmp_path / "w")]
    line = _error_line(train_tool, [str(tmp_path / "nope.py")] + work, capsys)
    assert "nope.py" in line and "does not exist" in line
    line = _error_line(
        train_tool, [str(cfg), "--cfg-options", "model.backbone.type=VMambaa"] + work, capsys
    )
    assert "VMambaa is not in the" in line
    # a Swin argument left in the backbone (the classic mistake without _delete_=True)
    line = _error_line(
        train_tool, [str(cfg), "--cfg-options", "model.backbone.embed_dims=96"] + work, capsys
    )
    assert "embed_dims" in line
    bad_base = tmp_path / "bad_base.py"
    bad_base.write_text("_base_ = 'mmdet::swin/no_such_config.py'\n")
    line = _error_line(train_tool, [str(bad_base)] + work, capsys)
    assert "no_such_config.py" in line
    line = _error_line(
        train_tool,
        [str(cfg), "--cfg-options", f"train_dataloader.dataset.data_root={tmp_path}/x"] + work,
        capsys,
    )
    assert f"{tmp_path}/x" in line
    line = _error_line(train_tool, [str(cfg), "--resume", str(tmp_path / "c.pth")] + work, capsys)
    assert "c.pth" in line


BROKEN_BACKBONE = """
from mmseg.registry import MODELS
from torch import nn


@MODELS.register_module(force=True)
class BrokenBackbone(nn.Module):
    def __init__(self, fail="runtime", **kwargs):
        super().__init__()
        if fail == "runtime":  # a bug inside the model: torch-style RuntimeError
            raise RuntimeError("shape bug inside the model")
        if fail != "none":
            raise ValueError(f"unknown fail={fail!r}; use runtime or none")
"""


def test_runtime_error_inside_a_model_keeps_its_traceback(
    train_tool, data, tmp_path, capsys, monkeypatch
):
    """Only configuration mistakes become one line: a RuntimeError raised while the model is
    built is a bug to debug, so it keeps its traceback (and a non-2 exit status)."""
    (tmp_path / "broken_backbone.py").write_text(BROKEN_BACKBONE)
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = "custom_imports = dict(imports=['mmvmamba', 'broken_backbone'])\n"
    cfg = write_config(tmp_path / "seg.py", "seg", data["ade"], 2, 2, extra=extra)
    argv = [str(cfg), "--work-dir", str(tmp_path / "w"), "--cfg-options"]
    argv.append("model.backbone.type=BrokenBackbone")
    with pytest.raises(RuntimeError, match="shape bug inside the model"):
        train_tool.main(argv)
    assert "error:" not in capsys.readouterr().err
    # the same model with a bad argument value is a config mistake: one line
    line = _error_line(train_tool, argv + ["model.backbone.fail=nope"], capsys)
    assert line.startswith("error: ValueError") and "fail='nope'" in line


def test_flush_denormal_option(train_tool):
    assert train_tool.parse_args(["c.py", "--flush-denormal"]).flush_denormal
    assert not train_tool.parse_args(["c.py"]).flush_denormal
    tiny = torch.tensor([1e-39])  # a subnormal float32, made before flushing is on
    assert (tiny * 1.0).item() > 0
    try:
        train_tool.set_flush_denormal(True)
        assert (tiny * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
    assert (tiny * 1.0).item() > 0
    train_tool.set_flush_denormal(False)  # off: the process's mode is left alone
    assert (tiny * 1.0).item() > 0


def test_train_then_test_segmentation(train_tool, test_tool, data, tmp_path, capsys):
    cfg = write_config(tmp_path / "seg.py", "seg", data["ade"], max_iters=4, ckpt_interval=4)
    work = tmp_path / "work"
    train_tool.main([str(cfg), "--work-dir", str(work)])
    log = capsys.readouterr()
    assert "Iter(train) [4/4]" in log.out
    assert "FileClient" not in log.out + log.err  # mmengine's note about its own API
    ckpt = work / "iter_4.pth"
    assert ckpt.exists()
    assert (work / "last_checkpoint").read_text().strip().endswith("iter_4.pth")
    metrics = test_tool.main(
        [str(cfg), str(ckpt), "--work-dir", str(tmp_path / "test"), "--out", str(tmp_path / "p")]
    )
    assert set(metrics) >= {"aAcc", "mIoU", "mAcc"}
    assert 0.0 <= metrics["mIoU"] <= 100.0
    assert len(list((tmp_path / "p").glob("*.png"))) == 4  # one prediction PNG per val image


@pytest.mark.slow
def test_kill_then_resume_continues_from_last_checkpoint(data, tmp_path):
    max_iters, interval = 14, 3
    kill_at = random.Random().randint(4, 11)  # unseeded on purpose: any iteration must work
    cfg = write_config(tmp_path / "seg.py", "seg", data["ade"], max_iters, interval)
    work = tmp_path / "work"
    cmd = [python(), str(REPO / "tools" / "train.py"), str(cfg), "--work-dir", str(work)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    seen, deadline = [], time.time() + 300
    for line in proc.stdout:
        seen.append(line)
        if f"Iter(train) [{kill_at:>2}/{max_iters}]" in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.time() < deadline, "".join(seen[-30:])
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (kill_at, "".join(seen[-30:]))
    last = Path((work / "last_checkpoint").read_text().strip())
    resumed_from = int(last.stem.split("_")[1])
    assert resumed_from % interval == 0 and interval <= resumed_from <= kill_at + 1, kill_at
    assert torch.load(last, map_location="cpu", weights_only=True)["meta"]["iter"] == resumed_from

    out = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert f"resumed epoch: 0, iter: {resumed_from}" in log
    logged = [int(x) for x in __import__("re").findall(r"Iter\(train\) \[\s*(\d+)/", log)]
    assert logged[0] == resumed_from + 1 and logged[-1] == max_iters, logged
    final = torch.load(work / f"iter_{max_iters}.pth", map_location="cpu", weights_only=True)
    assert final["meta"]["iter"] == max_iters
    # the optimizer state came back: AdamW counted every step of both runs
    steps = {float(s["step"]) for s in final["optimizer"]["state"].values()}
    assert steps == {float(max_iters)}


def _official_layout_checkpoint(cfg_path: Path, out: Path) -> dict:
    """A Mask R-CNN checkpoint as the official VMamba detection releases store it: mmengine's
    ``{'meta', 'state_dict'}`` with ``backbone.*`` (official VSSM names), ``neck.*``,
    ``rpn_head.*`` and ``roi_head.*`` keys; random values."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(str(cfg_path))
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=gen) * 0.02 for k, v in model.state_dict().items()}
    meta = dict(epoch=12, iter=87960, mmdet_version="3.3.0", dataset_meta=None)
    torch.save(dict(meta=meta, state_dict=state), out)
    return state


@pytest.mark.slow
def test_official_format_detection_checkpoint(test_tool, data, tmp_path, capsys):
    cfg = write_config(tmp_path / "det.py", "det", data["coco"], 2, 2)
    ckpt = tmp_path / "mask_rcnn_vssm_fpn_coco_tiny_s_epoch_12.pth"
    state = _official_layout_checkpoint(cfg, ckpt)
    # the names of the official release (MM_VSSM backbone + mmdet Mask R-CNN heads)
    for key in (
        "backbone.patch_embed.0.weight",
        "backbone.patch_embed.7.weight",
        "backbone.layers.0.blocks.0.op.A_logs",
        "backbone.layers.0.blocks.0.op.x_proj_weight",
        "backbone.layers.0.downsample.1.weight",
        "backbone.outnorm0.weight",
        "backbone.outnorm3.bias",
        "neck.lateral_convs.0.conv.weight",
        "rpn_head.rpn_conv.weight",
        "roi_head.bbox_head.fc_cls.weight",
        "roi_head.mask_head.conv_logits.weight",
    ):
        assert key in state, key
    metrics = test_tool.main([str(cfg), str(ckpt), "--work-dir", str(tmp_path / "t")])
    for key in ("coco/bbox_mAP", "coco/bbox_mAP_50", "coco/segm_mAP", "coco/segm_mAP_50"):
        assert key in metrics and -1.0 <= metrics[key] <= 1.0
    log = capsys.readouterr()
    assert "all keys match the model" in log.out + log.err
    assert "missing keys in source state_dict" not in log.out + log.err

    # a checkpoint that does not fit is refused, naming the keys
    del state["backbone.outnorm3.weight"]
    state["roi_head.extra.weight"] = torch.zeros(1)
    torch.save(dict(meta={}, state_dict=state), ckpt)
    line = _error_line(test_tool, [str(cfg), str(ckpt), "--work-dir", str(tmp_path / "t")], capsys)
    assert "backbone.outnorm3.weight" in line and "roi_head.extra.weight" in line

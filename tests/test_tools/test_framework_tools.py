"""Our configs through the frameworks' own doors: mmdet's and mmseg's shipped ``tools/train.py``
and ``tools/test.py`` (``<package>/.mim/tools``) train and evaluate the demo configs, mmpretrain's
train and evaluate a classification config, and ``DetInferencer`` / ``MMSegInferencer`` give the
predictions ``tools/test.py --out`` writes.

Tiny on purpose: 4 training images, 2 validation images, 2 iterations per task.
"""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

mmdet = pytest.importorskip("mmdet")
mmseg = pytest.importorskip("mmseg")
mmpretrain = pytest.importorskip("mmpretrain")
pytest.importorskip("pycocotools")

from tool_helpers import load_tool, python, write_config  # noqa: E402

from mmvmamba.datasets import make_ade_demo, make_coco_demo, make_imagenet_demo  # noqa: E402

ITERS = 2
STOCK_TOOLS = {
    "det": Path(mmdet.__file__).parent / ".mim" / "tools",
    "seg": Path(mmseg.__file__).parent / ".mim" / "tools",
    "cls": Path(mmpretrain.__file__).parent / ".mim" / "tools",
}
REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


def _stock_train(task: str, root: Path) -> tuple[Path, Path]:
    """Data, config and a checkpoint of ``ITERS`` iterations made by the framework's train.py."""
    if task == "det":
        data = make_coco_demo(root / "coco", 4, 2, 64, seed=0)
    else:
        data = make_ade_demo(root / "ade", 4, 2, 64, seed=1)
    # two iterations teach the detector little: keep every box, so there are boxes to compare
    extra = "model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))\n" if task == "det" else ""
    cfg = write_config(root / f"{task}.py", task, data, ITERS, ITERS, extra=extra)
    work = root / "work"
    _run([python(), str(STOCK_TOOLS[task] / "train.py"), str(cfg), "--work-dir", str(work)], root)
    ckpt = work / f"iter_{ITERS}.pth"
    assert ckpt.is_file()
    return cfg, ckpt


@pytest.fixture(scope="module")
def det_run(tmp_path_factory):
    return _stock_train("det", tmp_path_factory.mktemp("det"))


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    return _stock_train("seg", tmp_path_factory.mktemp("seg"))


def _val_images(cfg: Path) -> list[str]:
    from mmengine.config import Config

    root = Path(Config.fromfile(str(cfg)).test_dataloader.dataset.data_root)
    return sorted(str(p) for p in root.rglob("*.jpg") if "val" in p.parent.name)


def _stock_test_py(task: str, run: tuple[Path, Path], cwd: Path) -> str:
    cfg, ckpt = run
    tool = STOCK_TOOLS[task] / "test.py"
    return _run([python(), str(tool), str(cfg), str(ckpt), "--work-dir", "t"], cwd)


def _our_test_py(run: tuple[Path, Path], out: Path, *options: str) -> None:
    """``tools/test.py CONFIG CHECKPOINT --out OUT``, one image per batch (as the inferencers)."""
    cfg, ckpt = run
    work = out.parent / "t"
    argv = [str(cfg), str(ckpt), "--work-dir", str(work), "--out", str(out), *options]
    load_tool("test").main(argv + ["--cfg-options", "test_dataloader.batch_size=1"])


@pytest.mark.slow
def test_stock_mmdet_test_py(det_run, tmp_path):
    log = _stock_test_py("det", det_run, tmp_path)
    assert "coco/bbox_mAP: " in log and "coco/segm_mAP: " in log, log[-3000:]


@pytest.mark.slow
def test_stock_mmseg_test_py(seg_run, tmp_path):
    log = _stock_test_py("seg", seg_run, tmp_path)
    assert "mIoU: " in log, log[-3000:]


@pytest.mark.slow
def test_det_inferencer_matches_tools_test(det_run, tmp_path):
    from mmdet.apis import DetInferencer

    cfg, ckpt = det_run
    out = tmp_path / "preds.pkl"
    _our_test_py(det_run, out)
    dumped = {Path(r["img_path"]).name: r["pred_instances"] for r in pickle.loads(out.read_bytes())}
    images = _val_images(cfg)
    assert sorted(dumped) == sorted(Path(p).name for p in images)

    inferencer = DetInferencer(model=str(cfg), weights=str(ckpt), device="cpu")
    results = inferencer(images, return_datasamples=True, batch_size=1)["predictions"]
    for path, sample in zip(images, results):
        want, got = dumped[Path(path).name], sample.pred_instances
        assert len(got) == len(want["labels"]) > 0
        torch.testing.assert_close(got.bboxes, want["bboxes"], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(got.scores, want["scores"], rtol=1e-5, atol=1e-9)
        assert torch.equal(got.labels, want["labels"])


@pytest.mark.slow
def test_mmseg_inferencer_matches_tools_test(seg_run, tmp_path):
    from mmseg.apis import MMSegInferencer

    cfg, ckpt = seg_run
    out = tmp_path / "pngs"
    _our_test_py(seg_run, out)
    images = _val_images(cfg)
    inferencer = MMSegInferencer(model=str(cfg), weights=str(ckpt), device="cpu")
    predictions = inferencer(images, batch_size=1)["predictions"]
    for path, pred in zip(images, predictions):
        written = np.asarray(Image.open(out / (Path(path).stem + ".png")))
        # the demo sets reduce_zero_label: the PNGs hold class + 1 (0 = unlabelled), as ADE20K
        assert written.shape == pred.shape
        np.testing.assert_array_equal(written, pred + 1)


@pytest.mark.slow
def test_stock_mmpretrain_train_and_test_py(tmp_path):
    """Vim-Ti's ImageNet recipe (EMA, Mixup/CutMix, repeated augmentation) for one epoch of
    2 iterations on an ImageNet-layout folder, then the framework's test.py on its checkpoint."""
    data = make_imagenet_demo(tmp_path / "imagenet", 4, 2, 64, seed=2)
    options = [
        "train_cfg.max_epochs=1",
        "train_cfg.val_interval=2",
        "train_dataloader.batch_size=2",
    ]
    options += ["param_scheduler.0.end=1", "param_scheduler.1.begin=1"]
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        options += [f"{loader}.dataset.data_root={data}", f"{loader}.num_workers=0"]
        options += [f"{loader}.persistent_workers=False"]
    cfg = str(REPO / "configs" / "classification" / "vim-tiny_8xb128_in1k.py")
    tools = STOCK_TOOLS["cls"]
    log = _run([python(), str(tools / "train.py"), cfg, "--work-dir", "w", "--cfg-options"]
               + options, tmp_path)  # fmt: skip
    assert "Epoch(train) [1][2/2]" in log, log[-3000:]
    ckpt = tmp_path / "w" / "epoch_1.pth"
    log = _run([python(), str(tools / "test.py"), cfg, str(ckpt), "--work-dir", "t",
                "--cfg-options"] + options, tmp_path)  # fmt: skip
    assert "accuracy/top1: " in log, log[-3000:]

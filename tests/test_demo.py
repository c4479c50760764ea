"""The bundled-data demo: it learns (trained >> untrained on the real metrics) and writes its
pictures; the report helpers draw what they are given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmvmamba.engine.demo_report import colour_labels, plot_loss_curves, read_scalars

REPO = Path(__file__).resolve().parents[1]


def test_colour_labels_hand_computed():
    palette = [(1, 2, 3), (10, 20, 30)]
    label = np.array([[0, 1], [255, 1]])
    out = colour_labels(label, palette)
    assert out.tolist() == [[[1, 2, 3], [10, 20, 30]], [[0, 0, 0], [10, 20, 30]]]


def test_loss_curves_from_mmengine_scalars(tmp_path):
    run = tmp_path / "work" / "20260101_000000" / "vis_data"
    run.mkdir(parents=True)
    lines = [
        {"lr": 0.1, "loss": 2.0 - 0.1 * i, "loss_cls": 1.0, "iter": i, "step": i}
        for i in (10, 20, 30)
    ]
    lines.append({"coco/bbox_mAP": 0.5, "step": 30})  # validation records carry no loss
    (run / "scalars.json").write_text("\n".join(json.dumps(x) for x in lines))
    records = read_scalars(tmp_path / "work")
    assert [r["iter"] for r in records] == [10, 20, 30]
    png = plot_loss_curves({"det": tmp_path / "work"}, tmp_path / "curves.png")
    assert Image.open(png).size[0] > 300
    with pytest.raises(FileNotFoundError, match="scalars.json"):
        read_scalars(tmp_path / "empty")


@pytest.mark.slow
def test_quick_demo_learns(tmp_path):
    pytest.importorskip("mmdet")
    pytest.importorskip("mmseg")
    out, data = tmp_path / "demo", tmp_path / "data"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "demo.py"),
            "--quick",
            "--out",
            str(out),
            "--data",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    det, seg = metrics["det"], metrics["seg"]
    # the real metrics' tables were printed (pycocotools summary, mmseg per-class table)
    log = proc.stdout + proc.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in log
    assert "per class results" in log
    # learning, by a wide margin, on both tasks
    assert det["trained"]["coco/bbox_mAP"] >= det["untrained"]["coco/bbox_mAP"] + 0.25, det
    assert det["trained"]["coco/segm_mAP"] >= det["untrained"]["coco/segm_mAP"] + 0.25, det
    assert seg["trained"]["mIoU"] >= seg["untrained"]["mIoU"] + 30.0, seg
    for name in ("loss_curves.png", "predictions.png"):
        assert Image.open(out / name).size[0] > 300
    assert list((out / "det").glob("iter_*.pth")) and list((out / "seg").glob("iter_*.pth"))

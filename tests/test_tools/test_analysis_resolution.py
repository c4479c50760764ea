"""resolution_eval: pipeline rescaling by hand, and a run on generated ImageNet-style folders."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mmpretrain")

from analysis_helpers import assert_png, load_tool, read_csv, write_tiny_config  # noqa: E402

from mmvmamba.analysis.resolution import rescale_pipeline  # noqa: E402

IMAGENET_TEST = [
    dict(type="LoadImageFromFile"),
    dict(type="ResizeEdge", scale=256, edge="short", backend="pillow", interpolation="bicubic"),
    dict(type="CenterCrop", crop_size=224),
    dict(type="PackInputs"),
]


def test_rescale_pipeline_keeps_the_resize_to_crop_ratio():
    out = rescale_pipeline(IMAGENET_TEST, 768)
    assert out[1]["scale"] == 878  # round(256 * 768 / 224) = round(877.71)
    assert out[2]["crop_size"] == 768
    assert IMAGENET_TEST[2]["crop_size"] == 224  # the input is not modified
    fixed = rescale_pipeline([dict(type="Resize", scale=(224, 224)), dict(type="PackInputs")], 384)
    assert fixed[0]["scale"] == (384, 384)
    with pytest.raises(ValueError, match="CenterCrop"):
        rescale_pipeline([dict(type="PackInputs")], 384)


def _make_folder(root, classes=("a", "b"), per_class=3, size=40):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")


def test_resolution_eval_tool_on_generated_data(tmp_path):
    data = tmp_path / "val"
    _make_folder(data)
    extra = f"""
test_dataloader = dict(
    batch_size=2,
    num_workers=0,
    dataset=dict(
        type='CustomDataset',
        data_root={str(data)!r},
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='ResizeEdge', scale=36, edge='short'),
            dict(type='CenterCrop', crop_size=32),
            dict(type='PackInputs'),
        ],
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(type='Accuracy', topk=(1,))
"""
    cfg = write_tiny_config(tmp_path / "tiny.py", extra)
    out = tmp_path / "out"
    rows = load_tool("resolution_eval").main(
        [cfg, "none", "--sizes", "32", "48", "--out-dir", str(out)]
    )
    assert [(r["size"], r["samples"]) for r in rows] == [(32, 6), (48, 6)]
    for row in rows:
        # 6 images: top-1 is a multiple of 1/6
        assert 0 <= row["accuracy/top1"] <= 100
        assert round(row["accuracy/top1"] * 6 / 100, 6) == round(row["accuracy/top1"] * 6 / 100)
    assert [int(r["size"]) for r in read_csv(out / "resolution_eval.csv")] == [32, 48]
    assert_png(out / "resolution_eval.png")

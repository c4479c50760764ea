"""Bad input gets a clear error naming the value and the fix, never a crash inside a kernel."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import vmamba_ops
from mmvmamba.datasets.validate import DatasetError, validate_coco

from .helpers import tiny_vmamba


# --- the backbone --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, exc, pattern",
    [
        (
            lambda: torch.randn(1, 3, 3, 64),
            ValueError,
            r"input 3x64 is smaller than the patch size 4",
        ),
        (
            lambda: torch.randn(1, 3, 64, 2),
            ValueError,
            r"input 64x2 is smaller than the patch size",
        ),
        (lambda: torch.randn(1, 1, 64, 64), ValueError, r"in_channels=3.*1 channels"),
        (lambda: torch.randn(2, 4, 64, 64), ValueError, r"in_channels=3.*4 channels"),
        (lambda: torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, r"uint8.*x\.float\(\)"),
        (lambda: torch.zeros(1, 3, 64, 64, dtype=torch.long), TypeError, r"int64"),
        (lambda: torch.randn(3, 64, 64), ValueError, r"\(B, C, H, W\).*\(3, 64, 64\)"),
        (lambda: torch.randn(0, 3, 64, 64), ValueError, r"empty batch \(batch size 0"),
    ],
    ids=["h<patch", "w<patch", "1-channel", "4-channel", "uint8", "int64", "3-d", "empty-batch"],
)
def test_backbone_rejects_bad_input_clearly(make, exc, pattern):
    pytest.importorskip("mmpretrain")
    model = tiny_vmamba()
    with pytest.raises(exc, match=pattern):
        model(make())


def test_backbone_accepts_odd_sizes_at_least_the_patch():
    """The smallest valid input and odd sizes run (no kernel assumes multiples of 32)."""
    pytest.importorskip("mmpretrain")
    model = tiny_vmamba(out_indices=(0, 1, 2, 3))
    for h, w in [(4, 4), (37, 51)]:
        outs = model(torch.randn(1, 3, h, w))
        assert all(torch.isfinite(o).all() for o in outs)


def test_ops_reject_integer_and_mismatched_inputs_before_the_kernel():
    u = torch.randn(1, 4, 8)
    A = -torch.rand(4, 2)
    Bm = torch.randn(1, 2, 8)
    with pytest.raises(TypeError, match=r"`u` has dtype torch.int64"):
        vmamba_ops.selective_scan(u.long(), u, A, Bm, Bm)
    with pytest.raises(ValueError, match=r"`delta` has shape \(1, 4, 7\), expected \(1, 4, 8\)"):
        vmamba_ops.selective_scan(u, u[..., :7], A, Bm, Bm)
    with pytest.raises(ValueError, match=r"cross_scan: x must be \(B, C, H, W\)"):
        vmamba_ops.cross_scan(torch.randn(2, 3, 4))


# --- COCO annotations ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    from mmvmamba.datasets import make_coco_demo

    return make_coco_demo(tmp_path_factory.mktemp("coco"), n_train=4, n_val=2, size=64)


def _copy(coco_root, tmp_path):
    dst = tmp_path / "coco"
    shutil.copytree(coco_root, dst)
    return dst, dst / "annotations" / "instances_train2017.json", dst / "train2017"


def test_generated_coco_is_valid(coco_root):
    rep = validate_coco(
        coco_root / "annotations" / "instances_train2017.json", coco_root / "train2017"
    )
    assert rep.n_images == 4 and rep.n_annotations > 0 and not rep.degenerate_boxes


def test_zero_area_box_is_named(coco_root, tmp_path):
    _, ann, _ = _copy(coco_root, tmp_path)
    data = json.loads(ann.read_text())
    bad = data["annotations"][1]
    bad["bbox"][2] = 0.0
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"zero-area boxes.*annotation {bad['id']} .*bbox"):
        validate_coco(ann)
    rep = validate_coco(ann, allow_degenerate_boxes=True)
    assert len(rep.degenerate_boxes) == 1


def test_mmdet_silently_drops_zero_area_boxes(coco_root, tmp_path):
    """Why validate_coco exists: mmdet's CocoDataset neither raises nor warns."""
    mmdet_datasets = pytest.importorskip("mmdet.datasets")
    root, ann, _ = _copy(coco_root, tmp_path)
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"][3] = 0.0
    n_img0 = sum(a["image_id"] == data["annotations"][0]["image_id"] for a in data["annotations"])
    ann.write_text(json.dumps(data))
    ds = mmdet_datasets.CocoDataset(
        data_root=str(root),
        ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
        metainfo=dict(classes=("circle", "square", "triangle")),
        filter_cfg=None,
        pipeline=[],
        test_mode=False,
    )
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    info = next(d for d in infos if d["img_id"] == data["annotations"][0]["image_id"])
    assert len(info["instances"]) == n_img0 - 1  # the box is gone, nothing said


def test_corrupt_json_names_the_file_and_position(coco_root, tmp_path):
    _, ann, _ = _copy(coco_root, tmp_path)
    text = ann.read_text()
    ann.write_text(text[: len(text) // 2])  # truncated download
    with pytest.raises(DatasetError, match=rf"'{ann}' is not valid JSON: .* at line \d+, column"):
        validate_coco(ann)


def test_mmdet_corrupt_json_error_does_not_name_the_file(coco_root, tmp_path):
    """Why validate_coco exists: mmdet raises a bare JSONDecodeError."""
    mmdet_datasets = pytest.importorskip("mmdet.datasets")
    root, ann, _ = _copy(coco_root, tmp_path)
    ann.write_text(ann.read_text()[:100])
    with pytest.raises(json.JSONDecodeError) as info:
        mmdet_datasets.CocoDataset(
            data_root=str(root),
            ann_file="annotations/instances_train2017.json",
            data_prefix=dict(img="train2017/"),
            pipeline=[],
        )
    assert str(ann) not in str(info.value)


def test_missing_image_file_is_named(coco_root, tmp_path):
    _, ann, imgs = _copy(coco_root, tmp_path)
    victim = sorted(imgs.iterdir())[2]
    victim.unlink()
    with pytest.raises(DatasetError, match=rf"1 of 4 image files are missing: {victim}"):
        validate_coco(ann, imgs)


def test_missing_image_file_in_the_mmdet_pipeline_names_the_file(coco_root, tmp_path):
    """mmdet's loader names the file (at load time); we only check that it does."""
    mmdet_datasets = pytest.importorskip("mmdet.datasets")
    root, ann, imgs = _copy(coco_root, tmp_path)
    ds = mmdet_datasets.CocoDataset(
        data_root=str(root),
        ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
        metainfo=dict(classes=("circle", "square", "triangle")),
        pipeline=[dict(type="LoadImageFromFile")],
        filter_cfg=None,
    )
    path = ds.get_data_info(0)["img_path"]
    (imgs / path.split("/")[-1]).unlink()
    with pytest.raises(FileNotFoundError, match=path.split("/")[-1]):
        ds[0]


def test_annotation_with_unknown_image_is_named(coco_root, tmp_path):
    _, ann, _ = _copy(coco_root, tmp_path)
    data = json.loads(ann.read_text())
    data["annotations"][0]["image_id"] = 987654
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"image_id 987654 not in images"):
        validate_coco(ann)


def test_validate_cli(coco_root, tmp_path, capsys):
    from mmvmamba.datasets.validate import main

    _, ann, imgs = _copy(coco_root, tmp_path)
    assert main([str(ann), "--img-dir", str(imgs)]) == 0
    assert "ok: 4 images" in capsys.readouterr().out
    ann.write_text("{")
    assert main([str(ann)]) == 1
    assert "not valid JSON" in capsys.readouterr().err

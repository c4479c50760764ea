"""The synthetic demo sets: deterministic, in the real formats, annotations agree with pixels."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmvmamba.datasets import (
    SEG_CLASSES,
    SHAPE_CLASSES,
    DatasetError,
    DatasetLayoutError,
    check_ade20k,
    check_coco,
    make_ade_demo,
    make_coco_demo,
    make_imagenet_demo,
)
from mmvmamba.datasets.synthetic import _rle_encode

REPO = Path(__file__).resolve().parents[1]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return make_coco_demo(tmp_path_factory.mktemp("coco"), n_train=12, n_val=6, size=96, seed=3)


@pytest.fixture(scope="module")
def ade(tmp_path_factory) -> Path:
    return make_ade_demo(tmp_path_factory.mktemp("ade"), n_train=10, n_val=4, size=96, seed=4)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = make_coco_demo(tmp_path / "a", 4, 2, 64, seed=7)
    b = make_coco_demo(tmp_path / "b", 4, 2, 64, seed=7)
    c = make_coco_demo(tmp_path / "c", 4, 2, 64, seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a).keys() == _digest(c).keys()
    assert _digest(a) != _digest(c)
    d = make_ade_demo(tmp_path / "d", 3, 2, 64, seed=1)
    e = make_ade_demo(tmp_path / "e", 3, 2, 64, seed=1)
    assert _digest(d) == _digest(e)


def test_rle_encoding_hand_computed():
    # column-major: col0 = 0,0  col1 = 1,1  col2 = 1,0  -> runs 2 zeros, 3 ones, 1 zero
    mask = np.array([[0, 1, 1], [0, 1, 0]], bool)
    assert _rle_encode(mask) == {"size": [2, 3], "counts": [2, 3, 1]}
    # a mask starting with a one begins with an empty run of zeros
    assert _rle_encode(np.ones((1, 2), bool)) == {"size": [1, 2], "counts": [0, 2]}


def _decode_rle(segm: dict) -> np.ndarray:
    h, w = segm["size"]
    flat = np.zeros(h * w, np.uint8)
    pos, value = 0, 0
    for run in segm["counts"]:
        flat[pos : pos + run] = value
        pos, value = pos + run, 1 - value
    return flat.reshape((h, w), order="F").astype(bool)


def _polygon_mask(poly: list[float], h: int, w: int) -> np.ndarray:
    from PIL import ImageDraw

    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon(list(zip(poly[0::2], poly[1::2])), fill=1)
    return np.asarray(canvas, bool)


def test_coco_annotations_agree_with_pixels(coco):
    data = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    kinds = {"polygon": 0, "rle": 0}
    hue_ok = 0
    images = {im["id"]: im for im in data["images"]}
    for ann in data["annotations"]:
        im = images[ann["image_id"]]
        h, w = im["height"], im["width"]
        if isinstance(ann["segmentation"], dict):
            kinds["rle"] += 1
            mask = _decode_rle(ann["segmentation"])
        else:
            kinds["polygon"] += 1
            mask = _polygon_mask(ann["segmentation"][0], h, w)
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum()
        assert ann["iscrowd"] == 0
        # the object is painted in its class's hue: circle red, square green, triangle blue
        pixels = np.asarray(Image.open(coco / "train2017" / im["file_name"]), float)[mask]
        dominant = int(np.argmax(pixels.mean(0)))
        hue_ok += dominant == {1: 0, 2: 1, 3: 2}[ann["category_id"]]
    assert kinds["rle"] > 0 and kinds["polygon"] > kinds["rle"]
    assert hue_ok == len(data["annotations"])


def test_coco_loads_with_pycocotools(coco):
    pycoco = pytest.importorskip("pycocotools.coco")
    api = pycoco.COCO(str(coco / "annotations" / "instances_val2017.json"))
    for ann in api.loadAnns(api.getAnnIds()):
        mask = api.annToMask(ann)
        # pycocotools rasterises polygons slightly differently from PIL: a few edge pixels
        assert abs(int(mask.sum()) - ann["area"]) <= 0.15 * ann["area"] + 8


def test_ade_labels(ade):
    stems = sorted(p.stem for p in (ade / "images" / "training").glob("*.jpg"))
    assert len(stems) == 10
    counts = np.zeros(len(SEG_CLASSES) + 1, int)
    for stem in stems:
        label = np.asarray(Image.open(ade / "annotations" / "training" / f"{stem}.png"))
        img = np.asarray(Image.open(ade / "images" / "training" / f"{stem}.jpg"), float)
        assert label.dtype == np.uint8 and label.shape == img.shape[:2] == (96, 96)
        assert label.max() <= len(SEG_CLASSES)
        counts += np.bincount(label.ravel(), minlength=len(SEG_CLASSES) + 1)
        # sky (1) lies above ground (2) in every column where both appear
        for col in range(0, 96, 8):
            sky, ground = np.flatnonzero(label[:, col] == 1), np.flatnonzero(label[:, col] == 2)
            if len(sky) and len(ground):
                assert sky.min() < ground.min()
        for value, channel in ((3, 0), (4, 1), (5, 2)):  # circle red, square green, tri blue
            if (label == value).sum() > 30:
                assert int(np.argmax(img[label == value].mean(0))) == channel
    assert (counts[1:] > 0).all(), counts  # every class occurs
    assert 0 < counts[0] < 0.2 * counts.sum()  # some, not much, unlabelled


def test_imagenet_layout(tmp_path):
    root = make_imagenet_demo(tmp_path, n_train=9, n_val=3, size=48, seed=0)
    lines = (root / "meta" / "train.txt").read_text().split("\n")[:-1]
    assert len(lines) == 9
    for line in lines:
        rel, label = line.split()
        assert rel.split("/")[0] == SHAPE_CLASSES[int(label)]
        assert Image.open(root / "train" / rel).size == (48, 48)
    assert sorted(p.name for p in (root / "val").iterdir()) == sorted(SHAPE_CLASSES)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_train"):
        make_coco_demo("/nonexistent", n_train=0)
    with pytest.raises(ValueError, match="size"):
        make_ade_demo("/nonexistent", size=8)


def test_layout_checks_pass_and_name_missing_files(coco, ade, tmp_path):
    assert check_coco(coco) == {
        "train2017": {"images": 12, "annotations": check_coco(coco)["train2017"]["annotations"]},
        "val2017": {"images": 6, "annotations": check_coco(coco)["val2017"]["annotations"]},
    }
    assert check_ade20k(ade) == {"training": 10, "validation": 4}
    with pytest.raises(DatasetLayoutError, match="instances_train2017.json"):
        check_coco(tmp_path)
    # a listed image that is not on disk is named
    broken = make_coco_demo(tmp_path / "broken", 3, 2, 64, seed=0)
    (broken / "val2017" / "000000000002.jpg").unlink()
    with pytest.raises(DatasetError, match="000000000002.jpg"):
        check_coco(broken)
    broken_ade = make_ade_demo(tmp_path / "broken_ade", 3, 2, 64, seed=0)
    victim = sorted((broken_ade / "annotations" / "validation").glob("*.png"))[0]
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match=victim.name):
        check_ade20k(broken_ade)
    with pytest.raises(DatasetLayoutError, match="images/training"):
        check_ade20k(broken_ade.parent)  # one level too high: a common mistake


def test_prepare_data_cli(coco, tmp_path):
    script = REPO / "tools" / "dataset_converters" / "prepare_data.py"
    ok = subprocess.run(
        [sys.executable, str(script), "check-coco", str(coco)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = subprocess.run(
        [sys.executable, str(script), "check-ade20k", str(tmp_path)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "missing training image folder" in bad.stderr
    assert "Traceback" not in bad.stderr

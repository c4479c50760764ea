"""Checks that a COCO or ADE20K folder has the layout mmdet / mmseg configs expect.

Each check returns a short summary dict, or raises :class:`DatasetLayoutError` whose message
names the first missing or broken file and shows the expected layout.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .validate import DatasetError, validate_coco

COCO_LAYOUT = """expected COCO layout (mmdet configs: data_root='data/coco/'):
  <root>/annotations/instances_train2017.json
  <root>/annotations/instances_val2017.json
  <root>/train2017/*.jpg
  <root>/val2017/*.jpg"""

ADE20K_LAYOUT = """expected ADE20K layout (mmseg: data_root='data/ade/ADEChallengeData2016'):
  <root>/images/training/*.jpg        <root>/annotations/training/*.png
  <root>/images/validation/*.jpg      <root>/annotations/validation/*.png
  (label PNGs: uint8, 0 = unlabelled, 1..150 = classes; used with reduce_zero_label=True)"""


class DatasetLayoutError(DatasetError, FileNotFoundError):
    """A dataset folder does not match the layout the configs expect."""


def _require(path: Path, what: str, layout: str) -> None:
    if not path.exists():
        raise DatasetLayoutError(f"missing {what}: {path}\n{layout}")


def check_coco(
    root: str | Path,
    splits: tuple[str, ...] = ("train2017", "val2017"),
    allow_degenerate_boxes: bool = False,
) -> dict:
    """Check a COCO instances folder; return ``{split: {'images': n, 'annotations': m}}``.

    Verifies the folder layout, then each ``annotations/instances_<split>.json`` with
    :func:`~mmvmamba.datasets.validate.validate_coco` (ids, boxes, every listed image present
    in ``<split>/``).
    """
    root = Path(root)
    _require(root, "dataset root", COCO_LAYOUT)
    summary = {}
    for split in splits:
        ann = root / "annotations" / f"instances_{split}.json"
        img_dir = root / split
        _require(ann, f"{split} annotation file", COCO_LAYOUT)
        _require(img_dir, f"{split} image folder", COCO_LAYOUT)
        report = validate_coco(ann, img_dir, allow_degenerate_boxes=allow_degenerate_boxes)
        summary[split] = {"images": report.n_images, "annotations": report.n_annotations}
    return summary


def check_ade20k(root: str | Path, num_classes: int = 150, sample: int = 20) -> dict:
    """Check an ADE20K folder; return ``{split: n_images}``.

    Every ``images/<split>/X.jpg`` must have ``annotations/<split>/X.png``; the first
    ``sample`` label maps of each split are read and must hold values in ``0..num_classes``.
    """
    root = Path(root)
    _require(root, "dataset root", ADE20K_LAYOUT)
    summary = {}
    for split in ("training", "validation"):
        img_dir, ann_dir = root / "images" / split, root / "annotations" / split
        _require(img_dir, f"{split} image folder", ADE20K_LAYOUT)
        _require(ann_dir, f"{split} annotation folder", ADE20K_LAYOUT)
        stems = sorted(p.stem for p in img_dir.glob("*.jpg"))
        if not stems:
            raise DatasetLayoutError(f"no .jpg images in {img_dir}\n{ADE20K_LAYOUT}")
        labels = {p.stem for p in ann_dir.glob("*.png")}
        absent = [s for s in stems if s not in labels]
        if absent:
            raise DatasetLayoutError(
                f"{len(absent)} images of {img_dir} have no label map, e.g. missing "
                f"{ann_dir / (absent[0] + '.png')}\n{ADE20K_LAYOUT}"
            )
        for stem in stems[:sample]:
            path = ann_dir / f"{stem}.png"
            label = np.asarray(Image.open(path))
            if label.ndim != 2 or label.dtype != np.uint8:
                raise DatasetLayoutError(
                    f"{path} must be a single-channel uint8 PNG, got shape {label.shape} "
                    f"dtype {label.dtype}"
                )
            if label.max() > num_classes:
                raise DatasetLayoutError(
                    f"{path} holds label {label.max()} > {num_classes} classes"
                )
        summary[split] = len(stems)
    return summary


def extract_archives(archives: list[str | Path], out: str | Path) -> Path:
    """Unzip the official archives into ``out`` (e.g. ``train2017.zip``, ``val2017.zip`` and
    ``annotations_trainval2017.zip`` into ``data/coco``; ``ADEChallengeData2016.zip`` into
    ``data/ade``). Return ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        archive = Path(archive)
        if not archive.is_file():
            raise DatasetLayoutError(f"archive {archive} does not exist")
        if not zipfile.is_zipfile(archive):
            raise DatasetLayoutError(f"{archive} is not a zip archive")
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                target = (out / name).resolve()
                if not str(target).startswith(str(out.resolve())):
                    raise DatasetLayoutError(f"{archive} holds an unsafe path {name!r}")
            zf.extractall(out)
    return out

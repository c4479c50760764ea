"""Check a COCO-format annotation file (and its images) before training on it.

mmdet's ``CocoDataset`` drops boxes of zero area without a word, reports corrupt JSON as a bare
``JSONDecodeError`` that does not name the file, and finds a missing image only when the
pipeline reaches it, possibly hours into training. :func:`validate_coco` reads the file once and
raises :class:`DatasetError` naming the file, the annotation or image id, the bad value and the
fix. Command line::

    python -m mmvmamba.datasets.validate data/coco/annotations/instances_train2017.json \
        --img-dir data/coco/train2017 [--allow-degenerate-boxes]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CocoReport", "DatasetError", "validate_coco"]


class DatasetError(ValueError):
    """A dataset file is unreadable or holds invalid entries; the message says which and why."""


@dataclass
class CocoReport:
    """What :func:`validate_coco` found (when it did not raise)."""

    n_images: int = 0
    n_annotations: int = 0
    n_categories: int = 0
    degenerate_boxes: list[str] = field(default_factory=list)  # allowed, so only reported


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"annotation file not found: '{path}'")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"annotation file '{path}' is not valid JSON: {err.msg} at line {err.lineno}, "
            f"column {err.colno} (character {err.pos}); the file is corrupt or truncated, "
            "re-download or re-generate it"
        ) from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"annotation file '{path}' is not UTF-8 text ({err})") from err
    if not isinstance(data, dict):
        raise DatasetError(
            f"annotation file '{path}' holds a JSON {type(data).__name__}, expected a COCO "
            "object with 'images', 'annotations' and 'categories'"
        )
    return data


def validate_coco(
    ann_file: str | os.PathLike,
    img_dir: str | os.PathLike | None = None,
    allow_degenerate_boxes: bool = False,
    max_listed: int = 5,
) -> CocoReport:
    """Validate a COCO instances file.

    Checks: the JSON parses; ``images``/``annotations``/``categories`` are lists; ids are
    unique; every annotation's ``image_id`` and ``category_id`` exist; every ``bbox`` is four
    finite numbers ``[x, y, w, h]`` with ``w > 0`` and ``h > 0`` (zero-area boxes are rejected
    unless ``allow_degenerate_boxes``) lying inside its image; with ``img_dir``, every
    ``file_name`` exists under it.

    Args:
        ann_file: the ``instances_*.json`` file.
        img_dir: the image folder (``data_prefix.img``); None skips the file check.
        allow_degenerate_boxes: only report zero-area boxes (mmdet skips them) instead of raising.
        max_listed: how many offending entries a message lists.

    Returns:
        A :class:`CocoReport`.

    Raises:
        DatasetError: the first kind of problem found, listing up to ``max_listed`` entries.
    """
    path = Path(ann_file)
    data = _load_json(path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(
                f"'{path}': missing or invalid '{key}' list (got {type(data.get(key)).__name__}); "
                "a COCO instances file needs 'images', 'annotations' and 'categories'"
            )

    def listing(items: list[str]) -> str:
        more = f" ... and {len(items) - max_listed} more" if len(items) > max_listed else ""
        return "; ".join(items[:max_listed]) + more

    images = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise DatasetError(f"'{path}': image entry {img!r} needs 'id' and 'file_name'")
        if img["id"] in images:
            raise DatasetError(f"'{path}': duplicate image id {img['id']}")
        images[img["id"]] = img
    categories = {c.get("id") for c in data["categories"] if isinstance(c, dict)}

    bad_refs, bad_boxes, degenerate, outside = [], [], [], []
    seen_ann = set()
    for ann in data["annotations"]:
        aid = ann.get("id") if isinstance(ann, dict) else None
        if aid in seen_ann:
            raise DatasetError(f"'{path}': duplicate annotation id {aid}")
        seen_ann.add(aid)
        if ann.get("image_id") not in images:
            bad_refs.append(f"annotation {aid}: image_id {ann.get('image_id')!r} not in images")
            continue
        if ann.get("category_id") not in categories:
            bad_refs.append(
                f"annotation {aid}: category_id {ann.get('category_id')!r} not in categories"
            )
        box = ann.get("bbox")
        if (
            not isinstance(box, (list, tuple))
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
        ):
            bad_boxes.append(f"annotation {aid}: bbox {box!r}")
            continue
        x, y, w, h = box
        if w <= 0 or h <= 0:
            degenerate.append(f"annotation {aid} (image {ann['image_id']}): bbox {list(box)}")
            continue
        img = images[ann["image_id"]]
        iw, ih = img.get("width"), img.get("height")
        if (
            iw is not None
            and ih is not None
            and (x < 0 or y < 0 or x + w > iw + 1 or y + h > ih + 1)
        ):
            outside.append(
                f"annotation {aid}: bbox {list(box)} outside image {img['id']} ({iw}x{ih})"
            )
    if bad_refs:
        raise DatasetError(f"'{path}': annotations refer to unknown ids: {listing(bad_refs)}")
    if bad_boxes:
        raise DatasetError(
            f"'{path}': invalid boxes (need 4 finite numbers [x, y, w, h]): {listing(bad_boxes)}"
        )
    if degenerate and not allow_degenerate_boxes:
        raise DatasetError(
            f"'{path}': {len(degenerate)} zero-area boxes (w or h <= 0): {listing(degenerate)}. "
            "Fix or remove these annotations, or pass allow_degenerate_boxes=True "
            "(--allow-degenerate-boxes) to let mmdet skip them."
        )
    if outside:
        raise DatasetError(
            f"'{path}': boxes outside their image: {listing(outside)}; check the box format "
            "(COCO is [x, y, width, height] in pixels)"
        )
    if img_dir is not None:
        root = Path(img_dir)
        if not root.is_dir():
            raise DatasetError(f"image folder not found: '{root}' (for '{path}')")
        missing = [
            str(root / img["file_name"])
            for img in images.values()
            if not (root / img["file_name"]).is_file()
        ]
        if missing:
            raise DatasetError(
                f"'{path}': {len(missing)} of {len(images)} image files are missing: "
                f"{listing(missing)}. Check data_root / data_prefix, or re-download the images."
            )
    return CocoReport(len(images), len(data["annotations"]), len(categories), degenerate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate a COCO instances file")
    parser.add_argument("ann_file")
    parser.add_argument("--img-dir", default=None)
    parser.add_argument("--allow-degenerate-boxes", action="store_true")
    args = parser.parse_args(argv)
    try:
        rep = validate_coco(args.ann_file, args.img_dir, args.allow_degenerate_boxes)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"ok: {rep.n_images} images, {rep.n_annotations} annotations, {rep.n_categories} "
        f"categories, {len(rep.degenerate_boxes)} zero-area boxes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

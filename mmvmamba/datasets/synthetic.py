"""Deterministic mini datasets in the real COCO, ADE20K and ImageNet on-disk formats.

The bundled demo trains detection, segmentation and classification models from scratch on
these in minutes on a CPU. Every image shows objects of three shape classes (circle, square,
triangle), each class with its own hue family, on a textured background. The same ``seed``
gives byte-identical files (numpy ``Generator`` + PIL drawing, no global random state).

Layouts written (exactly what mmdet / mmseg / mmpretrain read for the real datasets)::

    <root>/coco/annotations/instances_{train,val}2017.json   COCO instances, polygons + RLE
    <root>/coco/{train,val}2017/*.jpg
    <root>/ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    <root>/ade/ADEChallengeData2016/annotations/{training,validation}/*.png   uint8 labels
    <root>/imagenet/{train,val}/<class>/*.jpg  +  <root>/imagenet/meta/{train,val}.txt

Segmentation labels follow ADE20K's ``reduce_zero_label`` convention: 0 is "unlabelled"
(ignored in training and evaluation), 1..5 are ``SEG_CLASSES`` in order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
"""Object classes of the detection and classification sets (COCO category ids 1, 2, 3)."""

SEG_CLASSES: tuple[str, ...] = ("sky", "ground") + SHAPE_CLASSES
"""Segmentation classes; on disk label ``i + 1`` is ``SEG_CLASSES[i]``, 0 is unlabelled."""

SEG_PALETTE: tuple[tuple[int, int, int], ...] = (
    (120, 160, 220),
    (140, 110, 70),
    (220, 40, 40),
    (40, 200, 60),
    (40, 80, 230),
)

# Hue (degrees) of each shape class; objects are saturated, backgrounds are not.
_CLASS_HUE = {"circle": 0.0, "square": 120.0, "triangle": 225.0}
_CIRCLE_VERTICES = 24


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV (h in degrees, s and v in [0, 1]) to an 8-bit RGB triple."""
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    m = v - c
    return tuple(int(round(255 * (u + m))) for u in (r, g, b))


def _texture(rng: np.random.Generator, size: int, base: np.ndarray, amp: float) -> np.ndarray:
    """A (size, size, 3) float texture: ``base`` colour + low-frequency noise + stripes."""
    coarse = rng.normal(0.0, 1.0, size=(6, 6, 3)).astype(np.float32)
    # Bilinear up-sampling of a coarse grid gives smooth blotches.
    up = np.stack(
        [
            np.asarray(
                Image.fromarray(coarse[..., c]).resize((size, size), Image.Resampling.BILINEAR)
            )
            for c in range(3)
        ],
        axis=-1,
    )
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(6, 18)
    stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
    fine = rng.normal(0.0, 1.0, size=(size, size, 1)).astype(np.float32)
    return base[None, None, :] + amp * (12 * up + 10 * stripes[..., None] + 6 * fine)


def _shape_polygon(
    rng: np.random.Generator, cls: str, cx: float, cy: float, radius: float
) -> list[tuple[float, float]]:
    """Vertices (x, y) of a shape of circumradius ``radius`` centred at (cx, cy)."""
    if cls == "circle":
        angles = np.linspace(0, 2 * math.pi, _CIRCLE_VERTICES, endpoint=False)
    else:
        n = 4 if cls == "square" else 3
        angles = rng.uniform(0, 2 * math.pi) + np.arange(n) * 2 * math.pi / n
    return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]


def _place_objects(
    rng: np.random.Generator, size: int, n_objects: int, r_range: tuple[float, float]
) -> list[tuple[str, float, float, float]]:
    """Non-overlapping (class, cx, cy, radius) tuples inside a ``size`` x ``size`` canvas."""
    placed: list[tuple[str, float, float, float]] = []
    for _ in range(n_objects * 20):
        if len(placed) == n_objects:
            break
        r = rng.uniform(*r_range) * size
        cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
        if all(math.hypot(cx - x, cy - y) > r + q + 2 for _, x, y, q in placed):
            placed.append((SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))], cx, cy, r))
    return placed


def _paint(
    img: np.ndarray, rng: np.random.Generator, cls: str, poly: list[tuple[float, float]]
) -> np.ndarray:
    """Paint one shape into ``img`` (H, W, 3 float) in its class colour; return its bool mask."""
    h, w = img.shape[:2]
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon(poly, fill=1)
    mask = np.asarray(canvas, dtype=bool)
    hue = _CLASS_HUE[cls] + rng.uniform(-15, 15)
    colour = np.array(_hsv_to_rgb(hue, rng.uniform(0.65, 0.95), rng.uniform(0.6, 0.95)), float)
    shade = rng.normal(0.0, 6.0, size=(h, w, 1))
    img[mask] = (colour[None, None, :] + shade)[mask]
    return mask


def _rle_encode(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a (H, W) bool mask: column-major runs, starting with zeros."""
    flat = mask.astype(np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _save_jpg(img: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def _check_args(n_train: int, n_val: int, size: int) -> None:
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train and n_val must be >= 1, got {n_train} and {n_val}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")


def make_coco_demo(
    root: str | Path, n_train: int = 200, n_val: int = 50, size: int = 128, seed: int = 0
) -> Path:
    """Write a COCO-format instance segmentation set under ``root`` and return ``root``.

    Each (size, size) RGB image holds 1-4 non-overlapping shapes. Every third annotation
    stores its mask as uncompressed RLE (``{'size': [H, W], 'counts': [...]}``), the others
    as a polygon; ``bbox`` is the tight [x, y, w, h] box of the rasterised mask and ``area``
    its pixel count, so boxes, masks and pixels agree exactly.
    """
    _check_args(n_train, n_val, size)
    root = Path(root)
    rng = np.random.default_rng(seed)
    ann_id = 1
    for split, n in (("train2017", n_train), ("val2017", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            img_id = i + 1
            base = rng.uniform(90, 170) + rng.uniform(-15, 15, size=3)
            img = _texture(rng, size, base, amp=1.0)
            objects = _place_objects(rng, size, int(rng.integers(1, 5)), (0.12, 0.25))
            for cls, cx, cy, r in objects:
                poly = _shape_polygon(rng, cls, cx, cy, r)
                mask = _paint(img, rng, cls, poly)
                ys, xs = np.nonzero(mask)
                x0, y0 = int(xs.min()), int(ys.min())
                bw, bh = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
                if ann_id % 3 == 0:
                    segm = _rle_encode(mask)
                else:
                    segm = [[round(float(v), 2) for xy in poly for v in xy]]
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": img_id,
                        "category_id": SHAPE_CLASSES.index(cls) + 1,
                        "segmentation": segm,
                        "area": int(mask.sum()),
                        "bbox": [x0, y0, bw, bh],
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
            name = f"{img_id:012d}.jpg"
            _save_jpg(img, root / split / name)
            images.append({"id": img_id, "file_name": name, "width": size, "height": size})
        coco = {
            "info": {"description": f"mmvmamba synthetic shapes, seed {seed}"},
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": k + 1, "name": c, "supercategory": "shape"}
                for k, c in enumerate(SHAPE_CLASSES)
            ],
        }
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump(coco, f)
    return root


def _seg_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (size, size, 3) float image and its (size, size) uint8 label map."""
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    # A wavy horizon splits "sky" (label 1) from "ground" (label 2).
    horizon = size * rng.uniform(0.3, 0.6) + size * 0.08 * np.sin(
        xx * 2 * math.pi / size * rng.uniform(0.5, 2.0) + rng.uniform(0, 2 * math.pi)
    )
    sky = yy < horizon
    img = np.where(
        sky[..., None],
        _texture(rng, size, np.array([150.0, 165.0, 185.0]) + rng.uniform(-20, 20), 0.5),
        _texture(rng, size, np.array([125.0, 110.0, 90.0]) + rng.uniform(-20, 20), 1.0),
    )
    label[sky] = 1
    label[~sky] = 2
    # Grey clutter blobs are "unlabelled" (0), like ADE20K's pixels outside its 150 classes.
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(0, size, size=2)
        r = rng.uniform(0.04, 0.1) * size
        blob = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        img[blob] = rng.uniform(60, 200)
        label[blob] = 0
    for cls, cx, cy, r in _place_objects(rng, size, int(rng.integers(1, 4)), (0.1, 0.22)):
        mask = _paint(img, rng, cls, _shape_polygon(rng, cls, cx, cy, r))
        label[mask] = SEG_CLASSES.index(cls) + 1
    return img, label


def make_ade_demo(
    root: str | Path, n_train: int = 200, n_val: int = 50, size: int = 128, seed: int = 1
) -> Path:
    """Write an ADE20K-layout semantic segmentation set and return its data root.

    The returned folder is ``<root>/ADEChallengeData2016`` with ``images/{training,validation}``
    (RGB JPEG) and ``annotations/{training,validation}`` (uint8 PNG, same stem). Label 0 is
    unlabelled; use ``reduce_zero_label=True`` so class ``i`` of :data:`SEG_CLASSES` is
    on-disk value ``i + 1``.
    """
    _check_args(n_train, n_val, size)
    data_root = Path(root) / "ADEChallengeData2016"
    rng = np.random.default_rng(seed)
    for split, n in (("training", n_train), ("validation", n_val)):
        (data_root / "images" / split).mkdir(parents=True, exist_ok=True)
        (data_root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, label = _seg_sample(rng, size)
            stem = f"ADE_{split[:5]}_{i + 1:08d}"
            _save_jpg(img, data_root / "images" / split / f"{stem}.jpg")
            Image.fromarray(label).save(data_root / "annotations" / split / f"{stem}.png")
    return data_root


def make_imagenet_demo(
    root: str | Path, n_train: int = 120, n_val: int = 30, size: int = 64, seed: int = 2
) -> Path:
    """Write an ImageNet-layout classification set (one shape per image); return ``root``.

    ``<root>/{train,val}/<class>/*.jpg`` plus ``<root>/meta/{train,val}.txt`` with lines
    ``<class>/<file> <label>`` (label = index in :data:`SHAPE_CLASSES`), the format
    mmpretrain's ``ImageNet``/``CustomDataset`` read with ``ann_file``. ``n_train``/``n_val``
    are totals, spread round-robin over the classes.
    """
    _check_args(n_train, n_val, size)
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(n):
            label = i % len(SHAPE_CLASSES)
            cls = SHAPE_CLASSES[label]
            base = rng.uniform(90, 170) + rng.uniform(-15, 15, size=3)
            img = _texture(rng, size, base, amp=1.0)
            r = rng.uniform(0.2, 0.4) * size
            cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
            _paint(img, rng, cls, _shape_polygon(rng, cls, cx, cy, r))
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            name = f"{cls}/{split}_{i + 1:06d}.jpg"
            _save_jpg(img, root / split / name)
            lines.append(f"{name} {label}")
        (root / "meta" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_all_demos(root: str | Path, size: int = 128, scale: float = 1.0, seed: int = 0) -> dict:
    """Write all three sets under ``root`` (``coco/``, ``ade/``, ``imagenet/``).

    ``scale`` multiplies the default image counts (e.g. 0.2 for a quick test run). Returns
    ``{'coco': Path, 'ade': Path, 'imagenet': Path}``, the data roots to put in configs.
    """
    root = Path(root)

    def n(k: int) -> int:
        return max(2, int(round(k * scale)))

    return {
        "coco": make_coco_demo(root / "coco", n(200), n(50), size, seed),
        "ade": make_ade_demo(root / "ade", n(200), n(50), size, seed + 1),
        "imagenet": make_imagenet_demo(root / "imagenet", n(120), n(30), 64, seed + 2),
    }

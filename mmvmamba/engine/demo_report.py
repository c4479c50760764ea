"""Pictures for the demo run: loss curves from mmengine's logs, predictions on validation images.

Everything here reads what mmengine already writes (``<work_dir>/<timestamp>/vis_data/
scalars.json``: one JSON object per logged iteration) or what a model's ``test_step`` returns
(mmdet ``DetDataSample`` / mmseg ``SegDataSample``), and draws with matplotlib (Agg backend).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_scalars(work_dir: str | Path) -> list[dict]:
    """All training records (those with ``loss``) of the newest run in ``work_dir``, by iter."""
    files = sorted(Path(work_dir).glob("*/vis_data/scalars.json"))
    if not files:
        raise FileNotFoundError(f"no */vis_data/scalars.json under {work_dir}")
    records = []
    for line in files[-1].read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec and "iter" in rec:
            records.append(rec)
    return sorted(records, key=lambda r: r["iter"])


def plot_loss_curves(runs: dict[str, str | Path], out_png: str | Path) -> Path:
    """One panel per run (``{title: work_dir}``): every ``loss*`` scalar against iteration."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (title, work_dir) in zip(axes[0], runs.items()):
        records = read_scalars(work_dir)
        keys = sorted({k for r in records for k in r if "loss" in k})
        for key in keys:
            pts = [(r["iter"], r[key]) for r in records if key in r]
            ax.plot(*zip(*pts), label=key, lw=2.5 if key == "loss" else 1.2)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def _rgb(img_chw) -> np.ndarray:
    """A (3, H, W) BGR uint8 tensor (mmdet/mmseg ``inputs`` before preprocessing) -> HWC RGB."""
    return img_chw.detach().cpu().numpy().transpose(1, 2, 0)[..., ::-1].astype(np.uint8)


def _overlay(img: np.ndarray, mask: np.ndarray, colour: Sequence[int], alpha=0.45) -> None:
    img[mask] = ((1 - alpha) * img[mask] + alpha * np.asarray(colour)).astype(np.uint8)


def draw_detections(
    ax, img: np.ndarray, instances, classes: Sequence[str], palette, score_thr: float = 0.3
) -> None:
    """Draw boxes, masks and labels of ``instances`` (mmengine ``InstanceData``) on ``ax``.

    ``instances.bboxes`` (N, 4) xyxy pixels, ``labels`` (N,), optional ``scores`` (N,) and
    ``masks`` (N, H, W) (bool tensor or mmdet ``BitmapMasks``).
    """
    img = img.copy()
    bboxes = instances.bboxes.detach().cpu().numpy() if len(instances) else np.zeros((0, 4))
    labels = instances.labels.detach().cpu().numpy() if len(instances) else np.zeros(0, int)
    scores = instances.scores.detach().cpu().numpy() if "scores" in instances else None
    masks = None
    if "masks" in instances and len(instances):
        masks = instances.masks
        masks = masks.to_ndarray() if hasattr(masks, "to_ndarray") else masks.cpu().numpy()
        masks = masks.astype(bool)
    keep = np.arange(len(labels)) if scores is None else np.flatnonzero(scores >= score_thr)
    for i in keep:
        if masks is not None and masks[i].shape == img.shape[:2]:
            _overlay(img, masks[i], palette[labels[i]])
    ax.imshow(img)
    for i in keep:
        x0, y0, x1, y1 = bboxes[i]
        colour = np.asarray(palette[labels[i]]) / 255
        ax.add_patch(_pyplot().Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.5))
        text = classes[labels[i]] + ("" if scores is None else f" {scores[i]:.2f}")
        ax.text(
            x0,
            y0,
            text,
            fontsize=6,
            color="white",
            va="bottom",
            bbox=dict(fc=colour, ec="none", pad=0.5),
        )
    ax.axis("off")


def colour_labels(label: np.ndarray, palette, ignore_index: int = 255) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours; ``ignore_index`` is black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)
    lut[ignore_index] = 0
    return lut[label.astype(np.int64).clip(0, 255)]


def save_prediction_grid(
    det: dict | None, seg: dict | None, out_png: str | Path, n: int = 4
) -> Path:
    """Draw ``n`` validation images per task: rows GT / prediction for detection, and
    image / GT / prediction for segmentation.

    ``det`` and ``seg`` are ``dict(inputs=[(3, H, W) BGR uint8], samples=[data samples],
    classes=..., palette=...)`` as produced by a model's ``test_step`` on one batch.
    """
    plt = _pyplot()
    rows = (2 if det else 0) + (3 if seg else 0)
    fig, axes = plt.subplots(rows, n, figsize=(2.4 * n, 2.4 * rows), squeeze=False)
    r = 0
    if det:
        for j in range(n):
            if j >= len(det["samples"]):
                axes[r, j].axis("off")
                axes[r + 1, j].axis("off")
                continue
            img, sample = _rgb(det["inputs"][j]), det["samples"][j]
            draw_detections(axes[r, j], img, sample.gt_instances, det["classes"], det["palette"])
            draw_detections(
                axes[r + 1, j], img, sample.pred_instances, det["classes"], det["palette"]
            )
        axes[r, 0].set_title("detection: ground truth", fontsize=8, loc="left")
        axes[r + 1, 0].set_title("detection: prediction", fontsize=8, loc="left")
        r += 2
    if seg:
        for j in range(n):
            for k in range(3):
                axes[r + k, j].axis("off")
            if j >= len(seg["samples"]):
                continue
            sample = seg["samples"][j]
            axes[r, j].imshow(_rgb(seg["inputs"][j]))
            gt = sample.gt_sem_seg.data[0].cpu().numpy()
            pred = sample.pred_sem_seg.data[0].cpu().numpy()
            axes[r + 1, j].imshow(colour_labels(gt, seg["palette"]))
            axes[r + 2, j].imshow(colour_labels(pred, seg["palette"]))
        axes[r, 0].set_title("segmentation: image", fontsize=8, loc="left")
        axes[r + 1, 0].set_title("ground truth (black = ignored)", fontsize=8, loc="left")
        axes[r + 2, 0].set_title("prediction", fontsize=8, loc="left")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png

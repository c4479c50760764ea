"""Top-1 of a classifier at input sizes it was not trained on (the paper's input-scaling study).

The config's test pipeline is rescaled per size ``s``: every resize keeps its ratio to the crop
(ImageNet's ``ResizeEdge(256) -> CenterCrop(224)`` becomes ``ResizeEdge(round(256 s / 224))
-> CenterCrop(s)``), no weight changes (no fine-tuning, no position-embedding edits beyond what
the model does itself), then the config's ``test_evaluator`` scores the predictions.
"""

from __future__ import annotations

import copy
import sys

import torch
from tqdm import tqdm

__all__ = ["evaluate_at_sizes", "rescale_pipeline"]


def _base_crop(pipeline: list) -> int:
    for t in pipeline:
        if t.get("type") == "CenterCrop":
            c = t["crop_size"]
            return int(c if isinstance(c, int) else c[0])
    for t in pipeline:
        if t.get("type") == "Resize":
            s = t["scale"]
            return int(s if isinstance(s, int) else s[0])
    raise ValueError(
        "cannot rescale the test pipeline: it has neither a CenterCrop nor a Resize step "
        f"(types: {[t.get('type') for t in pipeline]})"
    )


def rescale_pipeline(pipeline: list, size: int) -> list:
    """A copy of an mmpretrain test ``pipeline`` producing ``size`` x ``size`` inputs.

    ``CenterCrop.crop_size`` -> size; ``ResizeEdge.scale`` and ``Resize.scale`` are multiplied
    by ``size / base`` (base = the original crop, or the Resize size without a crop).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    pipeline = copy.deepcopy(list(pipeline))
    base = _base_crop(pipeline)
    ratio = size / base
    for t in pipeline:
        kind = t.get("type")
        if kind == "CenterCrop":
            t["crop_size"] = size
        elif kind == "ResizeEdge":
            t["scale"] = max(size, round(t["scale"] * ratio))
        elif kind == "Resize":
            s = t["scale"]
            t["scale"] = (
                round(s * ratio) if isinstance(s, int) else tuple(round(v * ratio) for v in s)
            )
    return pipeline


def evaluate_at_sizes(
    config,
    checkpoint: str | None,
    sizes: list[int],
    device: str = "cpu",
    amp: bool = False,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> list[dict]:
    """Evaluate ``config``'s classifier (with ``checkpoint``) on its test set at each size.

    Args:
        config: an mmpretrain classification config (path, dict or Config) with
            ``test_dataloader`` and ``test_evaluator``.
        checkpoint: weights file, or None for the config's own init (smoke tests).
        sizes: input sides.
        device: 'cpu' or 'cuda'.
        amp: float16 autocast on CUDA (the paper evaluates with AMP).
        batch_size: override the test batch size.
        max_batches: stop after that many batches per size (quick looks; the metric then
            covers only those samples).

    Returns:
        One row per size: ``size``, ``samples`` and every metric of the evaluator
        (e.g. ``accuracy/top1``).
    """
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner

    from .models import build_from_config, load_config

    cfg = load_config(config)
    if "test_dataloader" not in cfg or "test_evaluator" not in cfg:
        raise ValueError("the config needs test_dataloader and test_evaluator (mmpretrain style)")
    model, framework = build_from_config(cfg, checkpoint)
    if framework != "mmpretrain":
        raise ValueError(f"resolution_eval needs a classification config, got a {framework} one")
    model = model.to(device).eval()
    rows = []
    for size in sizes:
        loader_cfg = copy.deepcopy(cfg.test_dataloader.to_dict())
        loader_cfg["dataset"]["pipeline"] = rescale_pipeline(
            loader_cfg["dataset"]["pipeline"], size
        )
        if batch_size:
            loader_cfg["batch_size"] = batch_size
        loader_cfg.setdefault("num_workers", 0)
        if loader_cfg["num_workers"] == 0:
            loader_cfg["persistent_workers"] = False
        loader = Runner.build_dataloader(loader_cfg)
        evaluator = Evaluator(copy.deepcopy(cfg.test_evaluator))
        evaluator.dataset_meta = getattr(loader.dataset, "metainfo", None)
        seen = 0
        total = len(loader) if max_batches is None else min(len(loader), max_batches)
        with torch.no_grad():
            for n, batch in enumerate(tqdm(loader, total=total, desc=f"{size}px", file=sys.stderr)):
                if max_batches is not None and n >= max_batches:
                    break
                with torch.autocast(device_type=device, dtype=torch.float16, enabled=amp):
                    outputs = model.test_step(batch)
                evaluator.process(data_samples=outputs, data_batch=batch)
                seen += len(outputs)
        metrics = evaluator.evaluate(seen)
        rows.append(dict(size=size, samples=seen, **{k: float(v) for k, v in metrics.items()}))
    return rows

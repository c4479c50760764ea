"""SS2D activation maps for a query patch (the VMamba paper's attention-like visualisation).

    python tools/analysis/activation_map.py --model vmamba-t --img demo.jpg --stage 2 \\
        --query 0.5 0.5 --checkpoint work_dirs/vmamba-t/epoch_300.pth

Runs one forward, records the selective-scan inputs of one SS2D layer (``--layer NAME`` or the
last block of ``--stage``), rebuilds the scan's attention-like matrix per route (see
:mod:`mmvmamba.analysis.activation`) and draws, over the image: the map of each of the four
routes, their merge (what reaches the query's output) and the plain softmax(QK^T) map of the
same features. ``--query`` is (row, col) as fractions of the map (0..1) or, if integers > 1,
patch indices. Writes ``activation_map.png``, ``activation_map.csv`` and ``activation_map.npz``.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import os

import numpy as np
import torch

from mmvmamba.analysis.activation import activation_maps, plot_activation_maps, synthetic_image
from mmvmamba.analysis.erf import IMAGENET_MEAN, IMAGENET_STD
from mmvmamba.analysis.models import build_backbone
from mmvmamba.analysis.plotting import default_out_dir, format_table, write_csv
from mmvmamba.analysis.scan_hooks import capture_scan_inputs, ss2d_layers


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vmamba-t", help="vmamba-t/s/b, vmamba:<arch>, config")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--img", default=None, help="image file (default: a synthetic scene)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--stage", type=int, default=2, help="use the last SS2D of this stage")
    parser.add_argument("--layer", default=None, help="exact SS2D module name instead of --stage")
    parser.add_argument("--query", type=float, nargs=2, default=(0.5, 0.5), metavar=("ROW", "COL"))
    parser.add_argument("--out-dir", default=default_out_dir("activation_map"))
    return parser.parse_args(argv)


def _load_image(path: str | None, size: int) -> np.ndarray:
    if path is None:
        return synthetic_image(size)
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--img {path!r} does not exist")
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC))


def _pick_layer(model, name: str | None, stage: int):
    layers = ss2d_layers(model)
    if not layers:
        raise ValueError("the model has no SS2D layer (activation maps need a VMamba backbone)")
    if name is not None:
        for n, m in layers:
            if n == name or n.endswith("." + name):
                return n, m
        raise ValueError(f"no SS2D layer named {name!r}; available: {[n for n, _ in layers]}")
    in_stage = [(n, m) for n, m in layers if f"layers.{stage}." in n]
    if not in_stage:
        raise ValueError(f"no SS2D layer in stage {stage}; available: {[n for n, _ in layers]}")
    return in_stage[-1]


def _query(q: tuple[float, float], h: int, w: int) -> tuple[int, int]:
    if all(0 <= v <= 1 for v in q):
        return min(int(q[0] * h), h - 1), min(int(q[1] * w), w - 1)
    return int(q[0]), int(q[1])


def main(argv=None) -> dict:
    """Run the tool; returns the maps (see :func:`activation_maps`) plus ``layer``."""
    args = parse_args(argv)
    model = build_backbone(args.model, args.size, args.checkpoint)
    name, layer = _pick_layer(model, args.layer, args.stage)
    pattern = getattr(layer, "scan", "cross")
    if pattern == "cascade":
        raise ValueError(f"layer {name} uses the 'cascade' scan: its routes are row/column scans")
    image = _load_image(args.img, args.size)
    x = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad(), capture_scan_inputs(layer) as records:
        model(x[None])
    if not records:
        raise RuntimeError(f"layer {name} ran no selective scan during the forward")
    h, w = records[0]["hw"]
    query = _query(tuple(args.query), h, w)
    maps = activation_maps(records[0], query, pattern)
    rows = []
    for label, m in [(f"route {k}", r) for k, r in enumerate(maps["routes"])] + [
        ("merged", maps["merged"]),
        ("qk", maps["qk"]),
    ]:
        peak = np.unravel_index(int(np.argmax(m)), m.shape)
        ring = _row_col_share(m, query)
        rows.append(
            dict(
                map=label,
                peak_row=int(peak[0]),
                peak_col=int(peak[1]),
                total=float(m.sum()),
                query_row_col_share=ring,
            )
        )
    print(f"layer {name} ({h}x{w} map, pattern {pattern!r}), query patch {query}")
    print(format_table(rows))
    os.makedirs(args.out_dir, exist_ok=True)
    write_csv(rows, os.path.join(args.out_dir, "activation_map.csv"))
    np.savez(os.path.join(args.out_dir, "activation_map.npz"), **maps)
    png = plot_activation_maps(
        image,
        maps,
        os.path.join(args.out_dir, "activation_map.png"),
        title=f"{args.model} {name} ({h}x{w}), query {query}",
    )
    print(f"wrote {png}")
    maps["layer"] = name
    return maps


def _row_col_share(m: np.ndarray, query: tuple[int, int]) -> float:
    """Share of the map's mass on the query's row and column (cross-shaped routes: high)."""
    i, j = query
    total = float(m.sum()) or 1.0
    return float(m[i, :].sum() + m[:, j].sum() - m[i, j]) / total


if __name__ == "__main__":
    main()

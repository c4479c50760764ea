"""Effective receptive fields of backbones, side by side (the VMamba paper's ERF figure).

    python tools/analysis/erf.py --models vmamba-t swin-t convnext-t deit-s --size 224
    python tools/analysis/erf.py --models vmamba-t vmamba-t \\
        --checkpoints none work_dirs/vmamba-t/epoch_300.pth --images data/imagenet/val --num 50

Each model's ERF is the mean ``|d centre / d input|`` of the central unit of its last feature
map (see :mod:`mmvmamba.analysis.erf`), over ``--num`` images from ``--images`` (a folder) or
random normalised noise. ``--checkpoints`` pairs one entry with each model (``none`` = random
init). Writes ``erf.png`` (log-scale maps), ``erf.csv`` (locality statistics) and one ``.npy``
map per model into ``--out-dir``.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import os
import re
import sys

import numpy as np
from tqdm import tqdm

from mmvmamba.analysis.erf import (
    area_ratio,
    central_mass,
    compute_erf,
    load_images,
    plot_erfs,
    random_images,
)
from mmvmamba.analysis.models import build_backbone
from mmvmamba.analysis.plotting import default_out_dir, format_table, write_csv


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vmamba-t", "swin-t", "convnext-t"])
    parser.add_argument("--checkpoints", nargs="*", default=None, help="one per model or 'none'")
    parser.add_argument("--size", type=int, default=224, help="input side")
    parser.add_argument("--num", type=int, default=8, help="number of images (paper: 50)")
    parser.add_argument("--images", default=None, help="image folder (default: random noise)")
    parser.add_argument(
        "--no-relu",
        action="store_true",
        help="plain channel sum of the central unit (zero ERF for models ending in a LayerNorm)",
    )
    parser.add_argument("--decades", type=float, default=3.0, help="log range of the plot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=default_out_dir("erf"))
    args = parser.parse_args(argv)
    if args.checkpoints is None:
        args.checkpoints = ["none"] * len(args.models)
    if len(args.checkpoints) != len(args.models):
        parser.error(
            f"--checkpoints needs one entry per model ({len(args.models)}), got "
            f"{len(args.checkpoints)}; use 'none' for random init"
        )
    if args.num < 1 or args.size < 8:
        parser.error("--num must be >= 1 and --size >= 8")
    return args


def main(argv=None) -> list[dict]:
    """Run the tool; returns one row of locality statistics per model."""
    args = parse_args(argv)
    import torch

    torch.manual_seed(args.seed)
    if args.images:
        images = load_images(args.images, args.num, args.size)
    else:
        images = random_images(args.num, args.size, args.seed)
    rows, maps = [], []
    jobs = list(zip(args.models, args.checkpoints))
    for spec, ckpt in tqdm(jobs, desc="models", file=sys.stderr):
        ckpt = None if ckpt.lower() == "none" else ckpt
        model = build_backbone(spec, args.size, ckpt)
        erf = compute_erf(model, images, relu=not args.no_relu)
        label = f"{os.path.basename(spec)} ({'trained' if ckpt else 'random init'})"
        maps.append((label, erf))
        rows.append(
            dict(
                model=spec,
                weights=ckpt or "random",
                size=args.size,
                images=len(images),
                centre_quarter_mass=central_mass(erf, 0.25),
                area_t20=area_ratio(erf, 0.2),
                area_t30=area_ratio(erf, 0.3),
                area_t50=area_ratio(erf, 0.5),
                area_t99=area_ratio(erf, 0.99),
            )
        )
        os.makedirs(args.out_dir, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{spec}_{rows[-1]['weights']}")
        np.save(os.path.join(args.out_dir, f"erf_{stem}.npy"), erf)
    print(format_table(rows))
    print("centre_quarter_mass: share of the ERF inside the central 1/4-side square (local: high)")
    print("area_tXX: area of the smallest centred square holding XX% of it (global: high)")
    csv_path = write_csv(rows, os.path.join(args.out_dir, "erf.csv"))
    source = args.images or "random noise"
    png_path = plot_erfs(
        maps,
        os.path.join(args.out_dir, "erf.png"),
        decades=args.decades,
        title=f"ERF at {args.size}px, mean of {len(images)} images ({source})",
    )
    print(f"wrote {csv_path} and {png_path}")
    return rows


if __name__ == "__main__":
    main()

"""Accuracy of a classification checkpoint at 224..768 without fine-tuning.

    python tools/analysis/resolution_eval.py configs/classification/<config>.py ckpt.pth \\
        --sizes 224 288 384 512 640 768

The test pipeline is rescaled per size (resize and crop keep their 256/224 ratio, see
:mod:`mmvmamba.analysis.resolution`); the config's evaluator gives top-1 (and top-5). Writes
``resolution_eval.csv`` and ``resolution_eval.png`` (top-1 vs size) into ``--out-dir``.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import os

import torch

from mmvmamba.analysis.plotting import default_out_dir, format_table, plot_lines, write_csv
from mmvmamba.analysis.resolution import evaluate_at_sizes


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="weights file, or 'none' for random init")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 288, 384, 512, 640, 768])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-batches", type=int, default=None, help="quick partial runs")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if cuda else "cpu")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--out-dir", default=default_out_dir("resolution_eval"))
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    """Run the tool; returns one row per size (size, samples, metrics)."""
    args = parse_args(argv)
    ckpt = None if args.checkpoint.lower() == "none" else args.checkpoint
    rows = evaluate_at_sizes(
        args.config,
        ckpt,
        args.sizes,
        device=args.device,
        amp=args.device == "cuda" and not args.no_amp,
        batch_size=args.batch_size,
        max_batches=args.max_batches,
    )
    label = os.path.splitext(os.path.basename(args.config))[0]
    for row in rows:
        row["model"] = label
    print(format_table(rows))
    os.makedirs(args.out_dir, exist_ok=True)
    write_csv(rows, os.path.join(args.out_dir, "resolution_eval.csv"))
    metric = next((k for k in rows[0] if k.endswith("top1")), None) if rows else None
    if metric:
        plot_lines(
            rows,
            x="size",
            ys=[metric],
            group="model",
            path=os.path.join(args.out_dir, "resolution_eval.png"),
            title="top-1 vs input size (no fine-tuning)",
            ylabels=["top-1 (%)"],
        )
    print(f"wrote {args.out_dir}/resolution_eval.csv and resolution_eval.png")
    return rows


if __name__ == "__main__":
    main()

"""Parameters and FLOPs of a config (classification, detection, segmentation) or a VMamba arch.

Counted as the VMamba paper counts (fvcore's method: one multiply-add = 1 flop, element-wise
ops uncounted, the selective scan as ``9BLDN + BDL``), on a batch-1 random input.

    python tools/analysis/get_flops.py configs/detection/mask-rcnn_vmamba-tiny_fpn_1x_coco.py
    python tools/analysis/get_flops.py --arch tiny --shape 224 224
    python tools/analysis/get_flops.py --arch tiny small base --sizes 224 384 512 640 768

Classification configs count the whole ImageClassifier (backbone, neck, head); detection and
segmentation ones the model's tensor forward (``_forward``: backbone + neck + heads), as
mmdet's / mmseg's own ``get_flops`` do. Prints a table, writes ``flops.csv`` (one row per model
and shape) and ``flops.png`` (GFLOPs against the input side) into ``--out-dir``.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import os
import sys

from tqdm import tqdm

from mmvmamba.analysis.flops import count_flops
from mmvmamba.analysis.models import (
    TensorForward,
    build_from_config,
    build_vmamba_classifier,
    framework_of,
    load_config,
)
from mmvmamba.analysis.plotting import default_out_dir, format_table, plot_lines, write_csv

DEFAULT_SHAPES = {"mmpretrain": (224, 224), "mmdet": (1280, 800), "mmseg": (512, 2048)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="*", help="config file(s)")
    parser.add_argument("--arch", nargs="+", default=[], help="VMamba arch name(s) (classifier)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs="+",
        default=None,
        help="input H [W] (default: 224 for classification, 1280 800 for detection, "
        "512 2048 for segmentation)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="a sweep of square sides instead")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier classes (--arch)")
    parser.add_argument("--depth", type=int, default=2, help="module depth of the breakdown table")
    parser.add_argument("--out-dir", default=default_out_dir("get_flops"))
    args = parser.parse_args(argv)
    if not args.config and not args.arch:
        parser.error("give a config file or --arch NAME")
    return args


def _shapes(args: argparse.Namespace, framework: str) -> list[tuple[int, int]]:
    if args.sizes:
        if any(v < 1 for v in args.sizes):
            raise ValueError(f"--sizes must be positive, got {args.sizes}")
        return [(v, v) for v in args.sizes]
    if args.shape is None:
        return [DEFAULT_SHAPES[framework]]
    if len(args.shape) not in (1, 2) or any(v < 1 for v in args.shape):
        raise ValueError(f"--shape takes H [W] (positive ints), got {args.shape}")
    return [(args.shape[0], args.shape[-1])]


def main(argv=None) -> list[dict]:
    """Run the tool; returns the table rows (model, framework, H, W, params, GFLOPs, ...)."""
    args = parse_args(argv)
    jobs = []  # (label, builder, framework)
    for arch in args.arch:
        jobs.append(
            (
                f"vmamba-{arch}",
                lambda a=arch: build_vmamba_classifier(a, args.num_classes),
                "mmpretrain",
            )
        )
    for path in args.config:
        framework = framework_of(load_config(path))
        jobs.append(
            (os.path.splitext(os.path.basename(path))[0], lambda p=path: _wrap(p), framework)
        )

    rows, breakdowns = [], []
    work = [(label, build, fw, hw) for label, build, fw in jobs for hw in _shapes(args, fw)]
    model_cache: dict[str, object] = {}
    for label, build, framework, (h, w) in tqdm(work, desc="counting FLOPs", file=sys.stderr):
        if label not in model_cache:
            model_cache.clear()
            model_cache[label] = build()
        report = count_flops(model_cache[label], (1, 3, h, w))
        ops = report.by_operator
        rows.append(
            dict(
                model=label,
                framework=framework,
                H=h,
                W=w,
                params=report.params,
                params_M=report.params / 1e6,
                GFLOPs=report.gflops,
                conv_G=ops.get("conv", 0) / 1e9,
                linear_G=sum(ops.get(k, 0) for k in ("linear", "addmm", "matmul", "mm")) / 1e9,
                scan_G=ops.get("selective_scan", 0) / 1e9,
                norm_G=sum(v for k, v in ops.items() if "norm" in k) / 1e9,
                uncounted_ops=" ".join(sorted(report.unsupported)),
            )
        )
        breakdowns.append((label, (h, w), report))

    print(format_table(rows))
    if len(breakdowns) == 1:  # one model, one shape: also the per-module breakdown
        label, (h, w), report = breakdowns[0]
        print(f"\n{label} @ {h}x{w}: GFLOPs per module")
        print(format_table(report.module_rows(args.depth)))
        if report.unsupported:
            print(f"not counted (no handle): {dict(report.unsupported)}")
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = write_csv(rows, os.path.join(args.out_dir, "flops.csv"))
    for row in rows:
        row["side"] = (row["H"] * row["W"]) ** 0.5
    png_path = plot_lines(
        rows,
        x="side",
        ys=["GFLOPs"],
        group="model",
        path=os.path.join(args.out_dir, "flops.png"),
        title="FLOPs vs input size (batch 1)",
        ylabels=["GFLOPs"],
    )
    for row in rows:
        row.pop("side")
    print(f"\nwrote {csv_path} and {png_path}")
    return rows


def _wrap(path: str) -> TensorForward:
    model, framework = build_from_config(path)
    return TensorForward(model, framework).eval()


if __name__ == "__main__":
    main()

"""Prepare and check the COCO and ADE20K folders the detection/segmentation configs read.

    python tools/dataset_converters/prepare_data.py extract-coco \\
        train2017.zip val2017.zip annotations_trainval2017.zip --out data/coco
    python tools/dataset_converters/prepare_data.py extract-ade20k \\
        ADEChallengeData2016.zip --out data/ade
    python tools/dataset_converters/prepare_data.py check-coco data/coco
    python tools/dataset_converters/prepare_data.py check-ade20k data/ade/ADEChallengeData2016

A check prints a summary and exits 0, or prints the missing file and the expected layout and
exits 1.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import sys

from mmvmamba.datasets.layout import (
    DatasetError,
    check_ade20k,
    check_coco,
    extract_archives,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check-coco", help="check a COCO instances folder")
    p.add_argument("root")
    p.add_argument("--splits", nargs="+", default=["train2017", "val2017"])
    p.add_argument(
        "--allow-degenerate-boxes",
        action="store_true",
        help="only report zero-area boxes (mmdet skips them) instead of failing",
    )
    p = sub.add_parser("check-ade20k", help="check an ADEChallengeData2016 folder")
    p.add_argument("root")
    for name, default in (("extract-coco", "data/coco"), ("extract-ade20k", "data/ade")):
        p = sub.add_parser(name, help=f"unzip the official archives into {default}")
        p.add_argument("archives", nargs="+")
        p.add_argument("--out", default=default)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "check-coco":
            summary = check_coco(args.root, tuple(args.splits), args.allow_degenerate_boxes)
        elif args.cmd == "check-ade20k":
            summary = check_ade20k(args.root)
        else:
            out = extract_archives(args.archives, args.out)
            summary = {"extracted to": str(out)}
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.cmd}: ok {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

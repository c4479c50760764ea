"""Convert an official VMamba checkpoint (MzeroMiko/VMamba) to mmvmamba keys.

Usage::

    python tools/model_converters/vmamba_to_mmvmamba.py SRC DST [--ema] \
        [--target classifier|backbone]

SRC is a classification (``model``/``model_ema``), detection or segmentation (``backbone.*``)
release; it is read with ``torch.load(weights_only=True)`` and an allow-list (no pickled code
runs). DST is a plain ``{name: tensor}`` state dict, loadable with ``weights_only=True``:
``--target classifier`` (default) for mmpretrain's ``ImageClassifier`` (``load_from`` /
``tools/test.py``), ``--target backbone`` for a bare ``VMamba``.

The official file also loads as it is (``init_cfg``, ``load_from``, ``load_checkpoint``,
``get_model(..., pretrained=...)``): the backbone converts it while loading, with the same
functions (:mod:`mmvmamba.checkpoint.hooks`). Convert offline to ship or inspect a file in
mmvmamba's own key layout.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import sys
from pathlib import Path

import torch

from mmvmamba.checkpoint.io import CheckpointError, load_checkpoint_file
from mmvmamba.checkpoint.vmamba import convert_vmamba_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="official VMamba checkpoint (.pth)")
    parser.add_argument("dst", help="output state dict (.pth)")
    parser.add_argument("--ema", action="store_true", help="convert 'model_ema' instead of 'model'")
    parser.add_argument(
        "--target",
        choices=("classifier", "backbone"),
        default="classifier",
        help="key layout: mmpretrain ImageClassifier (default) or a bare VMamba backbone",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ckpt = load_checkpoint_file(args.src)
        state = convert_vmamba_checkpoint(ckpt, use_ema=args.ema, target=args.target)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    dst = Path(args.dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in state.items()}, dst)
    n_params = sum(v.numel() for v in state.values())
    print(f"wrote {len(state)} tensors ({n_params:,} values, target={args.target}) to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

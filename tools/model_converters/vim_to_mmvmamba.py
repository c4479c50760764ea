"""Convert an official Vim (hustvl/Vim) checkpoint to an mmvmamba / mmpretrain checkpoint.

Usage::

    python tools/model_converters/vim_to_mmvmamba.py vim_t_midclstok_76p1acc.pth \\
        vim-tiny_in1k.pth [--ema] [--img-size H [W]]

The input is read with ``torch.load(weights_only=True)`` (only ``argparse.Namespace`` is
allow-listed besides tensors). The output is ``{'state_dict': {...}, 'meta': {...}}`` with keys
``backbone.*`` (the ``Vim`` backbone) and ``head.fc.*`` (``LinearClsHead``): it loads strictly
into the configs in ``configs/classification/vim-*`` (``load_from`` or
``init_cfg=dict(type='Pretrained', checkpoint=...)``), and into the ``Vim`` backbone of the
segmentation configs (``init_cfg=dict(type='Pretrained', checkpoint=...)``).

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
from mmvmamba.checkpoint.vim import convert_vim_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="official Vim checkpoint (.pth)")
    parser.add_argument("dst", help="output path (.pth)")
    parser.add_argument("--ema", action="store_true", help="convert the 'model_ema' weights")
    parser.add_argument(
        "--img-size",
        type=int,
        nargs="+",
        default=None,
        metavar="SIZE",
        help="resize pos_embed for this input size (H [W]); needs --patch-stride if not 16",
    )
    parser.add_argument(
        "--patch-stride",
        type=int,
        default=16,
        help="patch-embedding stride of the model (16, or 8 for the + models)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    grid = None
    if args.img_size is not None:
        if len(args.img_size) not in (1, 2) or min(args.img_size) < 16:
            print(
                f"error: --img-size takes H or H W (each >= 16), got {args.img_size}",
                file=sys.stderr,
            )
            return 2
        height, width = (args.img_size * 2)[:2]
        grid = ((height - 16) // args.patch_stride + 1, (width - 16) // args.patch_stride + 1)
    try:
        checkpoint = load_checkpoint_file(args.src)
        state_dict = convert_vim_checkpoint(checkpoint, use_ema=args.ema, grid=grid)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    source_args = checkpoint.get("args")
    meta = {
        "source": Path(args.src).name,
        "weights": "model_ema" if args.ema else "model",
        "official_model": str(getattr(source_args, "model", "")),
        "converter": "tools/model_converters/vim_to_mmvmamba.py",
    }
    dst = Path(args.dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "meta": meta}, dst)
    n_params = sum(v.numel() for v in state_dict.values())
    print(
        f"wrote {dst}: {len(state_dict)} tensors, {n_params:,} values "
        f"({meta['weights']} weights of {meta['source']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

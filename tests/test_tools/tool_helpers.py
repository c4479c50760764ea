"""Shared by the tool tests: tiny generated data and configs derived from the demo configs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_DET = REPO / "configs" / "demo" / "mask-rcnn_vmamba-demo_fpn_shapes.py"
DEMO_SEG = REPO / "configs" / "demo" / "upernet_vmamba-demo_shapes-128x128.py"


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_data(root: Path, n_train: int = 8, n_val: int = 4) -> dict[str, Path]:
    """Small COCO and ADE20K demo sets (96x96 images) under ``root``."""
    from mmvmamba.datasets import make_ade_demo, make_coco_demo

    return {
        "coco": make_coco_demo(root / "coco", n_train, n_val, 96, seed=0),
        "ade": make_ade_demo(root / "ade", n_train, n_val, 96, seed=1),
    }


def write_config(
    path: Path,
    task: str,
    data_root: Path,
    max_iters: int,
    ckpt_interval: int,
    batch_size: int = 2,
    extra: str = "",
) -> Path:
    """A config inheriting the demo config of ``task`` ('det'/'seg'), pointed at ``data_root``."""
    base = DEMO_DET if task == "det" else DEMO_SEG
    evaluator = ""
    if task == "det":
        evaluator = (
            f"val_evaluator = dict(ann_file='{data_root}/annotations/instances_val2017.json')\n"
            "test_evaluator = val_evaluator\n"
        )
    path.write_text(
        f"_base_ = '{base}'\n"
        f"data_root = '{data_root}'\n"
        f"train_dataloader = dict(batch_size={batch_size}, dataset=dict(data_root=data_root))\n"
        "val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n"
        "test_dataloader = val_dataloader\n"
        f"{evaluator}"
        f"train_cfg = dict(max_iters={max_iters}, val_interval={max_iters + 1})\n"
        "default_hooks = dict(\n"
        f"    checkpoint=dict(interval={ckpt_interval}, max_keep_ckpts=-1),\n"
        "    logger=dict(interval=1),\n"
        ")\n"
        "param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]\n"
        f"{extra}"
    )
    return path


def python() -> str:
    return sys.executable

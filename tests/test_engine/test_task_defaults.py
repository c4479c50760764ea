"""tools/train.py's defaults: every local CheckpointHook is the atomic one."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

from mmvmamba.engine import apply_task_defaults

CONFIGS = sorted((Path(__file__).parents[2] / "configs").rglob("*_*.py"))
CONFIGS = [c for c in CONFIGS if "_base_" not in c.parts]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_get_the_atomic_checkpoint_hook(path):
    cfg = Config.fromfile(str(path))
    apply_task_defaults(cfg)
    assert cfg.default_hooks.checkpoint.type == "AtomicCheckpointHook"


def test_remote_checkpoint_hook_is_left_alone():
    cfg = Config(
        dict(
            default_scope="mmpretrain",
            model=dict(type="ImageClassifier"),
            default_hooks=dict(
                checkpoint=dict(type="CheckpointHook", backend_args=dict(backend="petrel"))
            ),
        )
    )
    apply_task_defaults(cfg)
    assert cfg.default_hooks.checkpoint.type == "CheckpointHook"

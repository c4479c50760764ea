"""``randomness=dict(seed=0, deterministic=True)``: two CPU runs give bit-identical weights."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmpretrain")

from .helpers import single_thread, write_tiny_config  # noqa: E402


def _run(tmp_path, data, name: str, seed: int) -> dict:
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(
        str(write_tiny_config(tmp_path / f"{name}.py", data, max_iters=20, ckpt_interval=1000))
    )
    cfg.work_dir = str(tmp_path / name)
    cfg.randomness = dict(seed=seed, deterministic=True)
    cfg.experiment_name = f"det_{name}_{tmp_path.name}"
    cfg.default_hooks.checkpoint = None
    runner = Runner.from_cfg(cfg)
    with single_thread():
        runner.train()
    assert runner.iter == 20
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


@pytest.fixture
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.slow
def test_two_deterministic_runs_are_bit_identical(tmp_path, restore_determinism):
    from mmvmamba.datasets import make_imagenet_demo

    data = make_imagenet_demo(tmp_path / "data", n_train=24, n_val=3, size=32)
    a = _run(tmp_path, data, "a", seed=0)
    b = _run(tmp_path, data, "b", seed=0)
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ between identical runs: {differing[:5]}"
    # guard: the comparison is sensitive (another seed gives other weights)
    c = _run(tmp_path, data, "c", seed=1)
    assert any(not torch.equal(a[k], c[k]) for k in a)

"""tools/dist_train.sh on a CPU machine: 2 torchrun processes (gloo) end with identical weights."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap

import pytest
import torch

pytest.importorskip("mmseg")

from tool_helpers import REPO, make_data, python, write_config  # noqa: E402

RANK_DUMP = textwrap.dedent(
    """
    import torch
    import torch.distributed as dist
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper
    from mmengine.registry import HOOKS


    @HOOKS.register_module()
    class RankDumpHook(Hook):
        def __init__(self, out):
            self.out = out

        def _dump(self, runner, tag):
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            torch.save(
                dict(
                    state={k: v.detach().clone() for k, v in model.state_dict().items()},
                    world=dist.get_world_size(),
                    backend=dist.get_backend(),
                    wrapper=type(runner.model).__name__,
                ),
                f"{self.out}/{tag}_rank{dist.get_rank()}.pth",
            )

        def before_train(self, runner):
            self._dump(runner, "init")

        def after_train(self, runner):
            self._dump(runner, "final")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_training_keeps_ranks_identical(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this test covers the CPU (gloo) path")
    data = make_data(tmp_path / "data", n_train=8, n_val=2)
    (tmp_path / "rank_dump.py").write_text(RANK_DUMP)
    extra = (
        "custom_imports = dict(imports=['mmvmamba', 'rank_dump'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='RankDumpHook', out='{tmp_path}')]\n"
    )
    cfg = write_config(tmp_path / "seg.py", "seg", data["ade"], 3, 3, batch_size=2, extra=extra)
    env = dict(
        os.environ,
        PYTHON=python(),
        PORT=str(_free_port()),
        OMP_NUM_THREADS="1",
        PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    )
    out = subprocess.run(
        [
            "bash",
            str(REPO / "tools" / "dist_train.sh"),
            str(cfg),
            "2",
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    dumps = {
        (tag, r): torch.load(tmp_path / f"{tag}_rank{r}.pth", weights_only=False)
        for tag in ("init", "final")
        for r in (0, 1)
    }
    for d in dumps.values():
        assert (d["world"], d["backend"], d["wrapper"]) == (2, "gloo", "CPUDistributedDataParallel")
    final0, final1 = dumps["final", 0]["state"], dumps["final", 1]["state"]
    init0 = dumps["init", 0]["state"]
    assert final0.keys() == final1.keys()
    for key in final0:  # parameters and BatchNorm buffers alike
        assert torch.equal(final0[key], final1[key]), key
    changed = [
        k for k in final0 if final0[k].is_floating_point() and not torch.equal(final0[k], init0[k])
    ]
    assert len(changed) > len(final0) // 2  # it did train
    assert (tmp_path / "work" / "iter_3.pth").exists()

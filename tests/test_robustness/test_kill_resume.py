"""Crash safety of checkpoints and exact resume after SIGKILL.

- A process killed *while writing* a checkpoint (the kernel's file-size limit delivers SIGXFSZ in
  the middle of the write, whatever Python code does the writing) keeps the previous good
  checkpoint, and ``last_checkpoint`` names a complete file, with ``AtomicCheckpointHook``.
  With mmengine's ``CheckpointHook`` (guard test) the same crash loses the last good checkpoint.
- Training of a tiny VMamba classifier via ``tools/train.py`` killed with SIGKILL at a random
  iteration and resumed with ``--resume`` ends with the same weights, optimizer state, scheduler
  state and data order as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmengine")

from mmvmamba.checkpoint.io import load_checkpoint_file  # noqa: E402
from mmvmamba.engine.atomic_checkpoint import atomic_write_bytes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pth"
    atomic_write_bytes(b"old complete content", target)

    def die(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", die)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(b"new" * 1000, target)
    assert target.read_bytes() == b"old complete content"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temporary file left


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, resource, signal, sys, torch
    from torch import nn
    from torch.utils.data import Dataset
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    import mmvmamba.engine  # noqa: F401  (AtomicCheckpointHook, checkpoint allow-list)

    work_dir, hook_type, crash = sys.argv[1], sys.argv[2], sys.argv[3] == "crash"

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(128, 128)
        def forward(self, x, y, mode="loss"):
            return {"loss": ((self.fc(x) - y) ** 2).mean()}

    class Data(Dataset):
        def __len__(self):
            return 8
        def __getitem__(self, i):
            x = torch.randn(128, generator=torch.Generator().manual_seed(i))
            return dict(x=x, y=x.flip(0))

    class LimitFileSize(Hook):
        # after the first checkpoint: the next file write larger than half of it kills the
        # process with SIGXFSZ, in the middle of writing the second checkpoint
        priority = "LOWEST"
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if crash and runner.iter == 2:
                size = os.path.getsize(os.path.join(work_dir, "iter_2.pth"))
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
                resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.RLIM_INFINITY))

    runner = Runner(
        model=Toy(), work_dir=work_dir,
        train_dataloader=dict(dataset=Data(), sampler=dict(type="InfiniteSampler", shuffle=True),
                              batch_size=2, collate_fn=dict(type="default_collate")),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=6),
        default_hooks=dict(checkpoint=dict(type=hook_type, interval=2, by_epoch=False,
                                           max_keep_ckpts=1)),
        custom_hooks=[LimitFileSize()],
        randomness=dict(seed=0), resume=not crash, default_scope="mmengine",
        log_level="WARNING",
    )
    runner.train()
    print("DONE", runner.iter)
    """
)


def _crash_run(tmp_path: Path, hook_type: str, mode: str) -> subprocess.CompletedProcess:
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "work"), hook_type, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


@pytest.mark.slow
def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path):
    proc = _crash_run(tmp_path, "AtomicCheckpointHook", "crash")
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-2000:]
    work = tmp_path / "work"
    last = (work / "last_checkpoint").read_text()
    assert last.endswith("iter_2.pth"), last
    ckpt = load_checkpoint_file(last)  # complete and loadable
    assert ckpt["meta"]["iter"] == 2
    assert not (work / "iter_4.pth").exists()  # the partial write never took the final name
    # and training resumes from it and finishes
    proc = _crash_run(tmp_path, "AtomicCheckpointHook", "resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DONE 6" in proc.stdout
    assert load_checkpoint_file(work / "iter_6.pth")["meta"]["iter"] == 6


@pytest.mark.slow
def test_plain_checkpoint_hook_loses_the_last_good_checkpoint(tmp_path):
    """Guards the test above: mmengine's hook deletes the old file first, then writes in place."""
    proc = _crash_run(tmp_path, "CheckpointHook", "crash")
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-2000:]
    work = tmp_path / "work"
    last = (work / "last_checkpoint").read_text()
    assert not Path(last).exists() or last.endswith("iter_4.pth")
    partial = work / "iter_4.pth"
    assert partial.exists()
    with pytest.raises(Exception):  # noqa: B017  (truncated zip: any loader error)
        load_checkpoint_file(partial)


# --- SIGKILL at a random iteration, resume with tools/train.py --resume ----------------------

PLUGIN = textwrap.dedent(
    """
    import os, signal
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(force=True)
    class RecordBatches(Hook):
        # the images of every iteration, to check the data-sampler position after resume
        priority = "VERY_HIGH"
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            names = [os.path.basename(s.img_path) for s in data_batch["data_samples"]]
            with open(os.path.join(runner.work_dir, "batches.txt"), "a") as f:
                f.write(f"{runner.iter + 1} {','.join(names)}\\n")

    @HOOKS.register_module(force=True)
    class KillAt(Hook):
        priority = "LOWEST"  # after the checkpoint hook
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == int(os.environ.get("KILL_AT", "0")):
                os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _train(cfg: Path, work: Path, kill_at: int = 0, resume: bool = False):
    env = dict(os.environ, KILL_AT=str(kill_at), PYTHONPATH=str(cfg.parent), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "tools" / "train.py"), str(cfg), "--work-dir", str(work)]
    if resume:
        cmd.append("--resume")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def _batches(work: Path) -> dict[int, str]:
    out = {}
    for line in (work / "batches.txt").read_text().splitlines():
        it, names = line.split(" ")
        out[int(it)] = names  # a resumed run re-records the iterations it repeats
    return out


@pytest.mark.slow
def test_sigkill_at_random_iteration_resumes_exactly(tmp_path):
    pytest.importorskip("mmpretrain")
    from mmvmamba.datasets import make_imagenet_demo

    from .helpers import write_tiny_config

    data = make_imagenet_demo(tmp_path / "data", n_train=24, n_val=3, size=32)
    (tmp_path / "rb_plugin.py").write_text(PLUGIN)
    max_iters, interval = 12, 2
    cfg = write_tiny_config(
        tmp_path / "tiny_resume.py",
        data,
        max_iters=max_iters,
        ckpt_interval=interval,
        extra="custom_imports = dict(imports=['mmvmamba', 'mmvmamba.engine', 'rb_plugin'], "
        "allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='RecordBatches'), dict(type='KillAt')]\n",
    )
    kill_at = random.Random(8).randint(3, max_iters - 2)

    full = _train(cfg, tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]

    killed = _train(cfg, tmp_path / "killed", kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-3000:])
    last = (tmp_path / "killed" / "last_checkpoint").read_text()
    resumed_from = (kill_at // interval) * interval
    assert last.endswith(f"iter_{resumed_from}.pth"), (kill_at, last)

    resumed = _train(cfg, tmp_path / "killed", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = load_checkpoint_file(tmp_path / "full" / f"iter_{max_iters}.pth")
    b = load_checkpoint_file(tmp_path / "killed" / f"iter_{max_iters}.pth")
    assert a["meta"]["iter"] == b["meta"]["iter"] == max_iters
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"weight {key} differs (kill at {kill_at})"
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for pid, state in opt_a.items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[pid][name])), name
    assert a["param_schedulers"] == b["param_schedulers"]
    # the data sampler continued where it stopped: same images at every iteration
    assert _batches(tmp_path / "full") == _batches(tmp_path / "killed")
    # the resumed run started at the checkpoint, not from scratch
    lines = (tmp_path / "killed" / "batches.txt").read_text().splitlines()
    assert len(lines) == kill_at + max_iters - resumed_from, (kill_at, resumed_from, len(lines))

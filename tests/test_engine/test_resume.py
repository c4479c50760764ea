"""mmengine resume on torch >= 2.6 works once mmvmamba is imported (weights_only stays on)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("mmengine")

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from torch.utils.data import Dataset
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    if sys.argv[2] == "with-mmvmamba":
        import mmvmamba  # noqa: F401  (allow-lists mmengine's checkpoint classes)

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 1)
        def forward(self, x, y, mode="loss"):
            return {"loss": ((self.fc(x) - y) ** 2).mean()}

    class Data(Dataset):
        def __len__(self):
            return 8
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            x = torch.randn(4, generator=g)
            return dict(x=x, y=x.sum(0, keepdim=True))

    def runner(max_epochs, resume):
        return Runner(
            model=Toy(), work_dir=sys.argv[1],
            train_dataloader=dict(dataset=Data(), sampler=dict(type="DefaultSampler", shuffle=True),
                                  batch_size=2, collate_fn=dict(type="default_collate")),
            optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.01)),
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
            default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1)),
            randomness=dict(seed=0), resume=resume, default_scope="mmengine",
        )

    r = runner(2, False)
    r.train()
    saved = torch.load(f"{sys.argv[1]}/epoch_2.pth", map_location="cpu", weights_only=True)
    r = runner(3, True)
    r.train()
    print("ITER", r.iter, "EPOCH", r.epoch)
    """
)


def _run(tmp_path, mode):
    script = tmp_path / "resume.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "work"), mode],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_resume_after_import_mmvmamba(tmp_path):
    proc = _run(tmp_path, "with-mmvmamba")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 8 samples / batch 2 = 4 iterations per epoch; resumed from epoch 2 and trained one more
    assert "ITER 12 EPOCH 3" in proc.stdout
    # the optimizer state was restored, not re-initialised: AdamW's step counter continues
    ckpt = torch.load(tmp_path / "work" / "epoch_3.pth", map_location="cpu", weights_only=False)
    steps = [s["step"] for s in ckpt["optimizer"]["state"].values()]
    assert all(float(s) == 12 for s in steps), steps
    assert ckpt["meta"]["epoch"] == 3 and ckpt["meta"]["iter"] == 12


def test_resume_fails_without_the_allow_list(tmp_path):
    """Guards the test above: on this torch, plain mmengine cannot resume."""
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 6):
        pytest.skip("torch < 2.6 loads with weights_only=False by default")
    proc = _run(tmp_path, "plain")
    assert proc.returncode != 0
    assert "weights_only" in proc.stderr or "Unsupported global" in proc.stderr

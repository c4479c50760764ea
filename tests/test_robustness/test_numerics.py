"""Mixed precision: bf16 autocast training tracks float32; the scan runs in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("mmpretrain")

from .helpers import single_thread, tiny_vmamba  # noqa: E402

STEPS = 200
WINDOW = 20
# bf16 has an 8-bit mantissa: per-step losses differ by a few 1e-3 relative, and the runs drift
# apart slowly. Stated tolerance: every 20-step moving average of the bf16 loss is within 0.05
# (absolute, cross-entropy in nats; the first 20-step average is ~0.5; measured max gap 0.026)
# of the float32 one.
TOLERANCE = 0.05


def _data(tmp_path):
    from PIL import Image

    from mmvmamba.datasets import SHAPE_CLASSES, make_imagenet_demo

    root = make_imagenet_demo(tmp_path / "in", n_train=48, n_val=3, size=32)
    xs, ys = [], []
    for label, cls in enumerate(SHAPE_CLASSES):
        for f in sorted((root / "train" / cls).glob("*.jpg")):
            xs.append(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32))
            ys.append(label)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2)
    return (x - 127.5) / 64.0, torch.tensor(ys)


class _Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = tiny_vmamba(dict(depths=(1, 1, 1, 1))).train()
        self.head = nn.Linear(64, 3)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


def _train(x, y, bf16: bool) -> list[float]:
    torch.manual_seed(0)
    model = _Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    order = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):
        idx = torch.randint(0, len(x), (8,), generator=order)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x[idx])
        loss = nn.functional.cross_entropy(logits.float(), y[idx])
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name} (bf16={bf16})"
        opt.step()
        losses.append(loss.item())
    return losses


def _smooth(v: list[float]) -> np.ndarray:
    return np.convolve(np.asarray(v), np.ones(WINDOW) / WINDOW, mode="valid")


@pytest.mark.slow
def test_bf16_training_tracks_float32(tmp_path):
    x, y = _data(tmp_path)
    with single_thread():
        fp32 = _train(x, y, bf16=False)
        bf16 = _train(x, y, bf16=True)
    assert np.isfinite(fp32).all() and np.isfinite(bf16).all()
    # training happened: the loss dropped clearly in both runs
    assert _smooth(fp32)[-1] < 0.8 * _smooth(fp32)[0]
    gap = np.abs(_smooth(bf16) - _smooth(fp32))
    assert (
        gap.max() < TOLERANCE
    ), f"bf16 drifts from float32 by {gap.max():.3f} (step {gap.argmax()})"
    # the runs are not trivially identical (autocast was really on)
    assert fp32 != bf16


def test_ss2d_scans_in_float32_under_bf16_autocast(monkeypatch):
    """Under autocast the projections run in bf16, but the selective scan (state, softplus of
    delta, exp of dt*A) gets float32 tensors, and the output of the layer is finite."""
    from mmvmamba.models.layers import ss2d as ss2d_module

    seen = []
    original = ss2d_module.selective_scan

    def spy(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **kw):
        seen.append({n: t.dtype for n, t in dict(u=u, delta=delta, A=A, B=B, C=C).items()})
        seen[-1]["softplus"] = delta_softplus
        return original(u, delta, A, B, C, D, z, delta_bias, delta_softplus, **kw)

    monkeypatch.setattr(ss2d_module, "selective_scan", spy)
    model = tiny_vmamba()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 32, 32))
    assert seen, "SS2D did not call vmamba_ops.selective_scan"
    for call in seen:
        assert call.pop("softplus") is True  # softplus applied inside the op, in its precision
        assert set(call.values()) == {torch.float32}, call
    assert all(torch.isfinite(o).all() for o in outs)

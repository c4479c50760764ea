"""NaNDetectHook: a NaN/inf stops training with a message naming where it first appeared."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

pytest.importorskip("mmengine")
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmvmamba.engine.nan_detect import NaNDetectHook, NonFiniteError, first_nonfinite  # noqa: E402


class _Poison(nn.Module):
    """Identity, except that from call ``at`` on it writes a NaN into its output."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls >= self.at:
            x = x.clone()
            x[0, 0] = float("nan")
        return x


class _Toy(BaseModel):
    """Linear -> Poison -> ReLU -> Linear; optionally a NaN made in forward between modules, a
    NaN made only in the backward pass, or an infinite loss."""

    def __init__(self, poison_at=10**9, functional_at=10**9, grad_nan=False, inf_loss_at=10**9):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.poison = _Poison(poison_at)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 1)
        self.functional_at, self.grad_nan, self.inf_loss_at = functional_at, grad_nan, inf_loss_at
        self.calls = 0

    def forward(self, x, y, mode="loss"):
        self.calls += 1
        h = self.poison(self.fc1(x))
        if self.calls >= self.functional_at:
            h = h.log()  # NaN for negative entries, made outside any submodule
        h = self.act(h)
        if self.grad_nan:
            h = torch.sqrt(h * 0.0) + h  # finite forward, nan gradient (d sqrt(0) = inf * 0)
        loss = ((self.fc2(h) - y) ** 2).mean()
        if self.calls >= self.inf_loss_at:
            loss = loss + float("inf")
        return {"loss": loss}


class _Data(Dataset):
    def __init__(self, bad_index: int | None = None):
        self.bad_index = bad_index

    def __len__(self):
        return 16

    def __getitem__(self, i):
        x = torch.randn(4, generator=torch.Generator().manual_seed(i))
        if i == self.bad_index:
            x[1] = float("inf")
        return dict(x=x, y=x.sum(0, keepdim=True))


def _runner(tmp_path, model, hooks=True, data=None, max_iters=6):
    return Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=data or _Data(),
            sampler=dict(type="DefaultSampler", shuffle=False),
            batch_size=2,
            collate_fn=dict(type="default_collate"),
        ),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=None, logger=dict(type="LoggerHook", interval=100)),
        custom_hooks=[dict(type="NaNDetectHook")] if hooks else [],
        randomness=dict(seed=0),
        default_scope="mmengine",
        experiment_name=f"nan_{tmp_path.name}",
    )


def test_first_nonfinite():
    assert first_nonfinite((torch.ones(3), {"a": torch.zeros(2)})) is None
    path, what = first_nonfinite((torch.ones(3), {"a": torch.tensor([1.0, float("inf")])}))
    assert path == "[1]['a']" and "0 nan, 1 inf of 2 values" in what
    assert first_nonfinite(torch.tensor([1, 2])) is None  # integer tensors are skipped


def test_names_the_module_that_produced_nan(tmp_path):
    runner = _runner(tmp_path, _Toy(poison_at=3))
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    msg = str(info.value)
    assert "'poison' (_Poison)" in msg
    assert "at iteration 3" in msg
    assert "its inputs were all finite, so this module produced them" in msg


def test_without_the_hook_training_goes_on_with_nan(tmp_path):
    """Guards the test above: it is the hook, not the model, that stops training."""
    runner = _runner(tmp_path, _Toy(poison_at=3), hooks=False)
    runner.train()
    assert runner.iter == 6
    assert any(torch.isnan(p).any() for p in runner.model.parameters())


def test_nan_made_between_modules_names_the_consumer_and_says_so(tmp_path):
    runner = _runner(tmp_path, _Toy(functional_at=2))
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    msg = str(info.value)
    assert "'act' (ReLU)" not in msg or "already non-finite" in msg
    assert "already non-finite" in msg and "forward of its parent" in msg


def test_nan_in_the_batch_names_the_batch(tmp_path):
    runner = _runner(tmp_path, _Toy(), data=_Data(bad_index=5))
    with pytest.raises(NonFiniteError, match=r"batch 2 has non-finite inputs.*1 inf"):
        runner.train()


def test_nan_gradient_names_the_parameter(tmp_path):
    runner = _runner(tmp_path, _Toy(grad_nan=True))
    with pytest.raises(NonFiniteError, match=r"gradient of parameter 'fc1\.(weight|bias)'"):
        runner.train()


def test_infinite_loss_is_reported(tmp_path):
    runner = _runner(tmp_path, _Toy(inf_loss_at=2))
    with pytest.raises(NonFiniteError, match=r"not finite \(0 nan, 1 inf"):
        runner.train()


def test_hooks_are_removed_after_training(tmp_path):
    model = _Toy()
    runner = _runner(tmp_path, model, max_iters=2)
    runner.train()
    assert not model.fc1._forward_hooks and not model._forward_hooks


def test_bad_interval_is_rejected():
    with pytest.raises(ValueError, match="interval must be an int >= 1, got 0"):
        NaNDetectHook(interval=0)


def test_names_the_vmamba_layer_that_produced_nan():
    """With a NaN weight in one SS2D projection of a tiny VMamba, the error names that layer."""
    vmamba = pytest.importorskip("mmvmamba.models.backbones.vmamba")
    from .helpers import tiny_vmamba

    model = tiny_vmamba()
    target = _first_ss2d_linear(model)
    with torch.no_grad():
        dict(model.named_modules())[target].weight[0].fill_(float("nan"))
    hook = NaNDetectHook(check_grads=False)

    class _R:  # the bits of a Runner the hook reads
        model = None
        iter, epoch = 0, 0
        logger = None

    runner = _R()
    runner.model = model
    hook.before_train(runner)
    hook.before_train_iter(runner, 0, None)
    with pytest.raises(NonFiniteError) as info:
        model(torch.randn(1, 3, 64, 64))
    hook.after_train(runner)
    assert f"'{target}'" in str(info.value), str(info.value)
    assert vmamba is not None


def _first_ss2d_linear(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if type(module).__name__ == "SS2D":
            for sub_name, sub in module.named_modules():
                if sub_name and hasattr(sub, "weight") and sub.weight is not None:
                    return f"{name}.{sub_name}"
    raise AssertionError("no SS2D layer with a weight found")

"""Shared fixtures: NaN-poisoned allocations for ops tests, a tiny deterministic seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def _poisoned(factory):
    def make(*args, **kwargs):
        out = factory(*args, **kwargs)
        if out.is_floating_point() or out.is_complex():
            out.fill_(float("nan"))
        return out

    return make


@pytest.fixture
def nan_poison(monkeypatch):
    """Fill every fresh ``torch.empty``/``empty_like``/``new_empty`` allocation with NaN, so a
    kernel that leaves an output element unwritten fails loudly (as flash-linear-attention does)."""
    monkeypatch.setattr(torch, "empty", _poisoned(torch.empty))
    monkeypatch.setattr(torch, "empty_like", _poisoned(torch.empty_like))
    original_new_empty = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty", _poisoned(original_new_empty))
    yield


@pytest.fixture(autouse=True)
def _restore_mmengine_default_scope():
    """A Runner or ``register_all_modules`` leaves its default scope behind, which would make
    later tests build from another framework's registry; each test starts from the same scope."""
    try:
        from mmengine.registry import DefaultScope
    except ImportError:
        yield
        return
    saved = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)

"""Safe checkpoint reading and checked loading (mmvmamba.checkpoint.io)."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
from torch import nn

from mmvmamba.checkpoint import CheckpointError, load_checkpoint_file, load_state_dict_checked
from mmvmamba.checkpoint.io import diff_state_dict, unwrap_checkpoint


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_official_style_file_with_namespace_loads(tmp_path):
    path = tmp_path / "official.pth"
    sd = {"w": torch.randn(3, 2)}
    torch.save({"model": sd, "args": argparse.Namespace(lr=1e-3, model="vim")}, path)
    ckpt = load_checkpoint_file(path)
    assert torch.equal(ckpt["model"]["w"], sd["w"])
    assert ckpt["args"].lr == 1e-3


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="allow-list") as info:
        load_checkpoint_file(path)
    assert "system" in str(info.value)  # names the refused global


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_files_raise_naming_the_file(tmp_path, damage):
    path = tmp_path / f"{damage}.pth"
    torch.save({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_file(tmp_path / "nope.pth")


def test_non_dict_payload(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint_file(path)


def test_legacy_non_zip_format_loads(tmp_path):
    path = tmp_path / "legacy.pth"
    sd = {"w": torch.randn(2, 2)}
    torch.save({"state_dict": sd}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], sd["w"])


def _model():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_strict_load_names_every_bad_key_and_loads_nothing():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = {k: torch.ones_like(v) for k, v in _model().state_dict().items()}
    del sd["2.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(5, 4)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_checked(model, sd, source="ckpt.pth")
    msg = str(info.value)
    assert "2.bias" in msg and "extra.weight" in msg and "0.weight" in msg
    assert "[5, 4]" in msg and "[3, 4]" in msg
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed although the strict load failed"


def test_partial_load_when_allowed_loads_matching_keys(caplog):
    model = _model()
    sd = {k: torch.full_like(v, 7.0) for k, v in _model().state_dict().items()}
    del sd["2.bias"]
    report = load_state_dict_checked(model, sd, strict=False)
    assert report.missing == ["2.bias"] and not report.unexpected
    assert torch.all(model[0].weight == 7.0)
    assert "partial load" in caplog.text and "2.bias" in caplog.text


def test_exact_match_is_ok():
    model = _model()
    src = _model()
    report = load_state_dict_checked(model, src.state_dict())
    assert report.ok
    for (k, a), b in zip(model.state_dict().items(), src.state_dict().values()):
        assert torch.equal(a, b), k


class _ReachesAttribute:
    """A pickle that calls getattr on an allow-listed class for a non-statistics name."""

    def __reduce__(self):
        return (getattr, (argparse.Namespace, "__init__"))


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    path = tmp_path / "getattr.pth"
    torch.save({"x": _ReachesAttribute()}, path)
    with pytest.raises(CheckpointError, match="allow-list"):
        load_checkpoint_file(path)


# ---------------------------------------------------------------------- one unwrapping rule
W = torch.zeros(2)


@pytest.mark.parametrize(
    "checkpoint, use_ema, expected",
    [
        ({"a": W}, False, {"a": W}),  # flat
        ({"state_dict": {"a": W}, "meta": {}}, False, {"a": W}),  # mmengine
        ({"model": {"a": W}, "model_ema": {"b": W}, "epoch": 3}, False, {"a": W}),  # official
        ({"model": {"a": W}, "model_ema": {"b": W}}, True, {"b": W}),
        ({"model_ema": {"module": {"b": W}}}, True, {"b": W}),  # timm ModelEma
        ({"state_dict": {"module.a": W, "module.b": W}}, False, {"a": W, "b": W}),  # DDP
    ],
    ids=["flat", "state_dict", "model", "model_ema", "ema-module", "ddp-prefix"],
)
def test_unwrap_checkpoint_rules(checkpoint, use_ema, expected):
    got = unwrap_checkpoint(checkpoint, use_ema=use_ema)
    assert got.keys() == expected.keys() and all(got[k] is W for k in got)


def test_unwrap_checkpoint_errors():
    with pytest.raises(CheckpointError, match="no 'model_ema' entry"):
        unwrap_checkpoint({"model": {"a": W}}, use_ema=True)
    with pytest.raises(CheckpointError, match=r"\['epoch'\] are not tensors"):
        unwrap_checkpoint({"a": W, "epoch": 3})


def test_diff_state_dict_names_each_kind():
    own = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    report = diff_state_dict(own, {"a": torch.zeros(2), "b": torch.zeros(4), "d": torch.zeros(1)})
    assert report.missing == ["c"] and report.unexpected == ["d"]
    assert report.mismatched == [("b", (4,), (3,))]
    assert diff_state_dict(own, own).ok


def test_register_hook_reaches_every_framework_registry():
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS
    from mmpretrain.registry import HOOKS as PRETRAIN_HOOKS

    from mmvmamba.registry import register_hook

    @register_hook
    class _ProbeHook(Hook):
        pass

    assert HOOKS.get("_ProbeHook") is _ProbeHook
    assert PRETRAIN_HOOKS.get("_ProbeHook") is _ProbeHook

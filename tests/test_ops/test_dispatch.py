"""vmamba_ops.dispatch: every row of the `auto` table, the explicit backends and their errors,
the process setting (set_backend / use_backend) and its environment default.

The CUDA rows are checked on the resolver itself (it takes a device type, so no GPU is needed)
and, through the public functions, on 'meta' tensors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from ops_test_utils import args_of, make_inputs

import vmamba_ops
from vmamba_ops import _c_library, dispatch
from vmamba_ops.dispatch import resolve_backend

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


@pytest.fixture
def c_ok(monkeypatch):
    """The C kernels count as built (no compiler needed for the table's logic)."""
    monkeypatch.setattr(_c_library, "available", lambda: True)


@pytest.fixture
def no_c(monkeypatch):
    monkeypatch.setattr(_c_library, "available", lambda: False)
    monkeypatch.setattr(_c_library, "why_not", lambda: "no C compiler found (test)")
    monkeypatch.setattr(dispatch, "_warned", set())


@pytest.fixture
def triton(monkeypatch):
    monkeypatch.setattr(dispatch, "_HAS_TRITON", True)
    monkeypatch.setattr(dispatch, "_interpret", False)


@pytest.fixture
def no_triton(monkeypatch):
    monkeypatch.setattr(dispatch, "_HAS_TRITON", False)
    monkeypatch.setattr(dispatch, "_interpret", False)
    monkeypatch.setattr(dispatch, "_warned", set())


@pytest.fixture(autouse=True)
def default_setting(monkeypatch):
    """Each test starts from the 'auto' setting, whatever VMAMBA_OPS_CPU_KERNEL says."""
    monkeypatch.setattr(dispatch, "_settings", {})


# (op, device, dtype, channel_first) -> backend, with the C kernels and triton available
AUTO_TABLE = [
    ("selective_scan", "cpu", F32, True, "c"),
    ("selective_scan", "cpu", BF16, True, "c"),
    ("selective_scan", "cpu", F64, True, "c"),
    ("cross_scan", "cpu", F32, True, "c"),
    ("cross_merge", "cpu", F64, True, "c"),
    ("cross_scan", "cpu", F32, False, "torch"),  # channel-last: no C kernel
    ("cross_scan", "cpu", F16, True, "torch"),
    ("selective_scan", "cuda", F64, True, "ref"),
    ("cross_scan", "cuda", F64, True, "torch"),
    ("selective_scan", "cuda", F32, True, "triton"),
    ("selective_scan", "cuda:1", BF16, True, "triton"),
    ("cross_merge", "cuda", F16, False, "triton"),
    ("selective_scan", "mps", F32, True, "torch"),
    ("cross_scan", "meta", F32, True, "torch"),
]


@pytest.mark.parametrize("op, device, dtype, channel_first, want", AUTO_TABLE)
def test_auto_table(c_ok, triton, op, device, dtype, channel_first, want):
    got = resolve_backend(op, "auto", device, dtype, channel_first=channel_first)
    assert got == want


def test_auto_on_cpu_without_a_compiler_runs_torch_with_one_warning(no_c):
    with pytest.warns(RuntimeWarning, match="(?s)no C compiler found.*set_backend\\('torch'"):
        assert resolve_backend("selective_scan", "auto", "cpu", F32) == "torch"
    with warnings.catch_warnings(record=True) as record:  # once per process
        warnings.simplefilter("always")
        assert resolve_backend("selective_scan", "cpu", "cpu", F32) == "torch"
    assert record == []


def test_auto_on_cuda_without_triton_says_how_to_install_it(no_triton):
    with pytest.warns(RuntimeWarning, match="pip install triton"):
        assert resolve_backend("selective_scan", "auto", "cuda", F32) == "torch"
    assert resolve_backend("cross_scan", "auto", "cuda", F32) == "torch"  # views: no warning
    assert resolve_backend("selective_scan", "auto", "cuda", F64) == "ref"


@pytest.mark.parametrize(
    "rank, dtype, needs_grad, graph, want",
    [
        (6, F32, False, False, "c_lowrank"),
        (8, F64, False, False, "c_lowrank"),
        (9, F32, False, False, "c"),  # larger ranks keep the bmm
        (6, BF16, False, False, "c"),
        (6, F32, True, False, "c"),  # the fused forward has no backward
        (6, F32, False, True, "c"),  # a captured graph shows the projection
        (None, F32, False, False, "c"),
    ],
)
def test_low_rank_row(c_ok, rank, dtype, needs_grad, graph, want):
    kw = dict(needs_grad=needs_grad, low_rank=rank, graph=graph)
    assert resolve_backend("selective_scan", "auto", "cpu", dtype, **kw) == want
    assert resolve_backend("selective_scan", "c", "cpu", dtype, **kw) == want


def test_low_rank_never_fuses_off_the_c_kernel(c_ok, triton):
    assert resolve_backend("selective_scan", "torch", "cpu", F32, low_rank=4) == "torch"
    assert resolve_backend("selective_scan", "auto", "cuda", F32, low_rank=4) == "triton"


def test_explicit_backends(c_ok, triton):
    for device in ("cpu", "cuda"):
        for name in ("ref", "torch"):
            assert resolve_backend("selective_scan", name, device, F32) == name
    assert resolve_backend("selective_scan", "c", "cpu", F16) == "c"
    assert resolve_backend("selective_scan", "cpu", "cpu", F32) == "c"  # the old name
    assert resolve_backend("cross_scan", "cpu", "cpu", F32, channel_first=False) == "torch"
    assert resolve_backend("selective_scan", "triton", "cuda", F32) == "triton"


@pytest.mark.parametrize("name", ["c", "cpu"])
def test_c_backend_on_cuda_tensors_names_the_device_and_the_choices(c_ok, triton, name):
    choices = r"\['ref', 'torch', 'triton'\]"
    with pytest.raises(ValueError, match=rf"backend='{name}'.*'cuda'.*{choices}"):
        resolve_backend("selective_scan", name, "cuda", F32)


def test_c_backend_errors(no_c):
    with pytest.raises(RuntimeError, match="backend='c' but the C kernels.*no C compiler found"):
        resolve_backend("selective_scan", "c", "cpu", F32)
    with pytest.raises(ValueError, match="channel-first float32/float64.*channel-last"):
        resolve_backend("cross_scan", "c", "cpu", F32, channel_first=False)


def test_triton_backend_errors(no_triton):
    with pytest.raises(RuntimeError, match="pip install triton"):
        resolve_backend("selective_scan", "triton", "cuda", F32)
    dispatch._HAS_TRITON = True  # (restored by the fixture's monkeypatch)
    with pytest.raises(RuntimeError, match="needs CUDA tensors.*TRITON_INTERPRET=1"):
        resolve_backend("cross_scan", "triton", "cpu", F32)
    dispatch._interpret = True
    assert resolve_backend("cross_scan", "triton", "cpu", F32) == "triton"


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="unknown backend 'cuda'.*'torch'"):
        resolve_backend("selective_scan", "cuda", "cpu", F32)
    with pytest.raises(ValueError, match="set_backend: unknown backend 'fast'"):
        vmamba_ops.set_backend("fast")


def test_set_backend_and_use_backend(c_ok, triton):
    assert vmamba_ops.get_backend() == "auto"
    vmamba_ops.set_backend("torch", device="cpu")
    assert resolve_backend("selective_scan", "auto", "cpu", F32) == "torch"
    assert resolve_backend("selective_scan", "auto", "cuda", F32) == "triton"  # cpu only
    assert resolve_backend("selective_scan", "c", "cpu", F32) == "c"  # explicit wins
    with vmamba_ops.use_backend("ref"):  # every device
        assert resolve_backend("selective_scan", "auto", "cpu", F32) == "ref"
        assert resolve_backend("cross_scan", "auto", "cuda", F32) == "ref"
        assert vmamba_ops.get_backend("cuda") == "ref"
    assert vmamba_ops.get_backend("cpu") == "torch" and vmamba_ops.get_backend("cuda") == "auto"
    vmamba_ops.set_backend("auto", device="cpu")
    assert resolve_backend("selective_scan", "auto", "cpu", F32) == "c"


def test_setting_checks_like_an_explicit_backend(no_c):
    with vmamba_ops.use_backend("c"), pytest.raises(ValueError, match="'cuda'"):
        resolve_backend("selective_scan", "auto", "cuda", F32)
    with vmamba_ops.use_backend("c", device="cpu"):
        # maps the C kernels do not take stay with the views; no kernel at all is an error
        assert resolve_backend("cross_scan", "auto", "cpu", F16) == "torch"
        with pytest.raises(RuntimeError, match="no C compiler"):
            resolve_backend("cross_scan", "auto", "cpu", F32)


def test_use_backend_restores_after_an_error():
    with pytest.raises(KeyError), vmamba_ops.use_backend("torch", device="cpu"):
        raise KeyError
    assert vmamba_ops.get_backend("cpu") == "auto"


@pytest.mark.parametrize(
    "value, want", [(None, "auto"), ("", "auto"), ("Torch", "torch"), ("native", "c"), ("c", "c")]
)
def test_environment_default(value, want):
    assert dispatch._cpu_default(value) == want


def test_environment_default_rejects_unknown_values():
    with pytest.raises(ValueError, match=r"VMAMBA_OPS_CPU_KERNEL='fast'.*'auto'.*'c'.*'torch'"):
        dispatch._cpu_default("fast")


def test_the_environment_is_read_at_import_only():
    """The variable sets the CPU default when vmamba_ops is imported; later changes do nothing."""
    code = (
        "import os, vmamba_ops; "
        "print(vmamba_ops.get_backend('cpu')); "
        "os.environ['VMAMBA_OPS_CPU_KERNEL'] = 'auto'; "
        "print(vmamba_ops.get_backend('cpu'))"
    )
    env = dict(os.environ, VMAMBA_OPS_CPU_KERNEL="torch")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["torch", "torch"]


def test_public_calls_on_meta_tensors(c_ok):
    """The device reaches the table through the public functions: 'c' / 'cpu' refuse a
    non-CPU device, 'auto' gives the shape-only result there."""
    inp = make_inputs(1, 4, 6, 2, 1, requires_grad=False)
    meta = {k: (v.to("meta") if v is not None else None) for k, v in inp.items()}
    for name in ("c", "cpu"):
        with pytest.raises(ValueError, match="inputs are on 'meta'"):
            vmamba_ops.selective_scan(*args_of(meta), backend=name)
        with pytest.raises(ValueError, match="inputs are on 'meta'"):
            vmamba_ops.cross_scan(torch.empty(1, 2, 3, 3, device="meta"), backend=name)
    y = vmamba_ops.cross_scan(torch.empty(1, 2, 3, 3, device="meta"))
    assert y.shape == (1, 4, 2, 9) and y.device.type == "meta"


def test_available_backends(c_ok, triton):
    assert vmamba_ops.available_backends("cpu") == ["ref", "torch", "c"]
    assert vmamba_ops.available_backends("cuda") == ["ref", "torch", "triton"]
    dispatch._interpret = True
    assert vmamba_ops.available_backends("cpu") == ["ref", "torch", "c", "triton"]

"""Fused CPU inference (oneDNN post-ops) against the unfused PyTorch ops, and where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmvmamba.models.backbones.vmamba import VMamba
from mmvmamba.models.layers import cpu_fusion
from mmvmamba.models.layers.cpu_fusion import conv_act, fusion_applies, linear_act, linear_add

ACTS = {"gelu": (nn.GELU(), F.gelu), "silu": (nn.SiLU(), F.silu), "relu": (nn.ReLU(), F.relu)}


@pytest.fixture(autouse=True)
def _fusion_on(monkeypatch):
    monkeypatch.delenv("MMVMAMBA_CPU_FUSION", raising=False)


def test_onednn_ops_are_present_in_this_build():
    # x86 wheels of torch ship oneDNN; without it every test below would only test the fallback
    assert torch.backends.mkldnn.is_available()
    assert cpu_fusion._ops_work()


def _map(*shape: int) -> torch.Tensor:
    """A random channels-last (B, C, H, W) map, as VMamba's LayerNorm2d returns them."""
    return torch.randn(shape).contiguous(memory_format=torch.channels_last)


def _plain_linear(x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    return F.linear(x.permute(0, 2, 3, 1), lin.weight, lin.bias).permute(0, 3, 1, 2)


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("shape", [(1, 24, 7, 5), (2, 40, 3, 11)])
def test_linear_act_matches_linear_then_activation(act, shape):
    torch.manual_seed(0)
    module, fn = ACTS[act]
    lin = nn.Linear(shape[1], 3 * shape[1] + 1)
    x = _map(*shape)
    with torch.no_grad():
        got = linear_act(x, lin, module)
        want = fn(_plain_linear(x, lin))
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_linear_act_declines_tanh_gelu():
    lin = nn.Linear(8, 8)
    assert linear_act(_map(1, 8, 2, 2), lin, nn.GELU(approximate="tanh")) is None


@pytest.mark.parametrize("bias", [True, False])
def test_linear_add_matches_linear_plus_residual(bias):
    torch.manual_seed(0)
    lin = nn.Linear(40, 24, bias=bias)
    x, res = _map(2, 40, 5, 9), _map(2, 24, 5, 9)
    with torch.no_grad():
        got = linear_add(x, lin, res)
        want = res + _plain_linear(x, lin)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ["silu", "gelu"])
@pytest.mark.parametrize("kernel,bias", [(3, False), (5, True)])
def test_depthwise_conv_act_matches_conv_then_activation(act, kernel, bias):
    torch.manual_seed(0)
    module, fn = ACTS[act]
    conv = nn.Conv2d(16, 16, kernel, padding=kernel // 2, groups=16, bias=bias)
    x = torch.randn(2, 16, 9, 13).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = conv_act(x, conv, module)
        want = fn(conv(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a channel-first map is left to the plain ops (oneDNN would convert it)
    assert conv_act(x.contiguous(), conv, module) is None


def test_fusion_applies_only_where_nothing_can_tell():
    lin = nn.Linear(8, 8)
    x = torch.randn(1, 2, 2, 8)
    with torch.no_grad():
        assert fusion_applies(x, lin)
        assert not fusion_applies(x.double(), lin)  # float32 only
    assert not fusion_applies(x, lin)  # grad enabled and the weight requires grad
    handle = lin.register_forward_hook(lambda *a: None)
    with torch.no_grad():
        assert not fusion_applies(x, lin)  # the hook must see the module run
    handle.remove()
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False):
        assert not fusion_applies(x, lin)  # a dispatch mode must see aten.addmm, not oneDNN
    with torch.no_grad():
        traced = []

        class Probe(nn.Module):
            def forward(self, t):
                traced.append(fusion_applies(t, lin))
                return t + 1

        torch.jit.trace(Probe(), (x,), check_trace=False)
        assert traced == [False]  # FLOP counters trace: they must see the ordinary ops


def test_env_switch_turns_fusion_off(monkeypatch):
    monkeypatch.setenv("MMVMAMBA_CPU_FUSION", "0")
    with torch.no_grad():
        assert not fusion_applies(torch.randn(1, 2, 2, 8), nn.Linear(8, 8))


def _onednn_calls(model: nn.Module, x: torch.Tensor) -> tuple[list, set]:
    with torch.profiler.profile() as prof, torch.no_grad():
        out = model(x)
    return out, {e.key for e in prof.key_averages() if e.key.startswith("mkldnn::")}


@pytest.mark.parametrize("arch", ["tiny", "v0-tiny"])
def test_vmamba_inference_is_the_same_with_and_without_fusion(arch, monkeypatch):
    torch.manual_seed(0)
    model = VMamba(
        arch=dict(VMamba.arch_zoo[arch], depths=[1, 1, 1, 1]), out_indices=(0, 1, 2, 3)
    ).eval()
    x = torch.randn(2, 3, 64, 96)
    fused, ops = _onednn_calls(model, x)
    # MLP (GELU, residual) and out_proj's add; the depthwise conv's SiLU where its input is a
    # whole channels-last map (v2; v0's is one half of in_proj's output, left to the plain ops)
    want = {"mkldnn::_linear_pointwise"}
    if arch == "tiny":
        want.add("mkldnn::_convolution_pointwise")
    assert want <= ops
    monkeypatch.setenv("MMVMAMBA_CPU_FUSION", "0")
    plain, ops_off = _onednn_calls(model, x)
    assert not ops_off
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_hooked_branch_sees_its_own_output_not_the_residual_sum():
    torch.manual_seed(0)
    model = VMamba(arch=dict(VMamba.arch_zoo["tiny"], depths=[1, 1, 1, 1]), out_indices=(0,))
    block = model.layers[0].blocks[0]
    block.eval()
    seen = {}
    handle = block.op.register_forward_hook(lambda m, i, o: seen.setdefault("op", o))
    x = torch.randn(1, 96, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = block(x)
        alone = block.op(block.norm(x))
    handle.remove()
    torch.testing.assert_close(seen["op"], alone)
    with torch.no_grad():
        torch.testing.assert_close(out, block(x), rtol=1e-5, atol=1e-5)  # same with fusion


def test_training_gradients_do_not_use_fusion():
    torch.manual_seed(0)
    model = VMamba(arch=dict(VMamba.arch_zoo["tiny"], depths=[1, 1, 1, 1]), out_indices=(3,))
    model.train()
    x = torch.randn(1, 3, 64, 64)
    with torch.profiler.profile() as prof:
        model(x)[0].sum().backward()
    assert not {e.key for e in prof.key_averages() if e.key.startswith("mkldnn::")}
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

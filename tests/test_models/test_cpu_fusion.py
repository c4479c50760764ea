"""CPU inference fusion: the oneDNN fused calls against the unfused PyTorch ops, the fused twins
against the plain modules, and what :func:`fuse_for_cpu` swaps, shares and refuses."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from torch import nn

from mmvmamba.deployment import fuse_for_cpu
from mmvmamba.models.backbones.vmamba import VMamba
from mmvmamba.models.layers.cpu_fusion import (
    FusedMlp,
    FusedSS2D,
    FusedVSSBlock,
    conv_act,
    linear_act,
    linear_add,
    onednn_fusion_available,
)
from mmvmamba.models.layers.linear import Linear2d
from mmvmamba.models.layers.vss_block import VSSBlock

ACTS = {"gelu": (nn.GELU(), F.gelu), "silu": (nn.SiLU(), F.silu), "relu": (nn.ReLU(), F.relu)}


def test_onednn_ops_are_present_in_this_build():
    # x86 wheels of torch ship oneDNN; without it the fused twins could not be tested
    assert torch.backends.mkldnn.is_available()
    assert onednn_fusion_available()


def _map(*shape: int) -> torch.Tensor:
    """A random channels-last (B, C, H, W) map, as VMamba's LayerNorm2d returns them."""
    return torch.randn(shape).contiguous(memory_format=torch.channels_last)


def _plain_linear(x: torch.Tensor, lin: Linear2d) -> torch.Tensor:
    return F.linear(x.permute(0, 2, 3, 1), lin.weight, lin.bias).permute(0, 3, 1, 2)


def _onednn_ops(fn) -> tuple[object, set[str]]:
    """``fn()`` under no_grad, and the names of the oneDNN ops it ran."""
    with torch.profiler.profile() as prof, torch.no_grad():
        out = fn()
    return out, {e.key for e in prof.key_averages() if e.key.startswith("mkldnn::")}


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("shape", [(1, 24, 7, 5), (2, 40, 3, 11)])
def test_linear_act_matches_linear_then_activation(act, shape):
    torch.manual_seed(0)
    module, fn = ACTS[act]
    lin = Linear2d(shape[1], 3 * shape[1] + 1)
    x = _map(*shape)
    got, ops = _onednn_ops(lambda: linear_act(x, lin, module))
    with torch.no_grad():
        want = fn(_plain_linear(x, lin))
    assert ops == {"mkldnn::_linear_pointwise"}
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_linear_act_runs_the_modules_where_onednn_cannot():
    lin = Linear2d(8, 8)
    x = _map(1, 8, 3, 2)
    tanh_gelu = nn.GELU(approximate="tanh")
    got, ops = _onednn_ops(lambda: linear_act(x, lin, tanh_gelu))
    assert not ops
    with torch.no_grad():
        torch.testing.assert_close(got, tanh_gelu(_plain_linear(x, lin)))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_add_matches_linear_plus_residual(bias):
    torch.manual_seed(0)
    lin = Linear2d(40, 24, bias=bias)
    x, res = _map(2, 40, 5, 9), _map(2, 24, 5, 9)
    got, ops = _onednn_ops(lambda: linear_add(x, lin, res))
    with torch.no_grad():
        want = res + _plain_linear(x, lin)
    assert ops == {"mkldnn::_linear_pointwise"}
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ["silu", "gelu"])
@pytest.mark.parametrize("kernel,bias", [(3, False), (5, True)])
def test_depthwise_conv_act_matches_conv_then_activation(act, kernel, bias):
    torch.manual_seed(0)
    module, fn = ACTS[act]
    conv = nn.Conv2d(16, 16, kernel, padding=kernel // 2, groups=16, bias=bias)
    x = torch.randn(2, 16, 9, 13).contiguous(memory_format=torch.channels_last)
    got, ops = _onednn_ops(lambda: conv_act(x, conv, module))
    with torch.no_grad():
        want = fn(conv(x))
    assert ops == {"mkldnn::_convolution_pointwise"}
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a channel-first map runs the plain modules (oneDNN would convert it), same numbers
    got, ops = _onednn_ops(lambda: conv_act(x.contiguous(), conv, module))
    assert not ops
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture
def log_lines():
    """The messages logged to mmengine's current logger during the test."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def _vmamba(arch: str = "tiny", **overrides) -> VMamba:
    torch.manual_seed(0)
    cfg = dict(VMamba.arch_zoo[arch], **overrides)
    return VMamba(arch=cfg, out_indices=(0, 1, 2, 3)).eval()


def _perturb_norms(model: nn.Module) -> None:
    """Non-trivial LayerNorm affine parameters (the init is 1 / 0), so the fused path's use of
    every parameter shows in the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.add_(0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.add_(0.2 * torch.randn(m.bias.shape, generator=g))


@pytest.mark.parametrize(
    "arch,overrides",
    [
        pytest.param("tiny", dict(depths=[1, 1, 1, 1]), id="tiny-depth1"),
        pytest.param("v0-tiny", dict(depths=[1, 1, 1, 1]), id="v0-tiny-depth1"),
        pytest.param("tiny", dict(dims=16, depths=[1, 2, 1, 1], act="gelu"), id="small-gelu"),
    ],
)
@pytest.mark.parametrize("hw", [(64, 96), (45, 37)])
def test_fused_vmamba_matches_plain(arch, overrides, hw):
    plain = _vmamba(arch, **overrides)
    _perturb_norms(plain)
    fused = fuse_for_cpu(plain, inplace=False)
    x = torch.randn(2, 3, *hw).contiguous(memory_format=torch.channels_last)
    want, plain_ops = _onednn_ops(lambda: plain(x))
    got, fused_ops = _onednn_ops(lambda: fused(x))
    assert not plain_ops  # the plain model runs the plain ops
    # MLP (GELU, residual) and out_proj's add; the depthwise conv's activation where its input
    # is a whole channels-last map (v2; v0's is one half of in_proj's output: plain ops)
    expected = {"mkldnn::_linear_pointwise"}
    if arch == "tiny":
        expected.add("mkldnn::_convolution_pointwise")
    assert expected <= fused_ops
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_real_tiny_arch_matches_plain():
    plain = _vmamba("tiny")
    fused = fuse_for_cpu(plain, inplace=False)
    for hw in [(40, 40), (33, 47)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            for a, b in zip(fused(x), plain(x)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fuse_for_cpu_swaps_every_block_and_shares_the_parameters(log_lines):
    plain = _vmamba("tiny", depths=[1, 2, 1, 1])
    before = {k: v for k, v in plain.state_dict().items()}
    model = fuse_for_cpu(plain)
    assert model is plain  # in place, as mmcv's fuse_conv_bn
    blocks = [m for m in model.modules() if isinstance(m, VSSBlock)]
    assert len(blocks) == 5 and all(type(b) is FusedVSSBlock for b in blocks)
    assert all(type(b.op) is FusedSS2D and type(b.mlp) is FusedMlp for b in blocks)
    after = model.state_dict()
    assert list(after) == list(before)  # same keys, same order: checkpoints load as before
    assert all(after[k].data_ptr() == before[k].data_ptr() for k in after)
    assert len(log_lines) == 1 and "VMamba: 5 VSSBlock -> FusedVSSBlock" in log_lines[0]
    fuse_for_cpu(model)  # again: nothing left to swap
    assert "0 VSSBlock -> FusedVSSBlock" in log_lines[1] and "5 already fused" in log_lines[1]


def test_fuse_for_cpu_not_inplace_leaves_the_model_plain_and_shares_weights():
    plain = _vmamba("tiny", depths=[1, 1, 1, 1])
    fused = fuse_for_cpu(plain, inplace=False)
    assert fused is not plain
    assert not any(isinstance(m, FusedVSSBlock) for m in plain.modules())
    with torch.no_grad():
        plain.layers[0].blocks[0].mlp.fc2.weight.mul_(2.0)  # an update reaches both
    assert fused.layers[0].blocks[0].mlp.fc2.weight is plain.layers[0].blocks[0].mlp.fc2.weight
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(x)[0], plain(x)[0], rtol=1e-5, atol=1e-5)


def test_fuse_for_cpu_refuses_what_it_cannot_fuse():
    model = VMamba(arch=dict(VMamba.arch_zoo["tiny"], depths=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
        fuse_for_cpu(model)
    model.eval()
    with pytest.raises(ValueError, match=r"torch\.float64 parameters.*model\.float\(\)"):
        fuse_for_cpu(model.double())
    with pytest.raises(ValueError, match=r"is on meta.*model\.cpu\(\)"):
        fuse_for_cpu(model.float().to("meta"))
    model = VMamba(arch=dict(VMamba.arch_zoo["tiny"], depths=[1, 1, 1, 1])).eval()
    model.layers[1].blocks[0].mlp.register_forward_hook(lambda *a: None)
    with pytest.raises(ValueError, match=r"layers\.1\.blocks\.0\.mlp .*forward hooks"):
        fuse_for_cpu(model)
    assert not any(isinstance(m, FusedVSSBlock) for m in model.modules())  # nothing half-done


def test_fused_block_refuses_training_and_gradients():
    block = fuse_for_cpu(VSSBlock(16, 0.1, 4.0, dict(ssm_ratio=1.0)).eval())
    assert type(block) is FusedVSSBlock
    x = _map(1, 16, 4, 4)
    # the oneDNN ops have no backward: a graph through them would lose gradients silently
    with pytest.raises(RuntimeError, match=r"no gradients.*torch\.no_grad\(\)"):
        block(x)
    with torch.inference_mode():
        assert block(x).shape == x.shape
    block.train()
    with pytest.raises(RuntimeError, match="for inference.*training mode"), torch.no_grad():
        block(x)


def test_fuse_for_cpu_leaves_models_without_vss_blocks_alone(log_lines):
    from mmvmamba.models.backbones.vim import Vim

    vim = Vim(arch=dict(embed_dims=32, num_layers=2), img_size=32).eval()
    assert fuse_for_cpu(vim) is vim
    assert log_lines == ["fuse_for_cpu: Vim has no VSSBlock; nothing fused"]


def test_plain_block_hook_sees_the_branch_output_and_changes_nothing():
    model = _vmamba("tiny", depths=[1, 1, 1, 1])
    block = model.layers[0].blocks[0]
    x = _map(1, 96, 8, 8)
    with torch.no_grad():
        alone = block.op(block.norm(x))
        without_hook = block(x)
    seen = {}
    handle = block.op.register_forward_hook(lambda m, i, o: seen.setdefault("op", o))
    with torch.no_grad():
        with_hook = block(x)
    handle.remove()
    torch.testing.assert_close(seen["op"], alone, rtol=0, atol=0)
    torch.testing.assert_close(with_hook, without_hook, rtol=0, atol=0)


def test_plain_model_is_the_same_with_and_without_grad():
    model = _vmamba("tiny", depths=[1, 1, 1, 1])
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        no_grad = model(x)
    with_grad = model(x)
    assert with_grad[-1].requires_grad
    for a, b in zip(with_grad, no_grad):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-5)

"""Vim's bidirectional mixer and RMSNorm against hand-written float64 references."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mmvmamba.models.layers.bimamba import BiMambaV2, causal_depthwise_conv1d
from mmvmamba.models.layers.rms_norm import RMSNorm


def _load_reference():
    path = Path(__file__).with_name("vim_reference.py")
    spec = importlib.util.spec_from_file_location("vim_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref_impl = _load_reference()


def reference_bimamba(m: BiMambaV2, hidden: torch.Tensor) -> torch.Tensor:
    """Two sequential loops (forward, and backward on the reversed sequence), float64."""
    return ref_impl.bimamba_v2(dict(m.named_parameters()), hidden, divide_out=m.divide_out)


def _perturbed_mixer(d_model=24, backend="auto", divide_out=True, **kw) -> BiMambaV2:
    m = BiMambaV2(d_model, backend=backend, divide_out=divide_out, **kw).double()
    with torch.no_grad():  # make the two directions' parameters clearly different
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("backend", ["ref", "cpu"])
@pytest.mark.parametrize("divide_out", [True, False], ids=["div2", "sum"])
def test_bimamba_matches_two_loop_reference(backend, divide_out):
    m = _perturbed_mixer(backend=backend, divide_out=divide_out)
    hidden = torch.randn(2, 11, 24, dtype=torch.float64)
    out = m(hidden)
    ref = reference_bimamba(m, hidden)
    assert out.shape == (2, 11, 24)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_bimamba_gradients_match_reference():
    m = _perturbed_mixer(d_model=16, d_state=4)
    hidden = torch.randn(1, 7, 16, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(m(hidden).square().sum(), [hidden, *m.parameters()])
    ref_grads = torch.autograd.grad(
        reference_bimamba(m, hidden).square().sum(), [hidden, *m.parameters()]
    )
    for (name, _), g, r in zip([("input", None), *m.named_parameters()], grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10, msg=f"gradient of {name}")


def test_bimamba_backward_direction_is_anticausal():
    """Changing the last token changes earlier outputs only through the backward branch."""
    m = _perturbed_mixer()
    hidden = torch.randn(1, 9, 24, dtype=torch.float64)
    changed = hidden.clone()
    changed[:, -1] += 1.0
    diff = (m(hidden) - m(changed)).abs().amax(-1)[0]
    assert (diff[:-1] > 1e-6).all()  # reaches every earlier token (backward scan)
    with torch.no_grad():  # kill the backward branch: earlier outputs no longer move
        m.x_proj_b.weight.zero_()
        m.conv1d_b.weight.zero_()
        m.conv1d_b.bias.zero_()
        m.D_b.zero_()
    diff = (m(hidden) - m(changed)).abs().amax(-1)[0]
    assert diff[:-1].max() < 1e-12 and diff[-1] > 1e-6


def test_official_parameter_names_and_init():
    m = BiMambaV2(192)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    # official names, shapes and state-dict order (Vim-Ti layer)
    assert list(shapes.items()) == [
        ("A_log", (384, 16)),
        ("D", (384,)),
        ("A_b_log", (384, 16)),
        ("D_b", (384,)),
        ("in_proj.weight", (768, 192)),
        ("conv1d.weight", (384, 1, 4)),
        ("conv1d.bias", (384,)),
        ("x_proj.weight", (44, 384)),
        ("dt_proj.weight", (384, 12)),
        ("dt_proj.bias", (384,)),
        ("conv1d_b.weight", (384, 1, 4)),
        ("conv1d_b.bias", (384,)),
        ("x_proj_b.weight", (44, 384)),
        ("dt_proj_b.weight", (384, 12)),
        ("dt_proj_b.bias", (384,)),
        ("out_proj.weight", (192, 384)),
    ]
    expected_a = -torch.arange(1, 17, dtype=torch.float32).repeat(384, 1)
    torch.testing.assert_close(-torch.exp(m.A_log), expected_a)
    torch.testing.assert_close(-torch.exp(m.A_b_log), expected_a)
    assert torch.equal(m.D, torch.ones(384)) and torch.equal(m.D_b, torch.ones(384))
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert m.dt_proj.weight.abs().max() <= 12**-0.5


def test_causal_depthwise_conv1d_by_hand():
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    w = torch.tensor([[[0.5, -1.0, 2.0]]])  # out[t] = b + 0.5 x[t-2] - x[t-1] + 2 x[t]
    out = causal_depthwise_conv1d(x, w, torch.tensor([0.25]))
    expected = torch.tensor([[[2.25, 3.25, 4.75, 6.25]]])
    torch.testing.assert_close(out, expected)


def test_rms_norm_by_hand():
    norm = RMSNorm(2, eps=0.0)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0]))
    out = norm(torch.tensor([[3.0, 4.0]]))  # rms = sqrt(12.5)
    torch.testing.assert_close(out, torch.tensor([[3.0, 8.0]]) / 12.5**0.5)
    assert [k for k, _ in norm.named_parameters()] == ["weight"]
    half = norm(torch.tensor([[3.0, 4.0]], dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16

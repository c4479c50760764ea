"""scan_hooks: swapping the ``scan_fn`` attribute reaches the scans of VMamba and of Vim, hands
over the full delta, and puts the original back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vmamba_ops
from mmvmamba.analysis.scan_hooks import (
    capture_scan_inputs,
    identity_scan,
    replace_scan,
    scan_mixers,
)
from mmvmamba.models.backbones.vim import Vim
from mmvmamba.models.backbones.vmamba import VMamba
from mmvmamba.models.layers.bimamba import BiMambaV2
from mmvmamba.models.layers.ss2d import SS2D


def _vmamba() -> VMamba:
    torch.manual_seed(0)
    return VMamba(arch=dict(VMamba.arch_zoo["tiny"], dims=16, depths=[1, 2, 1, 1])).eval()


def _vim() -> Vim:
    torch.manual_seed(0)
    return Vim(arch=dict(embed_dims=32, num_layers=3), img_size=32).eval()


def _recording(seen: list):
    """A wrapper that records the full-delta arguments it is called with, then scans."""

    def wrapper(original):
        def scan(u, delta, A, B, C, **kwargs):
            seen.append((u.shape, delta.shape, "delta_proj" in kwargs))
            return original(u, delta, A, B, C, **kwargs)

        return scan

    return wrapper


@pytest.mark.parametrize(
    "build,mixer_type,n_mixers,size",
    [(_vmamba, SS2D, 5, 32), (_vim, BiMambaV2, 3, 32)],
    ids=["vmamba", "vim"],
)
def test_replace_scan_sees_every_scan_of_vmamba_and_vim(build, mixer_type, n_mixers, size):
    model = build()
    mixers = scan_mixers(model)
    assert len(mixers) == n_mixers and all(type(m) is mixer_type for _, m in mixers)
    assert all(m.scan_fn is vmamba_ops.selective_scan for _, m in mixers)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want = model(x)
        seen: list = []
        with replace_scan(model, _recording(seen)) as calls:
            got = model(x)
    assert calls[0] == n_mixers == len(seen)
    # every replacement got the full delta (B, D, L), shaped as u, and no low-rank factor
    assert all(u == d and not low_rank for u, d, low_rank in seen)
    for a, b in zip(got, want):  # the same scans, so the same numbers
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert all(m.scan_fn is vmamba_ops.selective_scan for _, m in mixers)


def test_replace_scan_restores_the_scan_after_an_error():
    model = _vim()

    def broken(original):
        def scan(*args, **kwargs):
            raise ZeroDivisionError("inside the scan")

        return scan

    with pytest.raises(ZeroDivisionError), torch.no_grad(), replace_scan(model, broken):
        model(torch.randn(1, 3, 32, 32))
    assert all(m.scan_fn is vmamba_ops.selective_scan for _, m in scan_mixers(model))


def test_replace_scan_refuses_a_model_without_mixers():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Sequential has no selective-scan mixer"):
        replace_scan(model, lambda f: f).__enter__()


def test_identity_scan_of_a_vim_mixer_returns_u():
    """With y = u the mixer is out_proj of the gated, averaged conv outputs, by hand."""
    torch.manual_seed(0)
    mixer = BiMambaV2(8, d_state=4, d_conv=3).eval()
    h = torch.randn(2, 7, 8)
    with torch.no_grad(), identity_scan(mixer) as calls:
        got = mixer(h)
    assert calls[0] == 1
    with torch.no_grad():
        x = mixer.in_proj(h).transpose(1, 2)[:, : mixer.d_inner]  # (B, E, L); the gate z is
        # applied inside the scan, so the identity scan leaves it out
        fwd = torch.nn.functional.silu(mixer.conv1d(x)[..., :7])
        bwd = torch.nn.functional.silu(mixer.conv1d_b(x.flip(-1))[..., :7]).flip(-1)
        want = mixer.out_proj(((fwd + bwd) / 2).transpose(1, 2))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_capture_scan_inputs_of_one_vim_layer():
    model = _vim()
    layer = model.layers[1]
    with torch.no_grad(), capture_scan_inputs(layer) as records:
        model(torch.randn(2, 3, 32, 32))
    assert len(records) == 1  # this layer's scan only
    rec = records[0]
    inner, length = layer.mixer.d_inner, rec["u"].shape[-1]
    assert rec["u"].shape == rec["delta"].shape == (2, 2 * inner, length)
    assert rec["B"].shape == (2, 2, layer.mixer.d_state, length)
    assert rec["delta_softplus"] is True

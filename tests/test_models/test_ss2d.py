"""SS2D against an independent float64 plain-loop implementation of the official math.

The reference below re-derives every step with explicit loops and index formulas (the
official ``forward_corev2`` / ``forwardv0`` as described in the paper and code): 1x1
projections, the depthwise conv by shifted sums, the four routes by index formulas, a
sequential scan per route, the merge by scattering back to pixels, the output norm and the
gate. Nothing in it calls ``vmamba_ops``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmvmamba.models.layers import SS2D

ACTS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "sigmoid": torch.sigmoid}


def _pixel(scan: str, k: int, l: int, H: int, W: int) -> tuple[int, int]:
    """(h, w) read at position l of route k, by the official index formulas."""
    L = H * W
    if scan == "cross":
        if k >= 2:
            l = L - 1 - l
        return (l // W, l % W) if k % 2 == 0 else (l % H, l // H)
    if scan == "unidi":
        return l // W, l % W
    if scan == "bidi":
        if k >= 2:
            l = L - 1 - l
        return l // W, l % W
    raise AssertionError(scan)


def _scan_sequence(m: SS2D, k: int, seq: list[torch.Tensor]) -> list[torch.Tensor]:
    """Sequential selective scan of one route: seq[l] is (Di,), returns y[l] (Di,)."""
    di, n, r = m.d_inner, m.d_state, m.dt_rank
    Wx = m.x_proj_weight[k]  # (R+2N, Di)
    Wdt = m.dt_projs_weight[k]  # (Di, R)
    bias = m.dt_projs_bias[k]
    A = -torch.exp(m.A_logs[k * di : (k + 1) * di])  # (Di, N)
    D = m.Ds[k * di : (k + 1) * di]
    h = [[torch.zeros((), dtype=torch.float64)] * n for _ in range(di)]  # state, scalar by scalar
    out = []
    for u in seq:
        proj = Wx @ u
        dt_low, Bv, Cv = proj[:r], proj[r : r + n], proj[r + n :]
        dt = F.softplus(Wdt @ dt_low + bias)  # (Di,)
        for c in range(di):
            for s in range(n):
                h[c][s] = torch.exp(dt[c] * A[c, s]) * h[c][s] + dt[c] * Bv[s] * u[c]
        out.append(
            torch.stack([sum(Cv[s] * h[c][s] for s in range(n)) + D[c] * u[c] for c in range(di)])
        )
    return out


def _dwconv(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """Depthwise conv, 'same' padding, as a sum of shifted copies. x (C, H, W)."""
    c, H, W = x.shape
    k = weight.shape[-1]
    p = (k - 1) // 2
    xp = torch.zeros(c, H + 2 * p, W + 2 * p, dtype=x.dtype)
    xp[:, p : p + H, p : p + W] = x
    out = torch.zeros_like(x)
    for i in range(k):
        for j in range(k):
            out += weight[:, 0, i, j][:, None, None] * xp[:, i : i + H, j : j + W]
    return out + (bias[:, None, None] if bias is not None else 0)


def _layernorm_c(y: torch.Tensor, weight=None, bias=None, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the channel axis of (C, H, W), written out."""
    mean = y.mean(0, keepdim=True)
    var = ((y - mean) ** 2).mean(0, keepdim=True)
    out = (y - mean) / torch.sqrt(var + eps)
    if weight is not None:
        out = out * weight[:, None, None] + bias[:, None, None]
    return out


def _out_norm(m: SS2D, kind: str, y: torch.Tensor) -> torch.Tensor:
    if kind == "ln":
        return _layernorm_c(y, m.out_norm.weight, m.out_norm.bias)
    if kind == "none":
        return y
    if kind == "sigmoid":
        return 1 / (1 + torch.exp(-y))
    if kind == "softmax":
        e = torch.exp(y - y.amax(dim=(1, 2), keepdim=True))
        return e / e.sum(dim=(1, 2), keepdim=True)
    if kind == "dwconv3":
        return _dwconv(y, m.out_norm[1].weight, None)
    if kind == "cnorm":
        y = _layernorm_c(y, m.out_norm[0].weight, m.out_norm[0].bias)
        return _dwconv(y, m.out_norm[2].weight, None)
    raise AssertionError(kind)


def ss2d_loop_reference(m: SS2D, x: torch.Tensor, act: str, out_norm: str) -> torch.Tensor:
    """The official SS2D math with plain loops. x (B, d_model, H, W) float64."""
    B, _, H, W = x.shape
    di, L = m.d_inner, H * W
    outs = []
    for b in range(B):
        xi = torch.einsum("oc,chw->ohw", m.in_proj.weight, x[b])
        if m.gated:
            xi, z = xi[:di], ACTS[act](xi[di:])
        if m.conv2d is not None:
            xi = _dwconv(xi, m.conv2d.weight, m.conv2d.bias)
        xi = ACTS[act](xi)
        y = torch.zeros(di, H, W, dtype=torch.float64)
        if m.scan == "cascade":
            xn = _layernorm_c(xi)
            y_row = torch.zeros_like(y)
            for h in range(H):
                fwd = _scan_sequence(m, 0, [xn[:, h, l] for l in range(W)])
                rev = _scan_sequence(m, 1, [xn[:, h, W - 1 - l] for l in range(W)])
                for l in range(W):  # official v052dc: the reversed output is not flipped back
                    y_row[:, h, l] = fwd[l] + rev[l]
            yn = _layernorm_c(y_row)
            for w in range(W):
                fwd = _scan_sequence(m, 2, [yn[:, l, w] for l in range(H)])
                rev = _scan_sequence(m, 3, [yn[:, H - 1 - l, w] for l in range(H)])
                for l in range(H):
                    y[:, l, w] = fwd[l] + rev[l]
        else:
            for k in range(4):
                pix = [_pixel(m.scan, k, l, H, W) for l in range(L)]
                ys = _scan_sequence(m, k, [xi[:, h, w] for h, w in pix])
                for (h, w), yl in zip(pix, ys):
                    y[:, h, w] += yl
        y = _out_norm(m, out_norm, y)
        if m.gated:
            y = y * z
        outs.append(torch.einsum("oc,chw->ohw", m.out_proj.weight, y))
    return torch.stack(outs)


def _perturb(m: SS2D) -> None:
    """Give norm/conv parameters non-trivial values so the reference checks them too."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1 and p is not m.Ds:
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        m.Ds.mul_(0.5 + torch.rand(m.Ds.shape, generator=g, dtype=m.Ds.dtype))
        m.dt_projs_bias.add_(1.0)  # dt = O(1): the scan, not the skip term, dominates the output


CASES = [
    pytest.param(dict(forward_type="v05_noz"), id="v05_noz-cross"),
    pytest.param(dict(forward_type="v0", d_state=3, conv_bias=True), id="v0-cross-gated"),
    pytest.param(dict(scan="unidi"), id="unidi"),
    pytest.param(dict(scan="bidi"), id="bidi"),
    pytest.param(dict(scan="cascade", d_state=2), id="cascade"),
    pytest.param(dict(d_conv=0), id="no-dwconv"),
    pytest.param(dict(act="gelu"), id="act-gelu"),
    pytest.param(dict(act="relu", forward_type="v0"), id="act-relu-v0"),
    pytest.param(dict(out_norm="none"), id="outnorm-none"),
    pytest.param(dict(out_norm="dwconv3"), id="outnorm-dwconv3"),
    pytest.param(dict(out_norm="cnorm"), id="outnorm-cnorm"),
    pytest.param(dict(out_norm="softmax"), id="outnorm-softmax"),
    pytest.param(dict(out_norm="sigmoid"), id="outnorm-sigmoid"),
    pytest.param(dict(init="random"), id="init-random"),
    pytest.param(dict(init="zero"), id="init-zero"),
]


@pytest.mark.parametrize("opts", CASES)
def test_ss2d_matches_loop_reference_float64(opts):
    """SS2D == the official math, in float64, on a non-square grid (3 x 5)."""
    cfg = {"d_state": 2, "ssm_ratio": 1.5, **opts}
    m = SS2D(6, **cfg).double()
    _perturb(m)
    x = torch.randn(1, 6, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
        want = ss2d_loop_reference(m, x, cfg.get("act", "silu"), cfg.get("out_norm", "ln"))
    assert got.dtype == torch.float64 and got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_ss2d_grads_match_loop_reference_float64():
    """Gradients through SS2D equal autograd through the loop reference (cross, gated)."""
    m = SS2D(4, d_state=2, ssm_ratio=0.5, forward_type="v0").double()
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    m(x).square().sum().backward()
    got = [x.grad.clone()] + [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    x.grad = None
    ss2d_loop_reference(m, x, act="silu", out_norm="ln").square().sum().backward()
    want = [x.grad] + [p.grad for p in m.parameters()]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10)


def test_ss2d_batch_elements_are_independent():
    """A batch of two gives the same as each sample alone (no mixing across the batch)."""
    m = SS2D(6, d_state=2, ssm_ratio=1.5, forward_type="v0").double()
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64)
    with torch.no_grad():
        both = m(x)
        torch.testing.assert_close(both[:1], m(x[:1]))
        torch.testing.assert_close(both[1:], m(x[1:]))


def test_ss2d_official_parameter_shapes():
    """Names and shapes of the official checkpoints (facts §3.1: T s1l8 stage 0, v0 tiny)."""
    m = SS2D(96, d_state=1, ssm_ratio=1.0)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "out_norm.weight": (96,),
        "out_norm.bias": (96,),
        "in_proj.weight": (96, 96),
        "conv2d.weight": (96, 1, 3, 3),
        "x_proj_weight": (4, 8, 96),
        "dt_projs_weight": (4, 96, 6),
        "dt_projs_bias": (4, 96),
        "A_logs": (384, 1),
        "Ds": (384,),
        "out_proj.weight": (96, 96),
    }
    v0 = SS2D(96, d_state=16, ssm_ratio=2.0, forward_type="v0", conv_bias=True)
    shapes = {k: tuple(v.shape) for k, v in v0.state_dict().items()}
    assert shapes["in_proj.weight"] == (384, 96)
    assert shapes["conv2d.bias"] == (192,)
    assert shapes["x_proj_weight"] == (4, 6 + 32, 192)
    assert shapes["A_logs"] == (768, 16)
    # dt_rank comes from d_model (ceil(128/16) = 8), not from d_inner
    assert SS2D(128, ssm_ratio=2.0).dt_projs_weight.shape == (4, 256, 8)


def test_ss2d_mamba_init():
    m = SS2D(32, d_state=4, ssm_ratio=2.0)
    di, r = 64, 2
    a = torch.log(torch.arange(1, 5, dtype=torch.float32))
    torch.testing.assert_close(m.A_logs.data, a.expand(4 * di, 4))
    assert torch.all(m.Ds == 1)
    dt = F.softplus(m.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert m.dt_projs_weight.abs().max() <= r**-0.5
    assert m.x_proj_weight.abs().max() <= di**-0.5
    # log-uniform in [1e-3, 0.1]: the median of log(dt) is near the middle of the range
    mid = (math.log(1e-3) + math.log(0.1)) / 2
    assert abs(torch.log(dt).median().item() - mid) < 0.5


def test_ss2d_random_and_zero_init():
    rnd = SS2D(32, d_state=4, init="random")
    assert torch.all(rnd.Ds == 1)
    assert 0.8 < rnd.A_logs.std().item() < 1.2
    assert 0.07 < rnd.dt_projs_bias.std().item() < 0.13
    zero = SS2D(32, d_state=4, init="zero")
    assert torch.all(zero.A_logs == 0)
    assert zero.dt_projs_weight.min() >= 0 and zero.dt_projs_weight.max() <= 0.1
    assert zero.dt_projs_bias.min() >= 0 and zero.dt_projs_bias.max() <= 0.1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scan="diag"), "scan 'diag'"),
        (dict(forward_type="v3"), "forward_type 'v3'"),
        (dict(act="tanh"), "act 'tanh'"),
        (dict(out_norm="bn"), "out_norm 'bn'"),
        (dict(init="kaiming"), "init 'kaiming'"),
        (dict(d_conv=4), "d_conv must be odd"),
        (dict(dt_rank=0), "dt_rank"),
    ],
)
def test_ss2d_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SS2D(8, **kwargs)


def test_ss2d_rejects_wrong_input():
    m = SS2D(8)
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        m(torch.randn(1, 7, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        m(torch.randn(8, 4, 4))

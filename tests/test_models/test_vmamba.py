"""VMamba backbone: variants, shapes, contract options (freezing, checkpointing), input checks."""

# no `from __future__ import annotations`: torch.library reads the stand-in op's annotations

import pytest
import torch

from mmvmamba.models.backbones import VMamba
from mmvmamba.models.layers import SS2D

# facts §1.3, verified with the official code: sum(p.numel()) with the 1000-class head
OFFICIAL_PARAMS = {
    "tiny": 30_249_064,
    "small": 50_147_752,
    "base": 88_557_800,
    "tiny-s2l5": 30_705_832,
    "v0-tiny": 22_893_448,
    "v0-small": 44_417_416,
    "v0-base": 76_254_056,
}
# official GFLOPs at 224x224 (fvcore, one multiply-add = 1 flop, SSM = 9*B*L*D*N + B*D*L)
OFFICIAL_GFLOPS = {
    "tiny": 4.905610,
    "small": 8.715775,
    "base": 15.358944,
    "tiny-s2l5": 4.857742,
    "v0-tiny": 5.626895,
    "v0-small": 11.231523,
    "v0-base": 18.020115,
}
ALIASES = {
    "t": "tiny",
    "s": "small",
    "b": "base",
    "t-s2l5": "tiny-s2l5",
    "v0-t": "v0-tiny",
    "v0-s": "v0-small",
    "v0-b": "v0-base",
}


def tiny_arch(base: str = "tiny", **overrides) -> dict:
    """The settings of a zoo arch with widths 8..64 and one block per stage (fast tests)."""
    arch = dict(VMamba.arch_zoo[base])
    arch.update(dims=8, depths=(1, 1, 1, 1))
    arch.update(overrides)
    return arch


def head_params(arch: str) -> int:
    width = VMamba.arch_zoo[arch]["dims"] * 8
    return width * 1000 + 1000


@pytest.mark.parametrize("arch", sorted(OFFICIAL_PARAMS))
def test_param_count_matches_official(arch):
    """Backbone (with outnorm3 = classifier.norm) + a 1000-class linear head == official count.

    Built on the meta device: shapes only, no memory, no init cost."""
    with torch.device("meta"):
        model = VMamba(arch, out_indices=(3,))
    total = sum(p.numel() for p in model.parameters()) + head_params(arch)
    assert total == OFFICIAL_PARAMS[arch]


@pytest.mark.parametrize("alias, name", sorted(ALIASES.items()))
def test_aliases_are_the_same_arch(alias, name):
    assert VMamba.arch_zoo[alias] == VMamba.arch_zoo[name]
    assert VMamba(dict(VMamba.arch_zoo[alias], dims=8, depths=(1, 1, 1, 1))).dims == (8, 16, 32, 64)


def test_official_key_names_tiny():
    """A few keys exactly as in the official checkpoints (facts §3)."""
    with torch.device("meta"):
        sd = VMamba("tiny", out_indices=(0, 1, 2, 3)).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    expected = {
        "patch_embed.0.weight": (48, 3, 3, 3),
        "patch_embed.2.weight": (48,),
        "patch_embed.5.weight": (96, 48, 3, 3),
        "patch_embed.7.bias": (96,),
        "layers.2.blocks.7.op.x_proj_weight": (4, 26, 384),
        "layers.2.blocks.7.op.A_logs": (1536, 1),
        "layers.2.blocks.7.op.dt_projs_weight": (4, 384, 24),
        "layers.0.blocks.1.mlp.fc1.weight": (384, 96),
        "layers.0.blocks.1.mlp.fc2.bias": (96,),
        "layers.0.downsample.1.weight": (192, 96, 3, 3),
        "layers.2.downsample.3.weight": (768,),
        "outnorm0.weight": (96,),
        "outnorm3.bias": (768,),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert not any(k.startswith("layers.3.downsample") for k in sd)
    # 276 official classifier keys - classifier.{norm,head}.{weight,bias} + outnorm0..3 (8 keys)
    assert len(sd) == 276 - 4 + 8
    with torch.device("meta"):
        v0 = VMamba("v0-tiny").state_dict()
    assert tuple(v0["patch_embed.0.weight"].shape) == (96, 3, 4, 4)
    assert tuple(v0["layers.0.downsample.reduction.weight"].shape) == (192, 384)
    assert tuple(v0["layers.0.downsample.norm.weight"].shape) == (384,)
    assert tuple(v0["layers.1.blocks.0.op.conv2d.bias"].shape) == (384,)
    assert not any(".mlp." in k or ".norm2." in k for k in v0)
    assert len(v0) == 212 - 4 + 2


@pytest.mark.parametrize("arch", sorted(OFFICIAL_PARAMS))
def test_forward_backward_every_arch_at_odd_size(arch):
    """Every zoo arch's settings (shrunk widths/depths) at a non-square, odd input."""
    model = VMamba(tiny_arch(arch), out_indices=(0, 1, 2, 3), drop_path_rate=0.1)
    x = torch.randn(1, 3, 65, 47, requires_grad=True)
    outs = model(x)
    v0 = arch.startswith("v0")
    h, w = (16, 11) if v0 else (17, 12)  # v1 stem: floor(65/4); v2 stem: ceil(ceil(65/2)/2)
    for i, out in enumerate(outs):
        assert out.shape == (1, 8 * 2**i, h, w)
        h, w = (h + 1) // 2, (w + 1) // 2
    sum(o.mean() for o in outs).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad


def test_real_tiny_forward_small_input():
    model = VMamba("tiny", out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 48))
    assert [tuple(o.shape) for o in outs] == [
        (1, 96, 16, 12),
        (1, 192, 8, 6),
        (1, 384, 4, 3),
        (1, 768, 2, 2),
    ]
    assert all(torch.isfinite(o).all() for o in outs)


ABLATIONS = [
    dict(scan="unidi"),
    dict(scan="bidi"),
    dict(scan="cascade"),
    dict(d_conv=0),
    dict(act="gelu"),
    dict(act="relu"),
    dict(out_norm="none"),
    dict(out_norm="dwconv3"),
    dict(out_norm="cnorm"),
    dict(out_norm="softmax"),
    dict(out_norm="sigmoid"),
    dict(ssm_init="random"),
    dict(ssm_init="zero"),
    dict(conv_bias=True),
    dict(d_state=4, ssm_ratio=1.5),
]


@pytest.mark.parametrize(
    "opts", ABLATIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())
)
def test_ablation_options_forward_backward(opts):
    model = VMamba(tiny_arch("tiny", **opts), out_indices=(1, 3))
    ss2d = model.layers[0].blocks[0].op  # the option reached the layer
    assert ss2d.init == opts.get("ssm_init", "mamba") and ss2d.scan == opts.get("scan", "cross")
    assert (ss2d.conv2d is None) == (opts.get("d_conv") == 0)
    assert isinstance(ss2d.act, type(SS2D(8, act=opts.get("act", "silu")).act))
    x = torch.randn(2, 3, 37, 29, requires_grad=True)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 5, 4), (2, 64, 2, 1)]
    (outs[0].sum() + outs[1].sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_minimum_input_is_the_patch_size():
    model = VMamba(tiny_arch(), out_indices=(0, 3))
    outs = model(torch.randn(1, 3, 4, 4))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 1, 1), (1, 64, 1, 1)]
    v0 = VMamba(tiny_arch("v0-tiny"), out_indices=(0, 3))
    assert [tuple(o.shape) for o in v0(torch.randn(1, 3, 7, 4))] == [(1, 8, 1, 1), (1, 64, 1, 1)]


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (torch.randn(1, 3, 3, 64), ValueError, "3x64 is smaller than the patch size 4"),
        (torch.randn(1, 1, 32, 32), ValueError, "in_channels=3.*1 channels"),
        (torch.randn(3, 32, 32), ValueError, r"\(B, C, H, W\).*3 dims"),
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), TypeError, "torch.uint8"),
        ([[1.0]], TypeError, "torch.Tensor, got list"),
        (torch.randn(0, 3, 32, 32), ValueError, "empty batch"),
    ],
    ids=["too-small", "wrong-channels", "3d", "uint8", "list", "empty-batch"],
)
def test_bad_inputs_raise_clear_errors(x, exc, match):
    model = VMamba(tiny_arch())
    with pytest.raises(exc, match=match):
        model(x)


def test_arch_validation():
    with pytest.raises(ValueError, match="unknown arch 'huge'"):
        VMamba("huge")
    with pytest.raises(ValueError, match=r"missing \['mlp_ratio'\]"):
        VMamba({k: v for k, v in tiny_arch().items() if k != "mlp_ratio"})
    with pytest.raises(ValueError, match=r"unknown \['window_size'\]"):
        VMamba(tiny_arch(window_size=7))
    with pytest.raises(ValueError, match="dims"):
        VMamba(tiny_arch(dims=(8, 16), depths=(1, 1, 1)))
    with pytest.raises(ValueError, match="downsample 'v2'"):
        VMamba(tiny_arch(downsample="v2"))
    with pytest.raises(ValueError, match="scan 'zigzag'"):
        VMamba(tiny_arch(scan="zigzag"))


def test_contract_argument_validation():
    with pytest.raises(TypeError, match="window_size"):  # unknown kwargs are never swallowed
        VMamba(tiny_arch(), window_size=7)
    with pytest.raises(ValueError, match="out_indices entry 4"):
        VMamba(tiny_arch(), out_indices=(1, 4))
    with pytest.raises(ValueError, match="duplicates"):
        VMamba(tiny_arch(), out_indices=(3, -1))
    with pytest.raises(ValueError, match="frozen_stages"):
        VMamba(tiny_arch(), frozen_stages=5)
    with pytest.raises(ValueError, match="drop_path_rate"):
        VMamba(tiny_arch(), drop_path_rate=1.5)
    assert VMamba(tiny_arch(), out_indices=-1).out_indices == (3,)
    assert VMamba(tiny_arch(), out_indices=[-2, 0]).out_indices == (0, 2)


def test_drop_path_rates_increase_linearly_over_all_blocks():
    model = VMamba(tiny_arch(depths=(1, 2, 1, 1)), drop_path_rate=0.4)
    rates = [b.drop_path.drop_prob for layer in model.layers for b in layer.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_official_default_init():
    model = VMamba(tiny_arch(dims=32))
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            assert 0.015 < m.weight.std() < 0.025, name  # trunc_normal(std=0.02)
            assert m.bias is None or torch.all(m.bias == 0), name
        elif isinstance(m, torch.nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0), name
        elif isinstance(m, SS2D):
            assert torch.all(m.Ds == 1) and torch.all(m.A_logs == 0), name  # d_state 1: log(1)
    before = model.layers[0].blocks[0].op.in_proj.weight.clone()
    model.init_weights()
    after = model.layers[0].blocks[0].op.in_proj.weight
    assert not torch.equal(before, after)  # init_weights re-initialises (no Pretrained)
    assert 0.015 < after.std() < 0.025


@pytest.mark.parametrize("frozen", [0, 2])
def test_frozen_stages_are_frozen(frozen):
    model = VMamba(tiny_arch(), out_indices=(0, 1, 2, 3), frozen_stages=frozen)
    model.train()
    frozen_prefixes = ["patch_embed."] + [f"layers.{i}." for i in range(frozen)]
    frozen_prefixes += [f"outnorm{i}." for i in range(frozen)]
    for name, param in model.named_parameters():
        assert param.requires_grad != name.startswith(tuple(frozen_prefixes)), name
    for name, module in model.named_modules():
        if name.startswith(tuple(p[:-1] for p in frozen_prefixes)):
            assert not module.training, name
        elif name:
            assert module.training, name
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)  # all parameters, frozen ones too
    # a LayerNorm output summed over channels is constant: use a non-linear loss. 64x48 leaves
    # 2 tokens in the last stage: with one token A gets an exact zero gradient (h_{-1} = 0)
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 48))).backward()
    for name, param in model.named_parameters():
        assert (param.grad is None) == name.startswith(tuple(frozen_prefixes)), name
    opt.step()
    for key, value in model.state_dict().items():
        changed = not torch.equal(value, before[key])
        assert changed != key.startswith(tuple(frozen_prefixes)), key


def test_norm_eval_keeps_norms_in_eval_mode():
    model = VMamba(tiny_arch(), norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and not any(m.training for m in norms)
    assert model.layers[0].blocks[0].op.training


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    ref = VMamba(tiny_arch(), out_indices=(0, 3), drop_path_rate=0.3)
    cpm = VMamba(tiny_arch(), out_indices=(0, 3), drop_path_rate=0.3, with_cp=True)
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 33, 27)
    grads = []
    for model in (ref, cpm):
        model.train()
        torch.manual_seed(123)  # same drop-path draws
        sum(o.square().mean() for o in model(x)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_registered_in_mmpretrain():
    from mmpretrain.registry import MODELS

    model = MODELS.build(dict(type="VMamba", arch=tiny_arch(), out_indices=(3,)))
    assert isinstance(model, VMamba)


@pytest.mark.parametrize("framework", ["mmdet", "mmseg"])
def test_registered_in_mmdet_and_mmseg(framework):
    registry = pytest.importorskip(f"{framework}.registry")
    assert registry.MODELS.get("VMamba") is VMamba


class _Classifier(torch.nn.Module):
    """The official classifier layout: backbone (outnorm3 = classifier.norm), pool, linear."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        self.backbone = VMamba(arch, out_indices=(3,))
        self.fc = torch.nn.Linear(self.backbone.dims[-1], 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x)[0]
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(feat, 1).flatten(1))


def _gflops_by_operator(model: torch.nn.Module, handles: dict, size: int = 224) -> dict:
    """GFLOPs per traced operator of ``model`` on one (1, 3, size, size) input."""
    from mmengine.analysis import FlopAnalyzer

    with torch.no_grad():
        analyzer = FlopAnalyzer(model.eval(), (torch.randn(1, 3, size, size),))
        analyzer.set_op_handle(**handles)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return {op: n / 1e9 for op, n in analyzer.by_operator().items()}


# A shape-only stand-in for the scan (same schema as vmamba_ops::selective_scan, zero output),
# so FLOP tracing of the big variants does not pay for CPU scans: FLOPs depend on shapes only.
@torch.library.custom_op("mmvmamba_tests::shape_only_scan", mutates_args=())
def _shape_only_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,  # noqa: UP045 (torch.library parses typing.Optional)
    z: torch.Tensor | None,  # noqa: UP045
    delta_bias: torch.Tensor | None,  # noqa: UP045
    delta_softplus: bool,
    backend: str,
) -> torch.Tensor:
    return torch.zeros_like(u)


def _shape_only_selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    backend="auto",
    delta_proj=None,
):
    import vmamba_ops

    if delta_proj is not None:  # the dt projection is part of the official count
        delta = vmamba_ops.low_rank_delta(delta, delta_proj)
    return _shape_only_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(OFFICIAL_GFLOPS))
def test_flops_match_official(arch, monkeypatch):
    """Classifier at 224x224, mmengine's FlopAnalyzer + the SSM FLOP handle of vmamba_ops
    (official count: fvcore, 1 multiply-add = 1 flop, scan = 9*B*L*D*N + B*D*L), within 1%."""
    import mmvmamba.models.layers.ss2d as ss2d_module
    import vmamba_ops

    monkeypatch.setattr(ss2d_module, "selective_scan", _shape_only_selective_scan)
    handles = dict(vmamba_ops.FLOP_HANDLES)
    handles["mmvmamba_tests::shape_only_scan"] = vmamba_ops.selective_scan_flop_handle
    gflops = sum(_gflops_by_operator(_Classifier(arch), handles).values())
    assert gflops == pytest.approx(OFFICIAL_GFLOPS[arch], rel=0.01)


@pytest.mark.slow
def test_flops_with_the_real_scan_op_tiny():
    """The real traced op ``vmamba_ops::selective_scan`` is counted by its FLOP handle."""
    import vmamba_ops

    by_op = _gflops_by_operator(_Classifier("tiny"), vmamba_ops.FLOP_HANDLES)
    assert sum(by_op.values()) == pytest.approx(OFFICIAL_GFLOPS["tiny"], rel=0.01)
    # the official breakdown of T s1l8 (facts §5.3): conv 4.8119 (1x1 "Linear2d" included),
    # scans 0.0632 (= sum over stages of 10*4*Di*L*depth), layer norm 0.0297, head 0.0008
    assert by_op["selective_scan"] == pytest.approx(0.0632, rel=0.01)
    # (our 1x1 maps run as bmm or, on channels-last maps, linear: official conv = our conv +
    # bmm + linear - the head's linear, 768 * 1000 MACs)
    maps = by_op["conv"] + by_op["bmm"] + by_op["linear"] - 768 * 1000 / 1e9
    assert maps == pytest.approx(4.8119, rel=1e-3)
    assert by_op["layer_norm"] == pytest.approx(0.0297, rel=1e-2)

"""Vim backbone: official parameter counts, shapes, exact forward vs an independent float64
reference, position-embedding resizing for odd input sizes, input errors, freezing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mmvmamba.checkpoint.vim import resize_vim_pos_embed
from mmvmamba.models.backbones.vim import Vim


def _load_reference():
    path = Path(__file__).with_name("vim_reference.py")
    spec = importlib.util.spec_from_file_location("vim_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()

TINY = dict(embed_dims=32, num_layers=3)  # ~0.1 M parameters, fast on CPU


def _tiny(**kwargs) -> Vim:
    kwargs.setdefault("arch", TINY)
    kwargs.setdefault("img_size", 32)
    return Vim(**kwargs)


def _random_official(model: Vim, seed: int = 0) -> dict:
    """Load random official-layout weights into ``model`` (float64); return them."""
    gen = torch.Generator().manual_seed(seed)
    sd = ref.official_state_dict(
        model.embed_dims, model.num_layers, model.patch_grid, generator=gen
    )
    model.double()
    model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("head.")})
    return sd


# ---------------------------------------------------------------------------------- arch zoo
@pytest.mark.parametrize(
    "arch, expected",
    [
        ("tiny", 7_148_008),
        ("tiny-s8", 7_250_344),
        ("small", 25_796_584),
        ("small-s8", 26_001_256),
        ("base", 97_598_440),
    ],
)
def test_official_parameter_counts(arch, expected):
    """README/facts counts include the 1000-class linear head (C * 1000 + 1000)."""
    model = Vim(arch=arch)
    count = sum(p.numel() for p in model.parameters()) + model.embed_dims * 1000 + 1000
    assert abs(count - expected) <= 0.001 * expected, (arch, count, expected)
    assert count == expected


def test_arch_settings_and_aliases():
    tiny = Vim(arch="ti", out_type="featmap", out_indices=(5, 11, 17, 23))
    assert (tiny.embed_dims, tiny.num_layers, tiny.stride, tiny.patch_grid) == (
        192,
        24,
        16,
        (14, 14),
    )
    assert tiny.pos_embed.shape == (1, 197, 192)
    s8 = Vim(arch="s+")
    assert (s8.embed_dims, s8.stride, s8.patch_grid) == (384, 8, (27, 27))
    assert s8.pos_embed.shape == (1, 730, 384)
    mixer = tiny.layers[0].mixer
    assert (mixer.d_inner, mixer.dt_rank, mixer.d_state, mixer.d_conv) == (384, 12, 16, 4)
    assert tiny.layers[0].norm.eps == 1e-5 and not hasattr(tiny.norm_f, "bias")
    with pytest.raises(ValueError, match="Vim: unknown arch 'huge'"):
        Vim(arch="huge")
    with pytest.raises(ValueError, match=r"missing \['num_layers'\]"):
        Vim(arch=dict(embed_dims=32))
    with pytest.raises(ValueError, match=r"unknown \['depth'\]"):
        Vim(arch=dict(TINY, depth=3))
    with pytest.raises(ValueError, match="out of range"):
        Vim(arch=TINY, out_indices=(3,))
    # duplicates raise (as in VMamba), also when written once negative and once positive
    with pytest.raises(ValueError, match=r"duplicates: layers \[2\]"):
        Vim(arch=TINY, out_indices=(2, -1))
    assert Vim(arch=TINY, out_indices=(-1, 0)).out_indices == (0, 2)
    with pytest.raises(ValueError, match="out_type"):
        Vim(arch=TINY, out_type="tokens")


def test_official_state_dict_keys():
    model = Vim(arch="tiny")
    keys = set(model.state_dict())
    expected = set(ref.official_state_dict(192, 24, (14, 14))) - {"head.weight", "head.bias"}
    assert keys == expected
    assert len(keys) == 415 - 2


def test_official_init():
    model = _tiny()
    assert torch.equal(model.layers[1].mixer.dt_proj_b.bias, torch.zeros(64))
    dt = torch.nn.functional.softplus(model.layers[1].mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert torch.equal(model.patch_embed.proj.bias, torch.zeros(32))
    # out_proj: kaiming-uniform(a=sqrt(5)) bound 1/sqrt(fan_in) divided by sqrt(depth)
    bound = (1 / 64) ** 0.5 / 3**0.5
    assert model.layers[0].mixer.out_proj.weight.abs().max() <= bound
    assert 0.01 < model.pos_embed.std() < 0.03 and 0.01 < model.cls_token.std() < 0.03


# ---------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("out_type", ["cls_token", "featmap", "avg_featmap", "raw"])
def test_output_shapes(out_type):
    model = _tiny(out_type=out_type, out_indices=(0, -1)).eval()
    outs = model(torch.rand(2, 3, 48, 64))
    shape = {
        "cls_token": (2, 32),
        "featmap": (2, 32, 3, 4),
        "avg_featmap": (2, 32),
        "raw": (2, 13, 32),
    }[out_type]
    assert len(outs) == 2 and all(o.shape == shape for o in outs)


def test_forward_matches_independent_reference():
    """Official semantics in float64: middle cls token, fp32 residual pre-norm stack, norm_f."""
    model = _tiny(out_type="raw", out_indices=(-1,)).eval()
    sd = _random_official(model)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expected, grid, mid = ref.vim_tokens(sd, images, stride=16)
    assert grid == (2, 2) and mid == 2
    (tokens,) = model(images)
    torch.testing.assert_close(tokens, expected, rtol=1e-9, atol=1e-10)
    model.out_type = "cls_token"
    torch.testing.assert_close(model(images)[0], expected[:, mid], rtol=1e-9, atol=1e-10)
    # dense taps: the residual stream after the block (no norm_f), cls removed, row-major NCHW
    model.out_type, model.final_norm = "featmap", False
    (fmap,) = model(images)
    stream = ref.vim_tokens(sd, images, stride=16, final_norm=False)[0]
    patches = torch.cat([stream[:, :mid], stream[:, mid + 1 :]], dim=1)  # (B, 4, C)
    assert fmap.shape == (2, 32, 2, 2)
    torch.testing.assert_close(fmap.flatten(2).transpose(1, 2), patches, rtol=1e-9, atol=1e-10)


def test_stride8_forward_matches_reference():
    model = Vim(arch=dict(embed_dims=16, num_layers=2, stride=8), img_size=32).eval()
    assert model.patch_grid == (3, 3)
    sd = _random_official(model, seed=3)
    images = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    expected, _, mid = ref.vim_tokens(sd, images, stride=8)
    assert mid == 4
    torch.testing.assert_close(model(images)[0], expected[:, mid], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("hw, grid", [((80, 48), (5, 3)), ((65, 97), (4, 6))])
def test_odd_input_sizes_use_resized_pos_embed(hw, grid):
    model = _tiny(out_type="raw").eval()  # pos_embed stored for a 2x2 grid
    sd = _random_official(model, seed=1)
    images = torch.randn(1, 3, *hw, dtype=torch.float64)
    expected, got_grid, mid = ref.vim_tokens(sd, images, stride=16, src_grid=(2, 2))
    assert got_grid == grid
    with torch.no_grad():
        (tokens,) = model(images)
    torch.testing.assert_close(tokens, expected, rtol=1e-9, atol=1e-10)
    # featmap of the odd grid
    model.out_type = "featmap"
    with torch.no_grad():
        assert model(images)[0].shape == (1, 32, *grid)


def test_runtime_resize_equals_load_time_resize(tmp_path):
    small = _tiny(out_type="cls_token").eval()
    sd = _random_official(small, seed=2)
    path = tmp_path / "official.pth"
    torch.save({"model": {k: v.double() for k, v in sd.items()}}, path)
    big = _tiny(out_type="cls_token", img_size=(80, 48)).double().eval()
    big.load_pretrained(str(path))
    assert big.pos_embed.shape == (1, 16, 32)
    images = torch.randn(2, 3, 80, 48, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(big(images)[0], small(images)[0], rtol=1e-12, atol=1e-12)


def test_pos_embed_gradient_flows_through_runtime_resize():
    model = _tiny().train()
    model(torch.rand(1, 3, 48, 48))[0].sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0


def test_resize_pos_embed_keeps_middle_cls_token():
    channels = 3
    patch_value = torch.tensor([1.0, -2.0, 0.5])
    pos = patch_value.repeat(1, 5, 1)  # 2x2 grid + cls at index 2
    pos[0, 2] = torch.tensor([9.0, 8.0, 7.0])
    out = resize_vim_pos_embed(pos, (2, 2), (3, 5))
    assert out.shape == (1, 16, channels)
    assert torch.equal(out[0, 7], pos[0, 2])  # new middle: 15 // 2 = 7
    patches = torch.cat([out[0, :7], out[0, 8:]])
    torch.testing.assert_close(patches, patch_value.expand(15, 3))  # constant field stays
    assert resize_vim_pos_embed(pos, (2, 2), (2, 2)) is pos
    with pytest.raises(ValueError, match="src_grid"):
        resize_vim_pos_embed(pos, (3, 3), (4, 4))


def test_bad_inputs_raise_clear_errors():
    model = _tiny()
    with pytest.raises(ValueError, match="8x64 is smaller than the patch size 16"):
        model(torch.rand(1, 3, 8, 64))
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="img_size"):
        _tiny(img_size=8)


def test_frozen_stages_and_layer_depth():
    model = _tiny(frozen_stages=2).train()
    assert not model.pos_embed.requires_grad and not model.cls_token.requires_grad
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())
    assert model.get_layer_depth("backbone.pos_embed", "backbone.") == (0, 5)
    assert model.get_layer_depth("backbone.layers.2.mixer.D", "backbone.") == (3, 5)
    assert model.get_layer_depth("backbone.norm_f.weight", "backbone.") == (4, 5)


def test_with_cp_same_gradients():
    torch.manual_seed(0)
    plain = _tiny(drop_path_rate=0.0)
    ckpt = _tiny(drop_path_rate=0.0, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    images = torch.rand(1, 3, 32, 32)
    plain(images)[0].sum().backward()
    ckpt(images)[0].sum().backward()
    torch.testing.assert_close(
        ckpt.layers[0].mixer.in_proj.weight.grad, plain.layers[0].mixer.in_proj.weight.grad
    )


def test_bfloat16_autocast_keeps_fp32_residual():
    model = _tiny(out_type="raw").eval()
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        full = model(images)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images)[0]
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), full, rtol=0.1, atol=0.1)


# ---------------------------------------------------------------------------------- configs
CLS_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "classification"


@pytest.mark.parametrize(
    "name, arch, dims, wd, dpr",
    [
        ("tiny", "tiny", 192, 0.1, 0.0),
        ("small", "small", 384, 0.05, 0.05),
        ("base", "base", 768, 0.05, 0.1),
    ],
)
def test_classification_configs(name, arch, dims, wd, dpr):
    from mmengine.config import Config

    cfg = Config.fromfile(str(CLS_CONFIGS / f"vim-{name}_8xb128_in1k.py"))
    assert "mmvmamba" in cfg.custom_imports.imports
    assert cfg.model.backbone.type == "Vim" and cfg.model.backbone.arch == arch
    assert cfg.model.backbone.out_type == "cls_token" and cfg.model.neck is None
    assert cfg.model.backbone.drop_path_rate == dpr
    assert cfg.model.head.type == "LinearClsHead" and cfg.model.head.in_channels == dims
    assert cfg.optim_wrapper.optimizer.lr == 1e-3 and cfg.optim_wrapper.optimizer.weight_decay == wd
    assert cfg.train_dataloader.batch_size == 128 and cfg.train_cfg.max_epochs == 300
    assert cfg.custom_hooks[0].type == "EMAHook"


def test_tiny_classifier_builds_trains_one_step_without_decay_on_1d():
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    cfg = Config.fromfile(str(CLS_CONFIGS / "vim-tiny_8xb128_in1k.py"))
    cfg.model.backbone.arch = dict(embed_dims=32, num_layers=2)
    cfg.model.head.in_channels = 32
    cfg.model.head.num_classes = 4
    cfg.model.train_cfg = None  # no mixup for the check
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        model = MODELS.build(cfg.model)
    model.init_weights()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group["params"]:
            decay[names[id(p)]] = group["weight_decay"]
    assert decay["backbone.layers.0.mixer.in_proj.weight"] == 0.1
    assert decay["backbone.layers.0.mixer.A_log"] == 0.1  # 2-D: decayed, as timm did
    for name in (
        "backbone.pos_embed",
        "backbone.cls_token",
        "backbone.layers.0.mixer.D_b",
        "backbone.layers.1.norm.weight",
        "backbone.norm_f.weight",
        "head.fc.bias",
    ):
        assert decay[name] == 0.0, name
    images = torch.rand(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(torch.tensor([i])) for i in range(2)]
    losses = model(images, samples, mode="loss")
    assert torch.isfinite(losses["loss"])
    wrapper.update_params(losses["loss"])
    assert model(images, mode="tensor").shape == (2, 4)

"""Official-format Vim checkpoints (random weights, argparse.Namespace inside, model + EMA)
through the converter CLI and through ``init_cfg``: identical logits to an independent float64
reference of the official forward; strict, named errors for bad files."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmvmamba.checkpoint.io import CheckpointError
from mmvmamba.checkpoint.vim import convert_vim_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CONVERTER = ROOT / "tools" / "model_converters" / "vim_to_mmvmamba.py"
ARCH = dict(embed_dims=32, num_layers=2)
NUM_CLASSES = 10


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load(ROOT / "tests" / "test_models" / "vim_reference.py", "vim_reference")
converter = _load(CONVERTER, "vim_to_mmvmamba")


@pytest.fixture
def official_file(tmp_path):
    """An official-layout file: model, model_ema (different weights), optimizer, args."""
    gen = torch.Generator().manual_seed(0)
    model = ref.official_state_dict(32, 2, (2, 2), num_classes=NUM_CLASSES, generator=gen)
    ema = ref.official_state_dict(32, 2, (2, 2), num_classes=NUM_CLASSES, generator=gen)
    args = argparse.Namespace(
        model="vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
        input_size=32,
        lr=1e-3,
    )
    path = tmp_path / "vim_t_midclstok_random.pth"
    torch.save({"model": model, "model_ema": ema, "optimizer": {}, "epoch": 3, "args": args}, path)
    return path, model, ema


def _classifier(init_cfg=None, img_size=32):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import mmvmamba  # noqa: F401  (registers Vim)

    cfg = dict(
        type="ImageClassifier",
        backbone=dict(type="Vim", arch=ARCH, img_size=img_size, init_cfg=init_cfg),
        neck=None,
        head=dict(type="LinearClsHead", num_classes=NUM_CLASSES, in_channels=32),
    )
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        return MODELS.build(cfg).double().eval()


def _reference_logits(sd, images):
    tokens, _, mid = ref.vim_tokens(sd, images, stride=16, src_grid=(2, 2))
    return tokens[:, mid] @ sd["head.weight"].double().T + sd["head.bias"].double()


@pytest.mark.parametrize("ema", [False, True], ids=["model", "model_ema"])
def test_cli_round_trip_identical_logits(official_file, tmp_path, ema):
    from mmengine.runner import load_checkpoint

    src, model_sd, ema_sd = official_file
    dst = tmp_path / "converted.pth"
    argv = [str(src), str(dst)] + (["--ema"] if ema else [])
    assert converter.main(argv) == 0
    saved = torch.load(dst, weights_only=True)
    assert set(saved) == {"state_dict", "meta"}
    assert "head.fc.weight" in saved["state_dict"] and "head.weight" not in saved["state_dict"]
    assert saved["meta"]["weights"] == ("model_ema" if ema else "model")

    classifier = _classifier()
    load_checkpoint(classifier, str(dst), strict=True, map_location="cpu")
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits = classifier(images, mode="tensor")
    expected = _reference_logits(ema_sd if ema else model_sd, images)
    torch.testing.assert_close(logits, expected, rtol=1e-9, atol=1e-10)
    # other input size: pos_embed resized at run time, still the official semantics
    images = torch.randn(1, 3, 48, 80, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            classifier(images, mode="tensor"),
            _reference_logits(ema_sd if ema else model_sd, images),
            rtol=1e-9,
            atol=1e-10,
        )


@pytest.mark.slow  # a fresh interpreter importing torch + the OpenMMLab stack
def test_cli_as_script(official_file, tmp_path):
    src, _, _ = official_file
    dst = tmp_path / "out" / "converted.pth"
    proc = subprocess.run(
        [sys.executable, str(CONVERTER), str(src), str(dst)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and dst.is_file()
    bad = subprocess.run(
        [sys.executable, str(CONVERTER), str(tmp_path / "missing.pth"), str(dst)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert bad.returncode == 1 and "not found" in bad.stderr


@pytest.mark.parametrize("which", ["official", "converted"])
def test_init_cfg_pretrained_loads_strictly(official_file, tmp_path, which):
    src, model_sd, _ = official_file
    path = src
    if which == "converted":
        path = tmp_path / "converted.pth"
        assert converter.main([str(src), str(path)]) == 0
    # a 64x96 model: pos_embed interpolated from the 2x2 checkpoint grid at load time
    classifier = _classifier(
        init_cfg=dict(type="Pretrained", checkpoint=str(path)), img_size=(64, 96)
    )
    classifier.init_weights()
    backbone = classifier.backbone
    assert backbone.pos_embed.shape == (1, 4 * 6 + 1, 32)
    torch.testing.assert_close(
        backbone.layers[1].mixer.A_b_log, model_sd["layers.1.mixer.A_b_log"].double()
    )
    images = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        (cls_feat,) = backbone(images)
    tokens, _, mid = ref.vim_tokens(model_sd, images, stride=16, src_grid=(2, 2))
    # the load-time resize runs in the file's float32 (the reference resizes in float64)
    torch.testing.assert_close(cls_feat, tokens[:, mid], rtol=1e-5, atol=1e-6)


def test_init_cfg_strict_errors_name_the_keys(official_file, tmp_path):
    src, model_sd, _ = official_file
    broken = dict(model_sd)
    broken.pop("layers.1.mixer.D_b")
    broken["layers.0.mixer.x_proj_b.weight"] = torch.zeros(3, 3)
    path = tmp_path / "broken.pth"
    torch.save({"model": broken}, path)
    classifier = _classifier(init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    with pytest.raises(CheckpointError) as info:
        classifier.init_weights()
    msg = str(info.value)
    assert "layers.1.mixer.D_b" in msg and "layers.0.mixer.x_proj_b.weight" in msg
    with pytest.raises(CheckpointError, match="model_ema"):
        _classifier(
            init_cfg=dict(type="Pretrained", checkpoint=str(path), use_ema=True)
        ).init_weights()


def test_unsupported_and_foreign_checkpoints():
    sd = ref.official_state_dict(16, 1, (2, 2))
    with pytest.raises(CheckpointError, match="RoPE"):
        convert_vim_checkpoint({"model": {**sd, "rope.freqs_cos": torch.zeros(4, 16)}})
    with pytest.raises(CheckpointError, match="not a middle-class-token"):
        convert_vim_checkpoint(
            {
                "model": sd,
                "args": argparse.Namespace(
                    model="vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_rope_also_"
                    "residual_with_cls_token"
                ),
            }
        )
    with pytest.raises(CheckpointError, match="not a Vim checkpoint"):
        convert_vim_checkpoint({"state_dict": {"conv.weight": torch.zeros(1)}})
    out = convert_vim_checkpoint({"model": sd}, grid=(3, 5))
    assert out["backbone.pos_embed"].shape == (1, 16, 16)
    assert torch.equal(out["backbone.pos_embed"][0, 7], sd["pos_embed"][0, 2])  # cls slot
    assert (
        convert_vim_checkpoint({"state_dict": out})["backbone.pos_embed"]
        is out["backbone.pos_embed"]
    )


# ------------------------------------------------------------------ loading without the converter
def test_official_file_converts_while_loading_into_the_classifier(official_file):
    """mmengine's ``load_checkpoint`` on the whole classifier (``get_model(pretrained=...)``'s
    path) with the file as released: ``model`` unwrapped, ``head.*`` -> ``head.fc.*``."""
    from mmengine.runner import load_checkpoint

    src, model_sd, _ = official_file
    classifier = _classifier()
    load_checkpoint(classifier, str(src), strict=True, map_location="cpu")
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits = classifier(images, mode="tensor")
    torch.testing.assert_close(logits, _reference_logits(model_sd, images), rtol=1e-9, atol=1e-10)


@pytest.fixture
def checkpoint_224(tmp_path):
    """An mmengine checkpoint of a Vim classifier built at img_size 224 (14 x 14 grid)."""
    src = _classifier(img_size=224)
    path = tmp_path / "vim_224.pth"
    torch.save({"state_dict": src.state_dict(), "meta": {"epoch": 1}}, path)
    return path, src


def _load_into_256(path: Path, how: str, work_dir: Path):
    """A classifier built at img_size 256 (16 x 16 grid), loaded with ``path`` by ``how``."""
    from mmengine.runner import load_checkpoint

    if how == "init_cfg":
        model = _classifier(init_cfg=dict(type="Pretrained", checkpoint=str(path)), img_size=256)
        model.init_weights()
        return model
    model = _classifier(img_size=256)
    if how == "load_checkpoint":
        load_checkpoint(model, str(path), strict=True, map_location="cpu")
    elif how == "load_state_dict":
        model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    else:  # a runner's load_from, checked by the key hook of tools/test.py
        from mmengine.runner import Runner

        runner = Runner(
            model=model,
            work_dir=str(work_dir),
            load_from=str(path),
            default_scope="mmpretrain",
            custom_hooks=[dict(type="CheckpointKeysHook", strict=True)],
        )
        runner.load_or_resume()
    return model


@pytest.mark.parametrize("how", ["load_checkpoint", "load_state_dict", "init_cfg", "load_from"])
def test_checkpoint_of_another_img_size_loads_every_way(checkpoint_224, tmp_path, how):
    """pos_embed is resized while loading, whichever way: the 256 model computes what the 224
    model computes at 256 (where it resizes at run time)."""
    path, src = checkpoint_224
    model = _load_into_256(path, how, tmp_path / "work")
    assert model.backbone.pos_embed.shape == (1, 16 * 16 + 1, 32)
    if how != "init_cfg":  # a backbone's init_cfg loads the backbone only
        torch.testing.assert_close(model.head.fc.weight, src.head.fc.weight, rtol=0, atol=0)
    images = torch.randn(1, 3, 256, 256, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            model.backbone(images), src.backbone(images), rtol=1e-10, atol=1e-12
        )

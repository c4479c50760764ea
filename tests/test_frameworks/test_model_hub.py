"""mmpretrain's own entry points know our classification models by name: ``import mmvmamba``
registers ``configs/classification/metafile.yml`` with ``ModelHub``, so ``list_models``,
``get_model`` (also ``pretrained=True``: the metafile's release URL, mapped to a local file with
mmpretrain's own ``url_mapping``, never the network), ``ImageClassificationInferencer`` and
``FeatureExtractor`` take the names."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import mmvmamba  # noqa: F401  (registers the model index)
from mmvmamba.hub import model_index

mmpretrain = pytest.importorskip("mmpretrain")

REPO = Path(__file__).resolve().parents[2]
METAFILE = yaml.safe_load((REPO / "configs/classification/metafile.yml").read_text())["Models"]
NAMES = sorted(m["Name"] for m in METAFILE)
# full-size small/base models take long to build: kept for the slow run
HEAVY = re.compile(r"(small|base)")


def _params(names):
    return [
        pytest.param(n, id=n, marks=[pytest.mark.slow] if HEAVY.search(n) else []) for n in names
    ]


def _local(tmp_path: Path) -> tuple[str, str]:
    """mmpretrain's ``url_mapping``: any release URL -> the same file name under ``tmp_path``."""
    return r"https://.*/", f"{tmp_path}/"


def _release_file(tmp_path: Path, name: str) -> Path:
    meta = next(m for m in METAFILE if m["Name"] == name)
    return tmp_path / meta["Weights"].rsplit("/", 1)[1]


def _randomised(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_state(model: torch.nn.Module, want: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


def test_list_models_by_pattern():
    assert mmpretrain.list_models("*vmamba*") == [n for n in NAMES if "vmamba" in n]
    assert mmpretrain.list_models("vim-") == [n for n in NAMES if n.startswith("vim-")]
    assert mmpretrain.list_models("*vmamba*", task="Image Classification")
    # detection / segmentation models are built by mmdet / mmseg, not by mmpretrain's hub
    assert mmpretrain.list_models("mask-rcnn_vmamba") == []
    assert mmpretrain.list_models("upernet_v") == []
    # mmpretrain's own models are still there (ours were added, not swapped in)
    assert "resnet50_8xb32_in1k" in mmpretrain.list_models("resnet50")


def test_hub_configs_are_ours():
    from mmpretrain.apis import ModelHub

    index = model_index()
    for name in NAMES:
        meta = ModelHub.get(name)
        assert Path(meta.config.filename) == Path(index[name]["Config"])
        assert meta.config.model.backbone.type in ("VMamba", "Vim")


@pytest.mark.parametrize("name", _params(NAMES))
def test_get_model_by_name(name):
    model = mmpretrain.get_model(name)
    meta = next(m for m in METAFILE if m["Name"] == name)
    assert type(model.backbone).__name__ == ("Vim" if name.startswith("vim") else "VMamba")
    assert model.head.num_classes == 1000
    if "Parameters" in meta["Metadata"]:  # the paper's count, e.g. "30M"
        count = sum(p.numel() for p in model.parameters()) / 1e6
        assert round(count) == int(meta["Metadata"]["Parameters"].rstrip("M")), count
    assert not model.training  # get_model hands out an eval-mode model


@pytest.mark.slow
def test_get_model_pretrained_our_format(tmp_path):
    """A checkpoint in mmvmamba's own key layout (what tools/train.py writes) at the release
    URL's file name loads through ``get_model(name, pretrained=True)``."""
    name = "vmamba-tiny_8xb128_in1k"
    want = _randomised(mmpretrain.get_model(name))
    torch.save(dict(meta={}, state_dict=want), _release_file(tmp_path, name))
    model = mmpretrain.get_model(name, pretrained=True, url_mapping=_local(tmp_path))
    _assert_state(model, want)


def _load_test_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_get_model_pretrained_official_vmamba_release(tmp_path):
    """The official release file itself (``{'model': VSSM keys, 'model_ema', ...}``) converts
    while it loads, through the backbone's state-dict pre-hook (the ``init_cfg`` path)."""
    name = "vmamba-tiny_8xb128_in1k"
    converter_tests = _load_test_module(
        REPO / "tests/test_tools/test_vmamba_converter.py", "vmamba_converter_tests"
    )
    want = _randomised(mmpretrain.get_model(name))
    official = converter_tests.to_official_classifier(want)
    converter_tests.official_file(tmp_path, _release_file(tmp_path, name).name, official)
    model = mmpretrain.get_model(name, pretrained=True, url_mapping=_local(tmp_path))
    _assert_state(model, want)


@pytest.mark.slow
def test_get_model_pretrained_official_vim_release(tmp_path):
    """The official Vim file loads by name as the offline converter's output does."""
    name = "vim-tiny_8xb128_in1k"
    ref = _load_test_module(REPO / "tests/test_models/vim_reference.py", "vim_reference")
    gen = torch.Generator().manual_seed(0)
    official = ref.official_state_dict(192, 24, (14, 14), num_classes=1000, generator=gen)
    release = _release_file(tmp_path, name)
    torch.save(dict(model=official), release)
    cli = _load_test_module(REPO / "tools/model_converters/vim_to_mmvmamba.py", "vim_cli")
    assert not cli.main([str(release), str(tmp_path / "converted.pth")])
    want = mmpretrain.get_model(name, pretrained=str(tmp_path / "converted.pth")).state_dict()
    model = mmpretrain.get_model(name, pretrained=True, url_mapping=_local(tmp_path))
    _assert_state(model, want)
    torch.testing.assert_close(want["head.fc.weight"], official["head.weight"], rtol=0, atol=0)


def test_image_classification_inferencer_by_name():
    """The inferencer builds the model and its test pipeline from the name; its scores are the
    model's own on the same preprocessed image."""
    from mmpretrain import ImageClassificationInferencer

    name = "vim-tiny_8xb128_in1k"
    inferencer = ImageClassificationInferencer(name, pretrained=False, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (240, 260, 3), dtype=np.uint8)
    result = inferencer(image)[0]
    scores = np.asarray(result["pred_scores"])
    assert scores.shape == (1000,) and abs(scores.sum() - 1.0) < 1e-4
    assert result["pred_label"] == int(scores.argmax())
    classes = inferencer.classes  # ImageNet's, from the config's test dataset
    assert len(classes) == 1000 and result["pred_class"] == classes[result["pred_label"]]
    # the same image through the model by hand: resize 256 (short side), center crop 224
    data = inferencer.pipeline(
        dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2])
    )
    batch = inferencer.model.data_preprocessor(
        dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]), False
    )
    assert batch["inputs"].shape == (1, 3, 224, 224)
    with torch.no_grad():
        logits = inferencer.model(batch["inputs"], mode="tensor")
    torch.testing.assert_close(torch.as_tensor(scores), logits.softmax(-1)[0], rtol=1e-4, atol=1e-6)


def test_feature_extractor_by_name():
    from mmpretrain import FeatureExtractor

    extractor = FeatureExtractor("vmamba-tiny_8xb128_in1k", pretrained=False, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    feats = extractor(image, stage="backbone")[0]
    # out_indices=(3,): the last stage, 768 channels on a 7x7 map (stride 32)
    assert len(feats) == 1 and feats[0].shape == (768, 7, 7)
    (pooled,) = extractor(image, stage="neck")[0]  # GlobalAveragePooling of the same map
    assert pooled.shape == (768,)
    torch.testing.assert_close(pooled, feats[0].mean((1, 2)), rtol=1e-5, atol=1e-6)

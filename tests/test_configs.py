"""Every config under configs/ builds in its framework and runs one forward pass and keeps no
merge helper key; the detection and segmentation configs carry the official VMamba settings; the
metafiles list them all and their configs resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

import yaml  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmvmamba  # noqa: E402, F401
from mmvmamba.engine import detect_task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts)
# full-size small/base models are slower to build: kept for the slow run
HEAVY = re.compile(r"(small|base)")


def _id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


def _params(paths):
    return [
        pytest.param(p, id=_id(p), marks=[pytest.mark.slow] if HEAVY.search(p.name) else [])
        for p in paths
    ]


def _build(cfg: Config):
    task = detect_task(cfg)
    init_default_scope(cfg.default_scope)
    if task == "detection":
        from mmdet.registry import MODELS
    elif task == "segmentation":
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    return task, MODELS.build(cfg.model).eval()


def _image(size: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8)


@pytest.mark.parametrize("path", _params(ALL_CONFIGS))
def test_config_builds_and_runs_one_forward(path):
    cfg = Config.fromfile(str(path))
    assert "mmvmamba" in cfg.custom_imports["imports"]
    task, model = _build(cfg)
    with torch.no_grad():
        if task == "detection":
            from mmdet.structures import DetDataSample

            meta = dict(img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1.0, 1.0))
            out = model.test_step(
                dict(inputs=[_image()], data_samples=[DetDataSample(metainfo=meta)])
            )
            pred = out[0].pred_instances
            assert pred.bboxes.shape[1] == 4 and len(pred.scores) == len(pred.labels)
            num_classes = cfg.model.roi_head.bbox_head.num_classes
            assert pred.labels.numel() == 0 or int(pred.labels.max()) < num_classes
            assert pred.masks.shape[1:] == (64, 64)
        elif task == "segmentation":
            from mmseg.structures import SegDataSample

            meta = dict(img_shape=(64, 64), ori_shape=(64, 64))
            out = model.test_step(
                dict(inputs=[_image()], data_samples=[SegDataSample(metainfo=meta)])
            )
            logits = out[0].seg_logits.data
            assert logits.shape == (cfg.model.decode_head.num_classes, 64, 64)
            assert torch.isfinite(logits).all()
        else:
            size = cfg.get("test_input_size", 64)
            out = model(torch.randn(1, 3, size, size), mode="tensor")
            out = out[-1] if isinstance(out, (tuple, list)) else out
            assert out.shape == (1, cfg.model.head.num_classes)
            assert torch.isfinite(out).all()
    # the neck/head input widths are the widths the backbone (and neck) actually produce
    if task in ("detection", "segmentation"):
        with torch.no_grad():
            x = torch.randn(1, 3, 64, 64)
            widths = [f.shape[1] for f in model.backbone(x)]
            if task == "detection":
                assert list(cfg.model.neck.in_channels) == widths
            else:
                widths = [f.shape[1] for f in model.extract_feat(x)]
                head = cfg.model.decode_head
                expected = (
                    [widths[i] for i in head.in_index]
                    if isinstance(head.in_index, (list, tuple))
                    else widths[head.in_index]
                )
                assert head.in_channels == expected
                aux = cfg.model.get("auxiliary_head")
                if aux:
                    assert aux.in_channels == widths[aux.in_index]


DET = sorted((REPO / "configs" / "detection").glob("mask-rcnn_vmamba-*.py"))
SEG = sorted((REPO / "configs" / "segmentation").glob("upernet_vmamba-*.py"))
ARCH_WIDTH = {"tiny": 96, "small": 96, "base": 128}
ARCH_DPR = {"tiny": 0.2, "small": 0.3, "base": 0.6}  # official detection/segmentation configs


def test_the_expected_configs_exist():
    assert [p.name for p in DET] == [
        "mask-rcnn_vmamba-base_fpn_1x_coco.py",
        "mask-rcnn_vmamba-small_fpn_1x_coco.py",
        "mask-rcnn_vmamba-small_fpn_ms-3x_coco.py",
        "mask-rcnn_vmamba-tiny_fpn_1x_coco.py",
        "mask-rcnn_vmamba-tiny_fpn_ms-3x_coco.py",
    ]
    assert [p.name for p in SEG] == [
        f"upernet_vmamba-{a}_4xb4-160k_ade20k-512x512.py" for a in ("base", "small", "tiny")
    ]


@pytest.mark.parametrize("path", DET, ids=_id)
def test_detection_official_settings(path):
    cfg = Config.fromfile(str(path))
    arch = re.search(r"vmamba-(\w+)_fpn", path.name).group(1)
    bb = cfg.model.backbone
    assert bb.type == "VMamba" and bb.arch == arch and tuple(bb.out_indices) == (0, 1, 2, 3)
    assert bb.drop_path_rate == ARCH_DPR[arch]
    assert set(bb) == {"type", "arch", "out_indices", "drop_path_rate"}  # no Swin leftovers
    w = ARCH_WIDTH[arch]
    assert list(cfg.model.neck.in_channels) == [w, 2 * w, 4 * w, 8 * w]
    assert cfg.model.neck.out_channels == 256 and cfg.model.roi_head.bbox_head.num_classes == 80
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, tuple(opt.betas), opt.weight_decay) == (
        "AdamW",
        1e-4,
        (0.9, 0.999),
        0.05,
    )
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys["norm"] == dict(decay_mult=0.0)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    warmup, step = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ("LinearLR", 0.001, 1000)
    if "_1x_" in path.name:
        assert cfg.train_cfg.max_epochs == 12 and step.milestones == [8, 11]
        resize = [t for t in cfg.train_pipeline if t["type"] == "Resize"]
        assert resize[0]["scale"] == (1333, 800)
    else:
        assert cfg.train_cfg.max_epochs == 36 and step.milestones == [27, 33]
        types = [t["type"] for t in cfg.train_dataloader.dataset.pipeline]
        assert "RandomChoice" in types
    assert cfg.default_scope == "mmdet"
    assert {m["type"] for m in [cfg.val_evaluator]} == {"CocoMetric"}
    assert set(cfg.val_evaluator.metric) == {"bbox", "segm"}


@pytest.mark.parametrize("path", SEG, ids=_id)
def test_segmentation_official_settings(path):
    cfg = Config.fromfile(str(path))
    arch = re.search(r"vmamba-(\w+)_4xb4", path.name).group(1)
    bb = cfg.model.backbone
    assert bb.type == "VMamba" and bb.arch == arch and bb.drop_path_rate == ARCH_DPR[arch]
    assert set(bb) == {"type", "arch", "out_indices", "drop_path_rate"}
    w = ARCH_WIDTH[arch]
    assert list(cfg.model.decode_head.in_channels) == [w, 2 * w, 4 * w, 8 * w]
    assert cfg.model.auxiliary_head.in_channels == 4 * w
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 150
    assert cfg.model.decode_head.channels == 512 and cfg.model.auxiliary_head.channels == 256
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ("AdamW", 6e-5, 0.01)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys["norm"] == dict(decay_mult=0.0)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.end) == ("LinearLR", 1500, "PolyLR", 160000)
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_cfg.val_interval == 16000
    assert cfg.train_dataloader.batch_size == 4  # x 4 GPUs = 16
    assert cfg.crop_size == (512, 512)
    # multi-scale + flip test (the paper's "MS"): 6 ratios x 2 flips
    tta = cfg.tta_pipeline[1]["transforms"]
    assert [t["scale_factor"] for t in tta[0]] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [t["prob"] for t in tta[1]] == [0.0, 1.0]
    assert cfg.tta_model.type == "SegTTAModel"
    assert cfg.train_dataloader.dataset.type == "ADE20KDataset"


def _metafile_models():
    index = yaml.safe_load((REPO / "model-index.yml").read_text())
    models = []
    for rel in index["Import"]:
        path = REPO / rel
        if path.exists():
            models += yaml.safe_load(path.read_text())["Models"]
    return models


def test_metafiles_list_every_detection_and_segmentation_config():
    models = {m["Config"]: m for m in _metafile_models()}
    for path in DET + SEG:
        rel = str(path.relative_to(REPO))
        assert rel in models, f"{rel} missing from the metafiles"
        text = path.read_text()
        # the paper numbers in the config header are those of the metafile
        for result in models[rel]["Results"]:
            for name, value in result["Metrics"].items():
                assert f"{value}" in text, (rel, name, value)
    for rel in models:
        assert (REPO / rel).exists(), f"metafile lists a missing config {rel}"


# keys that steer mmengine's merge or a config's own inheritance; none may reach the runner
HELPER_KEYS = {"_delete_", "_base_", "demo_backbone"}


def _helper_keys(node, path="cfg") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HELPER_KEYS:
                found.append(f"{path}.{key}")
            found += _helper_keys(value, f"{path}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _helper_keys(value, f"{path}[{i}]")
    return found


def test_helper_key_walk_finds_a_left_over_delete():
    cfg = Config(dict(train_cfg=dict(_delete_=True, max_iters=1), x=[dict(y=dict(_delete_=1))]))
    assert _helper_keys(cfg.to_dict()) == ["cfg.train_cfg._delete_", "cfg.x[0].y._delete_"]


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_id)
def test_no_merge_helper_key_survives(path):
    """``_delete_`` with nothing to delete stays in the dict and reaches a constructor
    (``IterBasedTrainLoop.__init__() got an unexpected keyword argument '_delete_'``)."""
    cfg = Config.fromfile(str(path))
    assert _helper_keys(cfg.to_dict()) == []


def test_model_index_configs_resolve_by_name():
    from mmvmamba.hub import model_index, resolve_config

    models = model_index()
    assert len(models) == len(_metafile_models())
    for name, model in models.items():
        assert Path(model["Config"]).is_file(), name
        assert resolve_config(name) == model["Config"]
        assert resolve_config(name.upper()) == model["Config"]  # names are case-insensitive
        rel = Path(model["Config"]).relative_to(REPO)
        assert Path(resolve_config(str(rel))).samefile(REPO / rel)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        resolve_config("no-such-model")

"""Evaluate a checkpoint of a classifier, detector or segmentor (mmpretrain/mmdet/mmseg config).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR]
                         [--tta] [--fuse] [--cfg-options k=v ...]
                         [--launcher {none,pytorch,slurm,mpi}]
    bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [args]

Checkpoints of our own runs and the official VMamba detection/segmentation releases load as they
are; a checkpoint whose keys do not match the model is refused with the list of keys
(``--non-strict`` loads the matching ones). ``--out``: detection/classification dump predictions
to a ``.pkl``; segmentation writes prediction PNGs to that folder. ``--tta``: multi-scale + flip
for segmentation (the paper's "MS"), flip for classification; detection needs
``tta_model``/``tta_pipeline`` in the config. ``--fuse``: on the CPU, test with VMamba's blocks
fused for inference (:func:`mmvmamba.deployment.fuse_for_cpu`; same parameters and numbers).
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import os
import os.path as osp
from copy import deepcopy

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmvmamba.engine.errors import SetupDoneHook, config_errors
from mmvmamba.engine.hooks import CheckpointKeysHook
from mmvmamba.engine.launcher import LAUNCHERS, setup_distributed
from mmvmamba.engine.task import apply_task_defaults
from mmvmamba.hub import resolve_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments, as mmdet/mmseg/mmpretrain's ``tools/test.py``."""
    parser = argparse.ArgumentParser(description="Test (and evaluate) a checkpoint")
    parser.add_argument(
        "config", help="config file, or a model name of model-index.yml (vmamba-tiny_8xb128_in1k)"
    )
    parser.add_argument("checkpoint", help="checkpoint file (path or URL)")
    parser.add_argument("--work-dir", help="the dir to save the metrics")
    parser.add_argument("--out", help="det/cls: .pkl of predictions; seg: folder of PNGs")
    parser.add_argument("--show-dir", help="save images with predictions drawn in this dir")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation")
    parser.add_argument(
        "--fuse",
        action="store_true",
        help="CPU only: fuse VMamba's blocks for inference (mmvmamba.deployment.fuse_for_cpu)",
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        help="override config settings, e.g. test_dataloader.batch_size=2",
    )
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none")
    parser.add_argument(
        "--non-strict",
        action="store_true",
        help="load a checkpoint whose keys do not all match the model (default: refuse)",
    )
    parser.add_argument("--debug", action="store_true", help="full tracebacks on config errors")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def _enable_show_dir(cfg: Config, task: str, show_dir: str) -> None:
    hooks = cfg.get("default_hooks", {})
    if "visualization" not in hooks:
        raise ValueError(
            "--show-dir needs default_hooks.visualization=dict(type='VisualizationHook') "
            "in the config"
        )
    vis = hooks["visualization"]
    if task == "detection":
        vis.update(draw=True, test_out_dir=show_dir)
    elif task == "segmentation":
        vis.update(draw=True)
        cfg.visualizer["save_dir"] = show_dir
    else:
        vis.update(enable=True, out_dir=show_dir)


def _enable_tta(cfg: Config, task: str) -> None:
    dataset = cfg.test_dataloader.dataset
    while "dataset" in dataset:  # wrappers such as ConcatDataset / RepeatDataset
        dataset = dataset["dataset"]
    if task == "detection":
        if "tta_model" not in cfg or "tta_pipeline" not in cfg:
            raise ValueError(
                "--tta for detection needs tta_model and tta_pipeline in the config "
                "(mmdet's DetTTAModel merges boxes only, not Mask R-CNN masks)"
            )
    elif task == "segmentation":
        if "tta_pipeline" not in cfg:
            raise ValueError("--tta needs tta_pipeline in the config (mmseg's ade20k.py has one)")
        cfg.setdefault("tta_model", dict(type="SegTTAModel"))
    else:
        cfg.setdefault("tta_model", dict(type="mmpretrain.AverageClsScoreTTA"))
        if "tta_pipeline" not in cfg:
            pipeline = deepcopy(dataset.pipeline)
            flip = [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)]
            pipeline[-1] = dict(type="TestTimeAug", transforms=[flip, [pipeline[-1]]])
            cfg.tta_pipeline = pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset.pipeline = cfg.tta_pipeline


def fuse_model_for_cpu(runner: Runner) -> None:
    """``--fuse``: swap the fused CPU inference blocks into the runner's model. They hold the
    model's own parameters, so the checkpoint loads into them as into the plain model."""
    from mmvmamba.deployment import fuse_for_cpu

    device = next(runner.model.parameters()).device
    if device.type != "cpu":
        raise ValueError(
            f"--fuse is for CPU inference, but the model is on {device}; drop --fuse, or test "
            "on the CPU (CUDA_VISIBLE_DEVICES='')"
        )
    fuse_for_cpu(runner.model.eval())


def build_config(args: argparse.Namespace) -> tuple[Config, str]:
    """Load the config, merge the command-line settings; return it and its task."""
    args.config = resolve_config(args.config)
    is_url = args.checkpoint.startswith(("http://", "https://"))
    if not is_url and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint!r} does not exist")
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    task = apply_task_defaults(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.show_dir:
        _enable_show_dir(cfg, task, args.show_dir)
    if args.tta:
        _enable_tta(cfg, task)
    if args.out is not None and task == "segmentation":
        cfg.test_evaluator["output_dir"] = args.out
        cfg.test_evaluator["keep_results"] = True
    elif args.out is not None and not args.out.endswith((".pkl", ".pickle")):
        raise ValueError(f"--out must be a .pkl file for {task}, got {args.out!r}")
    setup_distributed(cfg, args.launcher)
    return cfg, task


def main(argv: list[str] | None = None) -> dict:
    """Run the test loop; return the metrics dict."""
    args = parse_args(argv)
    setup_hook = SetupDoneHook()
    with config_errors(args.debug, setup_hook):
        cfg, task = build_config(args)
        runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
        runner.register_hook(setup_hook)
        runner.register_hook(CheckpointKeysHook(strict=not args.non_strict))
        if args.fuse:
            fuse_model_for_cpu(runner)
        if args.out is not None and task != "segmentation":
            if task == "detection":
                from mmdet.evaluation import DumpDetResults as Dump
            else:
                from mmengine.evaluator import DumpResults as Dump
            runner.test_evaluator.metrics.append(Dump(out_file_path=args.out))
        return runner.test()


if __name__ == "__main__":
    main()

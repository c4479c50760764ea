"""Train a classifier, detector or segmentor from an OpenMMLab config (mmpretrain/mmdet/mmseg).

    python tools/train.py CONFIG|MODEL_NAME [--work-dir DIR] [--amp] [--resume [CKPT]]
                          [--flush-denormal] [--cfg-options k=v ...]
                          [--launcher {none,pytorch,slurm,mpi}]
    bash tools/dist_train.sh CONFIG NPROC [args]        # torchrun; NCCL on GPUs, gloo on CPUs

CONFIG is a file, or a model name of ``model-index.yml`` (``vmamba-tiny_8xb128_in1k``: the
config installed with the package). The task comes from the config's ``default_scope``.
Configuration mistakes (missing file, unknown type or argument, missing data) are reported as
one ``error:`` line; ``--debug`` shows the traceback. Errors raised inside a model, and after
training has started, keep their traceback.
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_log_records, quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmvmamba.engine.errors import SetupDoneHook, config_errors
from mmvmamba.engine.launcher import LAUNCHERS, setup_distributed
from mmvmamba.engine.task import apply_task_defaults
from mmvmamba.hub import resolve_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments, as mmdet/mmseg/mmpretrain's ``tools/train.py``."""
    parser = argparse.ArgumentParser(description="Train a model (classification/det/seg)")
    parser.add_argument(
        "config", help="config file, or a model name of model-index.yml (vmamba-tiny_8xb128_in1k)"
    )
    parser.add_argument("--work-dir", help="the dir to save logs and checkpoints")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (GPU)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="resume from CKPT, or (no value) from the latest checkpoint in the work dir",
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        help="override config settings, e.g. train_cfg.max_iters=10 "
        'optim_wrapper.optimizer.lr=1e-4 key="[a,b]"',
    )
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none")
    parser.add_argument(
        "--auto-scale-lr", action="store_true", help="scale the LR by the actual batch size"
    )
    parser.add_argument(
        "--flush-denormal",
        action="store_true",
        help="CPU: count float32 values below 1.2e-38 as 0 (torch.set_flush_denormal); Vim's "
        "backward fills with them at 384 px and up, and subnormal arithmetic is slow on CPUs "
        "(measured speed-up: docs/benchmarks.md)",
    )
    parser.add_argument("--debug", action="store_true", help="full tracebacks on config errors")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Load the config and merge the command-line settings into it."""
    args.config = resolve_config(args.config)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    apply_task_defaults(cfg)  # also fails early on configs of no known framework
    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper); drop --amp")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.auto_scale_lr:
        if "base_batch_size" not in cfg.get("auto_scale_lr", {}):
            raise ValueError("--auto-scale-lr needs auto_scale_lr.base_batch_size in the config")
        cfg.auto_scale_lr.enable = True
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f"--resume checkpoint {args.resume!r} does not exist")
        cfg.resume, cfg.load_from = True, args.resume
    setup_distributed(cfg, args.launcher)
    return cfg


def set_flush_denormal(enabled: bool) -> None:
    """``--flush-denormal``: float32 values below 1.2e-38 count as 0 in this process (CPU)."""
    if not enabled:
        return
    import torch

    if not torch.set_flush_denormal(True):
        raise ValueError("--flush-denormal: this CPU cannot flush subnormal floats; drop it")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_hook = SetupDoneHook()
    with config_errors(args.debug, setup_hook):
        cfg = build_config(args)
        set_flush_denormal(args.flush_denormal)
        runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
        quiet_known_log_records(runner.logger)
        runner.register_hook(setup_hook)
        runner.train()


if __name__ == "__main__":
    main()

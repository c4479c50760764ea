"""The main job on bundled data: train VMamba Mask R-CNN and UperNet from scratch, evaluate.

    python tools/demo.py [--out work_dirs/demo] [--data data/demo] [--quick] [--jobs N]

1. writes the synthetic COCO / ADE20K / ImageNet-format sets (``mmvmamba.datasets``, seeded);
2. for detection (``configs/demo/mask-rcnn_vmamba-demo_fpn_shapes.py``) and segmentation
   (``configs/demo/upernet_vmamba-demo_shapes-128x128.py``): evaluates the untrained model,
   trains it from scratch, evaluates it again with the real metrics (mmdet ``CocoMetric`` on
   pycocotools, mmseg ``IoUMetric``) and prints their tables;
3. writes to ``--out``: ``det/`` and ``seg/`` (checkpoint, config, logs), ``det.log`` and
   ``seg.log`` (the full runner output), ``loss_curves.png``, ``predictions.png`` and
   ``metrics.json`` (untrained vs trained, timings).

The two tasks run as two processes side by side (``--jobs 2``), each with ``cores / 2``
torch threads: on a small CPU this is much faster than two threads fighting over one model.
The same runs from the command line: ``python tools/train.py CONFIG`` then
``python tools/test.py CONFIG CHECKPOINT``. ``--quick`` is a test-sized run (how long the full
run takes on 2 cores: docs/benchmarks.md).
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "det": REPO / "configs/demo/mask-rcnn_vmamba-demo_fpn_shapes.py",
    "seg": REPO / "configs/demo/upernet_vmamba-demo_shapes-128x128.py",
}
NAMES = {"det": "Mask R-CNN", "seg": "UperNet"}
FULL = dict(n_train=200, n_val=50, det_iters=600, seg_iters=400)
QUICK = dict(n_train=80, n_val=24, det_iters=200, seg_iters=150)
SUMMARY_KEYS = {
    "det": ("coco/bbox_mAP", "coco/bbox_mAP_50", "coco/segm_mAP", "coco/segm_mAP_50"),
    "seg": ("mIoU", "mAcc", "aAcc"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="work_dirs/demo", help="output folder")
    parser.add_argument("--data", default="data/demo", help="where the generated data go")
    parser.add_argument("--quick", action="store_true", help="test-sized run (about 3 min)")
    parser.add_argument("--det-iters", type=int, help="override the detection iterations")
    parser.add_argument("--seg-iters", type=int, help="override the segmentation iterations")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument(
        "--tasks", nargs="+", choices=["det", "seg"], default=["det", "seg"], help="what to run"
    )
    parser.add_argument("--jobs", type=int, default=2, help="tasks run side by side (1 or 2)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one task
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- one task
def _configure(task: str, data_root: Path, work_dir: Path, iters: int, seed: int):
    """The demo config with the data root, work dir, iteration count and seed filled in."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS[task]))
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=seed)
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = str(data_root)
    if task == "det":
        cfg.test_evaluator.ann_file = str(data_root / "annotations" / "instances_val2017.json")
    cfg.train_cfg.update(max_iters=iters, val_interval=iters)
    # no validation during training: the test after training is the evaluation
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.interval = iters
    warmup, main = cfg.param_scheduler
    warmup.end = min(warmup.end, iters // 4)
    main.begin, main.end = warmup.end, iters
    return cfg


def run_worker(task: str, data_root: Path, out: Path, iters: int, seed: int) -> None:
    """Untrained test, training, trained test of one task; results to ``out/<task>.json``."""
    import copy

    import torch
    from mmengine.runner import Runner

    from mmvmamba.engine.demo_report import save_prediction_grid

    cfg = _configure(task, data_root, out / task, iters, seed)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    untrained_cfg = copy.deepcopy(cfg)
    untrained_cfg.work_dir = str(out / f"{task}_untrained")
    # mmengine keeps one visualizer per name: distinct names give each run its own log files
    untrained_cfg.visualizer.name = f"{task}_untrained"
    cfg.visualizer.name = task
    runner = Runner.from_cfg(untrained_cfg)
    runner.model.init_weights()
    untrained = runner.test()
    t1 = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    t2 = time.perf_counter()
    trained = runner.test()
    t3 = time.perf_counter()
    # one validation batch through the trained model, for the picture
    batch = next(iter(runner.test_loop.dataloader))
    runner.model.eval()
    with torch.no_grad():
        samples = runner.model.test_step(batch)
    meta = runner.test_loop.dataloader.dataset.metainfo
    pictures = dict(
        inputs=batch["inputs"], samples=samples, classes=meta["classes"], palette=meta["palette"]
    )
    save_prediction_grid(
        pictures if task == "det" else None,
        pictures if task == "seg" else None,
        out / f"{task}_predictions.png",
    )
    result = dict(
        untrained=untrained,
        trained=trained,
        timing_s=dict(
            eval_untrained=t1 - t0,
            train=t2 - t1,
            eval_trained=t3 - t2,
            cpu=time.process_time() - cpu0,  # = wall time on an otherwise idle machine
        ),
        iters=iters,
        threads=torch.get_num_threads(),
    )
    (out / f"{task}.json").write_text(json.dumps(result, indent=2, default=float))


# ----------------------------------------------------------------------------- the driver
def _last_iter(log: Path) -> str:
    if not log.exists():
        return "starting"
    hits = re.findall(r"Iter\((train|test)\) \[\s*(\d+)/(\d+)\]", log.read_text(errors="ignore"))
    return "starting" if not hits else f"{hits[-1][0]} {hits[-1][1]}/{hits[-1][2]}"


def _tables(log: Path) -> str:
    """The metric tables of the *trained* model's test in a worker log (the last ones)."""
    lines = log.read_text(errors="ignore").splitlines()
    coco = [ln for ln in lines if ln.startswith((" Average Precision", " Average Recall"))]
    table: list[str] = []
    for i, ln in enumerate(lines):  # mmseg: "per class results:", a log line, then +---+ rows
        if ln.endswith("per class results:"):
            rows = [r for r in lines[i + 1 : i + 20] if r.startswith(("+", "|"))]
            table = ["per class results:"] + rows
    blocks = ["\n".join(coco[-24:])] if coco else []  # bbox + segm summaries of the last test
    if table:
        blocks.append("\n".join(table))
    return "\n".join(blocks)


def _table(results: dict) -> str:
    rows = [("task", "metric", "untrained", "trained")]
    for task, res in results.items():
        for key in SUMMARY_KEYS[task]:
            a, b = res["untrained"][key], res["trained"][key]
            rows.append((NAMES[task], key, f"{a:.3f}", f"{b:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _stack_pngs(parts: list[Path], out_png: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in parts if p.exists()]
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height
    canvas.save(out_png)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    iters = {
        "det": args.det_iters or sizes["det_iters"],
        "seg": args.seg_iters or sizes["seg_iters"],
    }
    out, data = Path(args.out).resolve(), Path(args.data).resolve()
    roots = {"det": data / "coco", "seg": data / "ade" / "ADEChallengeData2016"}
    if args.worker:
        run_worker(args.worker, roots[args.worker], out, iters[args.worker], args.seed)
        return {}

    start = time.perf_counter()
    from mmvmamba.datasets import make_ade_demo, make_coco_demo, make_imagenet_demo
    from mmvmamba.engine.demo_report import plot_loss_curves

    shutil.rmtree(data, ignore_errors=True)  # fresh, deterministic data on every run
    n_train, n_val = sizes["n_train"], sizes["n_val"]
    make_coco_demo(data / "coco", n_train, n_val, 128, args.seed)
    make_ade_demo(data / "ade", n_train, n_val, 128, args.seed + 1)
    make_imagenet_demo(data / "imagenet", 120, 30, 64, args.seed + 2)
    print(f"[demo] data written to {data} in {time.perf_counter() - start:.0f}s", flush=True)

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = max(1, min(args.jobs, len(args.tasks)))
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    pending, running = list(args.tasks), {}
    while pending or running:
        while pending and len(running) < jobs:
            task = pending.pop(0)
            cmd = [sys.executable, __file__, "--worker", task, "--out", str(out),
                   "--data", str(data), "--seed", str(args.seed),
                   f"--{task}-iters", str(iters[task])]  # fmt: skip
            if args.quick:
                cmd.append("--quick")
            log = open(out / f"{task}.log", "w")  # noqa: SIM115  (closed when the task ends)
            print(
                f"[demo] {task}: {NAMES[task]}, {CONFIGS[task].relative_to(REPO)}, "
                f"{iters[task]} iterations, {threads} thread(s); log {log.name}",
                flush=True,
            )
            running[task] = (
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                log,
            )
        time.sleep(5)
        for task, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[task]
            if proc.returncode != 0:
                for p, _ in running.values():
                    p.kill()
                tail = Path(log.name).read_text(errors="ignore")[-3000:]
                raise SystemExit(f"[demo] {task} failed (exit {proc.returncode}):\n{tail}")
            print(f"[demo] {task} done after {time.perf_counter() - start:.0f}s", flush=True)
        if running and int(time.perf_counter() - start) % 30 < 5:
            status = ", ".join(f"{t}: {_last_iter(out / f'{t}.log')}" for t in running)
            print(f"[demo] {time.perf_counter() - start:4.0f}s  {status}", flush=True)

    results = {t: json.loads((out / f"{t}.json").read_text()) for t in args.tasks}
    plot_loss_curves({f"{t} ({NAMES[t]})": out / t for t in args.tasks}, out / "loss_curves.png")
    _stack_pngs([out / f"{t}_predictions.png" for t in args.tasks], out / "predictions.png")
    total = time.perf_counter() - start
    summary = dict(results, total_s=total, settings=dict(sizes, iters=iters, seed=args.seed))
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float))
    for task in args.tasks:
        print(f"\n[demo] {NAMES[task]}, trained, validation set:\n{_tables(out / f'{task}.log')}")
    print("[demo] VMamba trained from scratch on the synthetic shapes (validation set):")
    print(_table(results))
    print(f"[demo] total {total / 60:.1f} min; outputs in {out}:")
    for name in ("loss_curves.png", "predictions.png", "metrics.json", "det.log", "seg.log"):
        if (out / name).exists():
            print(f"  {out / name}")
    for task in args.tasks:
        print(f"  {out / task}/  (checkpoint, config, logs)")
    return summary


if __name__ == "__main__":
    main()

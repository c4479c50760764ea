#!/usr/bin/env python3
"""One command that checks the GPU path on a machine with one NVIDIA GPU: ``make gpu-check``.

Sections, each in its own child process with its own time budget (a failure or a timeout is
recorded, with its traceback in the log, and the next section runs):

    env              device, driver and versions; every import the others need
    kernel_tests     tests/**/test_*triton*.py under pytest, compiled for the card (no interpreter)
    kernel_numerics  selective scan fp32/bf16/fp16 forward+backward and cross-scan/merge at the
                     models' shapes against the float64 / exact references
    train_amp        20 AMP steps (bf16, and fp16 with a GradScaler) of VMamba-T and Vim-S
    throughput       VMamba-T vs timm Swin-T, 224 b128 and 768 b16, fp32 and AMP, alternating
    kernel_bench     Triton scan vs the PyTorch reference vs mamba_ssm (when importable)
    compile          torch.compile of the VMamba-T backbone forward against eager

Writes ``results.md`` (summary table first, a FAIL line per failed section), ``results.csv``,
``results.json``, ``log.txt`` and ``throughput.png`` into ``--out``; exits 1 if anything failed.

    python3 tools/gpu_check/run.py --out work_dirs/gpu_check          # on the GPU machine
    python3 tools/gpu_check/run.py --dry-run --out /tmp/gpu_check      # CPU rehearsal: tiny
                                                                       # shapes, interpreted Triton

The device call, the wheels it carries and the rehearsal are described in
``tools/gpu_check/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tools") not in sys.path:
    sys.path.insert(0, str(REPO / "tools"))

from gpu_check import report  # noqa: E402

# (name, module, function, budget in seconds on the GPU machine), in the order they run
SECTIONS = (
    ("env", "env_section", "run", 40),
    ("kernel_tests", "kernel_tests", "run", 120),
    ("kernel_numerics", "kernel_numerics", "run", 60),
    ("train_amp", "models", "run_train", 90),
    ("throughput", "throughput", "run", 60),
    ("kernel_bench", "kernel_bench", "run", 40),
    ("compile", "models", "run_compile", 100),
)
KERNEL_SECTIONS = ("kernel_tests", "kernel_numerics", "kernel_bench")
# all sections together: with the wheels' install, the device probe and GRACE_S on the last
# section, `make gpu-check` ends within 6 minutes
TOTAL_BUDGET_S = 325
GRACE_S = 10  # how long a child may run past its budget before it is killed
DRY_RUN_BUDGET_SCALE = 4.0  # the CPU rehearsal interprets Triton on two shared cores


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "work_dirs" / "gpu_check")
    p.add_argument("--dry-run", action="store_true", help="CPU rehearsal: tiny shapes and steps")
    p.add_argument("--sections", default=",".join(s[0] for s in SECTIONS))
    p.add_argument("--total-budget", type=float, default=None, help="seconds for all sections")
    p.add_argument("--budget-scale", type=float, default=None, help="multiplies every budget")
    # internal: a child process running one section
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = [s[0] for s in SECTIONS]
    unknown = sorted(set(args.sections.split(",")) - set(names))
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {names}")
    return args


# ----------------------------------------------------------------------------- child side


def run_child(args: argparse.Namespace) -> int:
    """Run one section in this process and leave its result in ``args.result_file``."""
    import traceback

    from gpu_check.context import Context

    _, module, function, _ = next(s for s in SECTIONS if s[0] == args.child)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = Context(
        name=args.child,
        dry_run=args.dry_run,
        device=device,
        deadline=time.monotonic() + args.seconds,
        result_file=args.result_file,
        repo=REPO,
    )
    ctx.flush()
    try:
        getattr(importlib.import_module(f"gpu_check.{module}"), function)(ctx)
    except Exception as exc:
        traceback.print_exc()
        ctx.fail(f"{type(exc).__name__}: {exc}")
    ctx.flush()
    return 0


# ----------------------------------------------------------------------------- parent side


def child_env(device: str, section: str) -> dict:
    """The children's environment: importable repo and vmamba_ops, the right Triton mode."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(REPO)]
    if importlib.util.find_spec("vmamba_ops") is None:
        # the repo is not pip-installed here (the GPU machine): expose ops/ as vmamba_ops
        tag = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
        link_dir = Path(tempfile.gettempdir()) / f"gpu_check_path_{tag}"
        link_dir.mkdir(exist_ok=True)
        link = link_dir / "vmamba_ops"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(REPO / "ops", target_is_directory=True)
        paths.append(str(link_dir))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if device == "cpu" and section in KERNEL_SECTIONS:
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)  # compiled kernels on the card
    return env


def run_section(name: str, seconds: float, args, device: str, log) -> dict:
    """Run section ``name`` in a child with a ``seconds`` limit; its result as a dict."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name]
        cmd += ["--device", device, "--result-file", str(result_file), "--seconds", f"{seconds}"]
        cmd += ["--dry-run"] if args.dry_run else []
        log.write(f"\n===== section {name} (budget {seconds:.0f}s) =====\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=child_env(device, name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a timeout also ends pytest and compile workers
        )
        timed_out = False
        try:
            proc.wait(timeout=seconds + GRACE_S)  # the child watches its own deadline
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        result = {"name": name, "status": report.FAIL, "note": "", "rows": []}
        if result_file.is_file():
            result.update(json.loads(result_file.read_text()))
    result["seconds"] = time.monotonic() - start
    result["budget_s"] = round(seconds)
    if timed_out:
        result["status"] = report.FAIL
        note = f"timed out after {seconds + GRACE_S:.0f}s; rows so far kept. "
        result["note"] = note + result["note"]
    elif proc.returncode != 0:
        result["status"] = report.FAIL
        result["note"] = f"child exited {proc.returncode}. " + result["note"]
    return result


def _log_tail(path: Path, offset: int, lines: int = 40) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    scale = args.budget_scale or (DRY_RUN_BUDGET_SCALE if args.dry_run else 1.0)
    total = args.total_budget or TOTAL_BUDGET_S * scale
    wanted = args.sections.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "log.txt"
    deadline = time.monotonic() + total
    results: list[dict] = []
    tails: list[str] = []  # the end of each failed section's log, repeated at the very end
    header: dict = {}
    device = resolve_device(args.device)
    log_path.write_text("")
    with open(log_path, "a") as log:  # append mode: the children write to the same file
        for name, _, _, budget in SECTIONS:
            if name not in wanted:
                continue
            left = deadline - time.monotonic()
            if left < 5:
                note = f"not run: the total budget of {total:.0f}s is spent"
                results.append({"name": name, "status": report.FAIL, "note": note, "rows": []})
                continue
            log.flush()
            offset = log_path.stat().st_size
            result = run_section(name, min(budget * scale, left), args, device, log)
            if name == "env":
                header = _take_header(result)
            results.append(result)
            line = f"[gpu-check] {name:16s} {result['status']:4s} {result['seconds']:6.1f}s"
            print(f"{line}  {result['note']}"[:300], flush=True)
            if result["status"] == report.FAIL:
                log.flush()
                tails.append(f"----- {name}: {result['note']}\n{_log_tail(log_path, offset)}")
                print(tails[-1], flush=True)
            if name == "env" and result["status"] == report.FAIL and not args.dry_run:
                print("[gpu-check] the environment is broken: later sections not run", flush=True)
                break
    header.setdefault("mode", "dry-run (CPU rehearsal)" if args.dry_run else "full")
    paths = report.write_outputs(args.out, header, results)
    _plot(args.out, header, results)
    print(report.render_markdown(header, results), flush=True)
    for tail in tails:  # last, so the end of the console output shows what went wrong
        lines = tail.splitlines()
        print("\n".join(lines[:1] + lines[-20:]), flush=True)
    print(f"[gpu-check] wrote {', '.join(str(p) for p in paths.values())} and {log_path}")
    return report.exit_status(results)


def resolve_device(device: str) -> str:
    """``'cuda'`` when torch sees a GPU, else ``'cpu'`` (asked in a child: the parent stays
    free of torch, so a broken torch install is reported by the ``env`` section)."""
    if device != "auto":
        return device
    probe = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return "cpu"
    return "cuda" if out.stdout.strip().endswith("cuda") else "cpu"


def _take_header(result: dict) -> dict:
    """Move the environment row of the ``env`` section into the report header."""
    header = {}
    for row in list(result["rows"]):
        if row.get("item") == "environment":
            header = row.get("header", {})
            result["rows"].remove(row)
    return header


def _plot(out: Path, header: dict, results: list[dict]) -> None:
    rows = next((r["rows"] for r in results if r["name"] == "throughput"), [])
    title = f"VMamba-T vs Swin-T forward throughput, {header.get('device', '?')}"
    if "dry-run" in str(header.get("mode")):
        title += " (dry run: tiny models)"
    try:
        report.plot_throughput(rows, out / "throughput.png", title)
    except Exception as exc:  # the plot is a convenience; the tables hold the numbers
        print(f"[gpu-check] no plot: {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

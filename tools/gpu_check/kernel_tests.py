"""Section ``kernel_tests``: the repository's Triton test files, compiled for the GPU.

Runs every ``tests/**/test_*triton*.py``, and every ops / robustness test file that changes
what it runs when ``torch.cuda.is_available()``, with pytest in a child process, with
``TRITON_INTERPRET`` removed from its environment on a CUDA machine, so the kernels are compiled
for the card and checked against the references those tests use. In the dry run (no GPU) the
same files run under ``TRITON_INTERPRET=1``, as in the CPU test suite. One row per test file
(passed / failed / skipped counts) and one FAIL row per failing test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .context import Context
from .report import FAIL

# test folders whose files may switch to CUDA tensors when a GPU is there
CUDA_AWARE_DIRS = ("test_ops", "test_robustness")
# Triton test files that need no card: what they check is the same with or without one
CPU_ONLY = {
    "test_triton_aot.py": "ahead-of-time compile with the wheel's ptxas (no GPU, no driver)",
    "test_triton_determinism.py": "source check and interpreter runs (kernel_numerics checks "
    "the compiled backward's determinism on the card)",
}
XDIST_WORKERS = 4


def gpu_test_files(repo: Path) -> list[Path]:
    """The test files that exercise the kernels on a GPU: Triton ones by name (less
    :data:`CPU_ONLY`), and those of :data:`CUDA_AWARE_DIRS` that ask
    ``torch.cuda.is_available()`` (found anew each run, so new tests count)."""
    tests = repo / "tests"
    by_name = {p for p in tests.rglob("test_*triton*.py") if p.name not in CPU_ONLY}
    cuda_aware = {
        path
        for folder in CUDA_AWARE_DIRS
        for path in (tests / folder).glob("test_*.py")
        if "torch.cuda.is_available()" in path.read_text()
    }
    return sorted(by_name | cuda_aware)


def parse_junit(path: Path) -> dict:
    """Counts and failing test ids from a pytest ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                message = (bad.get("message") or "").splitlines()
                failing.append(f"{case.get('name')}: {message[0][:200] if message else ''}")
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failing"] = failing
    return counts


def run(ctx: Context) -> None:
    files = gpu_test_files(ctx.repo)
    if not files:
        ctx.fail("no Triton / CUDA test files found under tests/")
        return
    env = dict(os.environ)
    if ctx.device == "cuda":
        env.pop("TRITON_INTERPRET", None)
    else:
        env["TRITON_INTERPRET"] = "1"
    for path in files:
        rel = path.relative_to(ctx.repo)
        timeout = ctx.time_left() - 5
        if timeout < 10:
            ctx.add(item=str(rel), status=FAIL, error="section budget spent before this file")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs"]
            if ctx.device == "cuda" and importlib.util.find_spec("xdist") is not None:
                cmd += ["-n", str(XDIST_WORKERS)]  # the kernels compile in parallel
            cmd += [f"--junitxml={junit}", str(rel)]
            print(f"[kernel_tests] {' '.join(cmd)}", flush=True)
            try:
                proc = subprocess.run(cmd, cwd=ctx.repo, env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                ctx.add(item=str(rel), status=FAIL, error=f"pytest timed out after {timeout:.0f}s")
                continue
            if not junit.is_file():
                ctx.add(item=str(rel), status=FAIL, error=f"pytest exited {proc.returncode}")
                continue
            counts = parse_junit(junit)
        failing = counts.pop("failing")
        ran = counts["tests"] - counts["skipped"]
        status = "PASS"
        error = ""
        if proc.returncode != 0 or failing:
            status, error = FAIL, f"pytest exited {proc.returncode}"
        elif ctx.device == "cuda" and ran == 0:
            status, error = FAIL, "every test was skipped on a CUDA machine"
        ctx.add(item=str(rel), device=ctx.device, **counts, status=status, error=error)
        for name in failing:
            ctx.add(item=f"{rel.name}::{name}", status=FAIL)

"""tools/gpu_check (``make gpu-check``): its verdicts, tables and budget accounting on the CPU.

The check itself needs a GPU; here we test what decides its outcome: a failed row fails its
section and the exit status, the report puts the device first and a FAIL line per failed
section, pytest's junit counts are read right, and a spent time budget is recorded as a
failure while the run goes on to write its files.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO / "tools"))  # tools/gpu_check is the package gpu_check

from gpu_check import kernel_tests, report  # noqa: E402
from gpu_check import run as gpu_run  # noqa: E402
from gpu_check.context import Context, out_of_time  # noqa: E402


def _section(name, status, rows=(), note=""):
    return {"name": name, "status": status, "seconds": 1.0, "note": note, "rows": list(rows)}


def test_section_status_fails_on_any_failed_row_and_skips_only_when_nothing_passed():
    assert report.section_status([{"status": "PASS"}, {"status": "FAIL"}]) == "FAIL"
    assert report.section_status([{"status": "PASS"}], failed=True) == "FAIL"
    assert report.section_status([{"status": "SKIP"}], skipped=True) == "SKIP"
    assert report.section_status([{"status": "PASS"}], skipped=True) == "PASS"
    assert report.section_status([]) == "PASS"


def test_exit_status_is_one_exactly_when_a_section_failed():
    assert report.exit_status([_section("a", "PASS"), _section("b", "SKIP")]) == 0
    assert report.exit_status([_section("a", "PASS"), _section("b", "FAIL")]) == 1


def test_markdown_puts_the_device_first_and_a_fail_line_per_failed_section():
    header = {"torch": "2.11.0", "device": "NVIDIA H100 80GB HBM3", "driver": "580.1"}
    results = [
        _section("env", "PASS"),
        _section("compile", "FAIL", note="timed out after 115s"),
        _section("throughput", "PASS", [{"item": "throughput", "img_per_s": 1234.4}]),
    ]
    text = report.render_markdown(header, results)
    lines = text.splitlines()
    assert lines[2] == "- device: NVIDIA H100 80GB HBM3"
    assert lines.index("- device: NVIDIA H100 80GB HBM3") < lines.index("- torch: 2.11.0")
    fail_lines = [ln for ln in lines if ln.startswith("| compile | FAIL |")]
    assert len(fail_lines) == 1 and "timed out after 115s" in fail_lines[0]
    assert "| throughput | 1234 |" in text  # the section's own table, 4 significant digits


def test_rows_of_different_kinds_get_their_own_tables():
    rows = [
        {"item": "selective_scan a", "err_y": 1e-7},
        {"item": "cross_scan/merge cf", "err_merge": 0.0},
        {"item": "selective_scan b", "err_y": 2e-7},
    ]
    groups = report.row_groups(rows)
    assert [[r["item"] for r in g] for g in groups] == [
        ["selective_scan a", "selective_scan b"],
        ["cross_scan/merge cf"],
    ]


def test_csv_has_every_row_with_its_section_and_a_line_per_section():
    results = [
        _section("kernel_bench", "PASS", [{"item": "scan", "triton_ms": 1.5}]),
        _section("train_amp", "FAIL", [{"item": "train vim-s", "status": "FAIL", "error": "nan"}]),
    ]
    rows = list(csv.DictReader(io.StringIO(report.render_csv(results))))
    assert [(r["section"], r["item"], r["status"]) for r in rows] == [
        ("kernel_bench", "scan", ""),
        ("train_amp", "train vim-s", "FAIL"),
        ("kernel_bench", "(section)", "PASS"),
        ("train_amp", "(section)", "FAIL"),
    ]
    assert rows[0]["triton_ms"] == "1.5"


def _context(tmp_path, seconds_left: float) -> Context:
    return Context(
        name="kernel_numerics",
        dry_run=True,
        device="cpu",
        deadline=time.monotonic() + seconds_left,
        result_file=tmp_path / "result.json",
        repo=REPO,
    )


def test_a_raising_item_is_a_fail_row_and_the_section_goes_on(tmp_path, capsys):
    ctx = _context(tmp_path, 100)
    ctx.guarded("selective_scan a", lambda: 1 / 0, dtype="float16")
    ctx.guarded("selective_scan b", lambda: {"err_y": 1e-7}, dtype="float32")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["status"] == "FAIL"
    assert [(r["item"], r["status"]) for r in saved["rows"]] == [
        ("selective_scan a", "FAIL"),
        ("selective_scan b", "PASS"),
    ]
    assert saved["rows"][0]["error"].startswith("ZeroDivisionError")
    assert "ZeroDivisionError" in capsys.readouterr().err  # the traceback goes to the log


def test_an_item_past_the_section_deadline_is_skipped_and_noted(tmp_path):
    assert not out_of_time(_context(tmp_path, 100), 5, "early")
    ctx = _context(tmp_path, 2)
    assert out_of_time(ctx, 5, "throughput 768px b16 fp32")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["rows"][0]["status"] == "SKIP" and saved["status"] == "PASS"
    assert "budget spent" in saved["note"]


def test_junit_counts_and_failing_ids(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="4" failures="1" '
        'errors="1" skipped="1">'
        '<testcase name="test_ok"/>'
        '<testcase name="test_bad[fp16]"><failure message="AssertionError: dA off">x</failure>'
        "</testcase>"
        '<testcase name="test_broken"><error message="CUDA error: illegal address"/></testcase>'
        '<testcase name="test_skip"><skipped message="no"/></testcase>'
        "</testsuite></testsuites>"
    )
    counts = kernel_tests.parse_junit(xml)
    assert counts["passed"] == 1 and counts["skipped"] == 1
    assert counts["failing"] == [
        "test_bad[fp16]: AssertionError: dA off",
        "test_broken: CUDA error: illegal address",
    ]


def test_the_gpu_test_files_are_found_by_name_and_by_asking_for_cuda(tmp_path):
    names = [p.name for p in kernel_tests.gpu_test_files(REPO)]
    assert "test_triton_kernels.py" in names
    ops = tmp_path / "tests" / "test_ops"
    ops.mkdir(parents=True)
    (ops / "test_a.py").write_text("CUDA = torch.cuda.is_available()\n")
    (ops / "test_b.py").write_text("x = 1\n")
    (tmp_path / "tests" / "test_c_triton_x.py").write_text("")
    (tmp_path / "tests" / "test_triton_aot.py").write_text("")  # compiles offline: no card
    found = [p.relative_to(tmp_path).as_posix() for p in kernel_tests.gpu_test_files(tmp_path)]
    assert found == ["tests/test_c_triton_x.py", "tests/test_ops/test_a.py"]


def test_a_spent_total_budget_fails_the_sections_and_still_writes_the_report(tmp_path, capsys):
    argv = ["--dry-run", "--sections", "env,compile", "--total-budget", "1", "--device", "cpu"]
    status = gpu_run.main(argv + ["--out", str(tmp_path)])
    assert status == 1
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [(s["name"], s["status"]) for s in payload["sections"]] == [
        ("env", "FAIL"),
        ("compile", "FAIL"),
    ]
    assert "total budget" in payload["sections"][0]["note"]
    assert "| env | FAIL |" in (tmp_path / "results.md").read_text()


def test_unknown_section_is_refused():
    with pytest.raises(SystemExit):
        gpu_run.parse_args(["--sections", "env,kernels"])


@pytest.mark.slow
def test_env_section_reports_versions_and_names_each_missing_package(tmp_path):
    """The env section in a child process: the header holds torch's version, and each import
    the GPU sections need is a row, FAIL exactly for the packages this environment lacks."""
    import importlib.util

    from gpu_check.env_section import REQUIRED_IMPORTS

    cmd = [sys.executable, str(REPO / "tools" / "gpu_check" / "run.py"), "--dry-run"]
    cmd += ["--sections", "env", "--device", "cpu", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    payload = json.loads((tmp_path / "results.json").read_text())
    import torch

    assert payload["header"]["torch"] == torch.__version__
    rows = {r["item"]: r["status"] for r in payload["sections"][0]["rows"]}
    provided = ("vmamba_ops", "mmvmamba")  # run.py puts the repo and ops/ on the child's path
    missing = {
        m
        for m in REQUIRED_IMPORTS
        if not m.startswith(provided) and importlib.util.find_spec(m.split(".")[0]) is None
    }
    assert {m for m in REQUIRED_IMPORTS if rows[f"import {m}"] == "FAIL"} == missing
    assert proc.returncode == (1 if missing else 0), proc.stdout[-3000:]

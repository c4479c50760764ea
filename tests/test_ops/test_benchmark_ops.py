"""tools/analysis/benchmark_ops.py --quick: runs, and writes a consistent CSV and a PNG."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "analysis" / "benchmark_ops.py"


def test_quick_run_writes_csv_and_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("benchmark_ops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # 'system' only: the caching setting would change this test process's malloc for good
    rows = module.main(["--quick", "--allocator", "system", "--out-dir", str(tmp_path)])
    assert (tmp_path / "benchmark_ops.png").stat().st_size > 0
    with open(tmp_path / "benchmark_ops.csv") as f:
        on_disk = list(csv.DictReader(f))
    assert len(on_disk) == len(rows) == 6  # 2 shapes x {ref, c, torch}
    assert {r["backend"] for r in on_disk} == {"ref", "c", "torch"}
    for r in rows:
        assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 and r["floor_fwd_ms"] > 0
        # bytes of u, delta, y (fp32) + B, C for the quick shape
        assert module.fwd_traffic_bytes(1, r["dim"], r["L"]) == 4 * (3 * r["dim"] + 8) * r["L"]
    out = capsys.readouterr().out
    assert "copy bandwidth" in out and "fwd_over_floor" in out
    assert "c forward / memory-traffic floor, system malloc" in out
    assert "into a new one (clone)" in out


def test_both_allocators_run_the_fast_path_twice(tmp_path):
    pytest.importorskip("matplotlib")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backends", "cpu", "--out-dir", str(tmp_path)],
        # ('cpu': the old name of 'c', still accepted)
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "benchmark_ops.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["allocator"], r["backend"]) for r in rows] == [("system", "c")] * 2 + [
        ("caching", "c")
    ] * 2
    assert "floor, caching malloc" in res.stdout and "floor, system malloc" in res.stdout

"""tools/analysis/benchmark_ops.py --quick: runs, and writes a consistent CSV and a PNG."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "analysis" / "benchmark_ops.py"


def test_quick_run_writes_csv_and_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("benchmark_ops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--quick", "--out-dir", str(tmp_path)])
    assert (tmp_path / "benchmark_ops.png").stat().st_size > 0
    with open(tmp_path / "benchmark_ops.csv") as f:
        on_disk = list(csv.DictReader(f))
    assert len(on_disk) == len(rows) == 6  # 2 shapes x {ref, cpu, cpu-torch}
    assert {r["backend"] for r in on_disk} == {"ref", "cpu", "cpu-torch"}
    for r in rows:
        assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 and r["floor_fwd_ms"] > 0
        # bytes of u, delta, y (fp32) + B, C for the quick shape
        assert module.fwd_traffic_bytes(1, r["dim"], r["L"]) == 4 * (3 * r["dim"] + 8) * r["L"]
    out = capsys.readouterr().out
    assert "copy bandwidth" in out and "fwd_over_floor" in out
    assert "cpu forward / memory-traffic floor: worst" in out

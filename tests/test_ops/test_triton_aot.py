"""Every Triton launch the models make compiles for A100 (sm_80) and H100 (sm_90) without
spilling, within the shared-memory limit, and fills the GPU: checked ahead of time with the
ptxas inside the triton wheel (no GPU, no driver).

The set is ``tools/analysis/triton_report.py --scope ci``: every model launch (VMamba v2 T/S/B,
v0 T/S/B, Vim T/S/B; each stage; batch 1 at 224 and batch 2 at 1344x800; scan forward and
backward, cross-scan and cross-merge; fp32, bf16, fp16) and every row of the block table with
every option on. The report's full set (all D / z / delta_bias combinations in every dtype,
both cross-scan layouts, AMD gfx942) is the slow test below. The tool runs in a subprocess:
this pytest process may have imported triton in interpreter mode, where kernels cannot be
compiled.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "analysis" / "triton_report.py"
SHARED_LIMIT = {"sm_80": 166_912, "sm_90": 232_448}
TARGET_PROGRAMS = 2 * 132  # two programs per H100 SM

pytestmark = pytest.mark.triton


def _run_report(tmp_path: Path, *extra: str) -> list[dict]:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, str(TOOL), "--no-plot", "--out-dir", str(tmp_path), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    out = proc.stdout + proc.stderr
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("skipping sm_")]
    if skipped:
        pytest.skip("; ".join(skipped))
    assert proc.returncode == 0, out[-5000:]
    with open(tmp_path / "triton_report.csv") as f:
        return list(csv.DictReader(f))


def _check_rows(rows: list[dict]) -> None:
    nvidia = [r for r in rows if r["target"] in SHARED_LIMIT]
    assert nvidia, "the report compiled nothing for sm_80 / sm_90"
    for r in nvidia:
        where = f"{r['kernel']} {r['model']} stage {r['stage']} {r['input']} {r['dtype']} "
        where += f"{r['options']} on {r['target']} ({r['constexprs']})"
        assert r["problem"] == "", f"{where}: {r['problem']}"
        assert int(r["spill_bytes"]) == 0, f"{where}: spills {r['spill_bytes']} B"
        assert int(r["shared_bytes"]) <= SHARED_LIMIT[r["target"]], f"{where}: shared memory"
        if r["kernel"] == "scan_fwd":
            assert int(r["registers"]) <= 128, f"{where}: {r['registers']} registers"


def test_ptxas_log_is_parsed_to_the_worst_function():
    from vmamba_ops.triton_aot import _parse_ptxas

    log = """ptxas info    : Compiling entry function '_fwd_kernel' for 'sm_80'
ptxas info    : Function properties for _fwd_kernel
    16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 384 bytes smem"""
    got = _parse_ptxas(log)
    assert got == {"registers": 72, "spill_stores": 12, "spill_loads": 8, "stack": 16}
    with pytest.raises(RuntimeError, match="no register count"):
        _parse_ptxas("ptxas fatal")


def test_resident_programs_by_registers_warps_and_shared_memory():
    from vmamba_ops.triton_aot import KernelStats

    # 72 registers x 128 threads = 9,216 of 65,536 per SM -> 7 programs
    assert KernelStats("sm_90", 72, 0, 0, 0, 256, 4).resident_programs() == 7
    # registers are allocated in 8s: 41 -> 48 x 64 threads -> 21
    assert KernelStats("sm_80", 41, 0, 0, 0, 0, 2).resident_programs() == 21
    # shared memory bound: 100 KB of sm_80's 163 KB -> 1
    assert KernelStats("sm_80", 32, 0, 0, 0, 100_000, 4).resident_programs() == 1
    # 1-warp programs: at most 32 resident
    assert KernelStats("sm_90", 16, 0, 0, 0, 0, 1).resident_programs() == 32


SPECIALISE = """
import json, torch
from vmamba_ops.cross_scan import triton as cross_tri
from vmamba_ops.triton_aot import _specialization
launch = cross_tri.launch_for_shape(2, 96, 56, 56, torch.bfloat16, "cross", False)
sig, consts, attrs = _specialization(launch)
names = launch.kernel.arg_names
print(json.dumps(dict(sig=sig, consts={k: str(v) for k, v in consts.items()},
                      attrs=sorted(names[k[0]] for k in attrs))))
"""


def test_launches_specialise_like_triton_does():
    """Pointers and multiples of 16 get tt.divisibility; ints equal to 1 become constants,
    except the kernels' do_not_specialize sizes (as a real launch would do)."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", SPECIALISE], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    sig, consts, attrs = got["sig"], got["consts"], got["attrs"]
    assert sig["x_ptr"] == "*bf16" and "x_ptr" in attrs
    assert sig["sxw"] == "constexpr" and consts["sxw"] == "1"  # stride 1
    assert sig["sxc"] == "i32" and "sxc" in attrs  # 3136 = 16 * 196
    assert sig["C"] == "i32" and "C" not in attrs  # do_not_specialize
    # the 'cross' routes' orders (routes.ROUTES) as codes: row, col, row reversed, col reversed
    assert [consts[f"R{k}"] for k in range(4)] == ["0", "1", "6", "7"]
    assert sig["BLOCK_P"] == "constexpr"


def test_model_launches_compile_without_spills_and_fill_the_gpu(tmp_path):
    rows = _run_report(tmp_path, "--scope", "ci", "--targets", "sm_80", "sm_90", "--jobs", "2")
    _check_rows(rows)
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"scan_fwd", "scan_bwd", "cross_scan", "cross_merge"}, kernels
    assert {r["dtype"] for r in rows if r["section"] == "model"} == {"fp32", "bf16", "fp16"}
    # VMamba-T stage 1 (dim 4 x 96 = 384): batch 1 at 224 and Mask R-CNN's batch 2 at 1344x800
    first = [r for r in rows if r["model"] == "vmamba-tiny" and r["stage"] == "1"]
    assert {r["input"] for r in first} == {"1x224", "2x1344x800"}
    for r in first:
        assert int(r["programs"]) >= TARGET_PROGRAMS, (r["kernel"], r["input"], r["programs"])
    # every row of the block table was compiled, for both targets
    from vmamba_ops.selective_scan import triton_configs

    n_rows = sum(len(triton_configs.all_scan_blocks(k)) for k in triton_configs.KINDS)
    table = {(r["kernel"], r["options"], r["target"]) for r in rows if r["section"] == "table"}
    assert len(table) == 2 * n_rows


@pytest.mark.slow
def test_full_report_set_compiles_without_spills(tmp_path):
    rows = _run_report(tmp_path, "--jobs", str(max(2, os.cpu_count() or 1)))
    _check_rows(rows)
    assert {r["section"] for r in rows} == {"model", "options", "table"}

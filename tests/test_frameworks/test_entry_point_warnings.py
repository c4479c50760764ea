"""Our entry points start with our own lines: the frameworks' known deprecation noise
(``pkg_resources is deprecated``) is silenced, a genuine warning still shows."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mmseg")

REPO = Path(__file__).resolve().parents[2]
DEMO_SEG = REPO / "configs" / "demo" / "upernet_vmamba-demo_shapes-128x128.py"
GENUINE = "a genuine warning from the user's own module"
ENTRY_POINTS = sorted(
    p.relative_to(REPO)
    for p in (REPO / "tools").rglob("*.py")
    if p.parent.name not in ("gpu_check",) and not p.name.startswith("_")
)


def _run(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, **env),
        timeout=300,
    )


def test_train_py_prints_no_framework_noise_but_genuine_warnings(tmp_path):
    (tmp_path / "noisy_module.py").write_text(f"import warnings\nwarnings.warn({GENUINE!r})\n")
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        f"_base_ = {str(DEMO_SEG)!r}\n"
        "custom_imports = dict(imports=['mmvmamba', 'noisy_module'])\n"
    )
    # the same config loaded without our entry point: the noise is there to silence
    bare = _run(
        ["-c", f"from mmengine.config import Config; Config.fromfile({str(cfg)!r})"], tmp_path
    )
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert "pkg_resources is deprecated" in bare.stderr

    cmd = [str(REPO / "tools" / "train.py"), str(cfg), "--work-dir", str(tmp_path / "w")]
    cmd += ["--cfg-options", "model.backbone.type=NoSuchBackbone"]
    out = _run(cmd, tmp_path, PYTHONPATH=str(tmp_path))
    log = out.stdout + out.stderr
    assert out.returncode == 2, log[-3000:]
    assert "pkg_resources" not in log, log[-3000:]
    assert GENUINE in out.stderr
    assert "error: KeyError: NoSuchBackbone is not in the" in out.stderr


def _first_statements(path: Path) -> list[str]:
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return [ast.unparse(node) for node in body[:3]]


@pytest.mark.parametrize("tool", ENTRY_POINTS, ids=str)
def test_entry_points_quiet_the_frameworks_first(tool):
    """Every entry point that loads the frameworks when it starts (a module-level import of
    mmvmamba or a framework) calls ``quiet_known_warnings()`` before any other import."""
    frameworks = {"mmvmamba", "mmengine", "mmpretrain", "mmdet", "mmseg"}
    imported = set()
    for node in ast.parse((REPO / tool).read_text()).body:
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    if not imported & frameworks:
        pytest.skip("loads no framework when it starts")
    future, helper, call = _first_statements(REPO / tool)
    assert future == "from __future__ import annotations"
    assert helper.startswith("from mmvmamba.utils import ") and "quiet_known_warnings" in helper
    assert call == "quiet_known_warnings()"

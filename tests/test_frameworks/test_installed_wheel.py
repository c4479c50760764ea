"""A built wheel works without the repository: configs, model index and tools are installed in
``mmvmamba/.mim`` (as OpenMMLab packages do), and the hub and ``tools/train.py`` find a model by
name from there. The wheel goes into a temporary ``--target`` beside the project's environment
(``--no-deps``: torch and the frameworks come from that environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# what a checkout holds besides the sources (environments, outputs, caches)
NOT_SOURCES = {".venv", ".git", "work_dirs", "data", "build", "dist", "outputs", ".whl"}
NAME = "vim-tiny_8xb128_in1k"

HUB_SCRIPT = f"""
import mmpretrain
import mmvmamba
from mmvmamba.hub import resolve_config, resource_root

model = mmpretrain.get_model("{NAME}")
print("package", mmvmamba.__file__)
print("resources", resource_root())
print("config", model._config.filename)
print("resolved", resolve_config("{NAME}"))
print("backbone", type(model.backbone).__name__)
"""


def _copy_sources(dst: Path) -> Path:
    def skip(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == REPO
        return [
            n
            for n in names
            if (top and n in NOT_SOURCES)
            or n in ("__pycache__", ".pytest_cache", ".ruff_cache")
            or n.endswith(".egg-info")
        ]

    shutil.copytree(REPO, dst, ignore=skip)
    return dst


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.slow
def test_wheel_builds_models_by_name_outside_the_checkout(tmp_path):
    pytest.importorskip("mmpretrain")
    src = _copy_sources(tmp_path / "src")
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    out = _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (wheel,) = dist.glob("mmvmamba-*.whl")
    out = _run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    mim = site / "mmvmamba" / ".mim"
    for rel in (
        "model-index.yml",
        "configs/classification/metafile.yml",
        f"configs/classification/{NAME}.py",
        "configs/demo/_base_/demo_vmamba.py",
        "tools/train.py",
        "tools/test.py",
    ):
        assert (mim / rel).is_file(), rel
    assert (site / "vmamba_ops" / "csrc").is_dir()

    env = dict(os.environ, PYTHONPATH=str(site))
    out = _run([sys.executable, "-c", HUB_SCRIPT], cwd=elsewhere, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert Path(lines["package"]).is_relative_to(site)  # not the checkout's editable install
    assert Path(lines["resources"]) == mim
    assert Path(lines["config"]) == mim / "configs" / "classification" / f"{NAME}.py"
    assert lines["resolved"] == lines["config"] and lines["backbone"] == "Vim"

    # the installed tools/train.py takes the model name too: it builds the model, then stops
    # at the ImageNet data this machine does not have (a config mistake: one line)
    cmd = [sys.executable, str(mim / "tools" / "train.py"), NAME, "--work-dir", "w"]
    out = _run(cmd, cwd=elsewhere, env=env)
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    error = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert error and "data/imagenet" in error[0], out.stderr[-3000:]
    assert not (REPO / "mmvmamba" / ".mim").exists()  # the build wrote nothing into the sources

"""Packaging for mmvmamba (the OpenMMLab plugin) and vmamba_ops (the framework-free kernels).

`ops/` is installed as the package `vmamba_ops` through a `package_dir` mapping, so the same
`import vmamba_ops` works from an editable install, a built wheel and inside the test suite.
"""

import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
# what OpenMMLab packages install inside themselves under .mim/ (mmdet/.mim/configs, ...): the
# configs and model index, found by name by mmvmamba.hub, and the tools (as `mim train` runs them)
MIM_FILES = ("configs", "tools", "model-index.yml")


def read_requirements(name: str) -> list[str]:
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def version() -> str:
    text = (ROOT / "mmvmamba" / "version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


class BuildWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into ``mmvmamba/.mim`` of the build.

    Only the built package gets them (a wheel, a regular install); an editable install reads
    them from the checkout, so nothing is written into the source tree.
    """

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        mim = Path(self.build_lib) / "mmvmamba" / ".mim"
        shutil.rmtree(mim, ignore_errors=True)
        mim.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in MIM_FILES:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, mim / name, ignore=ignore)
            elif src.is_file():
                shutil.copy2(src, mim / name)


ops_packages = ["vmamba_ops"] + ["vmamba_ops." + p for p in find_packages(where="ops")]

setup(
    name="mmvmamba",
    version=version(),
    description="VMamba and Vim visual state-space backbones for mmpretrain, mmdet and mmseg",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mmvmamba", "mmvmamba.*"]) + ops_packages,
    package_dir={"vmamba_ops": "ops"},
    include_package_data=True,
    # the CPU selective-scan kernel is compiled from these on first use (vmamba_ops._c_library)
    package_data={"vmamba_ops": ["csrc/*.c", "csrc/*.h"]},
    install_requires=["torch>=2.1"] + read_requirements("runtime.txt"),
    extras_require={
        "det": ["mmdet==3.3.0", "pycocotools>=2.0.7"],
        "seg": ["mmsegmentation==1.2.2", "ftfy", "regex"],
        "triton": read_requirements("triton.txt"),
        "tests": read_requirements("tests.txt"),
    },
    cmdclass={"build_py": BuildWithMim},
    zip_safe=False,
)

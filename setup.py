"""Packaging for mmvmamba (the OpenMMLab plugin) and vmamba_ops (the framework-free kernels).

`ops/` is installed as the package `vmamba_ops` through a `package_dir` mapping, so the same
`import vmamba_ops` works from an editable install, a built wheel and inside the test suite.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def version() -> str:
    text = (ROOT / "mmvmamba" / "version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


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
    # the CPU selective-scan kernel is compiled from these on first use (vmamba_ops...native)
    package_data={"vmamba_ops": ["csrc/*.c", "csrc/*.h"]},
    install_requires=["torch>=2.1"] + read_requirements("runtime.txt"),
    extras_require={
        "det": ["mmdet==3.3.0", "pycocotools>=2.0.7"],
        "seg": ["mmsegmentation==1.2.2", "ftfy", "regex"],
        "triton": read_requirements("triton.txt"),
        "tests": read_requirements("tests.txt"),
    },
    zip_safe=False,
)

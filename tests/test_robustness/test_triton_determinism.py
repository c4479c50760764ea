"""The Triton selective-scan backward is deterministic.

Two checks: (1) no atomic read-modify-write in the kernels' source (atomics make the order of a
floating-point sum depend on scheduling, so gradients would change from run to run on a GPU;
the interpreter runs programs one by one and could not see that); (2) under
``TRITON_INTERPRET=1`` two backward passes give bitwise-equal gradients.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KERNELS = [
    REPO / "ops" / "selective_scan" / "triton_kernels.py",
    REPO / "ops" / "cross_scan" / "triton.py",
]

pytestmark = pytest.mark.triton


def _require_triton_kernels() -> None:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    if not KERNELS[0].is_file():
        pytest.skip("ops/selective_scan/triton_kernels.py does not exist (yet)")


@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.parent.name)
def test_kernels_use_no_atomics(path):
    _require_triton_kernels()
    if not path.is_file():
        pytest.skip(f"{path} does not exist")
    # strip comments and docstrings' lines mentioning atomics; look at code only
    code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    hits = re.findall(r"tl\.atomic_\w+", code)
    assert not hits, (
        f"{path.name} uses {sorted(set(hits))}: the order of the accumulated sums changes from "
        "run to run; reduce per program and sum the partial results in a fixed order instead"
    )


SCRIPT = textwrap.dedent(
    """
    import torch, vmamba_ops
    torch.manual_seed(0)
    b, g, dim, n, length = 2, 2, 8, 4, 67
    def inputs():
        g_ = torch.Generator().manual_seed(1)
        t = dict(
            u=torch.randn(b, dim, length, generator=g_),
            delta=torch.randn(b, dim, length, generator=g_),
            A=-torch.rand(dim, n, generator=g_),
            B=torch.randn(b, g, n, length, generator=g_),
            C=torch.randn(b, g, n, length, generator=g_),
            D=torch.randn(dim, generator=g_),
            delta_bias=torch.randn(dim, generator=g_),
        )
        for v in t.values():
            v.requires_grad_(True)
        return t
    grads = []
    for _ in range(2):
        t = inputs()
        y = vmamba_ops.selective_scan(**t, delta_softplus=True, backend="triton")
        y.square().sum().backward()
        grads.append({k: v.grad.clone() for k, v in t.items()})
    same = all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])
    print("BITWISE_EQUAL" if same else "DIFFERENT")
    """
)


def test_triton_backward_is_bitwise_reproducible_in_the_interpreter(tmp_path):
    _require_triton_kernels()
    script = tmp_path / "det.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BITWISE_EQUAL" in proc.stdout

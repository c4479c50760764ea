"""A NaN in delta, A or the delta bias reaches the output on every backend, exactly where the
float64 sequential reference puts it (a NaN-detect hook must see it), and nothing raises.

The Triton kernels run under TRITON_INTERPRET=1 on a CPU-only machine; the variable is set here
before anything imports triton, as in test_triton_kernels.py.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch
from ops_test_utils import args_of, make_inputs, run_interpreted

CUDA = torch.cuda.is_available()
_TRITON = importlib.util.find_spec("triton") is not None
_PREIMPORTED = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
if _TRITON and not CUDA and not _PREIMPORTED:
    os.environ["TRITON_INTERPRET"] = "1"

import vmamba_ops  # noqa: E402

TRITON = pytest.param(
    "triton",
    marks=pytest.mark.skipif(
        not _TRITON or (_PREIMPORTED and not CUDA),
        reason="triton is not installed, or it was imported before TRITON_INTERPRET was set",
    ),
)
BACKENDS = ["ref", "torch", "c", TRITON]


@pytest.mark.skipif(
    not (_TRITON and _PREIMPORTED and not CUDA), reason="the Triton cases run in this process"
)
def test_triton_cases_in_a_fresh_interpreter():
    summary = run_interpreted(__file__, "-k", "triton and not fresh_interpreter")
    assert summary.startswith("6 passed"), summary  # 3 places x softplus / raw, none skipped


def _poison(inp: dict, where: str) -> None:
    with torch.no_grad():
        if where == "delta":
            inp["delta"][0, 3, 10] = float("nan")
        elif where == "A":
            inp["A"][5, 1] = float("nan")
        else:
            inp["delta_bias"][6] = float("nan")


@pytest.mark.parametrize("where", ["delta", "A", "delta_bias"])
@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "raw"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_like_the_reference(backend, where, softplus):
    inp = make_inputs(2, 8, 40, 2, 2, with_z=True, requires_grad=False)
    if not softplus:  # a raw time step: keep it positive (decaying state)
        inp["delta"] = torch.nn.functional.softplus(inp["delta"])
        inp["delta_bias"] = inp["delta_bias"].abs()
    _poison(inp, where)
    device = "cuda" if backend == "triton" and CUDA else "cpu"
    args = [t.to(device) if t is not None else None for t in args_of(inp)]
    kw = dict(delta_softplus=softplus, return_last_state=True)
    y, last = vmamba_ops.selective_scan(*args, **kw, backend=backend)
    ref = {k: (v.double() if v is not None else None) for k, v in inp.items()}
    y_ref, last_ref = vmamba_ops.selective_scan_ref(*args_of(ref), **kw)
    y, last = y.cpu(), last.cpu()
    assert torch.isnan(y_ref).any()  # the poisoned channel
    assert torch.equal(torch.isnan(y), torch.isnan(y_ref))
    assert torch.equal(torch.isnan(last), torch.isnan(last_ref))
    finite = ~torch.isnan(y_ref)
    torch.testing.assert_close(y[finite].double(), y_ref[finite], rtol=2e-4, atol=2e-4)

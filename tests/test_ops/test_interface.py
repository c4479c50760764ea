"""vmamba_ops public interface: validation, backend dispatch, torch.library ops, FLOP handles."""

from __future__ import annotations

import pytest
import torch
from ops_test_utils import args_of, make_inputs

import vmamba_ops
from vmamba_ops import dispatch
from vmamba_ops.selective_scan import c_kernel, torch_scan


def _detached(inp: dict) -> dict:
    return {k: (v.detach() if v is not None else None) for k, v in inp.items()}


class _SS2DLike(torch.nn.Module):
    """cross_scan -> selective_scan -> cross_merge, the SS2D core, on a (2, 2, 4, 4) map."""

    def forward(self, x, delta, A, B, C, D, delta_bias):
        xs = vmamba_ops.cross_scan(x)  # (2, 4, 2, 16)
        y = vmamba_ops.selective_scan(
            xs.reshape(2, 8, 16), delta, A, B, C, D, None, delta_bias, delta_softplus=True
        )
        return vmamba_ops.cross_merge(y.view(2, 4, 2, 4, 4))


def _ss2d_args():
    inp = _detached(make_inputs(2, 8, 16, 1, 4))
    x = torch.randn(2, 2, 4, 4)
    return (x, inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"])


def test_public_api_surface():
    for name in (
        "selective_scan",
        "selective_scan_ref",
        "cross_scan",
        "cross_merge",
        "selective_scan_flops",
        "FLOP_HANDLES",
        "available_backends",
        "set_backend",
        "use_backend",
        "K_OF_PATTERN",
    ):
        assert hasattr(vmamba_ops, name), name
    assert vmamba_ops.K_OF_PATTERN == {"cross": 4, "unidi": 4, "bidi": 4, "cascade": 4}
    assert vmamba_ops.available_backends("cpu")[:2] == ["ref", "torch"]


def test_vmamba_ops_imports_no_openmmlab():
    import subprocess
    import sys

    code = (
        "import sys, vmamba_ops; "
        "mm = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'mmvmamba'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in mm]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "setting, module", [("auto", c_kernel), ("c", c_kernel), ("torch", torch_scan)]
)
def test_auto_backend_on_cpu_runs_the_table_or_the_setting(monkeypatch, setting, module):
    """'auto' on CPU tensors runs the C kernel, or what set_backend asked for."""
    calls = []
    original = module.selective_scan_fwd

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "selective_scan_fwd", spy)
    inp = _detached(make_inputs(1, 4, 5, 2, 1))
    with vmamba_ops.use_backend(setting, device="cpu"):
        vmamba_ops.selective_scan(*args_of(inp))
    assert calls == [1]


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        pytest.param(lambda a: a.update(u=a["u"].long()), TypeError, "`u` has dtype", id="int-u"),
        pytest.param(
            lambda a: a.update(delta=a["delta"][..., :3]),
            ValueError,
            "`delta` has shape",
            id="delta-shape",
        ),
        pytest.param(
            lambda a: a.update(A=a["A"][:, None]),
            ValueError,
            r"`A` must be \(dim, N\)",
            id="A-3d",
        ),
        pytest.param(
            lambda a: a.update(B=a["B"].expand(2, 3, 2, 7).contiguous()),
            ValueError,
            "not divisible by the number of B/C groups G=3",
            id="groups",
        ),
        pytest.param(
            lambda a: a.update(C=a["C"][..., :6]), ValueError, "`C` has shape", id="C-shape"
        ),
        pytest.param(
            lambda a: a.update(D=torch.ones(3)), ValueError, r"`D` has shape \(3,\)", id="D"
        ),
        pytest.param(
            lambda a: a.update(A=a["A"].to(torch.complex64)),
            TypeError,
            "complex A",
            id="complex-A",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(mutate, error, match):
    inp = _detached(make_inputs(2, 4, 7, 2, 1))
    mutate(inp)
    with pytest.raises(error, match=match):
        vmamba_ops.selective_scan(*args_of(inp))


def test_backend_errors(monkeypatch):
    inp = _detached(make_inputs(1, 4, 5, 2, 1))
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        vmamba_ops.selective_scan(*args_of(inp), backend="cuda")
    monkeypatch.setattr(dispatch, "_interpret", False)
    monkeypatch.setattr(dispatch, "_HAS_TRITON", True)
    with pytest.raises(RuntimeError, match="needs CUDA tensors.*TRITON_INTERPRET=1"):
        vmamba_ops.selective_scan(*args_of(inp), backend="triton")
    monkeypatch.setattr(dispatch, "_HAS_TRITON", False)
    with pytest.raises(RuntimeError, match="pip install triton"):
        vmamba_ops.cross_scan(torch.randn(1, 2, 3, 3), backend="triton")


def test_opcheck_custom_ops():
    inp = make_inputs(2, 8, 16, 4, 4, with_z=True)
    ops = torch.ops.vmamba_ops
    for backend in ("c", "torch"):
        torch.library.opcheck(ops.selective_scan.default, (*args_of(inp), True, backend))
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    torch.library.opcheck(ops.cross_scan.default, (x, "cross", True, "c"))
    y = torch.randn(2, 5, 4, 4, 3, requires_grad=True)
    torch.library.opcheck(ops.cross_merge.default, (y, "bidi", False, "torch"))
    low = torch.randn(2, 4, 3, 16)  # the fused low-rank forward (no autograd: no grads)
    args = [t.detach() if t is not None else None for t in args_of(inp)]
    proj = torch.randn(8, 3)
    torch.library.opcheck(ops.selective_scan_lowrank.default, (args[0], low, proj, *args[2:], True))


def test_compile_fullgraph_sees_one_node_per_op():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model, args = _SS2DLike(), _ss2d_args()
    out = torch.compile(model, fullgraph=True, backend=backend)(*args)
    torch.testing.assert_close(out, model(*args))
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    ours = [t for t in targets if "vmamba_ops" in t]
    assert len(ours) == 3 and sum("selective_scan" in t for t in ours) == 1, targets


def test_export_sees_one_node_per_op():
    ep = torch.export.export(_SS2DLike(), _ss2d_args())
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("vmamba_ops.selective_scan.default") == 1
    assert targets.count("vmamba_ops.cross_scan.default") == 1
    assert targets.count("vmamba_ops.cross_merge.default") == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_flops_formula_and_jit_handle():
    assert vmamba_ops.selective_scan_flops(2, 10, 8, 4, with_D=False) == 9 * 2 * 10 * 8 * 4
    assert vmamba_ops.selective_scan_flops(2, 10, 8, 4) == 9 * 2 * 10 * 8 * 4 + 2 * 8 * 10
    assert vmamba_ops.selective_scan_flops(2, 10, 8, 4, True, True) == 5760 + 2 * 160
    # the handle reads shapes from a jit-traced graph, as fvcore / mmengine do
    graph = torch.jit.trace(_SS2DLike(), _ss2d_args(), check_trace=False).inlined_graph
    counted = {}
    for node in graph.nodes():
        handle = vmamba_ops.FLOP_HANDLES.get(node.kind())
        if handle is not None:
            counted[node.kind()] = handle(list(node.inputs()), list(node.outputs()))
    assert counted == {
        "vmamba_ops::cross_scan": 0,
        "vmamba_ops::selective_scan": vmamba_ops.selective_scan_flops(2, 16, 8, 1, True, False),
        "vmamba_ops::cross_merge": 0,
    }


def test_mmengine_flop_analyzer_counts_the_formula():
    analysis = pytest.importorskip("mmengine.analysis")

    class ScanOnly(torch.nn.Module):
        def forward(self, u, delta, A, B, C, D, z):
            return vmamba_ops.selective_scan(u, delta, A, B, C, D, z)

    inp = _detached(make_inputs(2, 8, 16, 4, 2, with_z=True))
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"])
    analyzer = analysis.FlopAnalyzer(ScanOnly(), args).set_op_handle(**vmamba_ops.FLOP_HANDLES)
    assert analyzer.total() == vmamba_ops.selective_scan_flops(2, 16, 8, 4, True, True)
    assert not analyzer.unsupported_ops()


@pytest.mark.parametrize("shape", [(0, 4, 8), (2, 4, 0)], ids=["empty-batch", "empty-sequence"])
@pytest.mark.parametrize("backend", ["auto", "cpu", "c", "torch", "ref"])
def test_empty_inputs_give_empty_outputs_and_grads(shape, backend):
    b, d, length = shape
    u = torch.randn(b, d, length, requires_grad=True)
    delta = torch.rand(b, d, length, requires_grad=True)
    A = -torch.rand(d, 3)
    B = torch.randn(b, 2, 3, length)
    y, last = vmamba_ops.selective_scan(
        u, delta, A, B, B.clone(), return_last_state=True, delta_softplus=True, backend=backend
    )
    assert y.shape == shape and last.shape == (b, d, 3)
    assert torch.all(last == 0)
    if b == 0:  # an empty batch inside a training step still backpropagates
        (y.sum() + last.sum()).backward()
        assert u.grad.shape == shape and delta.grad.shape == shape

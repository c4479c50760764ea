"""Robustness and deployment of Vim: torch.export / ONNX, torch.compile, bad input, NaN detection.

All on the tiny Vim of ``helpers.tiny_vim`` (2 layers, 16 channels, 4x4 patches, ``pos_embed``
stored for the 4x4 grid of a 16x16 image), so that both the stored grid and a resized one are
exercised; the reference is always the eager PyTorch model.
"""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("mmpretrain")

from mmvmamba.checkpoint.vim import resize_middle_cls  # noqa: E402
from mmvmamba.deployment import (  # noqa: E402
    ExportError,
    ExportWrapper,
    export_onnx,
    export_program,
    verify_onnx,
)

from .helpers import TINY_VIM_IMG, single_thread, tiny_vim, tiny_vim_classifier  # noqa: E402

STORED = (TINY_VIM_IMG, TINY_VIM_IMG)  # 4x4 patch grid: pos_embed used as stored
RESIZED = (24, 20)  # 6x5 patch grid: pos_embed resized (bicubic) at run time


def _vmamba_nodes(program) -> set[str]:
    return {
        str(n.target)
        for n in program.graph.nodes
        if n.op == "call_function" and "vmamba_ops" in str(n.target)
    }


def _assert_outputs_close(got, ref, tol: float) -> None:
    gots = got if isinstance(got, (tuple, list)) else (got,)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    assert len(gots) == len(refs)
    for g, r in zip(gots, refs):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol)


# --- torch.export / ONNX ---------------------------------------------------------------------
def test_export_time_resize_at_the_stored_grid_is_the_stored_embedding():
    """Under torch.export Vim.get_pos_embed always resizes (no branch on a symbolic grid):
    at the stored grid bicubic at scale 1 must give the stored embedding bit for bit, so the
    exported model equals eager Vim there (other grids: the same function eager Vim uses)."""
    pos = torch.randn(1, 4 * 4 + 1, 8)
    assert torch.equal(resize_middle_cls(pos, (4, 4), (4, 4)), pos)
    assert resize_middle_cls(pos, (4, 4), (6, 5)).shape == (1, 6 * 5 + 1, 8)


def test_torch_export_of_the_backbone_is_dynamic_over_the_patch_grid():
    """One export at the stored grid runs at other batch sizes and other patch grids (the
    position embedding is resized inside the graph) and matches eager to 1e-5; torch does
    not pin any input axis, and the decomposition leaves no vmamba_ops node.

    Before the export branch of Vim.get_pos_embed, the grid went through ``int()`` and a
    comparison with the stored grid, which pinned it: the program failed with
    ``Guard failed: x.size()[2] // 4 == 4`` at any other grid, and the ONNX file with a
    broadcast error (or, at another grid with as many patches, wrong numbers)."""
    module = ExportWrapper(tiny_vim(out_type="featmap", out_indices=(0, 1)), "backbone")
    with single_thread():
        raw = torch.export.export(module, (torch.randn(2, 3, *STORED),))
        assert "vmamba_ops.selective_scan.default" in _vmamba_nodes(raw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # export_program warns when it had to fix an axis
            program = export_program(module, STORED, dynamic=True)
        assert not _vmamba_nodes(program)
        for shape in [(2, 3, *STORED), (3, 3, *RESIZED), (2, 3, 8, 32), (2, 3, 17, 19)]:
            x = torch.randn(*shape)
            with torch.no_grad():
                _assert_outputs_close(program.module()(x), module(x), tol=1e-5)


def test_static_onnx_backbone_matches_at_two_sizes(tmp_path):
    """Static ONNX exports at the stored and at a resized grid, each verified in onnxruntime
    to 1e-4; a static file rejects another size with a clear error."""
    pytest.importorskip("onnxruntime")
    module = ExportWrapper(tiny_vim(out_type="featmap", out_indices=(0, 1)), "backbone")
    with single_thread():
        for shape in (STORED, RESIZED):
            out = export_onnx(module, tmp_path / f"vim_{shape[0]}x{shape[1]}.onnx", shape, False)
            (result,) = verify_onnx(out, module, [shape], atol=1e-4, rtol=1e-4)
            assert result["ok"] and result["max_abs_err"] < 1e-4, result
        with pytest.raises(ExportError, match=r"cannot run .* at input shape \(2, 3, 16, 16\)"):
            verify_onnx(out, module, [STORED])


@pytest.mark.slow
def test_dynamic_onnx_classifier_runs_at_several_resolutions(tmp_path):
    """One dynamic ONNX file of the tiny Vim classifier (class-token logits) verified in
    onnxruntime to 1e-4 at the stored grid, two resized grids and a non-multiple of the
    patch size; a change of the PyTorch weights after export is caught. ~25 s."""
    pytest.importorskip("onnxruntime")
    module = ExportWrapper(tiny_vim_classifier(), "classifier")
    with single_thread():
        out = export_onnx(module, tmp_path / "vim_cls.onnx", STORED, dynamic=True)
        shapes = [STORED, RESIZED, (8, 32), (17, 19)]
        results = verify_onnx(out, module, shapes, atol=1e-4, rtol=1e-4)
        assert [r["ok"] for r in results] == [True] * len(shapes), results
        with torch.no_grad():
            module.model.backbone.pos_embed.add_(1e-2)
        with pytest.raises(ExportError, match=r"differs from PyTorch at input \(2, 3, 24, 20\)"):
            verify_onnx(out, module, [RESIZED])


# --- torch.compile ---------------------------------------------------------------------------
def test_bimamba_mixer_compiles_without_graph_breaks():
    mixer = tiny_vim().layers[0].mixer
    hidden = torch.randn(2, 17, mixer.d_model)
    with single_thread():
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(mixer)(hidden)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1
        compiled = torch.compile(mixer, fullgraph=True, backend="aot_eager")
        with torch.no_grad():
            torch.testing.assert_close(compiled(hidden), mixer(hidden), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape, grad",
    [(STORED, False), (RESIZED, False), (RESIZED, True)],
    ids=["stored-grid", "resized-grid", "resized-grid-grad"],
)
def test_tiny_vim_compiles_fullgraph_and_matches_eager(shape, grad):
    """fullgraph torch.compile of the whole backbone, after an eager call, at the stored and a
    resized patch grid."""
    model = tiny_vim(out_type="featmap", out_indices=(0, 1))
    x = torch.randn(2, 3, *shape)
    with single_thread(), torch.set_grad_enabled(grad):
        ref = model(x)
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        _assert_outputs_close(compiled(x), ref, tol=1e-5)
        if grad:  # the gradient reaches the stored position embedding through the resize
            (g_ref,) = torch.autograd.grad(sum(o.sum() for o in ref), model.pos_embed)
            (g_got,) = torch.autograd.grad(sum(o.sum() for o in compiled(x)), model.pos_embed)
            torch.testing.assert_close(g_got, g_ref, rtol=1e-5, atol=1e-5)
            assert g_ref.abs().sum() > 0


# --- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, exc, pattern",
    [
        (
            lambda: torch.randn(1, 3, 3, 16),
            ValueError,
            r"input 3x16 is smaller than the patch size 4",
        ),
        (
            lambda: torch.randn(1, 3, 16, 2),
            ValueError,
            r"input 16x2 is smaller than the patch size 4",
        ),
        (lambda: torch.randn(1, 1, 16, 16), ValueError, r"in_channels=3 .* 1 channels"),
        (lambda: torch.randn(2, 4, 16, 16), ValueError, r"in_channels=3 .* 4 channels"),
        (lambda: torch.zeros(1, 3, 16, 16, dtype=torch.uint8), TypeError, r"uint8.*x\.float\(\)"),
        (lambda: torch.zeros(1, 3, 16, 16, dtype=torch.long), TypeError, r"dtype torch\.int64"),
        (lambda: torch.randn(0, 3, 16, 16), ValueError, r"empty batch \(batch size 0"),
        (lambda: torch.randn(3, 16, 16), ValueError, r"\(B, C, H, W\), got \(3, 16, 16\)"),
    ],
    ids=["h<patch", "w<patch", "1-channel", "4-channel", "uint8", "int64", "empty-batch", "3-d"],
)
def test_vim_rejects_bad_input_clearly(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        tiny_vim()(make())


def test_vim_accepts_the_smallest_and_odd_sizes():
    """One patch (a 1x1 grid: the class token sits before the single patch token) and odd
    sizes that are not multiples of the patch size run and give finite features."""
    model = tiny_vim(out_type="featmap", out_indices=(0, 1))
    for h, w in [(4, 4), (4, 37), (17, 19)]:
        outs = model(torch.randn(1, 3, h, w))
        assert outs[0].shape == (1, 16, (h - 4) // 4 + 1, (w - 4) // 4 + 1)
        assert all(torch.isfinite(o).all() for o in outs)


# --- NaNDetectHook ---------------------------------------------------------------------------
class _Runner:
    """The bits of an mmengine Runner that NaNDetectHook reads."""

    iter, epoch, logger = 0, 0, None

    def __init__(self, model):
        self.model = model


def _nan_message(model, x) -> str:
    from mmvmamba.engine.nan_detect import NaNDetectHook, NonFiniteError

    hook = NaNDetectHook(check_grads=False)
    runner = _Runner(model)
    hook.before_train(runner)
    hook.before_train_iter(runner, 0, None)
    try:
        with pytest.raises(NonFiniteError) as info:
            model(x)
    finally:
        hook.after_train(runner)
    return str(info.value)


def test_names_the_vim_module_that_produced_nan():
    """A NaN weight in the input projection of the *second* block: the first block runs
    finite, and the error names ``layers.1.mixer.in_proj`` as the producer."""
    model = tiny_vim()
    with torch.no_grad():
        model.layers[1].mixer.in_proj.weight[0].fill_(float("nan"))
    msg = _nan_message(model, torch.randn(1, 3, *STORED))
    assert "'layers.1.mixer.in_proj' (Linear)" in msg, msg
    assert "its inputs were all finite, so this module produced them" in msg


def test_nan_from_a_weight_used_in_the_mixer_forward_points_to_the_mixer():
    """``x_proj``/``dt_proj``/``conv1d`` weights are used functionally by BiMambaV2.forward (one
    batched matmul / conv for both directions), so no hook of theirs runs: the first module
    with a non-finite output is ``out_proj`` of that mixer, and the message says the values
    came from its parent's forward (``layers.1.mixer``)."""
    model = tiny_vim()
    with torch.no_grad():
        model.layers[1].mixer.x_proj_b.weight[0].fill_(float("nan"))
    msg = _nan_message(model, torch.randn(1, 3, *STORED))
    assert "'layers.1.mixer.out_proj' (Linear)" in msg, msg
    assert "come from code that runs between modules, in the forward of its parent" in msg


def test_nan_position_embedding_points_to_the_vim_forward():
    """A NaN in ``pos_embed`` (added in Vim.forward, outside any submodule) is first seen at
    the output of ``drop_after_pos`` (the Dropout after the addition, identity in eval), whose
    input was already non-finite: the message points to the parent's (Vim's) forward."""
    model = tiny_vim()
    with torch.no_grad():
        model.pos_embed[0, 3, 0] = float("nan")
    msg = _nan_message(model, torch.randn(1, 3, *STORED))
    assert "'drop_after_pos' (Dropout)" in msg, msg
    assert "in the forward of its parent" in msg

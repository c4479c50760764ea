"""Helpers shared by the ops tests: random selective-scan inputs and a relative-error check."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(
    batch: int,
    dim: int,
    length: int,
    n: int,
    groups: int,
    *,
    dtype: torch.dtype = torch.float32,
    with_d: bool = True,
    with_z: bool = False,
    with_bias: bool = True,
    bc_3d: bool = False,
    dt_scale: float = 1.0,
    requires_grad: bool = True,
) -> dict:
    """Random leaf tensors; A < 0 like the models (-exp(A_log)); delta around softplus^-1(0.1)."""
    g = torch.Generator().manual_seed(1234)

    def rnd(*shape, scale=1.0, shift=0.0):
        t = (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)
        return t.requires_grad_(requires_grad)

    bc_shape = (batch, n, length) if bc_3d else (batch, groups, n, length)
    param_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    a = -torch.exp(torch.randn(dim, n, generator=g, dtype=torch.float64) * 0.5).to(param_dtype)
    return {
        "u": rnd(batch, dim, length),
        "delta": rnd(batch, dim, length, scale=0.5 * dt_scale, shift=-1.0),
        "A": a.requires_grad_(requires_grad),
        "B": rnd(*bc_shape),
        "C": rnd(*bc_shape),
        "D": rnd(dim).to(param_dtype).detach().requires_grad_(requires_grad) if with_d else None,
        "z": rnd(batch, dim, length) if with_z else None,
        "delta_bias": (
            (torch.rand(dim, generator=g, dtype=torch.float64) - 2.0)
            .to(param_dtype)
            .requires_grad_(requires_grad)
            if with_bias
            else None
        ),
    }


def args_of(inputs: dict) -> tuple:
    return tuple(inputs[k] for k in ARG_NAMES)


def leaves(inputs: dict) -> list[tuple[str, torch.Tensor]]:
    return [(k, inputs[k]) for k in ARG_NAMES if inputs[k] is not None]


def grads(out, inputs: dict, seed: int = 7) -> dict:
    """Gradients of <y, w> (+ <last_state, w2>) with fixed random weights, per input name."""
    g = torch.Generator().manual_seed(seed)
    ys = out if isinstance(out, tuple) else (out,)
    loss = sum(
        (y.double() * torch.randn(y.shape, generator=g, dtype=torch.float64)).sum() for y in ys
    )
    names, tensors = zip(*leaves(inputs))
    return dict(zip(names, torch.autograd.grad(loss, tensors)))


def assert_close_rel(actual, expected, rtol: float, atol: float, name: str = "") -> None:
    """|a - e| <= atol + rtol * |e| elementwise, reported with the worst element."""
    actual = actual.detach().double()
    expected = expected.detach().double()
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert torch.isfinite(actual).all(), f"{name}: non-finite values"
    err = (actual - expected).abs() - (atol + rtol * expected.abs())
    worst = err.max().item() if err.numel() else 0.0
    assert worst <= 0, (
        f"{name}: max |diff| {(actual - expected).abs().max().item():.3e} exceeds "
        f"atol {atol} + rtol {rtol} * |expected|"
    )


def run_interpreted(test_file: str, *pytest_args: str) -> str:
    """Run ``test_file``'s tests with pytest in a fresh interpreter with TRITON_INTERPRET=1.

    Triton reads the variable when its jit functions are decorated (at ``import triton``); a
    test process that imported triton in compiled mode re-runs its Triton cases this way.
    Returns pytest's summary line; fails with pytest's output if a test failed.
    """
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, *pytest_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]

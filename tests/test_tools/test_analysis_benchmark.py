"""benchmark.py: the identity-scan patch really replaces the scan, and a small sweep writes its
table, CSV and plot."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("mmpretrain")

from analysis_helpers import assert_png, load_tool, read_csv, write_tiny_config  # noqa: E402

from mmvmamba.analysis.benchmark import BenchSettings  # noqa: E402
from mmvmamba.analysis.scan_hooks import identity_scan  # noqa: E402


def test_identity_scan_replaces_the_scan_only():
    import vmamba_ops
    from mmvmamba.models.layers.ss2d import SS2D

    layer = SS2D(d_model=8, d_state=1, ssm_ratio=1.0).eval()
    x = torch.randn(1, 8, 5, 6)
    with torch.no_grad():
        normal = layer(x)
        with identity_scan(layer) as calls:
            ident = layer(x)
        # by hand: the same layer with y = u in place of the scan
        u = layer.act(layer.conv2d(layer.in_proj(x)))
        merged = vmamba_ops.cross_merge(vmamba_ops.cross_scan(u).view(1, 4, 8, 5, 6))
        expected = layer.out_proj(layer.out_norm(merged))
    assert calls[0] == 1
    torch.testing.assert_close(ident, expected)
    assert not torch.allclose(normal, ident)
    with torch.no_grad():  # the patch is undone on exit
        torch.testing.assert_close(layer(x), normal)


def test_settings_validate():
    with pytest.raises(ValueError, match="batch"):
        BenchSettings(batch=0)
    with pytest.raises(ValueError, match="allocator must be 'system' or 'caching', got 'jemalloc'"):
        BenchSettings(allocator="jemalloc")
    with pytest.raises(ValueError, match="device"):
        BenchSettings(device="tpu")


def test_benchmark_tool_small_sweep(tmp_path):
    cfg = write_tiny_config(tmp_path / "tiny.py")
    out = tmp_path / "out"
    rows, ablation = load_tool("benchmark").main(
        [
            "--models", cfg,
            "--sizes", "32", "64",
            "--batch", "1", "--warmup", "0", "--repeats", "1", "--threads", "1",
            "--ablation-model", cfg, "--ablation-sizes", "32",
            "--out-dir", str(out),
        ]
    )  # fmt: skip
    assert [(r["size"], "error" in r) for r in rows] == [(32, False), (64, False)]
    for row in rows:
        assert row["threads"] == 1 and row["img_s"] > 0 and row["fwdbwd_ms"] > 0
        assert row["fused"] is True  # CPU inference of VMamba runs fused by default
        assert row["mem_fwd_MB"] >= 0 and not math.isnan(row["mem_fwdbwd_MB"])
    csv_rows = read_csv(out / "benchmark.csv")
    assert [int(r["size"]) for r in csv_rows] == [32, 64]
    assert len(read_csv(out / "scan_ablation.csv")) == 1 and ablation[0]["ratio"] > 0
    assert_png(out / "benchmark.png")
    # what the numbers depend on, saved beside them
    env = json.loads((out / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["threads"] == 1
    assert (env["device"], env["precision"], env["batch"], env["repeats"]) == (
        "cpu",
        "float32",
        1,
        1,
    )
    assert env["cpu_fusion"] is True
    assert env["tf32_matmul"] == torch.backends.cuda.matmul.allow_tf32


def test_throughput_targets_only_at_their_sizes():
    """The Swin-T throughput targets (1.0x at 224, 1.5x at 768) are each printed once per
    side-by-side measurement, name their size, and judge the measured ratio."""
    targets = load_tool("benchmark")._targets

    def img_s_lines(*sizes):
        # VMamba-T at 6 img/s, Swin-T at 5: 1.2x at every size
        paired = [dict(size=size, img_s_a=6.0, img_s_b=5.0, ratio=1.2) for size in sizes]
        return [line for line in targets([], [], paired) if "img/s" in line]

    at_224 = (
        "VMamba-T img/s at 224: 6 vs Swin-T 5 = 1.20x, timed side by side (target >= 1.0x): MET"
    )
    at_768 = (
        "VMamba-T img/s at 768: 6 vs Swin-T 5 = 1.20x, timed side by side (target >= 1.5x): MISSED"
    )
    assert img_s_lines(224) == [at_224]
    assert img_s_lines(768) == [at_768]
    assert img_s_lines(224, 768) == [at_224, at_768]
    assert img_s_lines() == []


def test_paired_throughput_times_both_models():
    from mmvmamba.analysis.side_by_side import paired_throughput

    row = paired_throughput("vmamba-t", "swin-t", 32, BenchSettings(warmup=0, repeats=1, threads=1))
    assert row["img_s_a"] > 0 and row["img_s_b"] > 0 and row["threads"] == 1
    assert row["fused_a"] and not row["fused_b"]  # VMamba-T fused on the CPU; Swin has no VSSBlock
    assert row["ratio"] == pytest.approx(row["img_s_a"] / row["img_s_b"])
    # paper-counted multiply-adds at 32 px: VMamba-T's 4.9056 G at 224 scales with the pixel
    # count up to its fixed head (the classifier's 768 x 1000 and the stage-4 map being 1 x 1)
    assert 0 < row["gflops_a"] < 4.9056 * (32 / 224) ** 2 * 1.5
    assert row["peak_gflop_s"] > 0
    for m in "ab":
        assert row[f"use_{m}"] == pytest.approx(
            2 * row[f"gflops_{m}"] * row[f"img_s_{m}"] / row["peak_gflop_s"]
        )


def test_gemm_peak_is_the_best_repeat(monkeypatch):
    """2 m k n flops over the fastest timed repeat, hand-computed for a faked clock."""
    from mmvmamba.analysis import benchmark

    monkeypatch.setattr(benchmark, "time_calls", lambda fn, settings: [0.5, 0.25, 0.4])
    rate = benchmark.gemm_peak_gflop_s(BenchSettings(threads=1), shape=(64, 32, 16))
    assert rate == pytest.approx(2 * 64 * 32 * 16 / 0.25 / 1e9)


def test_gemm_peak_measures_a_real_rate():
    from mmvmamba.analysis.benchmark import gemm_peak_gflop_s

    rate = gemm_peak_gflop_s(BenchSettings(threads=1), shape=(256, 128, 128))
    assert math.isfinite(rate) and rate > 0.01  # any CPU does > 10 MFLOP/s


def test_targets_state_the_arithmetic_rate_needed():
    """1.5x Swin-T needs VMamba-T's use of the GEMM rate to be 1.5 x Swin-T's, scaled by
    their counted work: 1.5 * 50% * 6 / 5 = 90%."""
    targets = load_tool("benchmark")._targets
    paired = [
        dict(size=768, img_s_a=6.0, img_s_b=5.0, ratio=1.2, gflops_a=6.0, gflops_b=5.0,
             peak_gflop_s=100.0, use_a=0.72, use_b=0.5)
    ]  # fmt: skip
    rate_line = [line for line in targets([], [], paired) if "arithmetic rate" in line]
    assert len(rate_line) == 1
    assert "GEMM rate, 100 GFLOP/s)" in rate_line[0]
    assert (
        "VMamba-T 6.0 G at 72%, Swin-T 5.0 G at 50%; 1.5x Swin-T needs VMamba-T at 90%"
        in (rate_line[0])
    )


def test_identity_ablation_refuses_models_without_ss2d(tmp_path):
    from mmvmamba.analysis.benchmark import scan_ablation

    with pytest.raises(RuntimeError, match="no selective-scan mixer"):
        scan_ablation("convnext-t", 32, BenchSettings(warmup=0, repeats=1))


def test_caching_allocator_is_switched_on_before_the_model(tmp_path, monkeypatch):
    """allocator='caching' makes measure() call keep_freed_memory (spied here: the real one
    would change the test process for good; its effect is tested in test_allocator.py), and
    'system' leaves malloc alone; environment() records the choice."""
    from mmvmamba.analysis import allocator, benchmark

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = write_tiny_config(tmp_path / "tiny.py")
    quick = dict(warmup=0, repeats=1, threads=1, train=False, memory=False)
    benchmark.measure(cfg, 32, BenchSettings(**quick))
    assert calls == []
    row = benchmark.measure(cfg, 32, BenchSettings(allocator="caching", **quick))
    assert calls == [1] and row["img_s"] > 0
    assert benchmark.environment(BenchSettings(allocator="caching"))["allocator"] == "caching"
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: False)  # not glibc
    with pytest.raises(RuntimeError, match="needs glibc"):
        benchmark.apply_allocator(BenchSettings(allocator="caching"))


def test_inference_is_timed_in_eval_mode_after_the_memory_pass(monkeypatch):
    """The memory pass trains (its forward+backward peak); every no-grad forward timed after it
    must see the model in eval mode again (dropout / drop-path off), fused or not."""
    from mmvmamba.analysis import benchmark

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.calls = []

        def forward(self, x):
            self.calls.append((torch.is_grad_enabled(), self.training))
            return (self.conv(x),)

    model = Recorder()
    monkeypatch.setattr(benchmark, "build_benchmark_model", lambda spec, size: model)
    settings = BenchSettings(warmup=0, repeats=2, threads=1, train=True, memory=True, fuse=False)
    row = benchmark.measure("recorder", 16, settings)
    no_grad = [training for grad, training in model.calls if not grad]
    assert row["img_s"] > 0 and len(no_grad) >= 3
    assert not any(no_grad), model.calls

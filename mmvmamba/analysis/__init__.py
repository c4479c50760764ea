"""Analysis library behind ``tools/analysis/*.py``: FLOPs, throughput/memory, ERF, SS2D
activation maps, accuracy versus input resolution.

Submodules (import the one you need; nothing here is imported by ``import mmvmamba``):

* :mod:`~mmvmamba.analysis.flops`: :func:`count_flops` (the paper's fvcore method).
* :mod:`~mmvmamba.analysis.benchmark`: :func:`measure`, :func:`scan_ablation`
  (:mod:`~mmvmamba.analysis.side_by_side`: two models timed together;
  :mod:`~mmvmamba.analysis.bench_environment`: what the numbers depend on).
* :mod:`~mmvmamba.analysis.erf`: :func:`compute_erf`, locality statistics.
* :mod:`~mmvmamba.analysis.activation`: the attention-like matrix of a selective scan.
* :mod:`~mmvmamba.analysis.resolution`: top-1 of a classifier at several input sizes.
* :mod:`~mmvmamba.analysis.models`: building configs / arch names / the comparison zoo.
* :mod:`~mmvmamba.analysis.scan_hooks`: replacing or recording the mixers' selective scans
  (VMamba's SS2D, Vim's BiMambaV2) through their ``scan_fn`` attribute.
* :mod:`~mmvmamba.analysis.plotting`: tables, CSV, matplotlib (Agg) figures.
"""

__all__ = [
    "activation",
    "bench_environment",
    "benchmark",
    "erf",
    "flops",
    "models",
    "plotting",
    "resolution",
    "scan_hooks",
    "side_by_side",
]

"""``recbench bench``: speed and efficiency of every model, measured in one process.

- :mod:`recbench.bench.measure`: one model's measurement (samples/s, s/epoch, evaluation time,
  memory, parameters, FLOP efficiency);
- :mod:`recbench.bench.session`: a run of every model on a data set into one record, with progress,
  written after every model and resumed when killed;
- :mod:`recbench.bench.flops`: FLOPs of a training step, the machine's fp32 matmul peak;
- :mod:`recbench.bench.files`: the record's markdown table, atomic writes, resuming, merging;
- :mod:`recbench.bench.data_tools`: an ML-1M-sized ratings file and parse/split timing;
- :mod:`recbench.bench.cli`: the ``recbench bench`` commands (``run``, the default, ``data``,
  ``make-ml1m``, ``merge``; also ``python -m recbench.bench``).

The names below are importable from ``recbench.bench`` directly; they load on first use, so the
command line starts without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "MODEL_FIELDS": "measure",
    "BenchOptions": "measure",
    "bench_datasets": "session",
    "bench_model": "measure",
    "run_bench": "session",
    "count_step_flops": "flops",
    "matmul_peak": "flops",
    "parameter_count": "flops",
    "merge_records": "files",
    "render_markdown": "files",
    "save_bench": "files",
    "write_bench": "files",
    "bench_data": "data_tools",
    "ml1m_like": "data_tools",
    "write_ratings_dat": "data_tools",
}

__all__ = sorted(_WHERE)  # provided by __getattr__


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"recbench.bench.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'recbench.bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])

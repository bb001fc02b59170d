"""The measurement of ``recbench bench``: speed and efficiency of every model, in one process.

Per model, over ``repeats`` fresh fits of ``epochs`` epochs each (medians, since these machines
are noisy):

- training samples/s and seconds per epoch (the training loop's own per-epoch timings; a model
  outside the shared loop, e.g. ``implicit``'s BPR, is timed around ``fit`` and its samples are
  ``len(train) × epochs``, one sampled triple per training pair per iteration);
- evaluation seconds of the ``sampled`` and ``full`` protocols over every evaluated user (the
  evaluator the runner uses, scoring included);
- peak resident memory (and, on CUDA, peak allocated GPU memory), parameter count;
- for PyTorch models, FLOPs per training sample (:mod:`recbench.bench.flops`), and the achieved
  rate ``FLOPs/sample × samples/s`` against the machine's fp32 matrix-product peak, measured in
  the same process at the start and again at the end of the run, so drift shows.

A bench run of several models and data sets, its record files and resuming are in
:mod:`recbench.bench.session`.
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbench.bench.flops import count_step_flops, parameter_count, sync, torch_device
from recbench.bench.stages import stage_rates
from recbench.data.types import Split
from recbench.eval import metrics
from recbench.eval.evaluator import PROTOCOLS, evaluate
from recbench.models.base import ConfigError, FitContext, config_to_dict
from recbench.provenance import PeakMemory
from recbench.runner import Reporter, build_model, seed_everything

__all__ = ["MODEL_FIELDS", "BenchOptions", "bench_model", "median"]

# Every per-model record carries these keys (None where a figure does not apply).
MODEL_FIELDS = (
    "model",
    "status",
    "error",
    "config",
    "repeats",
    "epochs",
    "samples_per_epoch",
    "samples_per_s",
    "s_per_epoch",
    "fit_s",
    "eval_sampled_s",
    "eval_full_s",
    "eval_sampled_first_s",
    "eval_full_first_s",
    "peak_rss_mb",
    "base_rss_mb",
    "peak_gpu_mb",
    "n_params",
    "flops_per_sample",
    "flops_by_op",
    "achieved_flops_per_s",
    "peak_fraction",
    "stages",
    "metrics",
    "raw",
)


@dataclass(frozen=True)
class BenchOptions:
    """What shapes a benchmark run besides the dataset and the models."""

    epochs: int | None = 1  # None: each model's configured default
    repeats: int = 3
    device: str = "cpu"
    protocols: tuple[str, ...] = ("sampled", "full")
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: Path = Path("results/bench")
    data_dir: Path | None = None
    validation: bool = False  # hold out a validation item too (training set as RecBole's LS split)
    split_seed: int = 0
    seed: int = 0
    flops: bool = True
    matmul_n: int | None = None  # None: 2048 on CPU, 8192 on CUDA
    matmul_repeats: int = 5
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    eval_runs: int = 2  # evaluations per protocol after each fit: the first is reported apart
    # (``eval_*_first_s``, cold: lazy caches, first touch), the median of the rest as ``eval_*_s``
    ks: tuple[int, ...] = (10,)

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ConfigError(f"unknown protocol {bad[0]!r}; valid: {', '.join(PROTOCOLS)}")
        if self.eval_runs < 1:
            raise ConfigError("eval_runs must be at least 1")
        if self.repeats < 1:
            raise ConfigError("--repeats must be at least 1")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError("--epochs must be at least 1 (0 on the command line: model default)")


def median(values: Sequence[float | None]) -> float | None:
    """The median of the finite values (None when there is none)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(statistics.median(vals)) if vals else None


def overrides_for(name: str, opts: BenchOptions) -> dict[str, Any]:
    """The config overrides of model ``name``: its ``--set`` values and the bench's ``--epochs``."""
    from recbench.registry import get_model_class

    over = dict(opts.overrides.get(name, {}))
    cfg_fields = set(config_to_dict(get_model_class(name).Config()))
    if opts.epochs is not None and "epochs" in cfg_fields:
        over["epochs"] = opts.epochs
    return over


def _gpu_peak_reset(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def _gpu_peak_mb(dev: Any) -> float | None:
    import torch

    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return None


def _throttled(fn: Callable[[int, int], None], every: float = 0.25) -> Callable[[int, int], None]:
    """``fn(done, total)`` at most every ``every`` seconds (and at an epoch's end): a progress
    bar costs the timed training loop nothing measurable."""
    last = [0.0]

    def call(done: int, total: int) -> None:
        now = time.perf_counter()
        if done >= total or now - last[0] >= every:
            last[0] = now
            fn(done, total)

    return call


def _fit_context(opts: BenchOptions, reporter: Reporter | None, label: str) -> FitContext:
    """The fit's context: the device, and progress hooks when there is a reporter (none: the loop
    runs exactly as the library's default)."""
    if reporter is None:
        return FitContext(device=opts.device)
    return FitContext(
        device=opts.device,
        on_epoch=functools.partial(reporter.epoch, label),
        on_batch=_throttled(functools.partial(reporter.batch, label)),
    )


def bench_model(
    split: Split,
    name: str,
    opts: BenchOptions,
    peak_flops_per_s: float | None = None,
    reporter: Reporter | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Benchmark one model on ``split`` (see the module docstring); a failure is recorded in the
    returned dict (``status = "failed"``, ``error``), never raised. Progress goes to ``reporter``
    under ``label`` (each repeat a fit of that cell)."""
    rec: dict[str, Any] = dict.fromkeys(MODEL_FIELDS)
    rec.update(model=name, status="ok", repeats=opts.repeats, raw=[])
    dev = torch_device(opts.device)
    label = label or name
    try:
        over = overrides_for(name, opts)
        probe = build_model(name, over)
        rec["config"] = config_to_dict(probe.config)
        cfg_epochs = rec["config"].get("epochs")
        rec["epochs"] = int(cfg_epochs) if cfg_epochs is not None else None
        del probe
        gc.collect()
        base = PeakMemory()
        rec["base_rss_mb"] = base._rss_mb()
        peak_rss = 0.0
        peak_gpu: list[float] = []
        model: Any = None
        for r in range(opts.repeats):
            model = None
            gc.collect()
            model = build_model(name, over)
            rng = seed_everything(opts.seed)
            ctx = _fit_context(opts, reporter, label)
            if reporter is not None:
                reporter.cell_start(label, rec["epochs"])
            run: dict[str, Any] = {"repeat": r}
            _gpu_peak_reset(dev)
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                model.fit(split.train, rng, ctx)
                sync(dev)
                run["fit_s"] = time.perf_counter() - t0
                for proto in opts.protocols:
                    if reporter is not None:
                        reporter.phase(label, f"evaluating {proto} (repeat {r + 1}/{opts.repeats})")
                    times = []
                    for _ in range(opts.eval_runs):  # the first call after a fit is cold
                        t1 = time.perf_counter()
                        ranks = evaluate(model, split.train, split.test, proto)
                        sync(dev)
                        times.append(time.perf_counter() - t1)
                    run[f"eval_{proto}_first_s"] = times[0]
                    run[f"eval_{proto}_s"] = median(times[1:] or times)
                    run.setdefault("metrics", {})[proto] = metrics.summarize(ranks, opts.ks)
            peak_rss = max(peak_rss, mem.peak_mb)
            gpu = _gpu_peak_mb(dev)
            if gpu is not None:
                peak_gpu.append(gpu)
            epochs = [h for h in ctx.history if "seconds" in h and "pretrain" not in h]
            run["epochs"] = [
                {
                    "seconds": h["seconds"],
                    "samples": h["samples"],
                    "samples_per_s": h["samples_per_s"],
                    "loss": h.get("loss"),
                }
                for h in epochs
            ]
            rec["raw"].append(run)
        assert model is not None
        rec["n_params"] = parameter_count(model)
        rec["peak_rss_mb"] = peak_rss
        rec["peak_gpu_mb"] = max(peak_gpu) if peak_gpu else None
        rec["fit_s"] = median([r["fit_s"] for r in rec["raw"]])
        for proto in opts.protocols:
            rec[f"eval_{proto}_s"] = median([r[f"eval_{proto}_s"] for r in rec["raw"]])
            rec[f"eval_{proto}_first_s"] = median([r[f"eval_{proto}_first_s"] for r in rec["raw"]])
        rec["metrics"] = rec["raw"][-1].get("metrics", {})
        all_epochs = [e for r in rec["raw"] for e in r["epochs"]]
        if all_epochs:  # the shared training loop's own per-epoch timings
            rec["s_per_epoch"] = median([e["seconds"] for e in all_epochs])
            rec["samples_per_s"] = median([e["samples_per_s"] for e in all_epochs])
            rec["samples_per_epoch"] = int(statistics.median([e["samples"] for e in all_epochs]))
        elif rec["epochs"]:  # a model outside the loop (BPR through implicit): fit / epochs
            rec["samples_per_epoch"] = len(split.train)
            rec["s_per_epoch"] = rec["fit_s"] / rec["epochs"] if rec["fit_s"] else None
            rec["samples_per_s"] = (len(split.train) * rec["epochs"] / rec["fit_s"]) if rec["fit_s"] else None
        if opts.flops and getattr(model, "module", None) is not None and hasattr(model, "batch_loss"):
            fl = count_step_flops(model, split, np.random.default_rng(opts.seed))
            rec["flops_per_sample"] = fl["flops_per_sample"]
            rec["flops_by_op"] = {
                "per_step": fl["by_op"],
                "flops_per_step": fl["flops_per_step"],
                "samples_per_step": fl["samples_per_step"],
            }
            if rec["samples_per_s"]:
                rec["achieved_flops_per_s"] = fl["flops_per_sample"] * rec["samples_per_s"]
                if peak_flops_per_s:
                    rec["peak_fraction"] = rec["achieved_flops_per_s"] / peak_flops_per_s
            stages = stage_rates(model, split, np.random.default_rng(opts.seed), peak_flops_per_s)
            if stages:
                rec["stages"] = stages
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # the bench goes on with the next model; the failure is recorded
        rec["status"] = "failed"
        rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        rec["traceback"] = traceback.format_exc(limit=6)
    finally:
        model = None
        gc.collect()
    return rec

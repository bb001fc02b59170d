"""``recbench bench``: speed and efficiency of every model, measured in one process.

Per model, over ``repeats`` fresh fits of ``epochs`` epochs each (medians, since these machines
are noisy):

- training samples/s and seconds per epoch (the training loop's own per-epoch timings; a model
  outside the shared loop, e.g. ``implicit``'s BPR, is timed around ``fit`` and its samples are
  ``len(train) × epochs``, one sampled triple per training pair per iteration);
- evaluation seconds of the ``sampled`` and ``full`` protocols over every evaluated user (the
  evaluator the runner uses, scoring included);
- peak resident memory (and, on CUDA, peak allocated GPU memory), parameter count;
- for PyTorch models, FLOPs per training sample: one training step (forward + backward of
  ``batch_loss`` on one real batch) counted with :class:`torch.utils.flop_counter.FlopCounterMode`
  and divided by the batch's samples. ``FlopCounterMode`` counts the matrix products
  (``mm``/``addmm``/``bmm``/attention/convolution), not element-wise work or embedding gathers,
  so the achieved rate ``FLOPs/sample × samples/s`` is directly comparable with
- the machine's fp32 matrix-product peak, measured in the same process (median of a few timed
  square ``torch.mm``; at the start and again at the end of the run, so drift shows).

The record is one JSON file ``<dataset>-<device>-<timestamp>.json`` plus a markdown table of the
same name. Nothing here reads global configuration; the CLI is a thin wrapper.

The module also holds the small data tools the benchmark scripts use: an ML-1M-sized ratings
file built from the shared ML-1M pairs (synthetic ratings and timestamps) or generated, and the
timing of parse + preprocess + split of such a file.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.types import Interactions, Split
from recbench.eval import metrics as M
from recbench.eval.evaluator import PROTOCOLS, evaluate
from recbench.models.base import ConfigError, FitContext, Model, config_to_dict
from recbench.runner import PeakMemory, build_model, hardware, seed_everything, versions

__all__ = [
    "MODEL_FIELDS",
    "BenchOptions",
    "bench_data",
    "bench_model",
    "count_step_flops",
    "matmul_peak",
    "merge_records",
    "ml1m_like",
    "parameter_count",
    "render_markdown",
    "run_bench",
    "write_bench",
    "write_ratings_dat",
]

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


# ----------------------------------------------------------------------------- helpers


def _median(values: Sequence[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(statistics.median(vals)) if vals else None


def _torch_device(device: str) -> Any:
    from recbench.training import resolve_device

    return resolve_device(device)


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_peak(
    device: str = "cpu", n: int | None = None, repeats: int = 5, warmup: int = 2
) -> dict[str, Any]:
    """The machine's fp32 matrix-product rate: median of ``repeats`` timed ``torch.mm`` of two
    random ``n × n`` float32 matrices (``2 n³`` FLOPs each) after ``warmup`` untimed ones.
    On CUDA, TF32 is switched off for the measurement (a true fp32 peak) and restored after."""
    import torch

    dev = _torch_device(device)
    n = int(n or (8192 if dev.type == "cuda" else 2048))
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev)
    b = torch.randn(n, n, generator=g).to(dev)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        times = []
        for k in range(warmup + repeats):
            _sync(dev)
            t0 = time.perf_counter()
            c = torch.mm(a, b)
            _sync(dev)
            dt = time.perf_counter() - t0
            if k >= warmup:
                times.append(dt)
        del c
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    flops = 2.0 * n**3
    med = float(statistics.median(times))
    return {
        "n": n,
        "dtype": "float32",
        "flops": flops,
        "seconds": times,
        "median_s": med,
        "flops_per_s": flops / med,
        "best_flops_per_s": flops / min(times),
        "torch_threads": torch.get_num_threads(),
    }


def parameter_count(model: Model) -> int | None:
    """Trainable numbers of a fitted model: the module's parameters for PyTorch models, the
    float arrays a model keeps as its learned state otherwise (e.g. BPR's factor matrices)."""
    module = getattr(model, "module", None)
    if module is not None:
        return int(sum(p.numel() for p in module.parameters()))
    arrays = [
        v
        for k, v in vars(model).items()
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not k.startswith("_")
    ]
    return int(sum(a.size for a in arrays)) if arrays else None


def _one_batch(model: Any, split: Split, rng: np.random.Generator) -> tuple[tuple[Any, ...], int]:
    """One real training batch for ``model.batch_loss``, as the shared loop builds it, and the
    number of samples it holds (the loop's count: instances for pointwise models, positives ×
    (1 + negatives) for pairwise ones)."""
    import torch

    from recbench.training import sample_negatives

    train = split.train
    bs = int(model.config.batch_size)
    dev = model.device
    if model.sampling == "pointwise":
        inst = model.epoch_instances(train, rng)
        sl = slice(0, min(bs, len(inst.users)))
        args = (
            torch.from_numpy(inst.users[sl]).to(dev),
            torch.from_numpy(inst.items[sl]).to(dev),
            torch.from_numpy(inst.targets[sl]).to(dev),
        )
        return args, len(inst.users[sl])
    n_neg = int(model.config.n_negatives)
    perm = rng.permutation(len(train))[:bs]
    pu = train.users.astype(np.int64)[perm]
    pi = train.items.astype(np.int64)[perm]
    negs = sample_negatives(train, pu, n_neg, rng)
    args = (
        torch.from_numpy(pu).to(dev),
        torch.from_numpy(pi).to(dev),
        torch.ones(len(pu), device=dev),
        torch.from_numpy(negs).to(dev),
    )
    return args, len(pu) * (1 + n_neg)


def count_step_flops(
    model: Any, split: Split, rng: np.random.Generator | None = None
) -> dict[str, Any]:
    """FLOPs of one training step (forward + backward of ``batch_loss`` on one real batch) of a
    fitted PyTorch model, counted with ``FlopCounterMode``; the model's parameters, buffers
    (e.g. batch-norm statistics) and caches are restored afterwards, so it can run between
    fitting and evaluating."""
    from torch.utils.flop_counter import FlopCounterMode

    module = model.module
    assert module is not None, "count_step_flops needs a fitted PyTorch model"
    rng = rng if rng is not None else np.random.default_rng(0)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    was_training = module.training
    model.invalidate_cache()
    module.train()
    try:
        args, samples = _one_batch(model, split, rng)
        counter = FlopCounterMode(display=False)
        with counter:
            loss = model.batch_loss(*args)
            loss.backward()
        total = int(counter.get_total_flops())
        by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    finally:
        module.zero_grad(set_to_none=True)
        module.load_state_dict(state)
        module.train(was_training)
        model.invalidate_cache()
    return {
        "flops_per_step": total,
        "samples_per_step": samples,
        "flops_per_sample": total / max(samples, 1),
        "by_op": by_op,
    }


# ----------------------------------------------------------------------------- one model


def _overrides_for(name: str, opts: BenchOptions) -> dict[str, Any]:
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


def bench_model(
    split: Split, name: str, opts: BenchOptions, peak_flops_per_s: float | None = None
) -> dict[str, Any]:
    """Benchmark one model on ``split`` (see the module docstring); a failure is recorded in the
    returned dict (``status = "failed"``, ``error``), never raised."""
    rec: dict[str, Any] = dict.fromkeys(MODEL_FIELDS)
    rec.update(model=name, status="ok", repeats=opts.repeats, raw=[])
    dev = _torch_device(opts.device)
    try:
        over = _overrides_for(name, opts)
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
            ctx = FitContext(device=opts.device)
            run: dict[str, Any] = {"repeat": r}
            _gpu_peak_reset(dev)
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                model.fit(split.train, rng, ctx)
                _sync(dev)
                run["fit_s"] = time.perf_counter() - t0
                for proto in opts.protocols:
                    times = []
                    for _ in range(opts.eval_runs):  # the first call after a fit is cold
                        t1 = time.perf_counter()
                        ranks = evaluate(model, split.train, split.test, proto)
                        _sync(dev)
                        times.append(time.perf_counter() - t1)
                    run[f"eval_{proto}_first_s"] = times[0]
                    run[f"eval_{proto}_s"] = _median(times[1:] or times)
                    run.setdefault("metrics", {})[proto] = M.summarize(ranks, opts.ks)
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
        rec["fit_s"] = _median([r["fit_s"] for r in rec["raw"]])
        for proto in opts.protocols:
            rec[f"eval_{proto}_s"] = _median([r[f"eval_{proto}_s"] for r in rec["raw"]])
            rec[f"eval_{proto}_first_s"] = _median([r[f"eval_{proto}_first_s"] for r in rec["raw"]])
        rec["metrics"] = rec["raw"][-1].get("metrics", {})
        all_epochs = [e for r in rec["raw"] for e in r["epochs"]]
        if all_epochs:  # the shared training loop's own per-epoch timings
            rec["s_per_epoch"] = _median([e["seconds"] for e in all_epochs])
            rec["samples_per_s"] = _median([e["samples_per_s"] for e in all_epochs])
            rec["samples_per_epoch"] = int(statistics.median([e["samples"] for e in all_epochs]))
        elif rec["epochs"]:  # a model outside the loop (BPR through implicit): fit / epochs
            rec["samples_per_epoch"] = len(split.train)
            rec["s_per_epoch"] = rec["fit_s"] / rec["epochs"] if rec["fit_s"] else None
            rec["samples_per_s"] = (
                (len(split.train) * rec["epochs"] / rec["fit_s"]) if rec["fit_s"] else None
            )
        if (
            opts.flops
            and getattr(model, "module", None) is not None
            and hasattr(model, "batch_loss")
        ):
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


# ----------------------------------------------------------------------------- the run


def run_bench(
    dataset: str,
    models: list[str],
    opts: BenchOptions,
    split_loader: Callable[[str], Split] | None = None,
    on_model: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Benchmark ``models`` on ``dataset``; returns the whole record (not yet written)."""
    from recbench.registry import get_model_class

    for m in models:
        get_model_class(m)
    for m in opts.overrides:
        if m not in models:
            raise ConfigError(
                f"--set names model {m!r}, which is not in --models ({', '.join(models)})"
            )
        build_model(m, _overrides_for(m, opts))
    dev = _torch_device(opts.device)
    if opts.threads:
        import torch

        torch.set_num_threads(int(opts.threads))
    t0 = time.perf_counter()
    if split_loader is None:
        from recbench.data import load_split

        split = load_split(
            dataset, seed=opts.split_seed, validation=opts.validation, data_dir=opts.data_dir
        )
    else:
        split = split_loader(dataset)
    load_s = time.perf_counter() - t0
    peak_start = matmul_peak(opts.device, opts.matmul_n, opts.matmul_repeats)
    results = []
    for m in models:
        rec = bench_model(split, m, opts, peak_start["flops_per_s"])
        results.append(rec)
        if on_model is not None:
            on_model(rec)
    peak_end = matmul_peak(opts.device, opts.matmul_n, opts.matmul_repeats)
    peak = _median([peak_start["flops_per_s"], peak_end["flops_per_s"]])
    for rec in results:  # the fraction against the run's median peak (start and end)
        if rec.get("achieved_flops_per_s") and peak:
            rec["peak_fraction"] = rec["achieved_flops_per_s"] / peak
    now = datetime.now(UTC)
    return {
        "kind": "recbench-bench",
        "format": 1,
        "dataset": dataset,
        "device": opts.device,
        "device_resolved": str(dev),
        "created": now.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "options": {
            "epochs": opts.epochs,
            "repeats": opts.repeats,
            "protocols": list(opts.protocols),
            "overrides": opts.overrides,
            "validation": opts.validation,
            "split_seed": opts.split_seed,
            "seed": opts.seed,
            "threads": opts.threads,
            "eval_runs": opts.eval_runs,
        },
        "split_info": {
            "fingerprint": split.fingerprint,
            "n_users": split.n_users,
            "n_items": split.n_items,
            "n_train": len(split.train),
            "n_eval_users": len(split.test),
            "n_candidates": int(split.test.candidates.shape[1]),
            "load_s": load_s,
        },
        "hardware": hardware(opts.device),
        "versions": versions(),
        "git": _git_state(),
        "load_average": _loadavg(),
        "matmul_peak": {"start": peak_start, "end": peak_end, "flops_per_s": peak},
        "models": results,
    }


def _git_state() -> dict[str, Any] | None:
    """The checkout's commit and modified files (the code a benchmark ran), when in a git tree."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {
        "commit": commit.stdout.strip(),
        "modified": [ln[3:] for ln in status.stdout.splitlines()],
    }


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- output


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def _si(v: float | None) -> str:
    if v is None:
        return "—"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _eval_cell(m: dict[str, Any], proto: str) -> str:
    warm, first = m.get(f"eval_{proto}_s"), m.get(f"eval_{proto}_first_s")
    return _fmt(warm) if first is None or first == warm else f"{_fmt(warm)} ({_fmt(first)})"


def render_markdown(record: dict[str, Any]) -> str:
    """The record as a markdown table, with the run's context above it."""
    peak = record["matmul_peak"]
    hw = record["hardware"]
    si = record["split_info"]
    head = [
        f"# recbench bench: {record['dataset']} on {record['device_resolved']} ({record['created']})",
        "",
        f"- machine: {hw.get('gpu') or hw.get('cpu')}, {hw.get('cores')} cores, torch threads {hw.get('torch_threads')}; "
        f"load average {record.get('load_average')}",
        f"- data: {si['n_users']:,} users × {si['n_items']:,} items, {si['n_train']:,} training pairs, "
        f"{si['n_eval_users']:,} evaluated users, {si['n_candidates']} sampled candidates",
        f"- fp32 matmul peak ({peak['start']['n']}³ torch.mm, median of {len(peak['start']['seconds'])}): "
        f"{_si(peak['start']['flops_per_s'])}FLOP/s at the start, {_si(peak['end']['flops_per_s'])}FLOP/s at the end",
        f"- options: {json.dumps(record['options'], sort_keys=True)}",
        "",
    ]
    cols = [
        "model",
        "status",
        "epochs",
        "samples/epoch",
        "samples/s",
        "s/epoch",
        "fit s",
        "sampled eval s (first call)",
        "full eval s (first call)",
        "peak RSS MB",
        "peak GPU MB",
        "params",
        "FLOPs/sample",
        "achieved FLOP/s",
        "% of peak",
        "HR@10",
        "NDCG@10",
        "full HR@10",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m in record["models"]:
        met = m.get("metrics") or {}
        samp, full = met.get("sampled", {}), met.get("full", {})
        frac = m.get("peak_fraction")
        row = [
            m["model"],
            m["status"] if m["status"] == "ok" else f"failed: {m.get('error')}",
            _fmt(m.get("epochs")),
            _fmt(m.get("samples_per_epoch")),
            _si(m.get("samples_per_s")),
            _fmt(m.get("s_per_epoch")),
            _fmt(m.get("fit_s")),
            _eval_cell(m, "sampled"),
            _eval_cell(m, "full"),
            _fmt(m.get("peak_rss_mb"), ".0f"),
            _fmt(m.get("peak_gpu_mb"), ".0f"),
            _si(m.get("n_params")),
            _si(m.get("flops_per_sample")),
            _si(m.get("achieved_flops_per_s")),
            "—" if frac is None else f"{100 * frac:.1f}",
            _fmt(samp.get("hr@10"), ".4f"),
            _fmt(samp.get("ndcg@10"), ".4f"),
            _fmt(full.get("hr@10"), ".4f"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(head + lines) + "\n"


def write_bench(record: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``<dataset>-<device>-<timestamp>.json`` and ``.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = record["created"].replace(":", "").replace("-", "").replace("+0000", "Z")
    dev = record["device_resolved"].replace(":", "")
    stem = f"{record['dataset']}-{dev}-{stamp}"
    path = out / f"{stem}.json"
    k = 1
    while path.exists():  # two runs in the same second never overwrite each other
        path = out / f"{stem}-{k}.json"
        k += 1
    path.write_text(json.dumps(record, indent=1, sort_keys=False, default=_json_default) + "\n")
    md = path.with_suffix(".md")
    md.write_text(render_markdown(record))
    return path, md


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


# ----------------------------------------------------------------------------- data tools

# ML-1M's rating distribution (share of 1..5 stars) and timestamp range, for synthetic values.
_ML1M_RATING_P = (0.0562, 0.1075, 0.2612, 0.3489, 0.2262)
_ML1M_TS = (956_703_932, 1_046_454_590)


def ml1m_like(
    pairs: Path | None = None,
    seed: int = 0,
    n_users: int = 6040,
    n_items: int = 3706,
    n_ratings: int = 1_000_209,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(user ids, item ids, ratings, timestamps)`` of an ML-1M-sized data set, 1-based ids.

    From ``pairs`` (the shared ``pairs.parquet``: ML-1M's user–movie pairs as strings) when given,
    with synthetic ratings (ML-1M's star distribution) and timestamps (uniform over ML-1M's
    range); otherwise generated by :func:`recbench.data.make_synthetic` at ``n_users × n_items``
    with about ``n_ratings`` interactions."""
    rng = np.random.default_rng(seed)
    if pairs is not None:
        import pyarrow.parquet as pq

        t = pq.read_table(pairs)
        users = np.asarray(t.column(0).to_numpy(zero_copy_only=False)).astype(np.int64)
        items = np.asarray(t.column(1).to_numpy(zero_copy_only=False)).astype(np.int64)
    else:
        from recbench.data.synthetic import make_synthetic

        d = make_synthetic(
            n_users=n_users,
            n_items=n_items,
            mean_interactions=n_ratings / n_users,
            seed=seed,
            name="ml1m-like",
        )
        users = d.users.astype(np.int64) + 1
        items = d.items.astype(np.int64) + 1
    n = len(users)
    ratings = rng.choice(
        np.arange(1, 6), size=n, p=np.asarray(_ML1M_RATING_P) / sum(_ML1M_RATING_P)
    )
    ts = rng.integers(*_ML1M_TS, size=n)
    return users, items, ratings.astype(np.int64), ts.astype(np.int64)


def write_ratings_dat(
    path: Path, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, timestamps: np.ndarray
) -> Path:
    """Write ML-1M's ``ratings.dat`` format (``user::item::rating::timestamp``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [np.asarray(c, dtype=np.int64).tolist() for c in (users, items, ratings, timestamps)]
    path.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in zip(*cols, strict=True)))
    return path


def bench_data(
    path: Path, dataset: str = "ml-1m", repeats: int = 3, n_negatives: int = 99
) -> dict[str, Any]:
    """Seconds to parse, preprocess and split the ratings file at ``path`` in ``dataset``'s
    format (medians over ``repeats``; the file is read from disk each time)."""
    from recbench.data import get_spec, leave_one_out
    from recbench.data.parse import parse_file
    from recbench.data.preprocess import preprocess

    spec = get_spec(dataset)
    assert spec.format is not None
    runs = []
    data: Interactions | None = None
    with PeakMemory() as mem:
        for _ in range(repeats):
            data = None
            gc.collect()
            t0 = time.perf_counter()
            parsed = parse_file(path, spec.format, spec.rating_values)
            t1 = time.perf_counter()
            data, _report = preprocess(parsed, dataset, spec.rating_values)
            t2 = time.perf_counter()
            split = leave_one_out(data, seed=0, n_negatives=n_negatives)
            t3 = time.perf_counter()
            runs.append(
                {
                    "parse_s": t1 - t0,
                    "preprocess_s": t2 - t1,
                    "split_s": t3 - t2,
                    "total_s": t3 - t0,
                }
            )
    assert data is not None
    return {
        "file": str(path),
        "rows": len(parsed),
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_train": len(split.train),
        **{
            k: _median([r[k] for r in runs])
            for k in ("parse_s", "preprocess_s", "split_s", "total_s")
        },
        "runs": runs,
        "peak_rss_mb": mem.peak_mb,
    }


# ----------------------------------------------------------------------------- merging


def merge_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One record from several runs on the same data and device (e.g. one process per model, as
    ``benchmarks/gpu.sh`` runs them): the first record's context, every record's models, each
    run's own matmul peak kept beside its models (``peak_fraction`` is always against the peak
    measured in the model's own process)."""
    if not records:
        raise ValueError("nothing to merge")
    out = json.loads(json.dumps(records[0], default=_json_default))
    out["models"] = []
    out["runs"] = []
    for rec in records:
        out["runs"].append(
            {
                "created": rec["created"],
                "command": rec["command"],
                "matmul_peak": rec["matmul_peak"],
                "load_average": rec.get("load_average"),
                "models": [m["model"] for m in rec["models"]],
            }
        )
        out["models"].extend(rec["models"])
    peaks = [
        r["matmul_peak"]["flops_per_s"] for r in records if r["matmul_peak"].get("flops_per_s")
    ]
    out["matmul_peak"]["flops_per_s"] = _median(peaks)
    return out


def _main(argv: Sequence[str] | None = None) -> int:
    """Tools for the benchmark scripts (``python -m recbench.bench ...``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m recbench.bench")
    sub = p.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser(
        "make-ml1m", help="write an ML-1M-sized ratings.dat (from pairs.parquet, else generated)"
    )
    mk.add_argument("out", type=Path)
    mk.add_argument("--pairs", type=Path, default=None)
    mk.add_argument("--users", type=int, default=6040)
    mk.add_argument("--items", type=int, default=3706)
    mk.add_argument("--ratings", type=int, default=1_000_209)
    mk.add_argument("--seed", type=int, default=0)
    db = sub.add_parser("data", help="time parse + preprocess + split of a ratings file")
    db.add_argument("file", type=Path)
    db.add_argument("--dataset", default="ml-1m")
    db.add_argument("--repeats", type=int, default=3)
    db.add_argument("--json", type=Path, default=None)
    mg = sub.add_parser("merge", help="merge bench JSON records into one JSON + markdown")
    mg.add_argument("out", type=Path)
    mg.add_argument("records", type=Path, nargs="*")
    a = p.parse_args(argv)
    if a.cmd == "make-ml1m":
        pairs = a.pairs if a.pairs is not None and a.pairs.exists() else None
        t0 = time.perf_counter()
        cols = ml1m_like(pairs, a.seed, a.users, a.items, a.ratings)
        write_ratings_dat(a.out, *cols)
        print(
            json.dumps(
                {
                    "file": str(a.out),
                    "rows": len(cols[0]),
                    "source": str(pairs) if pairs else "synthetic",
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
        )
    elif a.cmd == "data":
        res = bench_data(a.file, a.dataset, a.repeats)
        text = json.dumps(res, indent=1, default=_json_default)
        if a.json:
            a.json.write_text(text + "\n")
        print(text)
    else:
        recs = [json.loads(f.read_text()) for f in a.records if f.exists()]
        if not recs:
            print("no records to merge", file=sys.stderr)
            return 1
        merged = merge_records(recs)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(merged, indent=1, default=_json_default) + "\n")
        a.out.with_suffix(".md").write_text(render_markdown(merged))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())

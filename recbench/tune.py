"""``recbench tune``: hyperparameter search on the validation split, the same budget per model.

- The search space of each model is data (``recbench/search_spaces.toml``); ``--grid
  MODEL.PARAM=v1,v2,...`` replaces (or adds) one parameter's values for one call.
- The search is the grid of all combinations, or a seeded random subset of it of size
  ``--trials`` when that is smaller (the default budget, ``[budget].trials``, is the same for
  every model, and every default grid has that many points).
- Every trial is an ordinary ``recbench run`` cell on the split *with a validation item*
  (``validation=True``), tagged ``{"purpose": "tune"}``: its records live beside the others, so a
  killed search resumes, and ``recbench report`` never shows them.
- A trial's score is the validation metric (NDCG@10 by default) averaged over users and seeds,
  computed from ``record.ranks["validation/sampled"]`` only: :func:`validation_score` is the one
  place that reads a trial's ranks, and it never touches the test ranks.
- The best configuration per (dataset, model), the validation score and every trial go to
  ``OUT/tuned/<dataset>/<model>.json``; ``recbench run --tuned`` applies it (an explicit ``--set``
  wins).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recbench.atomic import write_bytes_atomic
from recbench.data.types import Split
from recbench.eval.metrics import per_user
from recbench.models.base import ConfigError, config_to_dict
from recbench.plan import (  # noqa: F401 - the tuned-config store, re-exported for `recbench.tune` users
    default_space,
    execute,
    load_search_spaces,
    load_tuned,
    resolve_config,
    tuned_overrides,
    tuned_path,
)
from recbench.results import Record
from recbench.runner import Cell, Reporter, RunOptions, SplitSpec

VALIDATION_ROLE = "validation/sampled"
TUNE_TAG = {"purpose": "tune"}


# ----------------------------------------------------------------------------- search spaces


def default_budget(spaces: dict[str, Any] | None = None) -> tuple[int, str]:
    b = (spaces or load_search_spaces()).get("budget", {})
    return int(b.get("trials", 10)), str(b.get("metric", "ndcg@10"))


def split_values(text: str) -> list[str]:
    """``"0.1,0.01"`` → ``["0.1", "0.01"]``; commas inside parentheses or brackets stay
    (``"(256,64),(128,)"`` → ``["(256,64)", "(128,)"]``)."""
    out, depth, cur = [], 0, []
    for c in text:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur).strip())
    return [v for v in out if v]


def parse_grid(items: list[str]) -> dict[str, dict[str, list[str]]]:
    """``["opeci.learning_rate=0.001,0.01"]`` → ``{"opeci": {"learning_rate": ["0.001", "0.01"]}}``."""
    out: dict[str, dict[str, list[str]]] = {}
    for item in items:
        lhs, eq, values = item.partition("=")
        model, dot, param = lhs.partition(".")
        vals = split_values(values)
        if not eq or not dot or not model.strip() or not param.strip() or not vals:
            raise ConfigError(f"--grid {item!r}: expected MODEL.PARAM=V1,V2,..., e.g. opeci.learning_rate=0.001,0.01")
        out.setdefault(model.strip().lower(), {})[param.strip()] = vals
    return out


def search_space(
    model: str, grid: dict[str, list[Any]] | None = None, spaces: dict[str, Any] | None = None
) -> dict[str, list[Any]]:
    """The default space with ``grid`` replacing or adding parameters; every value checked
    against the model's config (an unknown parameter or ill-typed value is a ConfigError)."""
    space = default_space(model, spaces)
    space.update(grid or {})
    for param, values in space.items():
        if not values:
            raise ConfigError(f"{model}.{param}: empty list of values")
        for v in values:
            resolve_config(model, sets={param: v})
    return space


def candidates(space: dict[str, list[Any]], trials: int, seed: int = 0) -> tuple[list[dict[str, Any]], int]:
    """``(trial configs, grid size)``: the whole grid (parameters in sorted order) when it has at
    most ``trials`` points, else a seeded random subset of ``trials`` points (grid order kept)."""
    from sklearn.model_selection import ParameterGrid  # sorted parameter names, last varies fastest

    if trials < 1:
        raise ConfigError(f"--trials {trials}: need at least one trial")
    grid = ParameterGrid(space)
    if len(grid) <= trials:
        return list(grid), len(grid)
    idx = np.sort(np.random.default_rng(seed).choice(len(grid), size=trials, replace=False))
    return [grid[int(i)] for i in idx], len(grid)


# ----------------------------------------------------------------------------- scoring


def validation_score(rec: Record, metric: str = "ndcg@10") -> float:
    """The record's validation metric, from its validation ranks only (never the test ranks).
    NaN for a failed record; an error for one without validation ranks."""
    if rec.status != "ok":
        return float("nan")
    ranks = rec.ranks.get(VALIDATION_ROLE)
    if ranks is None:
        raise ConfigError(
            f"{rec['model']} seed {rec['seed']}: the record has no validation ranks (tuning needs validation=True)"
        )
    return float(per_user(ranks, metric).mean())


# ----------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class TuneOptions:
    seeds: tuple[int, ...] = (0,)
    trials: int | None = None  # None: the data file's budget
    search_seed: int = 0
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)  # --set: every trial
    grid: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # --grid
    out: Path = Path("results")
    split_seed: int = 0
    device: str = "cpu"
    force: bool = False
    data_dir: Path | None = None
    metric: str | None = None  # None: the data file's metric
    jobs: int = 1  # trials (cells) at a time, in worker processes
    early_stopping: int = 0  # patience (epochs) on the validation metric inside each trial; 0: off
    threads: int = 1  # torch threads per worker
    checkpoint: bool = True


def plan(
    model: str, opts: TuneOptions, spaces: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], int, dict[str, list[Any]]]:
    """``(trials, grid size, space)`` for one model, every value checked; no work done."""
    spaces = spaces or load_search_spaces()
    budget, _ = default_budget(spaces)
    fixed = opts.fixed.get(model, {})
    space = search_space(model, opts.grid.get(model), spaces)
    clash = sorted(set(space) & set(fixed))
    if clash:
        raise ConfigError(f"{model}.{clash[0]} is both searched (--grid or the default space) and fixed with --set")
    resolve_config(model, sets=fixed)
    trials, size = candidates(space, opts.trials if opts.trials is not None else budget, opts.search_seed)
    return trials, size, space


def tune(
    dataset: str,
    model: str,
    opts: TuneOptions,
    reporter: Reporter | None = None,
    split_loader: Callable[[str], Split] | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the search for one (dataset, model); write and return the tuned file."""
    spaces = load_search_spaces()
    budget, default_metric = default_budget(spaces)
    metric = opts.metric or default_metric
    trials, size, space = plan(model, opts, spaces)
    fixed = opts.fixed.get(model, {})
    run_opts = RunOptions(
        seeds=opts.seeds,
        out=opts.out,
        force=opts.force,
        device=opts.device,
        validation=True,
        split_seed=opts.split_seed,
        data_dir=opts.data_dir,
        jobs=opts.jobs,
        threads=opts.threads,
        checkpoint=opts.checkpoint,
    )
    spec = SplitSpec(dataset, opts.split_seed, validation=True)
    split = split_loader(dataset) if split_loader is not None else None
    if split is not None and split.validation is None:
        raise ConfigError(f"{dataset}: tuning needs a split with a validation item (validation=True)")
    configs = [resolve_config(model, sets={**fixed, **params}) for params in trials]
    cells = [
        # no test protocol: a trial evaluates (and records) the validation item only
        Cell(
            spec,
            model,
            cfg,
            seed,
            (),
            early_stopping=opts.early_stopping if hasattr(cfg, "epochs") else 0,
            tags=dict(TUNE_TAG),
        )
        for cfg in configs
        for seed in opts.seeds
    ]
    recs = execute(cells, run_opts, reporter, (lambda _name: split) if split is not None else None)
    fingerprint = str(recs[0]["split"]) if recs else ""
    results = []
    for k, (params, config) in enumerate(zip(trials, configs, strict=True)):
        trial_recs = recs[k * len(opts.seeds) : (k + 1) * len(opts.seeds)]
        per_seed = {int(r["seed"]): validation_score(r, metric) for r in trial_recs}
        scores = [v for v in per_seed.values() if not np.isnan(v)]
        cfg = config_to_dict(config)
        trial = {
            "params": {p: _jsonable(cfg[p]) for p in params},  # typed, as the model read them
            "config": cfg,
            "score": float(np.mean(scores)) if len(scores) == len(trial_recs) else float("nan"),
            "per_seed": {str(s_): v for s_, v in per_seed.items()},
            "status": "ok" if len(scores) == len(trial_recs) else "failed",
            "errors": [r.data.get("error") for r in trial_recs if r.status != "ok"],
            "records": [
                str(r.path.relative_to(opts.out))
                if r.path is not None and r.path.is_relative_to(opts.out)
                else str(r.path)
                for r in trial_recs
            ],
        }
        results.append(trial)
        if on_trial is not None:
            on_trial(trial)
    ok = [t for t in results if t["status"] == "ok"]
    if not ok:
        raise ConfigError(
            f"{dataset}/{model}: every trial failed "
            f"({results[0]['errors'][0] if results and results[0]['errors'] else 'no trial'})"
        )
    best = max(ok, key=lambda t: t["score"])  # first of equal scores: grid order
    doc = {
        "dataset": dataset,
        "model": model,
        "metric": f"validation/sampled {metric}",
        "best": {
            "params": best["params"],
            "overrides": {**{k: _jsonable(best["config"][k]) for k in fixed}, **best["params"]},
            "config": best["config"],
            "score": best["score"],
        },
        "fixed": {k: _jsonable(best["config"][k]) for k in fixed},
        "search_space": {k: [_jsonable(v) for v in vs] for k, vs in space.items()},
        "grid_size": size,
        "n_trials": len(results),
        "budget": opts.trials if opts.trials is not None else budget,
        "search_seed": opts.search_seed,
        "seeds": list(opts.seeds),
        "split": fingerprint,
        "split_seed": opts.split_seed,
        "trials": results,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = tuned_path(opts.out, dataset, model)
    if _unchanged_but_created(path, doc):  # a resumed search that found nothing new: keep the file
        doc["created"] = json.loads(path.read_text())["created"]
    else:
        write_bytes_atomic(path, (json.dumps(doc, indent=1, default=str) + "\n").encode())
    doc["path"] = str(path)
    return doc


def _unchanged_but_created(path: Path, doc: dict[str, Any]) -> bool:
    """Does ``path`` already hold ``doc``, its creation time aside?"""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    new = json.loads(json.dumps(doc, default=str))
    return isinstance(old, dict) and {**old, "created": None} == {**new, "created": None}


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def trials_table(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials sorted by score (best first), for printing."""
    rows = []
    for t in doc["trials"]:
        rows.append({**{k: v for k, v in t["params"].items()}, "validation": t["score"], "status": t["status"]})
    return sorted(rows, key=lambda r: -(r["validation"] if not np.isnan(r["validation"]) else -1e9))


def is_tune_record(rec: Record) -> bool:
    return (rec.data.get("tags") or {}).get("purpose") == "tune"

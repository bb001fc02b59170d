"""Where the validation-only tuning of issue 13 stands: one row per (data set, model) with every
trial's validation NDCG@10 (and the epochs it ran before early stopping), and the chosen
configuration where ``recbench tune`` has finished. Read from the committed trial records and
``tuned/`` files; only the trials' validation ranks are used (a trial stores no test ranks).

    python benchmarks/tuning_status.py --results results
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from recbench.plan import resolve_config
from recbench.results import iter_records, read_record
from recbench.tune import default_space, is_tune_record, validation_score


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _epochs(n: int) -> str:
    return f" ({n})" if n else ""


def status(results: Path, metric: str = "ndcg@10") -> str:
    trials: dict[tuple[str, str], list[tuple[dict, float, int]]] = defaultdict(list)
    for head in iter_records(results, with_ranks=False):
        if is_tune_record(head):
            rec = read_record(head.path)  # with its ranks
            over = {k: v for k, v in (rec.data.get("overrides") or {}).items() if k != "epochs"}
            epochs = int((rec.data.get("timing") or {}).get("epochs_run") or 0)
            trials[(rec["dataset"], rec["model"])].append((over, validation_score(rec, metric), epochs))
    lines = [
        f"| data set | model | validation {metric.upper()} per trial (epochs run) | tuned: best |",
        "|---|---|---|---|",
    ]
    for (dataset, model), rows in sorted(trials.items()):
        space = default_space(model)
        on_grid = [r for r in rows if set(r[0]) <= set(space)]
        off_grid = [r for r in rows if not set(r[0]) <= set(space)]
        key = next(iter(space), "learning_rate")
        default = getattr(resolve_config(model), key, None)
        value = {id(r): r[0].get(key, default) for r in on_grid}
        on_grid.sort(key=lambda r: float(value[id(r)] or 0.0))
        short = key.replace("learning_rate", "lr")
        cells = [f"{short} {_fmt(value[id(r)])}: {r[1]:.3f}{_epochs(r[2])}" for r in on_grid]
        cells += [
            f"off the grid {', '.join(f'{k}={_fmt(v)}' for k, v in o.items())}: {sc:.3f}{_epochs(e)}"
            for o, sc, e in off_grid
        ]
        tuned = results / "tuned" / dataset / f"{model}.json"
        if tuned.exists():
            doc = json.loads(tuned.read_text())
            best = (
                f"{', '.join(f'{k}={_fmt(v)}' for k, v in doc['best']['params'].items())} ({doc['best']['score']:.3f})"
            )
        else:
            best = f"in progress ({len(on_grid)} of {len(space.get(key, [])) or 1} trials)"
        lines.append(f"| {dataset} | {model} | {'; '.join(cells)} | {best} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--metric", default="ndcg@10")
    args = ap.parse_args(argv)
    print(status(args.results, args.metric))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

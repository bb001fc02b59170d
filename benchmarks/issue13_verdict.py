"""The verdict tables of issue 13, generated from the committed records (nothing typed by hand):

1. every model of the converged comparison (the validation split: tuned configs, early stopping
   on the validation item, sampled protocol as the paper's Table 2), per data set: seeds,
   HR@10 and NDCG@10 mean ± std over seeds, the paired difference against tuned NCF over the
   test users (Wilcoxon, Holm within the row group, as `recbench report`), the paper's number
   and the one-sample test against it, the full-ranking HR@10, and the epochs each seed kept;
2. what `recbench diagnose` measured for each reading (``results/diagnose/*.json``: fresh models,
   and trained ones from a fit's checkpoint or ``--epochs``).

    python benchmarks/issue13_verdict.py --results results -o results/issue13-verdict.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recbench.report import build_report
from recbench.report.frames import select_records
from recbench.report.labels import order_models
from recbench.results import Record, iter_records

COMMAND = "python benchmarks/issue13_verdict.py --results results -o results/issue13-verdict.md"


def _p(p: float) -> str:
    return "—" if pd.isna(p) else f"{p:.2g}"


def _kept_epochs(curves: pd.DataFrame) -> dict[tuple[str, str], list[int]]:
    """(data set, report label) → the epoch each early-stopped seed kept, from the report's
    validation curves (one ``best_epoch`` per seed; NaN where no early stopping chose one)."""
    per_seed = curves.dropna(subset=["best_epoch"]).drop_duplicates(["dataset", "model", "seed"])
    return {(d, m): sorted(int(v) for v in g["best_epoch"]) for (d, m), g in per_seed.groupby(["dataset", "model"])}


PAPER_READING = "opeci[epochs=30] (tuned)"
"""The report label of the paper's reading of OPECI in the converged comparison."""
READINGS = r"^(?:opeci|cadncf|outer-mlp)[^ ]* \(tuned\)$"
"""The rows of the readings' table: the tuned runs of OPECI's and CADNCF's readings."""


def validation_records(results: Path) -> list[Record]:
    """The finished records of ``results`` made on the validation split (the converged runs)."""
    return [
        r
        for r in select_records(iter_records(results))
        if r.status == "ok" and (r.data.get("split_info") or {}).get("validation")
    ]


def comparison(
    records: list[Record],
    reference: str = "ncf",
    against: str = "NCF",
    rows: str = "tuned|itempop",
    test: str = "wilcoxon",
) -> str:
    """The converged comparison's table: the models whose label matches ``rows`` (a regex), each
    tested against ``reference`` (named ``against`` in the header) with the paired ``test``."""
    rep = build_report(None, ["hr@10", "ndcg@10"], reference=[reference], records=records, test=test)
    s = rep.summary[rep.summary.model.str.contains(rows, regex=True)]
    kept = _kept_epochs(rep.curves)
    lines = [
        f"| data set | model | seeds | HR@10 | Δ vs {against} (p Holm) | paper (p Holm) | NDCG@10 "
        f"| Δ vs {against} (p Holm) | paper (p Holm) | full HR@10 | kept epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(order_models(s["model"]))}
    s = s.sort_values(["dataset", "model"], key=lambda c: c.map(order) if c.name == "model" else c)
    for (ds, model), g in s.groupby(["dataset", "model"], sort=False):
        cells = {}
        for metric in ("hr@10", "ndcg@10"):
            row = g[(g.protocol == "sampled") & (g.metric == metric)]
            if row.empty:
                cells[metric] = ("—", "—", "—")
                continue
            r = row.iloc[0]
            delta = "—" if pd.isna(r["mean_diff"]) else f"{-r['mean_diff']:+.3f} ({_p(r['p_holm'])})"
            paper = "—" if pd.isna(r["paper"]) else f"{r['paper']:.3f} ({_p(r['paper_p_holm'])})"
            spread = "" if pd.isna(r["std"]) else f" ± {r['std']:.3f}"  # one seed: no spread
            cells[metric] = (f"{r['mean']:.3f}{spread}", delta, paper)
        full = g[(g.protocol == "full") & (g.metric == "hr@10")]
        full_hr = "—" if full.empty else f"{full.iloc[0]['mean']:.3f}"
        n = int(g["n_seeds"].max())
        epochs = kept.get((ds.split(" · ")[0], model), [])
        kept_s = ", ".join(map(str, epochs)) if epochs else "—"
        lines.append(
            f"| {ds.split(' · ')[0]} | {model} | {n} | {' | '.join(cells['hr@10'])} | {' | '.join(cells['ndcg@10'])} "
            f"| {full_hr} | {kept_s} |"
        )
    return "\n".join(lines)


def diagnostics(results: Path) -> str:
    lines = [
        "| data set | model | weights | participation ratio | share of 1st direction | its corr. with mean(h) "
        "| attention entropy / max | Δlogit shuffled / swapped | file |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    docs = [(f, json.loads(f.read_text())) for f in (results / "diagnose").glob("*.json")]
    rank = {m: i for i, m in enumerate(order_models(d["model"] for _f, d in docs))}
    docs.sort(key=lambda fd: (fd[1]["dataset"], rank[fd[1]["model"]], bool(fd[1].get("epochs")), fd[0].name))
    for f, d in docs:
        if d.get("checkpoint"):
            fit = "converged fit" if d.get("fit_finished", True) else "fit in progress"
            weights = f"{fit}: epoch {d['epoch']} kept of {d['epochs']} run"
        elif d.get("epochs"):
            weights = f"trained {d['epochs']} epochs (`diagnose --epochs`)"
        else:
            weights = "fresh"
        init = d["config"].get("embedding_init", "normal")
        model = d["model"] + (", Xavier embeddings" if init == "xavier" else "")
        ent = d.get("attention_entropy")
        lines.append(
            f"| {d['dataset']} | {model} | {weights} | {d['participation_ratio']:.2f} "
            f"| {d['top_direction_share']:.3f} | {d['top_direction_corr_mean_h']:.3f} "
            f"| {'—' if ent is None else f'{ent:.4f}'} | {d['permutation_ratio']:.4f} | `{f.name}` |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("-o", "--output", type=Path, default=None)
    args = ap.parse_args()
    records = validation_records(args.results)
    text = (
        f"# Issue 13: the verdict tables\n\nGenerated from the committed records by `{COMMAND}`.\n\n"
        "## The converged comparison\n\n"
        "Validation split (one validation and one test item per user, leave-one-out; 99 sampled "
        "negatives per test item); each model's learning rate tuned on the validation item over its "
        "5-point grid (`recbench/search_spaces.toml`; at most 5 epochs per trial for the OPECI and "
        "CADNCF families, 10 for DMF); then early stopping on validation NDCG@10, patience 3, at most "
        "30 epochs (BPR: implicit's 100 iterations; ItemPop: no fit), seeds 0, 1, 2. HR@10 / NDCG@10 "
        "on the test item, sampled protocol (the paper's), mean ± std over seeds; Δ: model − tuned "
        "NCF, paired over the test users (Wilcoxon signed-rank on per-user values averaged over "
        "seeds, Holm within each data set and metric); paper: the paper's Table 2, one-sample t test "
        "over users (Holm); full HR@10: the held-out item among all unrated items; kept epochs: "
        "the best validation epoch of each seed.\n\n"
        f"{comparison(records)}\n\n"
        "## The readings of OPECI against the paper's reading\n\n"
        "The same runs; Δ: model − the paper's reading (`opeci`, tuned), paired over the test users "
        "as above (Holm within each data set and metric, over every model of the comparison).\n\n"
        f"{comparison(records, PAPER_READING, 'opeci', READINGS)}\n\n"
        "The same with the paired bootstrap test of the mean difference (10,000 resamples of users): "
        "with per-user values averaged over seeds, HR@10 takes a few values per user, and the "
        "Wilcoxon test (of a symmetric shift, ties and zeros dropped) can disagree with a test of the "
        "mean, which is what the HR@10 columns show.\n\n"
        f"{comparison(records, PAPER_READING, 'opeci', READINGS, test='bootstrap')}\n\n"
        "## The attention block, measured\n\n"
        "`recbench diagnose` on ml-100k, 943 users × 16 fixed items; participation ratio of the "
        "MLP's input across users (1: one direction), the share of the variance on its first "
        "direction and that coordinate's correlation with mean(h_u); attention entropy over its "
        "maximum (1: uniform); the mean |Δ logit| when a user's factor entries are shuffled over "
        "that when another user's factor is swapped in (0: the model reads only the multiset of "
        "h's entries).\n\n"
        f"{diagnostics(args.results)}\n"
    )
    if args.output is None:
        print(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

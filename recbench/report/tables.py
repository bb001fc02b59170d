"""The report's tables for reading: formatted cells, the pivot of models against (dataset,
metric), the legend, statistics, sampled-vs-full, cost and the paper's Table 2 layout. Shared by
every renderer (:mod:`recbench.report.markdown`, :mod:`~recbench.report.latex`,
:mod:`~recbench.report.html_page`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from recbench.data.registry import dataset_label
from recbench.report.build import Report
from recbench.report.frames import paper_table2
from recbench.report.labels import mark_defaults, order_models

MARK = "†"
TEST_NAMES = {
    "wilcoxon": "two-sided Wilcoxon signed-rank test",
    "bootstrap": "two-sided paired bootstrap test (10,000 resamples)",
}


def _cell(row: pd.Series, paper: bool, style: dict[str, Any]) -> str:
    """One summary row as a table cell: mean ± std, marks, and the paper's number."""
    s = f"{row['mean']:.3f}"
    if not np.isnan(row["std"]):
        s += f" {style['pm']} {row['std']:.3f}"
    if row.get("significant", False):
        s += style["mark"]
    if row["best"]:
        s = style["best"][0] + s + style["best"][1]
    elif row.get("second", False) and style.get("second"):
        s = style["second"][0] + s + style["second"][1]
    if paper and not np.isnan(row.get("paper", np.nan)):
        s += f" (paper {row['paper']:.3f}, {row['delta']:+.3f})"
    return s


MD_STYLE = {"pm": "±", "mark": MARK, "best": ("**", "**"), "second": None}
HTML_STYLE = {"pm": "±", "mark": MARK, "best": ("<b>", "</b>"), "second": ("<u>", "</u>")}
TEX_STYLE = {"pm": "$\\pm$", "mark": "$^{\\dagger}$", "best": ("\\textbf{", "}"), "second": ("\\underline{", "}")}


def pivot(
    summary: pd.DataFrame,
    protocol: str,
    paper: bool,
    bold: tuple[str, str] = ("**", "**"),
    style: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Datasets × metrics as rows, models as columns, formatted cells."""
    style = style or {**MD_STYLE, "best": bold}
    sub = summary[summary["protocol"] == protocol].copy()
    if sub.empty:
        return pd.DataFrame()
    sub["cell"] = [_cell(r, paper, style) for _, r in sub.iterrows()]
    sub["Dataset"] = sub["dataset"].map(lambda d: dataset_label(d))
    sub["Metric"] = sub["metric"].str.upper()
    t = sub.pivot_table(index=["Dataset", "Metric"], columns="model", values="cell", aggfunc="first", sort=False)
    t = t.reindex(columns=order_models(t.columns)).fillna("—")
    t.columns = mark_defaults(list(t.columns))
    t.columns.name = None
    return t


def _seeds_note(summary: pd.DataFrame) -> str:
    """How many seeds (or split seeds × model seeds) the means are over."""
    n = summary["n_seeds"]
    if n.empty:
        return ""
    lo, hi = int(n.min()), int(n.max())
    text = f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} seeds"
    if "n_splits" in summary and (summary["n_splits"] > 1).any():
        k = summary["n_splits"]
        splits = f"{int(k.min())}" if k.min() == k.max() else f"{int(k.min())}–{int(k.max())}"
        text = text.replace("seed", "run") + f" ({splits} split seeds × model seeds)"
    return text


def _n_comparisons(rep: Report, proto: str) -> str:
    """How many paired comparisons each row of ``proto`` has (a range if they differ)."""
    sig = rep.summary[(rep.summary["protocol"] == proto) & rep.summary["p_value"].notna()]
    if sig.empty:
        return "0"
    counts = sig.groupby(["dataset", "metric"]).size()
    lo, hi = int(counts.min()), int(counts.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


def legend(rep: Report, proto: str, mark: str = MARK) -> str:
    """What the marks mean, in words."""
    sub = rep.summary[rep.summary["protocol"] == proto]
    parts = [f"Mean ± std over {_seeds_note(sub)}."]
    if rep.references and sub["p_value"].notna().any():
        parts.append(
            f"{mark} differs from {_reference_words(rep)} at p < {rep.alpha:g} after Holm's correction across "
            f"the comparisons of each row ({_n_comparisons(rep, proto)} per row; {TEST_NAMES[rep.test]} "
            "over users, on each "
            "user's metric averaged over seeds; same split)."
        )
    if "paper_p" in sub and sub["paper_p"].notna().any():
        parts.append(
            "Against the paper: a one-sample t test over users of each user's metric (averaged over seeds) "
            "against the paper's number, Holm-adjusted across the models of each row; it takes the paper's "
            "number as exact (its own sampling error is unknown), so it overstates significance."
        )
    notes = (
        sub["test_note"].map(lambda v: v if isinstance(v, str) else "") if "test_note" in sub else pd.Series(dtype=str)
    )
    untestable = sub[notes != ""]
    if len(untestable):
        parts.append(f"Not tested: {', '.join(sorted(set(untestable['model'])))} ({notes[notes != ''].iloc[0]}).")
    return " ".join(parts + rep.notes)


def _reference_words(rep: Report) -> str:
    """The reference, in words: one label, or each row group's."""
    if rep.reference is not None:
        return rep.reference
    by_ref: dict[str, list[str]] = {}
    for group, ref in rep.references.items():
        by_ref.setdefault(ref, []).append(dataset_label(group))
    return "the row's reference (" + "; ".join(f"{ref} on {', '.join(g)}" for ref, g in by_ref.items()) + ")"


def stats_table(rep: Report, proto: str) -> pd.DataFrame:
    """Long table: mean, std, 95 % CI, difference to the reference and p-values."""
    sub = rep.summary[rep.summary["protocol"] == proto]
    several = rep.reference is None and len(set(rep.references.values())) > 1
    with_paper = "paper_p" in sub and sub["paper"].notna().any()
    rows = []
    for _, r in sub.iterrows():
        row = {
            "Dataset": dataset_label(r["dataset"]),
            "Metric": r["metric"].upper(),
            "Model": r["model"],
            "Seeds": int(r["n_seeds"]),
            "Mean": f"{r['mean']:.4f}",
            "Std": "—" if np.isnan(r["std"]) else f"{r['std']:.4f}",
            "95% CI": "—" if np.isnan(r["ci95_low"]) else f"[{r['ci95_low']:.4f}, {r['ci95_high']:.4f}]",
        }
        if several:
            row["Reference"] = rep.references.get(r["dataset"], "—")
        row |= {
            f"Δ vs {'reference' if several else rep.reference or 'ref.'} (users)": "—"
            if pd.isna(r["mean_diff"])
            else f"{-r['mean_diff']:+.4f}",
            "Users": "—" if pd.isna(r["n_users"]) or not r["n_users"] else f"{int(r['n_users'])}",
            "p": "—" if pd.isna(r["p_value"]) else f"{r['p_value']:.2g}",
            "p (Holm)": "—"
            if pd.isna(r["p_holm"])
            else f"{r['p_holm']:.2g}" + (f" {MARK}" if r["significant"] else ""),
        }
        if with_paper:
            row |= {
                "Paper": "—" if pd.isna(r["paper"]) else f"{r['paper']:.3f}",
                "Δ vs paper": "—" if pd.isna(r["paper"]) else f"{r['delta']:+.4f}",
                "p vs paper (Holm)": "—" if pd.isna(r["paper_p_holm"]) else f"{r['paper_p_holm']:.2g}",
            }
        rows.append(row)
        if (sub["n_splits"] > 1).any():  # split seeds pooled: the spread decomposed
            rows[-1].update(
                {
                    "Splits": int(r["n_splits"]),
                    "Std between splits": "—"
                    if np.isnan(r["std_between_splits"])
                    else f"{r['std_between_splits']:.4f}",
                    "Std within a split": "—" if np.isnan(r["std_within_split"]) else f"{r['std_within_split']:.4f}",
                }
            )
    df = pd.DataFrame(rows)
    return _in_report_order(df, ["Dataset", "Metric", "Model"]) if not df.empty else df


def _in_report_order(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``df``'s rows sorted by ``cols``: each by first appearance, ``Model`` in the paper's order
    (:func:`order_models`); a stable sort."""
    orders = {
        c: {v: i for i, v in enumerate(order_models(df[c]) if c == "Model" else dict.fromkeys(df[c]))} for c in cols
    }
    key = [
        tuple(orders[c][v] for c, v in zip(cols, row, strict=True)) for row in zip(*(df[c] for c in cols), strict=True)
    ]
    return df.iloc[sorted(range(len(df)), key=key.__getitem__)]


def side_by_side(rep: Report) -> pd.DataFrame:
    """Sampled and full-ranking metrics of each model next to each other, with each model's
    rank under each protocol."""
    s = rep.summary
    wide = s.pivot_table(index=["dataset", "metric", "model"], columns="protocol", values=["mean", "std"], sort=False)
    rows = []
    for (ds, met, mod), r in wide.iterrows():
        rows.append(
            {
                "dataset": ds,
                "metric": met,
                "model": mod,
                "s_mean": r.get(("mean", "sampled"), np.nan),
                "s_std": r.get(("std", "sampled"), np.nan),
                "f_mean": r.get(("mean", "full"), np.nan),
                "f_std": r.get(("std", "full"), np.nan),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["s_rank"] = df.groupby(["dataset", "metric"])["s_mean"].rank(ascending=False, method="min")
    df["f_rank"] = df.groupby(["dataset", "metric"])["f_mean"].rank(ascending=False, method="min")
    fmt = lambda m, sd: "—" if pd.isna(m) else (f"{m:.3f}" + ("" if pd.isna(sd) else f" ± {sd:.3f}"))  # noqa: E731
    out = pd.DataFrame(
        {
            "Dataset": df["dataset"].map(lambda d: dataset_label(d)),
            "Metric": df["metric"].str.upper(),
            "Model": df["model"],
            "Sampled": [fmt(m, sd) for m, sd in zip(df["s_mean"], df["s_std"], strict=True)],
            "Rank (sampled)": df["s_rank"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
            "Full ranking": [fmt(m, sd) for m, sd in zip(df["f_mean"], df["f_std"], strict=True)],
            "Rank (full)": df["f_rank"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
        }
    )
    # sorted by the numeric rank (as text, 10 would come before 2); models without one last
    order = np.lexsort((df["s_rank"].fillna(np.inf).to_numpy(), out["Metric"].to_numpy(), out["Dataset"].to_numpy()))
    return out.iloc[order]


def agreement_table(rep: Report) -> pd.DataFrame:
    """Kendall's τ per (dataset, metric), formatted for reading."""
    a = rep.agreement
    return pd.DataFrame(
        {
            "Dataset": a["dataset"].map(lambda d: dataset_label(d)),
            "Metric": a["metric"].str.upper(),
            "Models": a["n_models"],
            "Kendall τ": a["tau"].map(lambda v: "—" if pd.isna(v) else f"{v:.2f}"),
            "p": a["p_value"].map(lambda v: "—" if pd.isna(v) else f"{v:.2g}"),
            "Same order": a["agree"].map(lambda v: "yes" if v else "NO"),
            "Swapped pairs": a["discordant"].replace("", "—"),
        }
    )


def proto_title(rep: Report, proto: str) -> str:
    """The protocol's title, with the split's number of sampled negatives as recorded."""
    if proto == "sampled" and rep.n_negatives and rep.n_negatives != [99]:
        n = rep.n_negatives
        if len(n) == 1:
            return (
                f"Sampled protocol: the held-out item ranked among its {n[0] + 1} stored candidates "
                f"({n[0]} sampled negatives)"
            )
        return (
            "Sampled protocol: the held-out item ranked among its stored candidates "
            f"({'/'.join(map(str, n))} sampled negatives, by split)"
        )
    return _PROTO_TITLE[proto]


_PROTO_TITLE = {
    "sampled": "Sampled protocol: the held-out item ranked among its 100 stored candidates (99 sampled negatives)",
    "full": "Full ranking: the held-out item ranked among all items without a training interaction",
}


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a GitHub markdown table, cells as given."""
    return tabulate(df, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def cost_table(rep: Report) -> pd.DataFrame:
    """:func:`cost_frame` formatted for reading (3 significant digits, — for not applicable)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "—" if np.isnan(v) else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
        return str(v)

    return rep.cost.map(fmt) if not rep.cost.empty else rep.cost


COST_NOTE = (
    "Medians over seeds of each record's own timing (training samples/s and s/epoch over its "
    "epochs; evaluation of every test user; peak resident memory of the whole process). "
    "Times depend on the machine and its load at the time: compare models within one run, "
    'not across reports. Subnormals: "kept" marks records made before recbench flushed '
    "subnormal floats to zero; where weight decay drives weights into that range (OPECI after "
    "several epochs) their fits and evaluations ran slower (2× training steps, 30× scoring on an "
    "OPECI checkpoint: results/bench/denormals-*.json)."
)


TABLE2_MODELS = ["itempop", "bpr", "dmf", "ncf", "cml", "cadncf", "opeci"]  # the paper's column order


def table2_view(rep: Report) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """The paper's Table 2 layout, sampled protocol: ``(ours, paper, others, chosen)``.

    ``ours``: rows (data set, metric), one column per Table-2 model, one configuration each
    (the model at its defaults, else tuned, else the configuration with the most seeds; ``chosen``
    maps each column to the configuration shown), cells ``mean ± std (seeds)``. ``paper``: the
    paper's values in the same layout. ``others``: every other configuration and variant, long."""
    s = rep.summary[rep.summary["protocol"] == "sampled"]
    empty = pd.DataFrame()
    if s.empty:
        return empty, empty, empty, {}
    chosen: dict[str, str] = {}
    for m in TABLE2_MODELS:
        labels = list(dict.fromkeys(s.loc[s["base_model"] == m, "model"]))
        if not labels:
            continue
        seeds = {lab: int(s.loc[s["model"] == lab, "n_seeds"].max()) for lab in labels}
        pick = (
            m
            if m in labels
            else f"{m} (tuned)"
            if f"{m} (tuned)" in labels
            else max(labels, key=lambda lab: (seeds[lab], lab == labels[0]))
        )
        chosen[m] = pick

    def cell(r: pd.Series) -> str:
        sd = "" if pd.isna(r["std"]) else f" ± {r['std']:.3f}"
        return f"{r['mean']:.3f}{sd} ({int(r['n_seeds'])})"

    keys = list(dict.fromkeys(zip(s["dataset"], s["metric"], strict=True)))
    rows, paper_rows = [], []
    p = paper_table2()
    for ds, met in keys:
        row = {"Dataset": dataset_label(ds), "Metric": met.upper()}
        prow = dict(row)
        for m, lab in chosen.items():
            hit = s[(s["dataset"] == ds) & (s["metric"] == met) & (s["model"] == lab)]
            row[m] = cell(hit.iloc[0]) if len(hit) else "—"
            pv = p[(p["dataset"] == ds) & (p["metric"] == met) & (p["model"] == m)]["paper"]
            prow[m] = f"{float(pv.iloc[0]):.3f}" if len(pv) else "—"
        rows.append(row)
        paper_rows.append(prow)
    others = s[~s["model"].isin(chosen.values())]
    other_rows = [
        {
            "Dataset": dataset_label(r["dataset"]),
            "Metric": r["metric"].upper(),
            "Model": r["model"],
            "Mean ± std (seeds)": cell(r),
        }
        for _, r in others.iterrows()
    ]
    return pd.DataFrame(rows), pd.DataFrame(paper_rows), pd.DataFrame(other_rows), chosen


CURVE_EPOCHS = (1, 2, 3, 5, 10, 15, 20, 30)  # the epochs the validation-curve table shows


def curves_table(rep: Report, metric: str = "ndcg@10") -> pd.DataFrame:
    """The validation curves in numbers: per data set and model, the seeds, each seed's epochs
    run and kept epoch (early stopping), and the mean validation ``metric`` over seeds at a few
    epochs (``(n)``: only n seeds ran that long), so that models can be compared at equal
    training time. Validation item only: nothing here is read from the test split."""
    c = rep.curves[rep.curves["metric"] == metric]
    if c.empty:
        return pd.DataFrame()
    shown = [e for e in CURVE_EPOCHS if e <= int(c["epoch"].max())]
    rows = []
    for (ds, mod), g in c.groupby(["dataset", "model"], sort=False):
        per_seed = g.drop_duplicates("seed").sort_values("seed")
        n = len(per_seed)
        row: dict[str, Any] = {
            "Dataset": dataset_label(ds),
            "Model": mod,
            "Seeds": n,
            "Epochs run": ", ".join(str(int(v)) for v in per_seed["epochs_run"]),
            "Kept epoch": ", ".join("last" if pd.isna(v) else str(int(v)) for v in per_seed["best_epoch"]),
            "Patience": ", ".join(sorted({str(int(v)) if v else "off" for v in per_seed["patience"]})),
        }
        at = g.groupby("epoch")["value"].agg(["mean", "count"])
        for e in shown:
            row[f"@{e}"] = (
                "—"
                if e not in at.index
                else f"{at.loc[e, 'mean']:.3f}" + ("" if at.loc[e, "count"] == n else f" ({int(at.loc[e, 'count'])})")
            )
        best = g.groupby("seed")["value"].max()
        row["Best (mean over seeds)"] = f"{best.mean():.3f}"
        rows.append(row)
    return _in_report_order(pd.DataFrame(rows), ["Dataset", "Model"]).reset_index(drop=True)


def curves_note(metric: str = "ndcg@10") -> str:
    """The legend of :func:`curves_table`."""
    return (
        f"Validation {metric.upper()} (the held-out validation item of each training user, sampled "
        "protocol) after each epoch, mean over seeds; (n): only n seeds ran that many epochs (early "
        "stopping ended the others). Kept epoch: the epoch whose weights were tested (early stopping "
        "keeps the best on validation). Best: each seed's best validation value, mean over seeds."
    )

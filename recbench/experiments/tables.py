"""An experiment's page, piece by piece: each table as markdown and HTML built from the same data
(:class:`Part`), for the grids (``neg-ratio``, ``embedding-size``, with the paper's points), the
per-epoch curves (``interaction``) and the full report (``table2``). Assembled into files by
:mod:`recbench.experiments.pages`."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from recbench import figures, report
from recbench.experiments.presets import Preset, paper_settings, paper_table3
from recbench.registry import MODELS
from recbench.results import Record


def _fmt(mean: float, std: float) -> str:
    """``mean ± std`` (the mean alone with one seed; ``—`` without a value)."""
    if np.isnan(mean):
        return "—"
    return f"{mean:.3f}" + ("" if np.isnan(std) else f" ± {std:.3f}")


def _md(df: pd.DataFrame) -> str:
    """``df`` as a GitHub markdown table, cells verbatim."""
    return tabulate(df, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


@dataclass(frozen=True)
class Part:
    """A paragraph or table of an experiment's page, as markdown and as HTML, both built from the
    same data (never HTML parsed back out of markdown)."""

    md: str
    html: str


def paragraph(text: str) -> Part:
    """A paragraph of plain text."""
    return Part(text, f"<p>{html.escape(text)}</p>")


def table_part(df: pd.DataFrame, html_cells: pd.DataFrame | None = None) -> Part:
    """``df`` as a markdown table and an HTML table; ``html_cells`` (same shape) holds cells
    already in HTML (escaped, with their markup), else ``df``'s cells are escaped."""
    cells = html_cells if html_cells is not None else df.map(lambda v: html.escape(str(v)))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in cells.itertuples(index=False))
    return Part(_md(df), f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def pivot_part(summary: pd.DataFrame, paper: bool = False) -> Part:
    """The sampled protocol's models × (data set, metric) table; best per row in bold."""
    md = report.pivot(summary, "sampled", paper, style=report.MD_STYLE).reset_index()
    cells = report.pivot(
        summary, "sampled", paper, style={**report.HTML_STYLE, "second": None, "mark": "&dagger;"}
    ).reset_index()
    for c in ("Dataset", "Metric"):
        cells[c] = cells[c].map(lambda v: html.escape(str(v)))
    return table_part(md, cells)


def _default_value(p: Preset) -> Any:
    """The grid parameter's value in the model's default config."""
    return getattr(MODELS[p.models[0]].Config(), p.param) if p.param is not None else None


def paper_points(p: Preset, datasets: list[str], presets: dict[str, Any]) -> tuple[pd.DataFrame | None, str]:
    """The paper's numbers for the grid's figure: ``(frame of dataset, metric, x, paper; label)``.
    neg-ratio: every point of Table 3. embedding-size: the paper draws Figure 4 but publishes no
    numbers for it; its one number per data set is Table 2's OPECI at the paper's d."""
    if p.paper == "table3.csv":
        return paper_table3(), "paper (Table 3)"
    if p.param == "embedding_size":
        t2 = report.paper_table2()
        rows = []
        for ds in datasets:
            d = paper_settings(ds, "opeci", presets).get("embedding_size")
            for _, r in t2[(t2["dataset"] == ds) & (t2["model"] == "opeci")].iterrows():
                if d is not None:
                    rows.append({"dataset": ds, "metric": r["metric"], "x": d, "paper": r["paper"]})
        return pd.DataFrame(rows, columns=["dataset", "metric", "x", "paper"]), "paper (Table 2, at the paper's d)"
    return None, "paper"


def param_table(p: Preset, rep: report.Report, paper: pd.DataFrame | None) -> tuple[Part, pd.DataFrame]:
    """(table, tidy frame) for a one-parameter grid (neg-ratio, embedding-size): columns in
    numeric order, the model's default labelled, the paper's number in parentheses at every
    point the paper has (a grid value not run yet shows ``—`` and the paper's number)."""
    s = rep.summary[rep.summary["protocol"] == "sampled"].copy()
    s["x"] = pd.to_numeric(s["model"]).astype(float)
    tidy = s[["dataset", "metric", "x", "n_seeds", "mean", "std", "ci95_low", "ci95_high"]].copy()
    if paper is not None and not paper.empty:
        shown = tidy[["dataset", "metric"]].drop_duplicates()
        pp = paper.assign(x=paper["x"].astype(float)).merge(shown, on=["dataset", "metric"])
        tidy = tidy.merge(pp, on=["dataset", "metric", "x"], how="outer")
    else:
        tidy["paper"] = np.nan
    tidy = tidy.sort_values(["dataset", "metric", "x"], kind="stable").reset_index(drop=True)
    default = _default_value(p)
    col = {x: f"{p.param}={x:g}" + (" (default)" if x == default else "") for x in sorted(set(tidy["x"]))}
    md_rows, html_rows = [], []
    for (ds, met), g in tidy.groupby(["dataset", "metric"], sort=False):
        label = {"Dataset": figures.dataset_label(ds), "Metric": figures.metric_label(met)}
        md_row, html_row = dict(label), {k: html.escape(v) for k, v in label.items()}
        best = g["mean"].max()
        for _, r in g.iterrows():
            ours, bold = _fmt(r["mean"], r["std"]), bool(not np.isnan(r["mean"]) and np.isclose(r["mean"], best))
            extra = "" if np.isnan(r["paper"]) else f" (paper {r['paper']:.3f})"
            md_row[col[r["x"]]] = (f"**{ours}**" if bold else ours) + extra
            html_row[col[r["x"]]] = (f"<b>{html.escape(ours)}</b>" if bold else html.escape(ours)) + html.escape(extra)
        md_rows.append(md_row)
        html_rows.append(html_row)
    columns = ["Dataset", "Metric", *col.values()]
    md = pd.DataFrame(md_rows).reindex(columns=columns).fillna("—")
    cells = pd.DataFrame(html_rows).reindex(columns=columns).fillna("—")
    return table_part(md, cells), tidy


def default_note(p: Preset, datasets: list[str], presets: dict[str, Any]) -> str:
    """Which grid value is the default, and where the paper's setting differs from it."""
    default = _default_value(p)
    differ = [
        f"{figures.dataset_label(d)} {v}"
        for d in datasets
        if (v := paper_settings(d, p.models[0], presets).get(p.param, default)) != default
    ]
    return f"(default): OPECI's default {p.param} = {default}" + (
        f"; the paper's setting differs on {', '.join(differ)}." if differ else "."
    )


def epoch_curves(records: list[Record]) -> pd.DataFrame:
    """Per-epoch test metrics of every record: dataset, model, seed, epoch, hr@10, ndcg@10."""
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        for h in r.data.get("history", []):
            if "test" in h and "epoch" in h:
                rows.append(
                    {"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "epoch": h["epoch"], **h["test"]}
                )
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "epoch", "hr@10", "ndcg@10"])


def curve_table(curves: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each model after its last epoch (mean ± std over seeds). No epoch is chosen on the test
    split: the curve's maximum over epochs would be a selection on test (the figure shows it)."""
    rows = []
    for (ds, mod), g in curves.groupby(["dataset", "model"], sort=False):
        last = int(g["epoch"].max())
        at = g[g["epoch"] == last]
        row = {"Dataset": figures.dataset_label(ds), "Model": mod, "Epochs": last}
        for met in metrics:
            row[f"{figures.metric_label(met)} at the last epoch"] = _fmt(at[met].mean(), at[met].std())
        rows.append(row)
    return pd.DataFrame(rows)


def report_parts(rep: report.Report) -> list[Part]:
    """The ``table2`` page: the paper's layout, the paper's values, the other configurations,
    then the per-protocol tables, statistics, protocol agreement and cost (as ``recbench report``)."""
    parts: list[Part] = []
    ours, paper, others, chosen = report.table2_view(rep)
    if not ours.empty:
        shown = "; ".join(f"{m} = {lab}" for m, lab in chosen.items() if lab != m)
        parts += [
            paragraph(
                "Table 2 (sampled protocol), as the paper lays it out. Mean ± std over model seeds (the "
                "number of seeds in parentheses); one configuration per model" + (f" ({shown})" if shown else "") + "."
            ),
            table_part(ours),
            paragraph("The paper's Table 2 (HR@10 / NDCG@10, sampled protocol):"),
            table_part(paper),
        ]
        if not others.empty:
            parts += [paragraph("Other configurations and variants (sampled protocol):"), table_part(others)]
    for proto in rep.protocols:
        md = report.pivot(rep.summary, proto, proto == "sampled", style=report.MD_STYLE).reset_index()
        cells = report.pivot(
            rep.summary, proto, proto == "sampled", style={**report.HTML_STYLE, "second": None, "mark": "&dagger;"}
        ).reset_index()
        for c in ("Dataset", "Metric"):
            cells[c] = cells[c].map(lambda v: html.escape(str(v)))
        parts += [
            paragraph(f"{report.proto_title(rep, proto)}. {report.legend(rep, proto)} Best per row in bold."),
            table_part(md, cells),
        ]
    for proto in rep.protocols:
        parts += [
            paragraph(f"Statistics, {proto} protocol: 95 % confidence interval (t, over seeds) and paired tests."),
            table_part(report.stats_table(rep, proto)),
        ]
    if not rep.agreement.empty:
        parts += [
            paragraph(
                "Sampled against full ranking: each model's score and rank under both protocols; Kendall τ "
                "between the two orderings of the models (1: same order)."
            ),
            table_part(report.side_by_side(rep)),
            table_part(report.agreement_table(rep)),
        ]
        parts += [paragraph(f"Warning: {w}") for w in rep.warnings]
    if not rep.cost.empty:
        parts += [paragraph(f"Cost. {report.COST_NOTE}"), table_part(report.cost_table(rep))]
    return parts

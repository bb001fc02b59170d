"""``recbench report``: a Table-2-style comparison from result records.

Rows are (dataset, metric), columns are models; each cell is the mean ± std over seeds, the best
per row is marked, and the paper's number (``recbench/paper/table2.csv``, data not code) is
shown beside ours with the difference. Metrics are recomputed from the stored per-user ranks, so
any K can be reported after the fact. CSV and JSON give the tidy long table (one row per dataset,
protocol, metric and model), which parses back with pandas / json.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from recbench.eval import metrics as M
from recbench.models.base import config_to_dict
from recbench.registry import MODELS
from recbench.results import Record, iter_records

FORMATS = ("markdown", "csv", "latex", "json", "html")
PAPER_ORDER = ["bpr", "dmf", "itempop", "ncf", "cml", "cadncf", "opeci"]
DATASET_LABELS = {"ml-100k": "ML-100K", "ml-1m": "ML-1M", "yelp": "Yelp", "filmtrust": "FilmTrust"}


def paper_table2() -> pd.DataFrame:
    """The OPECI paper's Table 2 (HR@10 / NDCG@10, sampled protocol), long format."""
    with resources.files("recbench.paper").joinpath("table2.csv").open() as f:
        wide = pd.read_csv(f)
    return wide.melt(id_vars=["dataset", "metric"], var_name="model", value_name="paper")


def model_label(rec: Record) -> str:
    """The model's name, plus the parameters that differ from its defaults (if any)."""
    name = rec["model"]
    cls = MODELS.get(name)
    if cls is None:
        return name
    defaults = config_to_dict(cls.Config())
    diff = {k: v for k, v in rec["config"].items() if k in defaults and defaults[k] != v}
    if not diff:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in sorted(diff.items())) + "]"


def per_seed_frame(records: Iterable[Record], metrics: list[str]) -> pd.DataFrame:
    """One row per (dataset, protocol, metric, model label, seed) of the successful records."""
    rows = []
    for rec in records:
        if rec.status != "ok":
            continue
        label = model_label(rec)
        for proto in rec.data.get("protocols", []):
            ranks = rec.ranks.get(f"test/{proto}")
            for metric in metrics:
                if ranks is not None:
                    value = float(M.per_user(ranks, metric).mean())
                else:
                    value = rec["metrics"].get(proto, {}).get(metric, np.nan)
                rows.append(
                    {
                        "dataset": rec["dataset"],
                        "protocol": proto,
                        "metric": metric,
                        "model": label,
                        "base_model": rec["model"],
                        "seed": rec["seed"],
                        "value": value,
                    }
                )
    return pd.DataFrame(
        rows, columns=["dataset", "protocol", "metric", "model", "base_model", "seed", "value"]
    )


def summary_frame(records: list[Record], metrics: list[str], paper: bool = True) -> pd.DataFrame:
    """Mean, std, 95 % CI (t over seeds) per (dataset, protocol, metric, model)."""
    df = per_seed_frame(records, metrics)
    cols = ["dataset", "protocol", "metric", "model", "base_model", "n_seeds", "mean", "std", "ci95_low", "ci95_high"]
    if df.empty:
        return pd.DataFrame(columns=[*cols, "paper", "delta", "best"])
    g = df.groupby(["dataset", "protocol", "metric", "model", "base_model"], sort=False)["value"]
    out = g.agg(n_seeds="count", mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan).reset_index()
    half = [
        float(stats.t.ppf(0.975, n - 1) * s / np.sqrt(n)) if n > 1 else np.nan
        for n, s in zip(out["n_seeds"], out["std"], strict=True)
    ]
    out["ci95_low"] = out["mean"] - np.asarray(half)
    out["ci95_high"] = out["mean"] + np.asarray(half)
    if paper:
        p = paper_table2().rename(columns={"model": "base_model"})
        p["protocol"] = "sampled"
        out = out.merge(p, on=["dataset", "protocol", "metric", "base_model"], how="left")
        # the paper's number belongs to the model at the paper's settings only
        out.loc[out["model"] != out["base_model"], "paper"] = np.nan
        out["delta"] = out["mean"] - out["paper"]
    else:
        out["paper"] = np.nan
        out["delta"] = np.nan
    best = out.groupby(["dataset", "protocol", "metric"])["mean"].transform("max")
    out["best"] = np.isclose(out["mean"], best)
    return out


def _order_models(labels: Iterable[str]) -> list[str]:
    order = {m: i for i, m in enumerate([*PAPER_ORDER, *MODELS])}
    return sorted(set(labels), key=lambda s: (order.get(s.split("[")[0], 999), s))


def _cell(row: pd.Series, paper: bool, bold: tuple[str, str]) -> str:
    s = f"{row['mean']:.3f}"
    if not np.isnan(row["std"]):
        s += f" ± {row['std']:.3f}"
    if row["best"]:
        s = f"{bold[0]}{s}{bold[1]}"
    if paper and not np.isnan(row.get("paper", np.nan)):
        s += f" (paper {row['paper']:.3f}, {row['delta']:+.3f})"
    return s


def pivot(summary: pd.DataFrame, protocol: str, paper: bool, bold: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """Datasets × metrics as rows, models as columns, formatted cells."""
    sub = summary[summary["protocol"] == protocol].copy()
    if sub.empty:
        return pd.DataFrame()
    sub["cell"] = [_cell(r, paper, bold) for _, r in sub.iterrows()]
    sub["Dataset"] = sub["dataset"].map(lambda d: DATASET_LABELS.get(d, d))
    sub["Metric"] = sub["metric"].str.upper()
    t = sub.pivot_table(index=["Dataset", "Metric"], columns="model", values="cell", aggfunc="first", sort=False)
    t = t.reindex(columns=_order_models(t.columns)).fillna("—")
    t.columns.name = None
    return t


def _seeds_note(summary: pd.DataFrame) -> str:
    n = summary["n_seeds"]
    if n.empty:
        return ""
    lo, hi = int(n.min()), int(n.max())
    return f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} seeds"


def failures(records: list[Record]) -> list[str]:
    return [f"{r['dataset']} / {r['model']} / seed {r['seed']}: {r.data.get('error')}" for r in records if r.status != "ok"]


@dataclass
class Report:
    summary: pd.DataFrame
    failed: list[str]
    protocols: list[str]


def build_report(results: Path, metrics: list[str], paper: bool = True) -> Report:
    records = list(iter_records(results))
    summary = summary_frame(records, metrics, paper)
    protocols = [p for p in ("sampled", "full") if p in set(summary["protocol"])]
    return Report(summary=summary, failed=failures(records), protocols=protocols)


_PROTO_TITLE = {
    "sampled": "Sampled protocol: the held-out item ranked among its 100 stored candidates (99 sampled negatives)",
    "full": "Full ranking: the held-out item ranked among all items without a training interaction",
}


def render(rep: Report, fmt: str, paper: bool = True) -> str:
    """The report in ``fmt`` (markdown, csv, latex, json, html)."""
    if fmt == "csv":
        return rep.summary.to_csv(index=False)
    if fmt == "json":
        return json.dumps(
            {"rows": json.loads(rep.summary.to_json(orient="records")), "failed": rep.failed}, indent=1
        )
    if fmt == "markdown":
        parts = []
        for proto in rep.protocols:
            t = pivot(rep.summary, proto, paper and proto == "sampled")
            parts.append(f"### {_PROTO_TITLE[proto]}\n\nMean ± std over {_seeds_note(rep.summary[rep.summary.protocol == proto])}; best per row in bold.\n")
            parts.append(tabulate(t.reset_index(), headers="keys", tablefmt="github", showindex=False))
        if rep.failed:
            parts.append("\nFailed cells:\n" + "\n".join(f"- {f}" for f in rep.failed))
        return "\n\n".join(parts) + "\n"
    if fmt == "latex":
        parts = []
        for proto in rep.protocols:
            t = pivot(rep.summary, proto, False, bold=(r"\textbf{", "}"))
            t = t.map(lambda s: s.replace("±", r"$\pm$"))
            body = t.to_latex(escape=False, column_format="ll" + "c" * len(t.columns), multirow=False)
            body = body.replace("_", "\\_")
            parts.append(
                "\\begin{table}[t]\n\\centering\n\\small\n"
                + body
                + f"\\caption{{{_PROTO_TITLE[proto]}. Mean $\\pm$ std over {_seeds_note(rep.summary[rep.summary.protocol == proto])}; best per row in bold.}}\n\\end{{table}}\n"
            )
        return "% requires \\usepackage{booktabs}\n" + "\n".join(parts)
    if fmt == "html":
        body = []
        for proto in rep.protocols:
            t = pivot(rep.summary, proto, paper and proto == "sampled", bold=("<b>", "</b>"))
            body.append(f"<h2>{html.escape(_PROTO_TITLE[proto])}</h2>")
            body.append(t.reset_index().to_html(escape=False, border=0, classes="results", index=False))
        if rep.failed:
            body.append("<h2>Failed cells</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in rep.failed) + "</ul>")
        style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}"
        return f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>recbench report</title><style>{style}</style></head><body><h1>recbench report</h1>{''.join(body)}</body></html>\n"
    raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")

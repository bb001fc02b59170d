"""``recbench report``: a Table-2-style comparison from result records, with its statistics.

Rows are (dataset, metric), columns are models; each cell is the mean ± std over seeds, the best
per row is marked, and the paper's number (``recbench/paper/table2.csv``, data not code) is
shown beside ours with the difference. Metrics are recomputed from the stored per-user ranks, so
any K can be reported after the fact. Every report also carries (:mod:`recbench.stats`):

- the 95 % t confidence interval over seeds;
- a paired test over users between a reference model (``--reference``, default ``opeci`` when
  present) and every other model: per-user metric values averaged over seeds, users aligned by
  the ranks files' ``users`` arrays, the same split fingerprint required; Wilcoxon signed-rank
  (default) or a paired bootstrap; Holm's correction across the comparisons of one row
  (dataset × protocol × metric); significant differences marked † in the tables;
- sampled and full-ranking metrics side by side with Kendall's τ between the two orderings of
  the models per dataset and metric, and a warning where the orderings disagree (Krichene &
  Rendle, KDD 2020).

CSV and JSON give the tidy long table (one row per dataset, protocol, metric and model, with
the statistics as columns), which parses back with pandas / json. LaTeX uses booktabs, bold for
the best and underline for the second best, and explains the marks in the caption. HTML is one
self-contained page with the tables and the figures embedded (base64 PNG).

Which records: tuning trials (tag ``purpose = "tune"``) never; experiment records (tag
``experiment``) only with ``experiment=NAME``, and then only those.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from recbench import stats as S
from recbench.eval import metrics as M
from recbench.models.base import ConfigError, config_from_dict, config_to_dict
from recbench.registry import MODELS
from recbench.results import Record, iter_records

FORMATS = ("markdown", "csv", "latex", "json", "html")
PAPER_ORDER = ["bpr", "dmf", "itempop", "ncf", "cml", "cadncf", "opeci"]
DATASET_LABELS = {"ml-100k": "ML-100K", "ml-1m": "ML-1M", "yelp": "Yelp", "filmtrust": "FilmTrust"}
MARK = "†"
KR_NOTE = "sampled metrics can order models differently from full ranking (Krichene & Rendle, KDD 2020)"
TEST_NAMES = {
    "wilcoxon": "two-sided Wilcoxon signed-rank test",
    "bootstrap": "two-sided paired bootstrap test (10,000 resamples)",
}

Label = Callable[[Record], str]


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
    # compared as JSON stores them (a tuple default reads back from a record as a list)
    defaults = json.loads(json.dumps(config_to_dict(cls.Config()), default=str))
    diff = {k: v for k, v in rec["config"].items() if k in defaults and defaults[k] != json.loads(json.dumps(v, default=str))}
    revision = rec.data.get("revision", 1)
    try:
        current = cls.revision_of(config_from_dict(cls.Config, rec["config"], name))
    except (ConfigError, TypeError):  # a field this code no longer has
        current = cls.revision
    if revision != current:
        diff["revision"] = revision
    if not diff:
        return name
    return name + "[" + ",".join(f"{k}={_fmt_value(v)}" for k, v in sorted(diff.items())) + "]"


def _fmt_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "(" + ",".join(map(str, v)) + ")"
    return str(v)


def record_label(rec: Record) -> str:
    """:func:`model_label`, with `` (tuned)`` for runs that used a stored tuned config."""
    tags = rec.data.get("tags") or {}
    return model_label(rec) + (" (tuned)" if tags.get("tuned") else "")


def base_label(rec: Record) -> str:
    """Just the model's registered name (for tables with one configuration per model and
    dataset, such as the ``table2`` experiment with per-dataset paper settings)."""
    return rec["model"]


def select_records(records: Iterable[Record], experiment: str | None = None) -> list[Record]:
    """Tuning trials never; with ``experiment`` only the records that experiment made or reused,
    without it only records made by ``recbench run`` (no experiment tag)."""
    out = []
    for r in records:
        tags = r.data.get("tags") or {}
        if tags.get("purpose") == "tune":
            continue
        if experiment is None and tags.get("experiment") is not None:
            continue
        if experiment is not None and experiment != tags.get("experiment") and experiment not in r.data.get("used_by", []):
            continue
        out.append(r)
    return out


def _paper_comparable(rec: Record, label: str) -> bool:
    """The paper's number belongs to the model at the paper's settings (its defaults here, or a
    configuration tuned on validation as the paper tuned its own)."""
    return label == rec["model"] or bool((rec.data.get("tags") or {}).get("tuned"))


def per_seed_frame(records: Iterable[Record], metrics: list[str], label: Label = record_label) -> pd.DataFrame:
    """One row per (dataset, protocol, metric, model label, seed) of the successful records."""
    rows = []
    for rec in records:
        if rec.status != "ok":
            continue
        lab = label(rec)
        comparable = _paper_comparable(rec, lab)
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
                        "paper_dataset": rec.data.get("paper_dataset", rec["dataset"]),
                        "split": rec.data.get("split"),
                        "protocol": proto,
                        "metric": metric,
                        "model": lab,
                        "base_model": rec["model"],
                        "seed": rec["seed"],
                        "value": value,
                        "comparable": comparable,
                    }
                )
    return pd.DataFrame(
        rows,
        columns=["dataset", "paper_dataset", "split", "protocol", "metric", "model", "base_model", "seed", "value", "comparable"],
    )


SUMMARY_COLUMNS = [
    "dataset", "protocol", "metric", "model", "base_model", "n_seeds", "mean", "std", "ci95_low", "ci95_high",
    "n_splits", "std_between_splits", "std_within_split",
]


def summary_frame(
    records: list[Record], metrics: list[str], paper: bool = True, label: Label = record_label
) -> pd.DataFrame:
    """Mean, std, 95 % CI (t over seeds) per (dataset, protocol, metric, model); ``best`` and
    ``second`` mark the highest and second-highest mean of each (dataset, protocol, metric)."""
    df = per_seed_frame(records, metrics, label)
    if df.empty:
        return pd.DataFrame(columns=[*SUMMARY_COLUMNS, "paper", "delta", "best", "second"])
    rows = []
    for key, g in df.groupby(["dataset", "protocol", "metric", "model", "base_model"], sort=False):
        mean, std, lo, hi = S.mean_ci(g["value"].to_numpy())
        between, within = S.split_variance(g["split"].to_numpy(), g["value"].to_numpy())
        rows.append([*key, int(g["value"].notna().sum()), mean, std, lo, hi, int(g["split"].nunique()), between, within,
                     bool(g["comparable"].all()), g["paper_dataset"].iloc[0]])
    out = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "comparable", "paper_dataset"])
    if paper:
        p = paper_table2().rename(columns={"model": "base_model", "dataset": "paper_dataset"})
        p["protocol"] = "sampled"
        out = out.merge(p, on=["paper_dataset", "protocol", "metric", "base_model"], how="left")
        out.loc[~out["comparable"], "paper"] = np.nan
        out["delta"] = out["mean"] - out["paper"]
    else:
        out["paper"] = np.nan
        out["delta"] = np.nan
    out = out.drop(columns=["comparable", "paper_dataset"])
    out["best"] = False
    out["second"] = False
    for _, g in out.groupby(["dataset", "protocol", "metric"], sort=False):
        distinct = sorted(set(np.round(g["mean"].dropna(), 12)), reverse=True)
        r = np.round(g["mean"], 12)
        if distinct:
            out.loc[g.index, "best"] = np.isclose(r, distinct[0])
        if len(distinct) > 1:
            out.loc[g.index, "second"] = np.isclose(r, distinct[1])
    return out


# ----------------------------------------------------------------------------- statistics


def label_model(label: str) -> str:
    """The registered model name of a label (``"opeci[epochs=2] (tuned)"`` → ``"opeci"``)."""
    return label.split("[")[0].split(" (")[0]


def resolve_reference(labels: Iterable[str], reference: str | None) -> str | None:
    """The reference model's label: ``reference`` as a label, or as a model name with exactly
    one label; by default ``opeci`` when present (else no paired tests)."""
    labels = list(dict.fromkeys(labels))
    want = reference or "opeci"
    if want in labels:
        return want
    matches = [lab for lab in labels if label_model(lab) == want]
    if len(matches) == 1:
        return matches[0]
    if reference is None:
        return None
    if matches:
        raise ValueError(f"--reference {reference!r} is ambiguous; one of: {', '.join(matches)}")
    raise ValueError(f"--reference {reference!r} is not among the models; valid: {', '.join(labels) or 'none'}")


SIG_COLUMNS = ["dataset", "protocol", "metric", "model", "reference", "n_users", "mean_diff", "p_value", "p_holm", "significant", "test_note"]


def significance_frame(
    records: list[Record],
    metrics: list[str],
    reference: str | None,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    label: Label = record_label,
) -> pd.DataFrame:
    """Paired tests over users of ``reference`` against every other model, per (dataset,
    protocol, metric); ``p_holm`` is Holm-adjusted across the comparisons of that row.
    ``mean_diff`` is reference − model over the paired users (per-user values averaged over
    seeds). A pair that cannot be tested (different splits, ranks missing) has NaN p-values
    and its reason in ``test_note``."""
    if reference is None:
        return pd.DataFrame(columns=SIG_COLUMNS)
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.status == "ok":
            groups.setdefault((r["dataset"], label(r)), []).append(r)
    rows = []
    datasets = list(dict.fromkeys(ds for ds, _ in groups))
    for ds in datasets:
        if (ds, reference) not in groups:
            continue
        ref_recs = groups[(ds, reference)]
        others = [lab for d, lab in groups if d == ds and lab != reference]
        protos = sorted({p for r in ref_recs for p in r.data.get("protocols", [])})
        for proto in protos:
            role = f"test/{proto}"
            for metric in metrics:
                family = []
                for lab in others:
                    recs = [r for r in groups[(ds, lab)] if proto in r.data.get("protocols", [])]
                    if not recs:
                        continue
                    row = {"dataset": ds, "protocol": proto, "metric": metric, "model": lab, "reference": reference,
                           "n_users": 0, "mean_diff": np.nan, "p_value": np.nan, "test_note": ""}
                    try:
                        a, b = S.paired_values(ref_recs, recs, metric, role)
                        res = S.paired_test(a, b, test)
                        row.update(n_users=res.n_users, mean_diff=res.mean_diff, p_value=res.p_value)
                    except S.PairingError as e:
                        row["test_note"] = str(e)
                    family.append(row)
                adj = S.holm([r["p_value"] for r in family])
                for r, p in zip(family, adj, strict=True):
                    r["p_holm"] = p
                    r["significant"] = bool(p < alpha) if not np.isnan(p) else False
                rows.extend(family)
    return pd.DataFrame(rows, columns=SIG_COLUMNS)


AGREE_COLUMNS = ["dataset", "metric", "n_models", "tau", "p_value", "agree", "discordant", "sampled_order", "full_order"]


def agreement_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Kendall's τ between the models' orderings under the sampled and the full protocol, per
    (dataset, metric), over the models evaluated under both."""
    rows = []
    if summary.empty or not {"sampled", "full"} <= set(summary["protocol"]):
        return pd.DataFrame(columns=AGREE_COLUMNS)
    wide = summary.pivot_table(index=["dataset", "metric", "model"], columns="protocol", values="mean", sort=False)
    wide = wide.dropna(subset=["sampled", "full"]).reset_index()
    for (ds, met), g in wide.groupby(["dataset", "metric"], sort=False):
        names = list(g["model"])
        ag = S.kendall_tau(names, g["sampled"].to_numpy(), g["full"].to_numpy())

        def order(col: str, g: pd.DataFrame = g, names: list[str] = names) -> list[str]:
            return [n for _, n in sorted(zip(-g[col].to_numpy(), names, strict=True))]

        rows.append({
            "dataset": ds, "metric": met, "n_models": ag.n_models, "tau": ag.tau, "p_value": ag.p_value,
            "agree": ag.agree, "discordant": "; ".join(f"{a} vs {b}" for a, b in ag.discordant),
            "sampled_order": " > ".join(order("sampled")), "full_order": " > ".join(order("full")),
        })
    return pd.DataFrame(rows, columns=AGREE_COLUMNS)


def agreement_warnings(agreement: pd.DataFrame) -> list[str]:
    out = []
    for _, r in agreement.iterrows():
        if not r["agree"]:
            out.append(
                f"{DATASET_LABELS.get(r['dataset'], r['dataset'])} {r['metric'].upper()}: the sampled and full "
                f"protocols order the models differently (Kendall τ = {r['tau']:.2f}; swapped: {r['discordant']}); {KR_NOTE}"
            )
    return out


# ----------------------------------------------------------------------------- the report


COST_COLUMNS = ["Dataset", "Model", "Seeds", "Epochs", "Samples/s", "s/epoch", "Fit s", "Sampled eval s",
                "Full eval s", "Peak RSS MB", "Threads"]


def cost_frame(records: Iterable[Record], label: Label = record_label) -> pd.DataFrame:
    """What each model cost, from its records: medians over seeds of training samples/s, seconds
    per epoch, fit and evaluation seconds and peak resident memory (whole process)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.status == "ok":
            groups.setdefault((r["dataset"], label(r)), []).append(r)

    def med(rs: list[Record], get: Callable[[Record], Any]) -> float:
        vals = [float(v) for r in rs if (v := get(r)) is not None]
        return float(np.median(vals)) if vals else float("nan")

    def t(key: str) -> Callable[[Record], Any]:
        return lambda rec: (rec.data.get("timing") or {}).get(key)

    rows = []
    for (ds, lab), rs in groups.items():
        threads = sorted({str((r.data.get("hardware") or {}).get("torch_threads", "?")) for r in rs})
        rows.append({
            "Dataset": ds, "Model": lab, "Seeds": len(rs), "Epochs": med(rs, t("epochs_run")),
            "Samples/s": med(rs, t("samples_per_s")), "s/epoch": med(rs, t("s_per_epoch")),
            "Fit s": med(rs, t("fit_s")), "Sampled eval s": med(rs, t("eval_test_sampled_s")),
            "Full eval s": med(rs, t("eval_test_full_s")), "Peak RSS MB": med(rs, lambda r: r.data.get("peak_rss_mb")),
            "Threads": "/".join(threads),
        })
    df = pd.DataFrame(rows, columns=COST_COLUMNS)
    if df.empty:
        return df
    order = {m: i for i, m in enumerate(_order_models(df["Model"]))}
    return df.sort_values(["Dataset", "Model"], key=lambda c: c.map(order) if c.name == "Model" else c).reset_index(drop=True)


def cost_table(rep: Report) -> pd.DataFrame:
    """:func:`cost_frame` formatted for reading (3 significant digits, — for not applicable)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "—" if np.isnan(v) else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
        return str(v)

    return rep.cost.map(fmt) if not rep.cost.empty else rep.cost


COST_NOTE = ("Medians over seeds of each record's own timing (training samples/s and s/epoch over its "
             "epochs; evaluation of every test user; peak resident memory of the whole process). "
             "Times depend on the machine and its load at the time: compare models within one run, "
             "not across reports.")


def failures(records: list[Record]) -> list[str]:
    return [f"{r['dataset']} / {r['model']} / seed {r['seed']}: {r.data.get('error')}" for r in records if r.status != "ok"]


@dataclass
class Report:
    summary: pd.DataFrame
    failed: list[str]
    protocols: list[str]
    reference: str | None = None
    test: str = "wilcoxon"
    alpha: float = 0.05
    agreement: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=AGREE_COLUMNS))
    notes: list[str] = field(default_factory=list)  # extra caption lines (e.g. reduced settings)
    title: str = "recbench report"
    figures: list[tuple[str, Any]] = field(default_factory=list)  # (caption, matplotlib Figure) for HTML
    n_negatives: list[int] = field(default_factory=list)  # sampled negatives per test user, as the splits recorded
    cost: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COST_COLUMNS))

    @property
    def warnings(self) -> list[str]:
        return agreement_warnings(self.agreement)


def _split_spec(rec: Record) -> tuple[int, bool, int]:
    si = rec.data.get("split_info") or {}
    return int(si.get("seed", 0)), bool(si.get("validation", False)), int(si.get("n_negatives", 99))


def pool_records(records: list[Record], label: Label = record_label, pool_split_seeds: bool = False) -> tuple[list[Record], list[str]]:
    """The records a report pools, and notes naming what it left out.

    A report cell pools only records of one experiment: one data set, one split (fingerprint),
    one configuration (label), distinct model seeds. Of several records of one model seed (a
    rerun with other options, a copy of a results folder), the newest is counted and the others
    are named in a note. A data set evaluated on several splits is shown once per split
    (``ml-100k · split 1``; ``· validation`` for a split with a validation item, ``· N
    negatives`` for other candidate counts), unless ``pool_split_seeds``: then the split seeds of
    one kind of split form one cell (``ml-100k · splits 0,1,2``) whose spread is decomposed into
    the spread between splits and within a split (over model seeds), and paired tests pair users
    within each split."""
    newest: dict[tuple[Any, ...], Record] = {}
    notes = []
    for r in records:
        if r.status != "ok":
            continue
        k = (r["dataset"], r.data.get("split"), label(r), r["seed"])
        if k in newest:
            old, new = sorted([newest[k], r], key=lambda x: str(x.data.get("created", "")))
            notes.append(
                f"{r['dataset']}, {label(r)}, seed {r['seed']}: two records of one seed on one split; the newest "
                f"({new.data.get('created', '?')}) is counted, {old.path.name if old.path else 'the other'} is not."
            )
            newest[k] = new
        else:
            newest[k] = r
    kept = {id(r) for r in newest.values()}
    specs: dict[str, set[tuple[int, bool, int]]] = {}
    for r in records:
        if id(r) in kept or r.status != "ok":
            specs.setdefault(r["dataset"], set()).add(_split_spec(r))
    out = []
    for r in records:
        if r.status == "ok" and id(r) not in kept:
            continue
        ds = r["dataset"]
        if len(specs.get(ds, ())) <= 1:
            out.append(r)
            continue
        seed, val, neg = _split_spec(r)
        kind = sorted(s[0] for s in specs[ds] if s[1:] == (val, neg))
        extra = (" · validation" if val else "") + ("" if neg == 99 else f" · {neg} negatives")
        name = f"{ds} · splits {','.join(map(str, kind))}{extra}" if pool_split_seeds and len(kind) > 1 else f"{ds} · split {seed}{extra}"
        out.append(Record(data={**r.data, "dataset": name, "paper_dataset": ds}, users=r.users, ranks=r.ranks, path=r.path))
    if pool_split_seeds and any(len({s[0] for s in v}) > 1 for v in specs.values()):
        notes.append("Split seeds pooled (--pool-split-seeds): mean and std over every (split, model seed) run; "
                     "the std is decomposed into between-split and within-split (model seed) parts; users are paired within a split.")
    return out, notes


def build_report(
    results: Path | None,
    metrics: list[str],
    paper: bool = True,
    *,
    reference: str | None = None,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    experiment: str | None = None,
    records: list[Record] | None = None,
    label: Label = record_label,
    pool_split_seeds: bool = False,
) -> Report:
    """The report of the records under ``results`` (or of ``records`` as given)."""
    if test not in S.TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(S.TESTS)}")
    if records is None:
        records = select_records(iter_records(results) if results is not None else [], experiment)
    records, pool_notes = pool_records(list(records), label, pool_split_seeds)
    summary = summary_frame(records, metrics, paper, label)
    ok_labels = [label(r) for r in records if r.status == "ok"]
    ref = resolve_reference(ok_labels, reference)
    sig = significance_frame(records, metrics, ref, test, alpha, label)
    if not sig.empty:
        summary = summary.merge(sig.drop(columns=["test_note"]), on=["dataset", "protocol", "metric", "model"], how="left")
        summary = summary.merge(sig[["dataset", "protocol", "metric", "model", "test_note"]], on=["dataset", "protocol", "metric", "model"], how="left")
    else:
        for c in ("reference", "n_users", "mean_diff", "p_value", "p_holm", "significant", "test_note"):
            summary[c] = np.nan
    summary["significant"] = summary["significant"].astype("boolean").fillna(False).astype(bool)
    agreement = agreement_frame(summary)
    if not agreement.empty:
        summary = summary.merge(
            agreement[["dataset", "metric", "tau"]].rename(columns={"tau": "kendall_tau_sampled_full"}),
            on=["dataset", "metric"], how="left",
        )
    else:
        summary["kendall_tau_sampled_full"] = np.nan
    protocols = [p for p in ("sampled", "full") if p in set(summary["protocol"])]
    notes = list(pool_notes)
    if ref is None and len(set(ok_labels)) > 1:
        several = sorted({lab for lab in ok_labels if label_model(lab) == "opeci"})
        notes.append(
            f"No paired significance tests: opeci has several configurations ({', '.join(several)}); choose one with --reference."
            if several else "No paired significance tests: the reference model (opeci, or --reference) has no records.")
    negs = sorted({int(n) for r in records if r.status == "ok" and (n := (r.data.get("split_info") or {}).get("n_negatives")) is not None})
    return Report(summary=summary, failed=failures(records), protocols=protocols, reference=ref,
                  test=test, alpha=alpha, agreement=agreement, notes=notes, n_negatives=negs,
                  cost=cost_frame(records, label))


# ----------------------------------------------------------------------------- formatting


def _order_models(labels: Iterable[str]) -> list[str]:
    order = {m: i for i, m in enumerate([*PAPER_ORDER, *MODELS])}
    return sorted(set(labels), key=lambda s: (order.get(label_model(s), 999), s))


def _cell(row: pd.Series, paper: bool, style: dict[str, Any]) -> str:
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
    summary: pd.DataFrame, protocol: str, paper: bool, bold: tuple[str, str] = ("**", "**"), style: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Datasets × metrics as rows, models as columns, formatted cells."""
    style = style or {**MD_STYLE, "best": bold}
    sub = summary[summary["protocol"] == protocol].copy()
    if sub.empty:
        return pd.DataFrame()
    sub["cell"] = [_cell(r, paper, style) for _, r in sub.iterrows()]
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
    text = f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} seeds"
    if "n_splits" in summary and (summary["n_splits"] > 1).any():
        k = summary["n_splits"]
        splits = f"{int(k.min())}" if k.min() == k.max() else f"{int(k.min())}–{int(k.max())}"
        text = text.replace("seed", "run") + f" ({splits} split seeds × model seeds)"
    return text


def _n_comparisons(rep: Report, proto: str) -> str:
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
    if rep.reference is not None and sub["p_value"].notna().any():
        parts.append(
            f"{mark} differs from {rep.reference} at p < {rep.alpha:g} after Holm's correction across the "
            f"comparisons of each row ({_n_comparisons(rep, proto)} per row; {TEST_NAMES[rep.test]} over users, on each "
            "user's metric averaged over seeds; same split)."
        )
    notes = sub["test_note"].map(lambda v: v if isinstance(v, str) else "") if "test_note" in sub else pd.Series(dtype=str)
    untestable = sub[notes != ""]
    if len(untestable):
        parts.append(f"Not tested: {', '.join(sorted(set(untestable['model'])))} ({notes[notes != ''].iloc[0]}).")
    return " ".join(parts + rep.notes)


def stats_table(rep: Report, proto: str) -> pd.DataFrame:
    """Long table: mean, std, 95 % CI, difference to the reference and p-values."""
    sub = rep.summary[rep.summary["protocol"] == proto]
    rows = []
    for _, r in sub.iterrows():
        rows.append({
            "Dataset": DATASET_LABELS.get(r["dataset"], r["dataset"]),
            "Metric": r["metric"].upper(),
            "Model": r["model"],
            "Seeds": int(r["n_seeds"]),
            "Mean": f"{r['mean']:.4f}",
            "Std": "—" if np.isnan(r["std"]) else f"{r['std']:.4f}",
            "95% CI": "—" if np.isnan(r["ci95_low"]) else f"[{r['ci95_low']:.4f}, {r['ci95_high']:.4f}]",
            f"Δ vs {rep.reference or 'ref.'} (users)": "—" if pd.isna(r["mean_diff"]) else f"{-r['mean_diff']:+.4f}",
            "Users": "—" if pd.isna(r["n_users"]) or not r["n_users"] else f"{int(r['n_users'])}",
            "p": "—" if pd.isna(r["p_value"]) else f"{r['p_value']:.2g}",
            "p (Holm)": "—" if pd.isna(r["p_holm"]) else f"{r['p_holm']:.2g}" + (f" {MARK}" if r["significant"] else ""),
        })
        if (sub["n_splits"] > 1).any():  # split seeds pooled: the spread decomposed
            rows[-1].update({
                "Splits": int(r["n_splits"]),
                "Std between splits": "—" if np.isnan(r["std_between_splits"]) else f"{r['std_between_splits']:.4f}",
                "Std within a split": "—" if np.isnan(r["std_within_split"]) else f"{r['std_within_split']:.4f}",
            })
    df = pd.DataFrame(rows)
    if not df.empty:
        ds_order = {d: i for i, d in enumerate(dict.fromkeys(df["Dataset"]))}
        met_order = {m: i for i, m in enumerate(dict.fromkeys(df["Metric"]))}
        mod_order = {m: i for i, m in enumerate(_order_models(df["Model"]))}
        key = [(ds_order[d], met_order[m], mod_order[o]) for d, m, o in zip(df["Dataset"], df["Metric"], df["Model"], strict=True)]
        df = df.iloc[sorted(range(len(df)), key=key.__getitem__)]
    return df


def side_by_side(rep: Report) -> pd.DataFrame:
    """Sampled and full-ranking metrics of each model next to each other, with each model's
    rank under each protocol."""
    s = rep.summary
    wide = s.pivot_table(index=["dataset", "metric", "model"], columns="protocol", values=["mean", "std"], sort=False)
    rows = []
    for (ds, met, mod), r in wide.iterrows():
        rows.append({"dataset": ds, "metric": met, "model": mod,
                     "s_mean": r.get(("mean", "sampled"), np.nan), "s_std": r.get(("std", "sampled"), np.nan),
                     "f_mean": r.get(("mean", "full"), np.nan), "f_std": r.get(("std", "full"), np.nan)})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["s_rank"] = df.groupby(["dataset", "metric"])["s_mean"].rank(ascending=False, method="min")
    df["f_rank"] = df.groupby(["dataset", "metric"])["f_mean"].rank(ascending=False, method="min")
    fmt = lambda m, sd: "—" if pd.isna(m) else (f"{m:.3f}" + ("" if pd.isna(sd) else f" ± {sd:.3f}"))  # noqa: E731
    out = pd.DataFrame({
        "Dataset": df["dataset"].map(lambda d: DATASET_LABELS.get(d, d)),
        "Metric": df["metric"].str.upper(),
        "Model": df["model"],
        "Sampled": [fmt(m, sd) for m, sd in zip(df["s_mean"], df["s_std"], strict=True)],
        "Rank (sampled)": df["s_rank"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
        "Full ranking": [fmt(m, sd) for m, sd in zip(df["f_mean"], df["f_std"], strict=True)],
        "Rank (full)": df["f_rank"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
    })
    # sorted by the numeric rank (as text, 10 would come before 2); models without one last
    order = np.lexsort((df["s_rank"].fillna(np.inf).to_numpy(), out["Metric"].to_numpy(), out["Dataset"].to_numpy()))
    return out.iloc[order]


def agreement_table(rep: Report) -> pd.DataFrame:
    a = rep.agreement
    return pd.DataFrame({
        "Dataset": a["dataset"].map(lambda d: DATASET_LABELS.get(d, d)),
        "Metric": a["metric"].str.upper(),
        "Models": a["n_models"],
        "Kendall τ": a["tau"].map(lambda v: "—" if pd.isna(v) else f"{v:.2f}"),
        "p": a["p_value"].map(lambda v: "—" if pd.isna(v) else f"{v:.2g}"),
        "Same order": a["agree"].map(lambda v: "yes" if v else "NO"),
        "Swapped pairs": a["discordant"].replace("", "—"),
    })


def proto_title(rep: Report, proto: str) -> str:
    """The protocol's title, with the split's number of sampled negatives as recorded."""
    if proto == "sampled" and rep.n_negatives and rep.n_negatives != [99]:
        n = rep.n_negatives
        if len(n) == 1:
            return f"Sampled protocol: the held-out item ranked among its {n[0] + 1} stored candidates ({n[0]} sampled negatives)"
        return f"Sampled protocol: the held-out item ranked among its stored candidates ({'/'.join(map(str, n))} sampled negatives, by split)"
    return _PROTO_TITLE[proto]


_PROTO_TITLE = {
    "sampled": "Sampled protocol: the held-out item ranked among its 100 stored candidates (99 sampled negatives)",
    "full": "Full ranking: the held-out item ranked among all items without a training interaction",
}


def _md(df: pd.DataFrame) -> str:
    return tabulate(df, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def render(rep: Report, fmt: str, paper: bool = True) -> str:
    """The report in ``fmt`` (markdown, csv, latex, json, html)."""
    if fmt == "csv":
        return rep.summary.to_csv(index=False)
    if fmt == "json":
        return json.dumps(
            {
                "rows": json.loads(rep.summary.to_json(orient="records")),
                "agreement": json.loads(rep.agreement.to_json(orient="records")),
                "reference": rep.reference,
                "test": rep.test,
                "alpha": rep.alpha,
                "legend": {p: legend(rep, p) for p in rep.protocols},
                "warnings": rep.warnings,
                "cost": json.loads(rep.cost.to_json(orient="records")),
                "failed": rep.failed,
            },
            indent=1,
        )
    if fmt == "markdown":
        return _render_markdown(rep, paper)
    if fmt == "latex":
        return _render_latex(rep)
    if fmt == "html":
        return _render_html(rep, paper)
    raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


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
        pick = m if m in labels else f"{m} (tuned)" if f"{m} (tuned)" in labels else max(labels, key=lambda lab: (seeds[lab], lab == labels[0]))
        chosen[m] = pick

    def cell(r: pd.Series) -> str:
        sd = "" if pd.isna(r["std"]) else f" ± {r['std']:.3f}"
        return f"{r['mean']:.3f}{sd} ({int(r['n_seeds'])})"

    keys = list(dict.fromkeys(zip(s["dataset"], s["metric"], strict=True)))
    rows, paper_rows = [], []
    p = paper_table2()
    for ds, met in keys:
        row = {"Dataset": DATASET_LABELS.get(ds, ds), "Metric": met.upper()}
        prow = dict(row)
        for m, lab in chosen.items():
            hit = s[(s["dataset"] == ds) & (s["metric"] == met) & (s["model"] == lab)]
            row[m] = cell(hit.iloc[0]) if len(hit) else "—"
            pv = p[(p["dataset"] == ds) & (p["metric"] == met) & (p["model"] == m)]["paper"]
            prow[m] = f"{float(pv.iloc[0]):.3f}" if len(pv) else "—"
        rows.append(row)
        paper_rows.append(prow)
    others = s[~s["model"].isin(chosen.values())]
    other_rows = [{"Dataset": DATASET_LABELS.get(r["dataset"], r["dataset"]), "Metric": r["metric"].upper(),
                   "Model": r["model"], "Mean ± std (seeds)": cell(r)} for _, r in others.iterrows()]
    return pd.DataFrame(rows), pd.DataFrame(paper_rows), pd.DataFrame(other_rows), chosen


def _table2_markdown(rep: Report) -> list[str]:
    ours, paper, others, chosen = table2_view(rep)
    if ours.empty:
        return []
    shown = "; ".join(f"{m} = {lab}" for m, lab in chosen.items() if lab != m)
    parts = [
        "### Table 2 (sampled protocol), as the paper lays it out\n\n"
        "Mean ± std over model seeds (the number of seeds in parentheses); one configuration per model"
        + (f" ({shown})" if shown else "") + ". The paper's values are in the next table; every other "
        "configuration and variant after it; statistics and the full-ranking protocol below.\n",
        _md(ours),
        "\nThe paper's Table 2 (HR@10 / NDCG@10, sampled protocol):\n",
        _md(paper),
    ]
    if not others.empty:
        parts += ["\nOther configurations and variants (sampled protocol):\n", _md(others)]
    return parts


def _render_markdown(rep: Report, paper: bool) -> str:
    parts = _table2_markdown(rep) if paper else []
    for proto in rep.protocols:
        t = pivot(rep.summary, proto, paper and proto == "sampled", style=MD_STYLE)
        parts.append(f"### {proto_title(rep, proto)}\n\n{legend(rep, proto)} Best per row in bold.\n")
        parts.append(_md(t.reset_index()))
    for proto in rep.protocols:
        parts.append(f"### Statistics, {proto} protocol: 95 % confidence interval (t, over seeds) and paired tests\n")
        parts.append(_md(stats_table(rep, proto)))
    if not rep.agreement.empty:
        parts.append("### Sampled against full ranking\n\nEach model's score and rank under both protocols; "
                     "Kendall τ between the two orderings of the models (1: same order).\n")
        parts.append(_md(side_by_side(rep)))
        parts.append(_md(agreement_table(rep)))
        warns = rep.warnings
        parts.append("\n".join(f"> **Warning:** {w}" for w in warns) if warns else
                     "The two protocols order the models the same way on every dataset and metric.")
    if not rep.cost.empty:
        parts.append(f"### Cost\n\n{COST_NOTE}\n")
        parts.append(_md(cost_table(rep)))
    if rep.failed:
        parts.append("Failed cells:\n" + "\n".join(f"- {f}" for f in rep.failed))
    return "\n\n".join(parts) + "\n"


_TEX_ESC = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX_ESC.get(c, c) for c in str(s))


def _render_latex(rep: Report) -> str:
    parts = []
    ours, paper_t, _others, chosen = table2_view(rep)
    if not ours.empty:  # the paper's layout, short names, one row of the paper's values per metric
        rows = []
        for (_, o), (_, pp) in zip(ours.iterrows(), paper_t.iterrows(), strict=True):
            rows.append([tex_escape(o["Dataset"]), tex_escape(o["Metric"]), *[tex_escape_text(o[m]) for m in chosen]])
            rows.append(["", "\\textit{paper}", *[pp[m] for m in chosen]])
        head = " & ".join(["Dataset", "Metric", *[tex_escape(m) for m in chosen]])
        body = "\n".join(" & ".join(r) + " \\\\" for r in rows)
        shown = "; ".join(f"{tex_escape(m)}: {tex_escape(lab)}" for m, lab in chosen.items() if lab != m)
        cap = tex_escape_text("HR@10 and NDCG@10, sampled protocol (99 negatives): mean ± std over model seeds "
                              "(seeds in parentheses), the paper's Table 2 below each row.") + (f" Configurations: {shown}." if shown else "")
        parts.append(
            "\\begin{table}[t]\n\\centering\n\\small\n\\setlength{\\tabcolsep}{3pt}\n"
            f"\\caption{{{cap}}}\n\\label{{tab:recbench-table2}}\n"
            f"\\begin{{tabular}}{{ll{'c' * len(chosen)}}}\n\\toprule\n{head} \\\\\n\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}\n"
            "\\end{table}\n"
        )
    for proto in rep.protocols:
        sub = rep.summary[rep.summary["protocol"] == proto].copy()
        sub["model"] = sub["model"].map(tex_escape)
        t = pivot(sub, proto, False, style=TEX_STYLE).replace("—", "--").reset_index()
        t["Dataset"] = t["Dataset"].map(tex_escape).where(t["Dataset"].ne(t["Dataset"].shift()), "")
        t["Metric"] = t["Metric"].map(tex_escape)
        t.columns = [f"{{{c}}}" for c in t.columns]
        body = t.to_latex(escape=False, index=False, column_format="ll" + "c" * (len(t.columns) - 2))
        cap = [f"{proto_title(rep, proto)}.", legend(rep, proto, mark="$^{\\dagger}$"),
               "Best per row in bold, second best underlined."]
        if proto == "full" and not rep.agreement.empty:
            taus = ", ".join(f"{DATASET_LABELS.get(r['dataset'], r['dataset'])} {r['metric'].upper()} "
                             f"{'--' if pd.isna(r['tau']) else format(r['tau'], '.2f')}" for _, r in rep.agreement.iterrows())
            cap.append(f"Kendall $\\tau$ between the sampled and the full-ranking orderings of the models: {taus}.")
            if rep.warnings:
                cap.append("Where $\\tau < 1$ the two protocols order the models differently (Krichene and Rendle, KDD 2020).")
        caption = tex_escape_text(" ".join(cap))
        parts.append(
            "\\begin{table}[t]\n\\centering\n\\small\n"
            f"\\caption{{{caption}}}\n"
            f"\\label{{tab:recbench-{proto}}}\n"
            + body
            + "\\end{table}\n"
        )
    return "% requires \\usepackage{booktabs}\n" + "\n".join(parts)


def tex_escape_text(s: str) -> str:
    """Escape prose that may already contain a few LaTeX commands (math, \\dagger): only the
    characters that would break compilation outside them."""
    out = []
    in_math = False
    for c in s:
        if c == "$":
            in_math = not in_math
            out.append(c)
        elif not in_math and c in "&%#_":
            out.append("\\" + c)
        elif c == "τ":
            out.append("$\\tau$" if not in_math else "\\tau")
        elif c == "–":
            out.append("--")
        elif c == "—":
            out.append("---")
        elif c == "±":
            out.append("$\\pm$" if not in_math else "\\pm")
        elif c in "<>" and not in_math:
            out.append(f"${c}$")
        elif c == "Δ":
            out.append("$\\Delta$")
        elif c == "·":
            out.append("$\\cdot$")
        else:
            out.append(c)
    return "".join(out)


def _render_html(rep: Report, paper: bool) -> str:
    from recbench import figures as F

    body = [f"<h1>{html.escape(rep.title)}</h1>"]
    models = _order_models(rep.summary["model"]) if not rep.summary.empty else []
    for proto in rep.protocols:
        t = pivot(rep.summary, proto, paper and proto == "sampled", style={**HTML_STYLE, "mark": "&dagger;"})
        body.append(f"<h2>{html.escape(proto_title(rep, proto))}</h2>")
        body.append(f"<p class='legend'>{html.escape(legend(rep, proto))} Best per row in bold, second underlined.</p>")
        body.append(t.reset_index().to_html(escape=False, border=0, classes="results", index=False))
    for proto in rep.protocols:
        body.append(f"<h2>Statistics, {proto} protocol</h2>")
        body.append(stats_table(rep, proto).to_html(border=0, classes="stats", index=False))
    if not rep.agreement.empty:
        body.append("<h2>Sampled against full ranking</h2>")
        body.append(side_by_side(rep).to_html(border=0, classes="stats", index=False))
        body.append(agreement_table(rep).to_html(border=0, classes="stats", index=False))
        for w in rep.warnings:
            body.append(f"<p class='warning'>Warning: {html.escape(w)}</p>")
    if not rep.cost.empty:
        body.append(f"<h2>Cost</h2><p class='legend'>{html.escape(COST_NOTE)}</p>")
        body.append(cost_table(rep).to_html(border=0, classes="stats", index=False))
    figs: list[tuple[str, Any]] = []
    for proto in rep.protocols:
        f = F.summary_bars(rep.summary, proto, models, f"{proto.capitalize()} protocol")
        if f is not None:
            figs.append((f"{proto_title(rep, proto)}. Bars: mean over seeds; {F.ERR_NOTE}; white diamonds: the paper's numbers.", f))
    f = F.agreement_scatter(rep.summary, models)
    if f is not None:
        figs.append(("Sampled (x) against full-ranking (y) metrics per model.", f))
    figs += rep.figures
    if figs:
        body.append("<h2>Figures</h2>")
        for cap, fig in figs:
            body.append(f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{F.png_base64(fig)}'/>"
                        f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    if rep.failed:
        body.append("<h2>Failed cells</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in rep.failed) + "</ul>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}"
             ".legend{color:#333;font-size:90%}.warning{color:#a40;font-weight:bold}"
             "figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:90%;color:#333}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(rep.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")

"""The report's tidy frames: per-seed values, the summary with its confidence intervals and the
paper's numbers, the paired significance tests, the sampled/full agreement and the cost."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from recbench import stats
from recbench.data.registry import dataset_label
from recbench.eval.metrics import per_user
from recbench.report.labels import Label, label_model, order_models, record_label
from recbench.results import Record

KR_NOTE = "sampled metrics can order models differently from full ranking (Krichene & Rendle, KDD 2020)"


def paper_table2() -> pd.DataFrame:
    """The OPECI paper's Table 2 (HR@10 / NDCG@10, sampled protocol), long format."""
    with resources.files("recbench.paper").joinpath("table2.csv").open() as f:
        wide = pd.read_csv(f)
    return wide.melt(id_vars=["dataset", "metric"], var_name="model", value_name="paper")


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
        if (
            experiment is not None
            and experiment != tags.get("experiment")
            and experiment not in r.data.get("used_by", [])
        ):
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
                    value = float(per_user(ranks, metric).mean())
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
        columns=[
            "dataset",
            "paper_dataset",
            "split",
            "protocol",
            "metric",
            "model",
            "base_model",
            "seed",
            "value",
            "comparable",
        ],
    )


SUMMARY_COLUMNS = [
    "dataset",
    "protocol",
    "metric",
    "model",
    "base_model",
    "n_seeds",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "n_splits",
    "std_between_splits",
    "std_within_split",
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
        mean, std, lo, hi = stats.mean_ci(g["value"].to_numpy())
        between, within = stats.split_variance(g["split"].to_numpy(), g["value"].to_numpy())
        rows.append(
            [
                *key,
                int(g["value"].notna().sum()),
                mean,
                std,
                lo,
                hi,
                int(g["split"].nunique()),
                between,
                within,
                bool(g["comparable"].all()),
                g["paper_dataset"].iloc[0],
            ]
        )
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


def resolve_references(group_labels: dict[str, list[str]], references: str | Sequence[str] | None) -> dict[str, str]:
    """The reference of each row group (data set, split): the first of ``references`` that the
    group has, as a label or as a model name with exactly one label there; by default ``opeci``
    where it has exactly one configuration. Groups without one get no paired tests. Every given
    reference must name a model of some group; one that is ambiguous where it would be chosen
    is an error (name the configuration)."""
    refs = [references] if isinstance(references, str) else list(references or [])
    every = list(dict.fromkeys(lab for labs in group_labels.values() for lab in labs))
    for ref in refs:
        if ref not in every and not any(label_model(lab) == ref for lab in every):
            raise ValueError(f"--reference {ref!r} is not among the models; valid: {', '.join(every) or 'none'}")
    out: dict[str, str] = {}
    for group, labels in group_labels.items():
        if not refs:
            chosen = resolve_reference(labels, None)
        else:
            chosen = None
            for ref in refs:
                if ref in labels or any(label_model(lab) == ref for lab in labels):
                    chosen = resolve_reference(labels, ref)
                    break
        if chosen is not None:
            out[group] = chosen
    return out


SIG_COLUMNS = [
    "dataset",
    "protocol",
    "metric",
    "model",
    "reference",
    "n_users",
    "mean_diff",
    "p_value",
    "p_holm",
    "significant",
    "test_note",
]


def significance_frame(
    records: list[Record],
    metrics: list[str],
    reference: str | dict[str, str] | None,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    label: Label = record_label,
) -> pd.DataFrame:
    """Paired tests over users of ``reference`` (one label, or one per row group as
    :func:`resolve_references` gives) against every other model, per (dataset, protocol,
    metric); ``p_holm`` is Holm-adjusted across the comparisons of that row.
    ``mean_diff`` is reference − model over the paired users (per-user values averaged over
    seeds). A pair that cannot be tested (different splits, ranks missing) has NaN p-values
    and its reason in ``test_note``."""
    if not reference:
        return pd.DataFrame(columns=SIG_COLUMNS)
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.status == "ok":
            groups.setdefault((r["dataset"], label(r)), []).append(r)
    rows = []
    datasets = list(dict.fromkeys(ds for ds, _ in groups))
    for ds in datasets:
        ref = reference.get(ds) if isinstance(reference, dict) else reference
        if ref is None or (ds, ref) not in groups:
            continue
        ref_recs = groups[(ds, ref)]
        others = [lab for d, lab in groups if d == ds and lab != ref]
        protos = sorted({p for r in ref_recs for p in r.data.get("protocols", [])})
        for proto in protos:
            role = f"test/{proto}"
            for metric in metrics:
                family = []
                for lab in others:
                    recs = [r for r in groups[(ds, lab)] if proto in r.data.get("protocols", [])]
                    if not recs:
                        continue
                    row = {
                        "dataset": ds,
                        "protocol": proto,
                        "metric": metric,
                        "model": lab,
                        "reference": ref,
                        "n_users": 0,
                        "mean_diff": np.nan,
                        "p_value": np.nan,
                        "test_note": "",
                    }
                    try:
                        a, b = stats.paired_values(ref_recs, recs, metric, role)
                        res = stats.paired_test(a, b, test)
                        row.update(n_users=res.n_users, mean_diff=res.mean_diff, p_value=res.p_value)
                    except stats.PairingError as e:
                        row["test_note"] = str(e)
                    family.append(row)
                adj = stats.holm([r["p_value"] for r in family])
                for r, p in zip(family, adj, strict=True):
                    r["p_holm"] = p
                    r["significant"] = bool(p < alpha) if not np.isnan(p) else False
                rows.extend(family)
    return pd.DataFrame(rows, columns=SIG_COLUMNS)


PAPER_TEST_COLUMNS = ["dataset", "protocol", "metric", "model", "paper_n_users", "paper_p", "paper_p_holm"]


def paper_test_frame(
    records: list[Record], summary: pd.DataFrame, metrics: list[str], label: Label = record_label
) -> pd.DataFrame:
    """Where the summary shows the paper's number: a one-sample t test over users of the model's
    per-user metric (averaged over its seeds within each split) against that number
    (:func:`recbench.stats.one_sample_t`, which takes the paper's value as a constant);
    ``paper_p_holm`` is Holm-adjusted across the models of each (dataset, protocol, metric)."""
    if "paper" not in summary or summary["paper"].isna().all():
        return pd.DataFrame(columns=PAPER_TEST_COLUMNS)
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.status == "ok":
            groups.setdefault((r["dataset"], label(r)), []).append(r)
    rows = []
    want = summary[summary["paper"].notna() & summary["metric"].isin(metrics)]
    for (ds, proto, metric), g in want.groupby(["dataset", "protocol", "metric"], sort=False):
        family = []
        for _, row in g.iterrows():
            by_split: dict[str, list[Record]] = {}
            for r in groups.get((ds, row["model"]), []):
                if proto in r.data.get("protocols", []):
                    by_split.setdefault(str(r.data.get("split")), []).append(r)
            res = {"paper_n_users": 0, "paper_p": np.nan}
            try:
                vals = [stats.user_values(v, metric, f"test/{proto}")[2] for v in by_split.values()]
                if vals:
                    t = stats.one_sample_t(np.concatenate(vals), float(row["paper"]))
                    res = {"paper_n_users": t.n_users, "paper_p": t.p_value}
            except stats.PairingError:
                pass  # no per-user ranks: no test (the difference is still shown)
            family.append({"dataset": ds, "protocol": proto, "metric": metric, "model": row["model"], **res})
        for r, p in zip(family, stats.holm([r["paper_p"] for r in family]), strict=True):
            r["paper_p_holm"] = p
        rows.extend(family)
    return pd.DataFrame(rows, columns=PAPER_TEST_COLUMNS)


AGREE_COLUMNS = [
    "dataset",
    "metric",
    "n_models",
    "tau",
    "p_value",
    "agree",
    "discordant",
    "sampled_order",
    "full_order",
]


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
        ag = stats.kendall_tau(names, g["sampled"].to_numpy(), g["full"].to_numpy())

        def order(col: str, g: pd.DataFrame = g, names: list[str] = names) -> list[str]:
            return [n for _, n in sorted(zip(-g[col].to_numpy(), names, strict=True))]

        rows.append(
            {
                "dataset": ds,
                "metric": met,
                "n_models": ag.n_models,
                "tau": ag.tau,
                "p_value": ag.p_value,
                "agree": ag.agree,
                "discordant": "; ".join(f"{a} vs {b}" for a, b in ag.discordant),
                "sampled_order": " > ".join(order("sampled")),
                "full_order": " > ".join(order("full")),
            }
        )
    return pd.DataFrame(rows, columns=AGREE_COLUMNS)


def agreement_warnings(agreement: pd.DataFrame) -> list[str]:
    """One warning per (dataset, metric) whose two protocols order the models differently."""
    out = []
    for _, r in agreement.iterrows():
        if not r["agree"]:
            out.append(
                f"{dataset_label(r['dataset'])} {r['metric'].upper()}: the sampled and full "
                f"protocols order the models differently (Kendall τ = {r['tau']:.2f}; "
                f"swapped: {r['discordant']}); {KR_NOTE}"
            )
    return out


COST_COLUMNS = [
    "Dataset",
    "Model",
    "Seeds",
    "Epochs",
    "Samples/s",
    "s/epoch",
    "Fit s",
    "Sampled eval s",
    "Full eval s",
    "Peak RSS MB",
    "Threads",
    "Subnormals",
]


def subnormals_of(records: list[Record]) -> str:
    """How the records' fits treated subnormal floats: "flushed" (recbench's default since
    2026-12-04), "kept" (records made before it, which have no ``denormals`` field: their
    timings are the slower ones), or e.g. "kept 1/3" when the seeds differ."""
    kept = sum(1 for r in records if r.data.get("denormals", "keep") == "keep")
    return "flushed" if kept == 0 else "kept" if kept == len(records) else f"kept {kept}/{len(records)}"


def cost_frame(records: Iterable[Record], label: Label = record_label) -> pd.DataFrame:
    """What each model cost, from its records: medians over seeds of training samples/s, seconds
    per epoch, fit and evaluation seconds and peak resident memory (whole process), with how
    the fits treated subnormal floats (:func:`subnormals_of`)."""
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
        rows.append(
            {
                "Dataset": ds,
                "Model": lab,
                "Seeds": len(rs),
                "Epochs": med(rs, t("epochs_run")),
                "Samples/s": med(rs, t("samples_per_s")),
                "s/epoch": med(rs, t("s_per_epoch")),
                "Fit s": med(rs, t("fit_s")),
                "Sampled eval s": med(rs, t("eval_test_sampled_s")),
                "Full eval s": med(rs, t("eval_test_full_s")),
                "Peak RSS MB": med(rs, lambda r: r.data.get("peak_rss_mb")),
                "Threads": "/".join(threads),
                "Subnormals": subnormals_of(rs),
            }
        )
    df = pd.DataFrame(rows, columns=COST_COLUMNS)
    if df.empty:
        return df
    order = {m: i for i, m in enumerate(order_models(df["Model"]))}
    return df.sort_values(["Dataset", "Model"], key=lambda c: c.map(order) if c.name == "Model" else c).reset_index(
        drop=True
    )


CURVE_COLUMNS = ["dataset", "model", "seed", "epoch", "metric", "value", "epochs_run", "best_epoch", "patience"]


def validation_curves(records: Iterable[Record], label: Label = record_label) -> pd.DataFrame:
    """The per-epoch validation metrics of every record that kept them (runs with a validation
    item evaluated during training, e.g. early stopping): one row per (dataset, model label,
    seed, epoch, metric), with the record's epochs run, the epoch whose weights it kept
    (``best_epoch``; NaN without early stopping: the last) and its patience."""
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        hist = r.data.get("history") or []
        epochs = [h for h in hist if "epoch" in h and h.get("validation")]
        if not epochs:
            continue
        best = next((h["best_epoch"] for h in hist if "best_epoch" in h), np.nan)
        run = max(int(h["epoch"]) for h in hist if "epoch" in h)
        for h in epochs:
            for metric, value in h["validation"].items():
                rows.append(
                    [r["dataset"], label(r), r["seed"], int(h["epoch"]), metric, float(value), run, best,
                     int(r.data.get("early_stopping") or 0)]
                )  # fmt: skip
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)

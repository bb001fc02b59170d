"""Building a :class:`Report`: which records, how they pool into cells, and every frame of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench import stats
from recbench.report.frames import (
    AGREE_COLUMNS,
    COST_COLUMNS,
    CURVE_COLUMNS,
    agreement_frame,
    agreement_warnings,
    cost_frame,
    paper_test_frame,
    resolve_references,
    select_records,
    significance_frame,
    summary_frame,
    validation_curves,
)
from recbench.report.labels import Label, label_model, record_label
from recbench.results import Record, iter_records


def failures(records: list[Record]) -> list[str]:
    """One line per failed record: data set, model, seed and its error."""
    return [
        f"{r['dataset']} / {r['model']} / seed {r['seed']}: {r.data.get('error')}" for r in records if r.status != "ok"
    ]


@dataclass
class Report:
    """A built report: the tidy summary (with statistics), its notes, and what renders it."""

    summary: pd.DataFrame
    failed: list[str]
    protocols: list[str]
    reference: str | None = None  # the reference label when every row group has the same one
    test: str = "wilcoxon"
    alpha: float = 0.05
    agreement: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=AGREE_COLUMNS))
    notes: list[str] = field(default_factory=list)  # extra caption lines (e.g. reduced settings)
    title: str = "recbench report"
    figures: list[tuple[str, Any]] = field(default_factory=list)  # (caption, matplotlib Figure) for HTML
    n_negatives: list[int] = field(default_factory=list)  # sampled negatives per test user, as the splits recorded
    cost: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COST_COLUMNS))
    references: dict[str, str] = field(default_factory=dict)  # row group (data set, split) → its reference
    curves: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CURVE_COLUMNS))  # validation, per epoch

    @property
    def warnings(self) -> list[str]:
        """Where the sampled and full protocols order the models differently."""
        return agreement_warnings(self.agreement)


def _split_spec(rec: Record) -> tuple[int, bool, int]:
    """(split seed, with a validation item, sampled negatives) of a record's split."""
    si = rec.data.get("split_info") or {}
    return int(si.get("seed", 0)), bool(si.get("validation", False)), int(si.get("n_negatives", 99))


def pool_records(
    records: list[Record], label: Label = record_label, pool_split_seeds: bool = False
) -> tuple[list[Record], list[str]]:
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
        name = (
            f"{ds} · splits {','.join(map(str, kind))}{extra}"
            if pool_split_seeds and len(kind) > 1
            else f"{ds} · split {seed}{extra}"
        )
        out.append(
            Record(data={**r.data, "dataset": name, "paper_dataset": ds}, users=r.users, ranks=r.ranks, path=r.path)
        )
    if pool_split_seeds and any(len({s[0] for s in v}) > 1 for v in specs.values()):
        notes.append(
            "Split seeds pooled (--pool-split-seeds): mean and std over every (split, model seed) run; "
            "the std is decomposed into between-split and within-split (model seed) parts; "
            "users are paired within a split."
        )
    return out, notes


def build_report(
    results: Path | None,
    metrics: list[str],
    paper: bool = True,
    *,
    reference: str | Sequence[str] | None = None,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    experiment: str | None = None,
    records: list[Record] | None = None,
    label: Label = record_label,
    pool_split_seeds: bool = False,
) -> Report:
    """The report of the records under ``results`` (or of ``records`` as given). ``reference``:
    one label or model name, or several: each row group is tested against the first it has."""
    if test not in stats.TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(stats.TESTS)}")
    if records is None:
        records = select_records(iter_records(results) if results is not None else [], experiment)
    records, pool_notes = pool_records(list(records), label, pool_split_seeds)
    summary = summary_frame(records, metrics, paper, label)
    ok_labels = [label(r) for r in records if r.status == "ok"]
    group_labels: dict[str, list[str]] = {}
    for r in records:
        if r.status == "ok":
            group_labels.setdefault(r["dataset"], []).append(label(r))
    refs = resolve_references(group_labels, reference)
    ref = next(iter(set(refs.values()))) if len(set(refs.values())) == 1 else None
    sig = significance_frame(records, metrics, refs, test, alpha, label)
    if not sig.empty:
        summary = summary.merge(
            sig.drop(columns=["test_note"]), on=["dataset", "protocol", "metric", "model"], how="left"
        )
        summary = summary.merge(
            sig[["dataset", "protocol", "metric", "model", "test_note"]],
            on=["dataset", "protocol", "metric", "model"],
            how="left",
        )
    else:
        for c in ("reference", "n_users", "mean_diff", "p_value", "p_holm", "significant", "test_note"):
            summary[c] = np.nan
    summary["significant"] = summary["significant"].astype("boolean").fillna(False).astype(bool)
    summary = summary.merge(
        paper_test_frame(records, summary, metrics, label), on=["dataset", "protocol", "metric", "model"], how="left"
    )
    agreement = agreement_frame(summary)
    if not agreement.empty:
        summary = summary.merge(
            agreement[["dataset", "metric", "tau"]].rename(columns={"tau": "kendall_tau_sampled_full"}),
            on=["dataset", "metric"],
            how="left",
        )
    else:
        summary["kendall_tau_sampled_full"] = np.nan
    protocols = [p for p in ("sampled", "full") if p in set(summary["protocol"])]
    notes = list(pool_notes)
    if not refs and len(set(ok_labels)) > 1:
        several = sorted({lab for lab in ok_labels if label_model(lab) == "opeci"})
        notes.append(
            f"No paired significance tests: opeci has several configurations ({', '.join(several)}); "
            "choose one with --reference."
            if several
            else "No paired significance tests: the reference model (opeci, or --reference) has no records."
        )
    negs = sorted(
        {
            int(n)
            for r in records
            if r.status == "ok" and (n := (r.data.get("split_info") or {}).get("n_negatives")) is not None
        }
    )
    return Report(
        summary=summary,
        failed=failures(records),
        protocols=protocols,
        reference=ref,
        references=refs,
        test=test,
        alpha=alpha,
        agreement=agreement,
        notes=notes,
        n_negatives=negs,
        cost=cost_frame(records, label),
        curves=validation_curves(records, label),
    )

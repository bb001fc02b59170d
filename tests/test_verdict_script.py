"""benchmarks/issue13_verdict.py: the verdict tables come from the records (every number in
them is one a record or a diagnosis file holds)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from recbench.data.types import Split
from recbench.plan import run_grid
from recbench.report import build_report
from recbench.runner import RunOptions

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "issue13_verdict.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("issue13_verdict", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_verdict_tables_hold_the_records_numbers(small_split: Split, tmp_path: Path) -> None:
    split = replace(small_split, dataset="ml-100k")  # named like a paper data set: the paper column
    opts = RunOptions(
        out=tmp_path,
        seeds=(0, 1),
        validation=True,
        early_stopping=1,
        tags={"tuned": True},
        protocols=("sampled", "full"),
        overrides={"ncf": {"epochs": "3"}},
    )
    run_grid(["ml-100k"], ["itempop", "ncf"], opts, split_loader=lambda _n: split)
    (tmp_path / "diagnose").mkdir()
    diag = {"model": "opeci", "dataset": "ml-100k", "epochs": 0, "config": {"embedding_init": "normal"}}
    diag |= {"participation_ratio": 1.01, "top_direction_share": 0.995, "top_direction_corr_mean_h": 0.992}
    diag |= {"attention_entropy": 0.9997, "permutation_ratio": 0.0908}
    (tmp_path / "diagnose" / "ml-100k-opeci-fresh.json").write_text(json.dumps(diag))
    mod = _script()
    records = mod.validation_records(tmp_path)
    table = mod.comparison(records)
    rows = {ln.split(" | ")[1]: ln.split(" | ") for ln in table.splitlines()[2:]}
    s = build_report(tmp_path, ["hr@10", "ndcg@10"], reference=["ncf"]).summary
    ncf_label = next(m for m in s.model.unique() if m.startswith("ncf"))
    ncf = s[(s.model == ncf_label) & (s.protocol == "sampled") & (s.metric == "hr@10")].iloc[0]
    assert rows[ncf_label][3] == f"{ncf['mean']:.3f} ± {ncf['std']:.3f}" and rows[ncf_label][4] == "—"
    assert rows[ncf_label][5].startswith("0.670 (")  # the paper's NCF on ml-100k
    pop = s[(s.model == "itempop (tuned)") & (s.protocol == "sampled") & (s.metric == "hr@10")].iloc[0]
    assert rows["itempop (tuned)"][4].startswith(f"{-pop['mean_diff']:+.3f} (")
    kept = rows[ncf_label][-1].rstrip(" |").split(", ")
    assert len(kept) == 2 and all(1 <= int(k) <= 3 for k in kept)  # one best epoch per seed
    assert rows["itempop (tuned)"][-1].rstrip(" |") == "—"  # no epochs
    diag_rows = mod.diagnostics(tmp_path).splitlines()[2:]
    row = "| ml-100k | opeci | fresh | 1.01 | 0.995 | 0.992 | 0.9997 | 0.0908 | `ml-100k-opeci-fresh.json` |"
    assert diag_rows == [row]
    assert np.isfinite(float(rows[ncf_label][9]))  # the full-ranking HR@10
    # the readings' table: another reference, a row filter and the bootstrap test
    other = mod.comparison(records, "itempop (tuned)", "ItemPop", r"^ncf", test="bootstrap").splitlines()
    assert "Δ vs ItemPop (p Holm)" in other[0] and len(other) == 3 and other[2].split(" | ")[1] == ncf_label
    b = build_report(tmp_path, ["hr@10"], reference=["itempop (tuned)"], test="bootstrap").summary
    b = b[(b.model == ncf_label) & (b.protocol == "sampled")].iloc[0]
    assert other[2].split(" | ")[4] == f"{-b['mean_diff']:+.3f} ({b['p_holm']:.2g})"

"""Statistics in reports: paired tests against scipy, Holm, marks and legend, Kendall τ with its
warning, LaTeX that compiles (or at least balances), HTML with embedded figures, CLI options.
Records are fabricated (no model is trained): fixed per-user ranks, three seeds."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from recbench.cli import app
from recbench.eval.metrics import per_user
from recbench.models.base import config_to_dict
from recbench.registry import MODELS
from recbench.report import build_report, render, resolve_reference, resolve_references, select_records
from recbench.results import Record, write_record
from recbench.stats import holm

N_USERS = 200
USERS = np.arange(N_USERS, dtype=np.int32) * 3 + 1  # ids that are not positions


def _ranks(rng: np.random.Generator, scale: float, n: int = N_USERS) -> np.ndarray:
    return np.minimum(rng.geometric(1 / scale, size=n) - 1, 99).astype(np.int32)


# sampled ordering: opeci > bpr > itempop; full ordering: bpr > opeci > itempop (a swap)
SCALES = {"opeci": (3.0, 40.0), "bpr": (5.0, 25.0), "itempop": (12.0, 90.0)}


def make_records(dataset: str = "ml-100k", split: str = "fp1", tags: dict | None = None) -> list[Record]:
    recs = []
    for m, (s_sampled, s_full) in SCALES.items():
        for seed in range(3):
            rng = np.random.default_rng([list(SCALES).index(m), seed])
            perm = rng.permutation(N_USERS)  # every record lists its users in its own order
            ranks = {"test/sampled": _ranks(rng, s_sampled)[perm], "test/full": (_ranks(rng, s_full) * 5)[perm]}
            data = {
                "key": f"{m}{seed}{split}{json.dumps(tags or {}, sort_keys=True)}".replace('"', "").replace(" ", "")[
                    :40
                ],
                "status": "ok",
                "dataset": dataset,
                "model": m,
                "seed": seed,
                "config": config_to_dict(MODELS[m].Config()),
                "metrics": {},
                "protocols": ["full", "sampled"],
                "split": split,
                "tags": tags or {},
                "revision": MODELS[m].revision_of(MODELS[m].Config()),  # records of today's code
            }
            recs.append(Record(data=data, users=USERS[perm], ranks=ranks))
    return recs


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return make_records()


def _per_user_mean(recs: list[Record], model: str, role: str, metric: str) -> np.ndarray:
    vals = []
    for r in recs:
        if r["model"] == model:
            order = np.argsort(r.users)
            vals.append(per_user(r.ranks[role], metric)[order])
    return np.mean(vals, axis=0)


def test_paired_tests_match_scipy_with_holm(records: list[Record]) -> None:
    rep = build_report(None, ["ndcg@10", "hr@10"], records=records)
    assert rep.reference == "opeci"
    s = rep.summary
    for proto in ("sampled", "full"):
        for metric in ("ndcg@10", "hr@10"):
            ref = _per_user_mean(records, "opeci", f"test/{proto}", metric)
            raw = {}
            for m in ("bpr", "itempop"):
                other = _per_user_mean(records, m, f"test/{proto}", metric)
                raw[m] = sps.wilcoxon(ref, other).pvalue
                row = s[(s.protocol == proto) & (s.metric == metric) & (s.model == m)].iloc[0]
                assert row["p_value"] == pytest.approx(raw[m])
                assert row["n_users"] == N_USERS
                assert row["mean_diff"] == pytest.approx((ref - other).mean())
            lo, hi = sorted(raw, key=raw.get)
            # Holm over the two comparisons of this row
            assert s[(s.protocol == proto) & (s.metric == metric) & (s.model == lo)]["p_holm"].iloc[0] == pytest.approx(
                min(1, 2 * raw[lo])
            )
            assert s[(s.protocol == proto) & (s.metric == metric) & (s.model == hi)]["p_holm"].iloc[0] == pytest.approx(
                min(1, max(2 * raw[lo], raw[hi]))
            )
    ref_rows = s[s.model == "opeci"]
    assert ref_rows["p_value"].isna().all() and not ref_rows["significant"].any()


def test_bootstrap_option(records: list[Record]) -> None:
    rep = build_report(None, ["ndcg@10"], records=records, test="bootstrap", reference="bpr")
    s = rep.summary
    row = s[(s.protocol == "sampled") & (s.model == "itempop")].iloc[0]
    assert row["reference"] == "bpr" and 0 < row["p_value"] <= 1 and row["significant"]
    assert "bootstrap" in render(rep, "markdown")
    with pytest.raises(ValueError, match="unknown test"):
        build_report(None, ["ndcg@10"], records=records, test="ttest")


def test_markdown_has_marks_legend_ci_and_agreement(records: list[Record]) -> None:
    rep = build_report(None, ["ndcg@10", "hr@10"], records=records)
    md = render(rep, "markdown")
    assert "†" in md and "differs from opeci at p < 0.05 after Holm" in md
    assert "95 % confidence interval" in md and "[0." in md
    assert "Kendall τ" in md and "Rank (full)" in md
    # the fabricated full ranking swaps opeci and bpr: a warning names them
    assert "**Warning:**" in md and ("bpr vs opeci" in md or "opeci vs bpr" in md) and "Krichene" in md
    assert any(not a for a in rep.agreement["agree"])
    ag = rep.agreement[(rep.agreement.metric == "ndcg@10")].iloc[0]
    assert ag["tau"] == pytest.approx(sps.kendalltau([3, 2, 1], [2, 3, 1]).statistic)  # opeci, bpr, itempop
    assert "paper 0.441" in md  # ml-100k: the paper's Table 2 beside ours


def test_csv_and_json_carry_the_statistics(records: list[Record]) -> None:
    rep = build_report(None, ["ndcg@10"], records=records)
    df = pd.read_csv(io.StringIO(render(rep, "csv")))
    for col in ("ci95_low", "ci95_high", "p_value", "p_holm", "significant", "kendall_tau_sampled_full", "second"):
        assert col in df.columns
    data = json.loads(render(rep, "json"))
    assert data["reference"] == "opeci" and data["agreement"] and data["warnings"]
    assert "sampled" in data["legend"]


def test_pairing_requires_the_same_split(records: list[Record]) -> None:
    other = [r for r in make_records(split="fp2") if r["model"] == "bpr"]
    mixed = [r for r in records if r["model"] != "bpr"] + other
    rep = build_report(None, ["ndcg@10"], records=mixed)
    row = rep.summary[(rep.summary.model == "bpr") & (rep.summary.protocol == "sampled")].iloc[0]
    assert np.isnan(row["p_value"]) and "differs from the reference" in row["test_note"]
    assert "Not tested: bpr" in render(rep, "markdown")


def test_reference_resolution() -> None:
    assert resolve_reference(["bpr", "opeci[epochs=2]"], None) == "opeci[epochs=2]"
    assert resolve_reference(["bpr", "itempop"], None) is None
    with pytest.raises(ValueError, match="not among the models"):
        resolve_reference(["bpr"], "ncf")
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_reference(["opeci[epochs=2]", "opeci[epochs=3]"], "opeci")


def test_references_per_row_group() -> None:
    groups = {"ml-100k": ["bpr", "opeci[x=1]"], "filmtrust": ["bpr", "ncf[lr=1] (tuned)"], "yelp": ["itempop"]}
    want = {"ml-100k": "opeci[x=1]", "filmtrust": "ncf[lr=1] (tuned)"}
    assert resolve_references(groups, ["opeci[x=1]", "ncf"]) == want
    assert resolve_references(groups, "bpr") == {"ml-100k": "bpr", "filmtrust": "bpr"}
    assert resolve_references(groups, None) == {"ml-100k": "opeci[x=1]"}  # opeci where it has one configuration
    with pytest.raises(ValueError, match="'cml' is not among the models"):
        resolve_references(groups, ["bpr", "cml"])
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_references({"a": ["opeci[x=1]", "opeci[x=2]"]}, ["opeci"])
    # the first reference a group has wins, even where a later one is ambiguous there
    assert resolve_references({"a": ["bpr", "opeci[x=1]", "opeci[x=2]"]}, ["bpr", "opeci"]) == {"a": "bpr"}


def test_each_row_group_is_tested_against_its_own_reference(records: list[Record]) -> None:
    film = [r for r in make_records(dataset="filmtrust", split="fp9") if r["model"] != "opeci"]
    rep = build_report(None, ["ndcg@10"], records=records + film, reference=["opeci", "bpr"])
    assert rep.references == {"ml-100k": "opeci", "filmtrust": "bpr"} and rep.reference is None
    s = rep.summary
    row = s[(s.dataset == "filmtrust") & (s.protocol == "sampled") & (s.model == "itempop")].iloc[0]
    ref, other = (_per_user_mean(film, m, "test/sampled", "ndcg@10") for m in ("bpr", "itempop"))
    assert row["reference"] == "bpr" and row["p_value"] == pytest.approx(sps.wilcoxon(ref, other).pvalue)
    assert row["p_holm"] == pytest.approx(row["p_value"])  # one comparison in that row
    assert s[(s.dataset == "ml-100k") & (s.model == "bpr")]["reference"].eq("opeci").all()
    md = render(rep, "markdown")
    assert re.search(r"\| Reference +\| Δ vs reference \(users\)", md)
    assert "the row's reference (opeci on ML-100K; bpr on FilmTrust)" in md
    assert json.loads(render(rep, "json"))["references"] == {"ml-100k": "opeci", "filmtrust": "bpr"}


def test_one_sample_test_against_the_papers_number(records: list[Record]) -> None:
    rep = build_report(None, ["ndcg@10"], records=records)
    s = rep.summary[(rep.summary.protocol == "sampled")].set_index("model")
    paper = {"opeci": 0.441, "bpr": 0.352, "itempop": 0.231}  # the paper's Table 2, ML-100K NDCG@10
    raw = {}
    for m, value in paper.items():
        v = _per_user_mean(records, m, "test/sampled", "ndcg@10")
        assert s.loc[m, "paper"] == pytest.approx(value)
        raw[m] = sps.ttest_1samp(v, value).pvalue
        assert s.loc[m, "paper_p"] == pytest.approx(raw[m]) and s.loc[m, "paper_n_users"] == N_USERS
    adj = holm(list(raw.values()))
    for m, p in zip(raw, adj, strict=True):
        assert s.loc[m, "paper_p_holm"] == pytest.approx(p)
    assert rep.summary[rep.summary.protocol == "full"]["paper_p"].isna().all()  # the paper has no full ranking
    md = render(rep, "markdown")
    assert "p vs paper (Holm)" in md and "one-sample t test over users" in md


def test_tune_and_experiment_records_stay_out(records: list[Record]) -> None:
    tuned = make_records(tags={"purpose": "tune"})
    exp = make_records(tags={"experiment": "aggregation"})
    assert len(select_records(records + tuned + exp)) == len(records)
    assert len(select_records(records + tuned + exp, experiment="aggregation")) == len(exp)


def _balanced(tex: str) -> None:
    for env in ("table", "tabular"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") > 0
    depth = 0
    for i, c in enumerate(tex):
        if c in "{}" and i and tex[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        assert depth >= 0
    assert depth == 0
    for line in tex.splitlines():
        if line.startswith("%"):
            continue
        assert line.count("$") % 2 == 0, line
        assert not re.search(r"(?<!\\)[_&%#](?![^$]*\$)", line.replace("&", "")), line  # only escaped specials


def test_latex_booktabs_bold_underline_caption(records: list[Record], tmp_path: Path) -> None:
    rep = build_report(None, ["ndcg@10", "hr@10"], records=records)
    tex = render(rep, "latex")
    _balanced(tex)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\textbf{" in tex and "\\underline{" in tex and "$^{\\dagger}$" in tex
    captions = re.findall(r"\\caption\{(.*)\}", tex)
    table2, protocol_captions = captions[0], captions[1:]  # the Table 2 view, then one per protocol
    assert "paper's Table 2" in table2
    assert len(protocol_captions) == 2 and all("dagger" in c and "Holm" in c for c in protocol_captions)
    assert "Kendall $\\tau$" in protocol_captions[1]
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: balanced-environment check only")
    doc = "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    r = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:]


def test_latex_escapes_labels() -> None:
    recs = make_records()
    for r in recs:
        if r["model"] == "bpr":
            r.data["config"] = {**r.data["config"], "learning_rate": 0.05}
    tex = render(build_report(None, ["ndcg@10"], records=recs), "latex")
    assert "bpr[learning\\_rate=0.05]" in tex
    _balanced(tex)


def test_html_is_self_contained(records: list[Record]) -> None:
    page = render(build_report(None, ["ndcg@10", "hr@10"], records=records), "html")

    class P(HTMLParser):
        imgs: ClassVar[list[str]] = []
        tables = 0
        external: ClassVar[list[str]] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            a = dict(attrs)
            if tag == "table":
                P.tables += 1
            if tag == "img":
                P.imgs.append(a.get("src", ""))
            for k in ("href", "src"):
                if a.get(k, "").startswith(("http", "//", "file:")):
                    P.external.append(a[k])

    P().feed(page)
    assert P.tables >= 5 and not P.external
    assert len(P.imgs) >= 3 and all(s.startswith("data:image/png;base64,") for s in P.imgs)
    assert "Warning:" in page and "&dagger;" in page


def test_cli_report_options(records: list[Record], tmp_path: Path) -> None:
    for r in records:
        write_record(tmp_path, Record(data=dict(r.data), users=r.users, ranks=r.ranks))
    runner = CliRunner()
    r = runner.invoke(app, ["report", "--results", str(tmp_path), "--reference", "bpr", "--format", "csv"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout))
    assert set(df.dropna(subset=["p_value"]).model) == {"opeci", "itempop"}
    assert "warning:" in r.stderr and "order the models differently" in r.stderr
    r = runner.invoke(app, ["report", "--results", str(tmp_path), "--reference", "ncf"])
    assert r.exit_code == 2 and "not among the models" in r.output
    r = runner.invoke(app, ["report", "--results", str(tmp_path), "--test", "ttest"])
    assert r.exit_code == 2 and "unknown test" in r.output
    out = tmp_path / "r.tex"
    r = runner.invoke(app, ["report", "--results", str(tmp_path), "-f", "latex", "-o", str(out), "--test", "bootstrap"])
    assert r.exit_code == 0 and "\\toprule" in out.read_text()
    r = runner.invoke(app, ["report", "--results", str(tmp_path), "--experiment", "nosuch", "-f", "json"])
    assert r.exit_code == 2 and "no result records of experiment 'nosuch'" in r.output


def _with_history(recs: list[Record]) -> list[Record]:
    """Copies of ``recs`` whose opeci seeds kept validation curves: seed s ran 3 - (s == 1)
    epochs with NDCG@10 = 0.1 * epoch + 0.01 * s, except that epoch 2 of seed 0 dips to 0.05;
    early stopping (patience 1) kept epoch 1 of seed 0 and the last epoch of the others."""
    out = []
    for r in recs:
        data = dict(r.data)
        if r["model"] == "opeci":
            s, n = r["seed"], 3 - (r["seed"] == 1)
            vals = [0.1 * e + 0.01 * s for e in range(1, n + 1)]
            if s == 0:
                vals[1] = 0.05
            kept = 1 if s == 0 else n
            data["history"] = [
                {"epoch": e, "loss": 1.0 / e, "validation": {"ndcg@10": v, "hr@10": 2 * v}}
                for e, v in enumerate(vals, start=1)
            ] + [{"best_epoch": kept, "best_validation": vals[kept - 1]}]
            data["early_stopping"] = 1
        elif r["model"] == "bpr":
            data["history"] = [{"epoch": 1, "loss": 0.5}]  # no validation: no curve
        out.append(Record(data=data, users=r.users, ranks=r.ranks))
    return out


def test_validation_curves_by_hand(records: list[Record]) -> None:
    from recbench.report import curves_table

    rep = build_report(None, ["ndcg@10", "hr@10"], records=_with_history(records))
    assert set(rep.curves["model"]) == {"opeci"} and len(rep.curves) == 2 * (3 + 2 + 3)
    t = curves_table(rep)
    assert len(t) == 1
    row = t.iloc[0]
    assert (row["Seeds"], row["Epochs run"], row["Kept epoch"], row["Patience"]) == (3, "3, 2, 3", "1, 2, 3", "1")
    assert row["@1"] == f"{np.mean([0.10, 0.11, 0.12]):.3f}"
    assert row["@2"] == f"{np.mean([0.05, 0.21, 0.22]):.3f}"
    assert row["@3"] == f"{np.mean([0.30, 0.32]):.3f} (2)"  # seed 1 stopped after epoch 2
    assert "@5" not in t  # no record ran 5 epochs
    assert row["Best (mean over seeds)"] == f"{np.mean([0.30, 0.21, 0.32]):.3f}"
    assert curves_table(rep, "hr@10").iloc[0]["@1"] == f"{np.mean([0.20, 0.22, 0.24]):.3f}"
    md = render(rep, "markdown")
    assert "### Validation curves" in md and "3, 2, 3" in md
    assert "### Validation curves" not in render(build_report(None, ["ndcg@10"], records=records), "markdown")
    rows = json.loads(render(rep, "json"))["validation_curves"]
    assert {(r["seed"], r["epoch"], r["metric"]): r["value"] for r in rows}[(0, 2, "ndcg@10")] == 0.05


def test_html_plots_the_validation_curves(records: list[Record]) -> None:
    def n_imgs(recs: list[Record]) -> int:
        return render(build_report(None, ["ndcg@10", "hr@10"], records=recs), "html").count("<img ")

    assert n_imgs(_with_history(records)) == n_imgs(records) + 2  # one figure per metric

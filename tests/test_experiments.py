"""``recbench experiment``: every preset end to end on a tiny synthetic split with the real
OPECI (and its variants) at tiny settings; tables, figures, README, resume, errors, CLI."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recbench import experiments, figures
from recbench.cli import app
from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.data.types import Split
from recbench.experiments import plots, presets, tables
from recbench.models.base import ConfigError
from recbench.registry import MODELS

OPECI_TINY = {"embedding_size": "8", "batch_size": "1024", "precise_bn_batches": "1", "mlp_hidden": "(16,)"}
OPECIS = ["opeci", "opeci-inner", "opeci-i", "opeci-u", "opeci-iu"]
OPECIS += ["opeci-res", *(f"opeci-res-{v}" for v in ("inner", "i", "u", "iu"))]


@pytest.fixture(scope="module")
def micro() -> Split:
    data = make_synthetic(n_users=40, n_items=130, mean_interactions=12, seed=1, name="micro")
    return leave_one_out(data, seed=0)


def _opts(out: Path, name: str, **kw) -> experiments.ExperimentOptions:
    models = experiments.get_preset(name).models
    sets = {m: dict(OPECI_TINY) for m in models if m in OPECIS}
    if name == "embedding-size":
        sets = {m: {k: v for k, v in s.items() if k != "embedding_size"} for m, s in sets.items()}
    if name == "table2":
        sets["cadncf"] = {"embedding_size": "8"}
        sets["dmf"] = {"hidden": "(16,)", "embedding_size": "8"}
    base = {"seeds": (0,), "epochs": 1, "overrides": sets, "out": out}
    return experiments.ExperimentOptions(**{**base, **kw})


def _files_ok(res: experiments.ExperimentResult) -> str:
    for f in ("table.md", "table.csv", "figure.png", "figure.svg", "report.html", "README.md"):
        assert (res.folder / f).stat().st_size > 0, f
    assert (res.folder / "figure.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (res.folder / "figure.svg").read_text()[:2000]
    assert "data:image/png;base64," in (res.folder / "report.html").read_text()
    readme = (res.folder / "README.md").read_text()
    assert "```bash\nrecbench experiment " + res.name in readme
    # every reduction is written down, never silent
    table = (res.folder / "table.md").read_text()
    for text in (table, readme):
        assert "1 seed (fewer than the 3 planned; no error bars)" in text
        assert "Epochs set to 1 for every model" in text and "Changed from the paper's settings with --set" in text
    assert not res.failed
    return table


def test_opeci_is_registered() -> None:
    assert all(m in MODELS for m in OPECIS)  # the tests below use the real models


def test_neg_ratio_with_paper_numbers(micro: Split, tmp_path: Path) -> None:
    split = replace(micro, dataset="ml-100k")  # named like a paper dataset: its settings and Table 3
    res = experiments.run_experiment(
        "neg-ratio", ["ml-100k"], _opts(tmp_path, "neg-ratio", values=("2", "6")), split_loader=lambda _: split
    )
    table = _files_ok(res)
    # columns in numeric order (not 10 before 2), the default labelled; every point of the paper's
    # Table 3 shown, also where ours is not run (issue 16, findings 4 and 14)
    header = next(ln for ln in table.splitlines() if ln.startswith("| Dataset"))
    cols = [c.strip() for c in header.strip("|").split("|")][2:]
    assert cols == ["n_negatives=2", "n_negatives=4", "n_negatives=6 (default)", "n_negatives=8", "n_negatives=10"]
    assert "(paper 0.757)" in table and "(paper 0.441)" in table
    assert "— (paper 0.769)" in table and "— (paper 0.761)" in table  # n = 8 and 10: the paper's only
    assert "(default): OPECI's default n_negatives = 6." in table
    assert "Grid reduced to n_negatives ∈ {2, 6}" in table
    df = pd.read_csv(res.folder / "table.csv")
    assert set(df.x) == {2, 4, 6, 8, 10} and df.paper.notna().all()
    assert set(df.dropna(subset=["mean"]).x) == {2, 6}
    page = (res.folder / "report.html").read_text()
    assert "**" not in page and "<b>" in page and "<td>— (paper 0.769)</td>" in page
    recs = [r for r in res.records if r.status == "ok"]
    assert {r["config"]["n_negatives"] for r in recs} == {2, 6}
    assert all(r["config"]["embedding_size"] == 8 and r["tags"] == {"experiment": "neg-ratio"} for r in recs)
    # resume: a rerun reads the records back and does no new work
    n = len(list((tmp_path / "records").rglob("*.json")))
    again = experiments.run_experiment(
        "neg-ratio", ["ml-100k"], _opts(tmp_path, "neg-ratio", values=("2", "6")), split_loader=lambda _: split
    )
    assert len(list((tmp_path / "records").rglob("*.json"))) == n
    assert [r.key for r in again.records] == [r.key for r in res.records]


def test_interaction_curves(micro: Split, tmp_path: Path) -> None:
    res = experiments.run_experiment(
        "interaction", ["micro"], _opts(tmp_path, "interaction", epochs=2), split_loader=lambda _: micro
    )
    res_table = (res.folder / "table.md").read_text()
    assert "NDCG@10 at the last epoch" in res_table and "opeci-inner" in res_table
    assert "best" not in res_table.lower()  # no epoch chosen on the test split
    curves = pd.read_csv(res.folder / "curves_per_seed.csv")
    assert set(curves.model) == {"opeci", "opeci-inner"} and set(curves.epoch) == {1, 2}
    assert all(r["eval_every"] == 1 for r in res.records)


def test_aggregation(micro: Split, tmp_path: Path) -> None:
    res = experiments.run_experiment(
        "aggregation", ["micro"], _opts(tmp_path, "aggregation"), split_loader=lambda _: micro
    )
    table = _files_ok(res)
    for m in ("opeci", "opeci-i", "opeci-u", "opeci-iu"):
        assert f"| {m}" in table or f" {m} " in table
    assert "differs from opeci" in table  # the paired tests against OPECI are described
    df = pd.read_csv(res.folder / "table.csv")
    assert {"p_value", "p_holm"} <= set(df.columns)


def test_residual_ablations_test_against_opeci_res(micro: Split, tmp_path: Path) -> None:
    res = experiments.run_experiment(
        "aggregation-res", ["micro"], _opts(tmp_path, "aggregation-res"), split_loader=lambda _: micro
    )
    table = _files_ok(res)
    assert "differs from opeci-res" in table and "differs from opeci " not in table
    df = pd.read_csv(res.folder / "table.csv")
    assert set(df.model) == {"opeci-res", "opeci-res-i", "opeci-res-u", "opeci-res-iu"}
    assert df.loc[df.model == "opeci-res", "p_value"].isna().all()  # the reference itself
    assert df.loc[df.model != "opeci-res", "p_value"].notna().all()
    assert {r["config"]["block"] for r in res.records} == {"residual"}
    assert experiments.get_preset("interaction-res").eval_every == 1
    assert experiments.get_preset("interaction-res").reference == "opeci-res"


def test_embedding_size(micro: Split, tmp_path: Path) -> None:
    res = experiments.run_experiment(
        "embedding-size", ["micro"], _opts(tmp_path, "embedding-size", values=("8", "16")), split_loader=lambda _: micro
    )
    table = _files_ok(res)
    assert "embedding_size=8" in table and "embedding_size=16" in table
    assert {r["config"]["embedding_size"] for r in res.records} == {8, 16}


def test_table2_all_seven(micro: Split, tmp_path: Path) -> None:
    split = replace(micro, dataset="filmtrust")
    res = experiments.run_experiment("table2", ["filmtrust"], _opts(tmp_path, "table2"), split_loader=lambda _: split)
    table = _files_ok(res)
    assert {r["model"] for r in res.records} == {"itempop", "bpr", "dmf", "ncf", "cml", "cadncf", "opeci"}
    assert "paper 0.812" in table  # OPECI on FilmTrust, the paper's Table 2
    assert "Epochs set to 1 for every model (defaults: bpr 100" in table


def test_paper_settings_per_dataset() -> None:
    opts = experiments.ExperimentOptions(seeds=(0, 1, 2))
    _, cells, notes = experiments.plan("table2", ["ml-1m", "ml-100k"], opts)
    by = {(c.dataset, c.model): c.overrides for c in cells}
    assert by[("ml-1m", "opeci")] == {"embedding_size": 32, "n_negatives": 8}
    assert by[("ml-100k", "opeci")] == {"embedding_size": 64, "n_negatives": 6}
    assert by[("ml-1m", "bpr")] == {}
    assert notes == []  # the paper's settings, three seeds: nothing to declare
    _, cells, _ = experiments.plan("neg-ratio", ["ml-1m"], opts)
    assert cells[0].overrides == {"embedding_size": 32, "n_negatives": 2}
    _, cells, _ = experiments.plan("aggregation", ["yelp"], opts)
    assert all(c.overrides == {"embedding_size": 64, "n_negatives": 8} for c in cells)  # variants share OPECI's
    yelp = experiments.paper_table3().query("dataset == 'yelp' and metric == 'ndcg@10'")
    assert list(yelp.paper) == [0.143, 0.151, 0.153, 0.159, 0.156]


def test_errors_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = experiments.ExperimentOptions(out=tmp_path)
    with pytest.raises(ConfigError, match="unknown experiment 'nosuch'"):
        experiments.plan("nosuch", ["micro"], opts)
    with pytest.raises(ConfigError, match="varies n_negatives itself"):
        experiments.plan("neg-ratio", ["micro"], replace(opts, overrides={"opeci": {"n_negatives": "3"}}))
    with pytest.raises(ConfigError, match="does not run"):
        experiments.plan("neg-ratio", ["micro"], replace(opts, overrides={"bpr": {"epochs": "3"}}))
    with pytest.raises(ConfigError, match="has no grid"):
        experiments.plan("aggregation", ["micro"], replace(opts, values=("2",)))
    with pytest.raises(ConfigError, match="expected an integer"):
        experiments.plan("embedding-size", ["micro"], replace(opts, values=("big",)))
    # a model that is not registered: one line naming it
    monkeypatch.setattr(presets, "MODELS", {k: v for k, v in MODELS.items() if k not in ("opeci-i", "opeci-u")})
    with pytest.raises(ConfigError, match=r"needs models not registered yet: opeci-i, opeci-u \(registered"):
        experiments.plan("aggregation", ["micro"], opts)
    assert not (tmp_path / "records").exists()


def test_cli_experiment(micro: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recbench.data

    synthetic = replace(micro, dataset="synthetic")
    monkeypatch.setattr(recbench.data, "load_split", lambda name, **kw: synthetic)
    out = tmp_path / "res"
    args = [
        "experiment",
        "embedding-size",
        "-d",
        "synthetic",
        "--seeds",
        "0,1",
        "--epochs",
        "1",
        "--values",
        "8",
        "--set",
        "opeci.batch_size=1024",
        "--set",
        "opeci.mlp_hidden=(16,)",
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    folder = out / "experiments" / "embedding-size"
    readme = (folder / "README.md").read_text()
    assert "recbench experiment embedding-size --dataset synthetic --seeds 0,1 --epochs 1" in readme
    assert "'--set' 'opeci.mlp_hidden=(16,)'" in readme or "'opeci.mlp_hidden=(16,)'" in readme
    assert "2 seeds (fewer than the 3 planned)" in readme
    df = pd.read_csv(io.StringIO((folder / "table.csv").read_text()))
    assert list(df.n_seeds) == [2, 2]  # hr@10 and ndcg@10 at d = 8, two seeds each
    # the experiment's records are reported on their own
    r = CliRunner().invoke(app, ["report", "--results", str(out), "--experiment", "embedding-size", "-f", "csv"])
    assert r.exit_code == 0 and "opeci[" in r.stdout
    r = CliRunner().invoke(app, ["experiment", "table2", "-d", "ml-1m,ml-100k", "--dry-run", "--out", str(out)])
    assert r.exit_code == 0 and "14 cell(s) x 3 seed(s) = 42 fits" in r.stdout
    assert "ml-1m\topeci\t{'embedding_size': 32, 'n_negatives': 8}" in r.stdout
    # a page rebuilt with --no-fit tells how to regenerate it: the same command without --no-fit
    r = CliRunner().invoke(app, [*args, "--no-fit"])
    assert r.exit_code == 0, r.output
    readme = (folder / "README.md").read_text()
    command = readme.split("```bash\n")[1].split("\n```")[0]
    assert command.startswith("recbench experiment embedding-size") and "--no-fit" not in command
    r = CliRunner().invoke(
        app, ["experiment", "neg-ratio", "-d", "synthetic", "--set", "opeci.n_negatives=2", "--out", str(out)]
    )
    assert r.exit_code == 2 and "varies n_negatives itself" in r.output


def test_one_fit_serves_every_experiment_and_run(micro: Split, tmp_path: Path) -> None:
    """The experiment tag labels a record without being part of its key: `aggregation` reuses
    `interaction`'s OPECI fit (same cell: OPECI-family cells keep a curve everywhere), a plain
    `recbench run --eval-every 1` of that cell is reused too, and each report sees its own."""
    from recbench.plan import run_grid
    from recbench.report import select_records
    from recbench.results import iter_records
    from recbench.runner import RunOptions

    ov = {k: v for k, v in OPECI_TINY.items()}
    plain = run_grid(
        ["micro"],
        ["opeci"],
        RunOptions(overrides={"opeci": {**ov, "epochs": "1"}}, out=tmp_path, eval_every=1),
        split_loader=lambda _: micro,
    )
    first = experiments.run_experiment(
        "interaction", ["micro"], _opts(tmp_path, "interaction"), split_loader=lambda _: micro
    )
    second = experiments.run_experiment(
        "aggregation", ["micro"], _opts(tmp_path, "aggregation"), split_loader=lambda _: micro
    )
    by_model = {r["model"]: r for r in first.records}
    again = {r["model"]: r for r in second.records}
    assert by_model["opeci"]["key"] == plain[0]["key"] == again["opeci"]["key"]
    assert by_model["opeci"]["created"] == plain[0]["created"]  # not refitted
    on_disk = list(iter_records(tmp_path))
    opeci = [r for r in on_disk if r["model"] == "opeci"]
    assert len(opeci) == 1 and opeci[0].data["used_by"] == ["aggregation", "interaction"]
    assert opeci[0].data["tags"] == {}  # made by `run`: stays in the main report
    assert [r["model"] for r in select_records(on_disk)] == ["opeci"]
    assert {r["model"] for r in select_records(on_disk, "interaction")} == {"opeci", "opeci-inner"}
    assert {r["model"] for r in select_records(on_disk, "aggregation")} == {"opeci", "opeci-i", "opeci-u", "opeci-iu"}
    assert all(r["eval_every"] == 1 for r in second.records)


def test_no_fit_builds_from_existing_records_and_lists_the_missing(micro: Split, tmp_path: Path) -> None:
    """--no-fit: nothing is trained; the outputs hold what exists and the caption names the rest."""
    experiments.run_experiment("interaction", ["micro"], _opts(tmp_path, "interaction"), split_loader=lambda _: micro)
    before = sorted(p.name for p in (tmp_path / "records").rglob("*.json"))
    res = experiments.run_experiment(
        "aggregation", ["micro"], _opts(tmp_path, "aggregation", no_fit=True), split_loader=lambda _: micro
    )
    assert sorted(p.name for p in (tmp_path / "records").rglob("*.json")) == before  # no fit, no record
    assert [r["model"] for r in res.records] == ["opeci"]
    table = (res.folder / "table.md").read_text()
    assert (
        "Not run yet (3 of 4 fits; built with --no-fit): micro opeci-i seed 0; micro opeci-u seed 0; "
        "micro opeci-iu seed 0."
    ) in table
    assert "Not run yet" in (res.folder / "README.md").read_text()
    from recbench.report import select_records
    from recbench.results import iter_records

    assert [r["model"] for r in select_records(iter_records(tmp_path), "aggregation")] == ["opeci"]


# ----------------------------------------------------------------------------- issue 16, finding 14


def _capture_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures ``write_outputs`` saves (through ``figures.save``), kept for inspection."""
    saved: list = []
    real = figures.save

    def save(fig, stem):
        saved.append(fig)
        return real(fig, stem)

    monkeypatch.setattr(figures, "save", save)
    return saved


def _error_bars(fig) -> int:
    from matplotlib.container import ErrorbarContainer

    return sum(isinstance(c, ErrorbarContainer) and c.has_yerr for ax in fig.axes for c in ax.containers)


@pytest.mark.parametrize(
    ("seeds", "words", "bars"),
    [
        ((0,), "single seed: no error bars", False),
        ((0, 1), "error bars: ± 1 std over 2 seeds", True),
    ],
)
def test_caption_says_error_bars_only_when_drawn(
    micro: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seeds: tuple[int, ...], words: str, bars: bool
) -> None:
    figs = _capture_figures(monkeypatch)
    res = experiments.run_experiment(
        "embedding-size",
        ["micro"],
        _opts(tmp_path, "embedding-size", values=("8",), seeds=seeds),
        split_loader=lambda _: micro,
    )
    (fig,) = figs
    title = fig.get_suptitle()
    assert words in title.replace("\n", " ")
    assert ("± 1 std" in title) == bars and (_error_bars(fig) > 0) == bars
    table = (res.folder / "table.md").read_text()
    assert ("a single seed (no std)" in table) == (not bars) and ("mean ± std over 2 seeds" in table) == bars


def test_one_epoch_curve_is_a_marker_on_a_sensible_axis() -> None:
    curves = pd.DataFrame(
        {
            "dataset": ["micro"] * 2,
            "model": ["opeci", "opeci-inner"],
            "seed": [0, 0],
            "epoch": [1, 1],
            "hr@10": [0.5, 0.4],
            "ndcg@10": [0.3, 0.2],
        }
    )
    fig = plots.epoch_figure(curves, "ndcg@10")
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo <= 0.5 and hi >= 1.5  # whole epochs, not 0.96–1.04
    assert list(ax.get_xticks()) == [1]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 0.3
    assert all(ln.get_markersize() >= 6 for ln in ax.get_lines())
    assert not ax.collections  # no band with one seed


def test_curve_table_reports_the_last_epoch_not_the_best_on_test() -> None:
    curves = pd.DataFrame(
        {
            "dataset": "micro",
            "model": "opeci",
            "seed": [0, 0, 1, 1],
            "epoch": [1, 2, 1, 2],
            "hr@10": [0.6, 0.4, 0.6, 0.2],
            "ndcg@10": [0.5, 0.3, 0.5, 0.1],
        }
    )
    t = tables.curve_table(curves, ["hr@10", "ndcg@10"])
    assert list(t.columns) == ["Dataset", "Model", "Epochs", "HR@10 at the last epoch", "NDCG@10 at the last epoch"]
    assert t.loc[0, "NDCG@10 at the last epoch"] == "0.200 ± 0.141" and t.loc[0, "Epochs"] == 2


def test_embedding_size_panel_has_the_papers_point() -> None:
    import types

    paper, label = tables.paper_points(
        experiments.get_preset("embedding-size"), ["ml-100k", "ml-1m", "micro"], experiments.load_presets()
    )
    assert "Table 2" in label
    assert {(r.dataset, r.metric, r.x, r.paper) for r in paper.itertuples()} == {
        ("ml-100k", "hr@10", 64, 0.774),
        ("ml-100k", "ndcg@10", 64, 0.441),
        ("ml-1m", "hr@10", 32, 0.786),
        ("ml-1m", "ndcg@10", 32, 0.479),
    }
    summary = pd.DataFrame(
        {
            "protocol": "sampled",
            "dataset": "ml-100k",
            "metric": ["hr@10"] * 2,
            "model": ["8", "64"],
            "n_seeds": 1,
            "mean": [0.5, 0.6],
            "std": float("nan"),
            "ci95_low": float("nan"),
            "ci95_high": float("nan"),
        }
    )
    part, tidy = tables.param_table(
        experiments.get_preset("embedding-size"), types.SimpleNamespace(summary=summary), paper
    )
    assert "| **0.600** (paper 0.774)" in part.md and "embedding_size=64 (default)" in part.md
    fig = plots.param_figure(tidy, "d", plots.Spread(1, 1), logx=True, paper_label=label)
    assert label in [t.get_text() for t in fig.legends[0].get_texts()]


def test_html_tables_are_built_from_the_data_not_from_markdown() -> None:
    df = pd.DataFrame({"Model": ["a | b", "**c"], "Score": ["<1>", "0.5"]})
    part = tables.table_part(df)
    assert "<td>a | b</td>" in part.html and "<td>**c</td>" in part.html and "<td>&lt;1&gt;</td>" in part.html
    assert "<b>" not in part.html and part.html.count("<tr>") == 3


def test_regenerate_command_never_has_no_fit(tmp_path: Path) -> None:
    opts = experiments.ExperimentOptions(
        out=tmp_path, no_fit=True, command="recbench experiment aggregation --dataset micro --seeds 0 --out x --no-fit"
    )
    assert experiments.regenerate_command(experiments.get_preset("aggregation"), ["micro"], opts) == (
        "recbench experiment aggregation --dataset micro --seeds 0 --out x"
    )

"""``recbench tune``: grids, the same budget per model, validation-only scoring, resume, and
``run --tuned``."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recbench import tune
from recbench.cli import app
from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.data.types import Split
from recbench.models.base import ConfigError
from recbench.plan import run_grid
from recbench.registry import MODELS
from recbench.report import build_report
from recbench.results import iter_records
from recbench.runner import RunOptions

BPR_FIXED = {"bpr": {"epochs": "3"}}


@pytest.fixture(scope="module")
def micro() -> Split:
    data = make_synthetic(n_users=40, n_items=130, mean_interactions=12, seed=1, name="micro")
    return leave_one_out(data, seed=0, validation=True, n_negatives=30)


# ----------------------------------------------------------------------------- spaces and grids


def test_default_spaces_are_data_with_the_same_budget() -> None:
    spaces = tune.load_search_spaces()
    budget, metric = tune.default_budget(spaces)
    assert metric == "ndcg@10" and budget >= 5
    assert tune.default_space("opeci")["learning_rate"] == [0.001, 0.005, 0.01, 0.05, 0.1]
    assert tune.default_space("opeci-iu") == tune.default_space("opeci")  # extends
    assert tune.default_space("itempop") == {}
    for name in MODELS:
        space = tune.default_space(name, spaces)
        if space:  # every tunable model gets a grid of exactly the budget: no model searched harder
            assert math.prod(len(v) for v in space.values()) == budget, name
            tune.search_space(name, None, spaces)  # every default value is valid for the model


def test_grid_parsing_and_validation() -> None:
    assert tune.split_values("0.1, 0.01") == ["0.1", "0.01"]
    assert tune.split_values("(256,64),(128,)") == ["(256,64)", "(128,)"]
    g = tune.parse_grid(["opeci.learning_rate=0.001,0.01", "opeci.mlp_hidden=(64,),(32,16)"])
    assert g == {"opeci": {"learning_rate": ["0.001", "0.01"], "mlp_hidden": ["(64,)", "(32,16)"]}}
    with pytest.raises(ConfigError, match=r"MODEL\.PARAM=V1,V2"):
        tune.parse_grid(["opeci.learning_rate"])
    with pytest.raises(ConfigError, match="unknown parameter"):
        tune.search_space("bpr", {"nosuch": ["1"]})
    with pytest.raises(ConfigError, match="expected a number"):
        tune.search_space("bpr", {"learning_rate": ["fast"]})


def test_candidates_full_grid_or_seeded_subset() -> None:
    space = {"b": [1, 2], "a": [0.1, 0.2, 0.3]}
    full, size = tune.candidates(space, 10)
    assert size == 6 and len(full) == 6 and full[0] == {"a": 0.1, "b": 1}
    sub, _ = tune.candidates(space, 4, seed=3)
    assert len(sub) == 4 and sub == tune.candidates(space, 4, seed=3)[0]
    assert all(c in full for c in sub) and len({json.dumps(c) for c in sub}) == 4
    with pytest.raises(ConfigError):
        tune.candidates(space, 0)


def test_grid_and_set_may_not_clash() -> None:
    opts = tune.TuneOptions(fixed={"bpr": {"learning_rate": "0.1"}})
    with pytest.raises(ConfigError, match="both searched"):
        tune.plan("bpr", opts)


# ----------------------------------------------------------------------------- the search


def _opts(out: Path, **kw) -> tune.TuneOptions:
    base = {
        "out": out,
        "trials": 3,
        "fixed": BPR_FIXED,
        "grid": {"bpr": {"learning_rate": ["0.01", "0.05", "0.1"], "reg": ["0.01"]}},
    }
    return tune.TuneOptions(**{**base, **kw})


def test_tune_writes_the_best_and_every_trial(micro: Split, tmp_path: Path) -> None:
    doc = tune.tune("micro", "bpr", _opts(tmp_path), split_loader=lambda _: micro)
    path = tmp_path / "tuned" / "micro" / "bpr.json"
    stored = json.loads(path.read_text())
    assert stored["n_trials"] == 3 and stored["grid_size"] == 3 and len(stored["trials"]) == 3
    scores = [t["score"] for t in stored["trials"]]
    assert stored["best"]["score"] == max(scores)
    best = stored["trials"][int(np.argmax(scores))]
    assert stored["best"]["params"] == best["params"]
    assert stored["best"]["overrides"] == {"epochs": 3, **best["params"]}
    assert stored["metric"] == "validation/sampled ndcg@10"
    # the score is the validation NDCG@10 of the trial's record, nothing else
    recs = [r for r in iter_records(tmp_path) if r["config"]["learning_rate"] == best["params"]["learning_rate"]]
    assert len(recs) == 1 and recs[0]["tags"] == {"purpose": "tune"}
    assert best["score"] == pytest.approx(recs[0]["metrics"]["validation/sampled"]["ndcg@10"])
    assert doc["split"] == micro.fingerprint
    # trials resume: a second search does no new work and gives the same answer
    n_files = len(list((tmp_path / "records").rglob("*.json")))
    path.write_text(json.dumps({**stored, "created": "2000-01-01T00:00:00+00:00"}, indent=1) + "\n")
    before = path.read_bytes()
    again = tune.tune("micro", "bpr", _opts(tmp_path), split_loader=lambda _: micro)
    assert again["best"] == doc["best"] and len(list((tmp_path / "records").rglob("*.json"))) == n_files
    assert path.read_bytes() == before  # nothing new found: the file (and its date) stays as it was
    # the report never shows tuning trials
    assert build_report(tmp_path, ["ndcg@10"]).summary.empty


class GuardedRanks(dict):
    """Ranks whose test entries cannot be read."""

    def __getitem__(self, k: str):
        if k.startswith("test/"):
            raise AssertionError(f"tuning read {k}")
        return super().__getitem__(k)

    def get(self, k: str, default=None):
        if k.startswith("test/"):
            raise AssertionError(f"tuning read {k}")
        return super().get(k, default)


def test_tune_never_reads_test_ranks(micro: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tune.tune("micro", "bpr", _opts(tmp_path / "a"), split_loader=lambda _: micro)
    real_execute = tune.execute

    def guarded(*args, **kwargs):
        recs = real_execute(*args, **kwargs)
        for r in recs:
            scrambled = {
                k: (np.random.default_rng(0).permutation(v) if k.startswith("test/") else v) for k, v in r.ranks.items()
            }
            r.ranks = GuardedRanks(scrambled)
        return recs

    monkeypatch.setattr(tune, "execute", guarded)
    checked = tune.tune("micro", "bpr", _opts(tmp_path / "b"), split_loader=lambda _: micro)
    assert [t["score"] for t in checked["trials"]] == [t["score"] for t in plain["trials"]]
    assert checked["best"]["params"] == plain["best"]["params"]


def test_tune_needs_a_validation_split(micro: Split, tmp_path: Path) -> None:
    no_val = replace(micro, validation=None)
    with pytest.raises(ConfigError, match="validation"):
        tune.tune("micro", "bpr", _opts(tmp_path), split_loader=lambda _: no_val)


def test_run_tuned_applies_the_best_and_set_wins(micro: Split, tmp_path: Path) -> None:
    tune.tune("micro", "bpr", _opts(tmp_path), split_loader=lambda _: micro)
    best = json.loads((tmp_path / "tuned" / "micro" / "bpr.json").read_text())["best"]
    recs = run_grid(
        ["micro"], ["bpr", "itempop"], RunOptions(out=tmp_path, tuned=tmp_path), split_loader=lambda _: micro
    )
    bpr = next(r for r in recs if r["model"] == "bpr")
    assert bpr["config"]["learning_rate"] == best["params"]["learning_rate"] and bpr["config"]["epochs"] == 3
    assert bpr["tags"] == {"tuned": True}
    # itempop has nothing to tune: no file needed
    assert next(r for r in recs if r["model"] == "itempop").status == "ok"
    # an explicit override wins over the tuned value
    opts = RunOptions(out=tmp_path, tuned=tmp_path, overrides={"bpr": {"epochs": "2"}})
    rec = run_grid(["micro"], ["bpr"], opts, split_loader=lambda _: micro)[0]
    assert rec["config"]["epochs"] == 2 and rec["config"]["learning_rate"] == best["params"]["learning_rate"]
    labels = set(build_report(tmp_path, ["ndcg@10"]).summary["model"])
    assert any(lab.endswith("(tuned)") for lab in labels)


def test_run_tuned_without_a_tuned_config_fails_before_work(micro: Split, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recbench tune --dataset micro --model bpr"):
        run_grid(["micro"], ["itempop", "bpr"], RunOptions(out=tmp_path, tuned=tmp_path), split_loader=lambda _: micro)
    assert not (tmp_path / "records").exists()


# ----------------------------------------------------------------------------- CLI


def test_cli_tune_then_run_tuned(micro: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recbench.data

    synthetic = replace(micro, dataset="synthetic")
    monkeypatch.setattr(recbench.data, "load_split", lambda name, **kw: synthetic)
    runner = CliRunner()
    out = tmp_path / "res"
    r = runner.invoke(
        app,
        [
            "tune",
            "-d",
            "synthetic",
            "-m",
            "bpr",
            "--grid",
            "bpr.learning_rate=0.01,0.1",
            "--grid",
            "bpr.reg=0.01",
            "--set",
            "bpr.epochs=2",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "2 trial(s) of a 2-point grid" in r.output and "best:" in r.output
    assert (out / "tuned" / "synthetic" / "bpr.json").exists()
    r = runner.invoke(app, ["run", "-d", "synthetic", "-m", "bpr", "--tuned", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "bpr[" in r.output and "(tuned)" in r.output
    r = runner.invoke(
        app, ["tune", "-d", "synthetic", "-m", "bpr", "--grid", "ncf.learning_rate=0.1", "--out", str(out)]
    )
    assert r.exit_code == 2 and "not in --model" in r.output
    r = runner.invoke(app, ["run", "-d", "synthetic", "-m", "ncf", "--tuned", "--out", str(out)])
    assert r.exit_code == 2 and "no tuned config for synthetic/ncf" in r.output


def test_trials_keep_no_test_metrics_and_lines_show_params(tmp_path: Path) -> None:
    """Tuning never looks at the test item: trial records hold validation ranks and metrics only;
    each trial's line names its parameters and its validation score."""
    r = CliRunner().invoke(
        app,
        [
            "tune",
            "--dataset",
            "synthetic",
            "--model",
            "bpr",
            "--grid",
            "bpr.learning_rate=0.01,0.05",
            "--set",
            "bpr.epochs=2",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    recs = list(iter_records(tmp_path))
    assert len(recs) == 2  # the 2 learning rates of --grid (the default space has no other parameter)
    for rec in recs:
        assert set(rec.ranks) == {"validation/sampled"} and set(rec["metrics"]) == {"validation/sampled"}
    assert "trial learning_rate=0.01" in r.output and "trial learning_rate=0.05" in r.output
    assert "test" not in " ".join(ln for ln in r.output.splitlines() if ln.startswith(("✓", "trial")))
    zero = CliRunner().invoke(
        app, ["tune", "--dataset", "synthetic", "--model", "bpr", "--trials", "0", "--out", str(tmp_path)]
    )
    assert zero.exit_code == 2 and "--trials 0" in zero.output

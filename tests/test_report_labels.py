"""Issue 15: records describe themselves (``overrides``), the report imports no torch, data set
labels come from ``datasets.toml``, and the migration adds ``overrides`` to older records."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recbench.data.registry import RegistryError, dataset_label, load_registry, parse_entry
from recbench.data.types import Split
from recbench.report import build_report, record_label, render
from recbench.report.labels import MODEL_REVISIONS, current_revision, model_label
from recbench.results import Record, iter_records, read_record, record_key, write_record

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _record(model: str = "opeci", config: dict[str, Any] | None = None, **data: Any) -> Record:
    return Record(
        data={
            "model": model,
            "dataset": "ml-100k",
            "seed": 0,
            "status": "ok",
            "config": config or {},
            "metrics": {},
            **data,
        }
    )


# ----------------------------------------------------------------------------- labels


def test_labels_come_from_the_stored_overrides() -> None:
    """Whatever today's defaults are: the label is what the record says differed when it ran."""
    far_from_defaults = {"epochs": 99, "embedding_size": 3, "reg": 0.001}
    assert model_label(_record(config=far_from_defaults, overrides={}, revision=2)) == "opeci"
    rec = _record(config=far_from_defaults, overrides={"epochs": 2, "mlp_hidden": [16, 8]}, revision=2)
    assert model_label(rec) == "opeci[epochs=2,mlp_hidden=(16,8)]"
    assert record_label(_record(config={}, overrides={}, revision=2, tags={"tuned": True})) == "opeci (tuned)"
    assert model_label(_record("itempop", overrides={})) == "itempop"
    assert model_label(_record("mypkg-model", overrides={"k": 3})) == "mypkg-model[k=3]"  # plugins too


def test_revision_label_from_the_record_and_the_revision_table() -> None:
    assert model_label(_record(config={"reg": 0.001}, overrides={})) == "opeci[revision=1]"  # no key: revision 1
    assert model_label(_record(config={"reg": 0.001}, overrides={}, revision=2)) == "opeci"
    assert model_label(_record("ncf", config={"reg": 0.0}, overrides={})) == "ncf"  # reg 0 trains as revision 1
    assert model_label(_record("ncf", config={"reg": 0.01}, overrides={"reg": 0.01}, revision=2)) == "ncf[reg=0.01]"
    assert model_label(_record("ncf", config={"reg": 0.01}, overrides={"reg": 0.01})) == "ncf[reg=0.01,revision=1]"


def test_portable_float_records_are_labelled_apart() -> None:
    """A ``--portable-floats`` record is another column: its numbers differ from the native
    record's of the same cell in the last bits, and so, after training, in its metrics."""
    assert model_label(_record("ncf", config={"reg": 0.0}, overrides={}, floats="portable")) == "ncf[floats=portable]"
    assert model_label(_record("ncf", config={"reg": 0.0}, overrides={}, floats="native")) == "ncf"
    rec = _record("ncf", config={"reg": 0.0}, overrides={"epochs": 3}, floats="portable", tags={"tuned": True})
    assert record_label(rec) == "ncf[epochs=3,floats=portable] (tuned)"


def test_revision_table_matches_the_model_classes() -> None:
    from recbench.models.base import config_from_dict
    from recbench.registry import MODELS

    assert list(MODEL_REVISIONS) == list(MODELS)
    for name, cls in MODELS.items():
        configs = [{}]
        if hasattr(cls.Config(), "reg"):
            configs += [{"reg": 0.0}, {"reg": 0.01}]
        for values in configs:
            cfg = config_from_dict(cls.Config, values, name)
            from recbench.models.base import config_to_dict

            assert current_revision(name, config_to_dict(cfg)) == cls.revision_of(cfg), (name, values)


def test_a_record_without_overrides_falls_back_to_the_old_diff_only_then() -> None:
    """Only a record without ``overrides`` imports the models (and torch) to diff its config."""
    code = """
import sys
from recbench.report.labels import model_label
from recbench.results import Record
base = {"model": "opeci", "dataset": "d", "seed": 0, "status": "ok", "metrics": {}, "revision": 2}
new = Record(data={**base, "config": {"epochs": 2}, "overrides": {"epochs": 2}})
assert model_label(new) == "opeci[epochs=2]", model_label(new)
assert "torch" not in sys.modules
old = Record(data={**base, "config": {"epochs": 2, "no_longer_a_field": 1}})
assert model_label(old) == "opeci[epochs=2]", model_label(old)
assert "torch" in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), cwd=ROOT)


def test_legacy_diff_without_overrides_in_process() -> None:
    from recbench.models.base import config_to_dict
    from recbench.registry import MODELS

    defaults = json.loads(json.dumps(config_to_dict(MODELS["opeci"].Config()), default=str))
    assert model_label(_record(config={**defaults, "epochs": 2}, revision=2)) == "opeci[epochs=2]"
    assert model_label(_record(config=defaults, revision=2)) == "opeci"


# ----------------------------------------------------------------------------- no torch, fast


def _fake_results(out: Path, n: int = 100, n_users: int = 300) -> None:
    """``n`` finished records (5 models × 2 protocols, seeds, one split) without any model code."""
    rng = np.random.default_rng(0)
    users = np.arange(n_users, dtype=np.int32)
    models = ["itempop", "bpr", "ncf", "cml", "opeci"]
    for i in range(n):
        model, seed = models[i % len(models)], i // len(models)
        ranks = {
            f"test/{p}": rng.integers(0, 100 if p == "sampled" else 1000, n_users).astype(np.int32)
            for p in ("sampled", "full")
        }
        config = {"epochs": 2 if model != "itempop" else None}
        data = {
            "model": model,
            "dataset": "ml-100k",
            "seed": seed,
            "status": "ok",
            "config": config,
            "overrides": {},
            "protocols": ["full", "sampled"],
            "split": "fp0",
            "split_info": {"seed": 0, "validation": False, "n_negatives": 99},
            "metrics": {"sampled": {"hr@10": 0.5}, "full": {"hr@10": 0.1}},
            "timing": {"fit_s": 1.0},
            "created": f"2026-12-02T00:00:{i % 60:02d}+00:00",
            **({"revision": 2} if model == "opeci" else {}),
        }
        data["key"] = record_key({"i": i})
        write_record(out, Record(data=data, users=users, ranks=ranks))


def test_report_imports_no_torch() -> None:
    subprocess.run(
        [sys.executable, "-c", "import recbench.report, sys; assert 'torch' not in sys.modules"],
        check=True,
        env=_env(),
        cwd=ROOT,
    )


def test_recbench_report_command_runs_without_torch_and_fast(tmp_path: Path) -> None:
    """The whole ``recbench report`` path on 100 records: no torch; building and rendering the
    report takes well under 2 s on an idle machine (the bound here is loose for loaded CI)."""
    _fake_results(tmp_path)
    code = f"""
import sys, time
from typer.testing import CliRunner
from recbench.cli import app
t = time.perf_counter()
r = CliRunner().invoke(app, ["report", "--results", {str(tmp_path)!r}])
assert r.exit_code == 0, r.output
assert "ML-100K" in r.output and "opeci" in r.output
assert "torch" not in sys.modules
print(time.perf_counter() - t)
"""
    p = subprocess.run([sys.executable, "-c", code], check=True, env=_env(), cwd=ROOT, capture_output=True, text=True)
    assert float(p.stdout.strip().splitlines()[-1]) < 30


def test_report_of_100_records_in_process(tmp_path: Path) -> None:
    _fake_results(tmp_path)
    t = time.perf_counter()
    rep = build_report(tmp_path, ["hr@10", "ndcg@10"])
    text = render(rep, "markdown")
    elapsed = time.perf_counter() - t
    assert "opeci" in text and set(rep.summary["model"]) == {"itempop", "bpr", "ncf", "cml", "opeci"}
    assert (rep.summary["n_seeds"] == 20).all()
    assert elapsed < 20  # ~0.5 s on an idle core; loose for loaded machines


# ----------------------------------------------------------------------------- data set labels


def test_dataset_labels_come_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [dataset_label(n) for n in ("ml-100k", "ml-1m", "yelp", "filmtrust")] == [
        "ML-100K",
        "ML-1M",
        "Yelp",
        "FilmTrust",
    ]
    assert dataset_label("ml-100k · split 1") == "ml-100k · split 1"
    assert dataset_label("tiny") == "tiny"
    assert all(spec.label for spec in load_registry().values())
    extra = tmp_path / "extra.toml"
    extra.write_text('[mine]\nlabel = "Mine"\ngenerator = "synthetic"\nrating_values = [1]\ntimestamps = true\n')
    monkeypatch.setenv("RECBENCH_DATASETS", str(extra))
    assert dataset_label("mine") == "Mine"
    with pytest.raises(RegistryError, match="label"):
        parse_entry("bad", {"label": 3, "generator": "synthetic", "rating_values": [1], "timestamps": True})


def test_no_copies_of_the_dataset_labels() -> None:
    import recbench.figures
    import recbench.report

    assert not hasattr(recbench.report, "DATASET_LABELS") and not hasattr(recbench.figures, "DATASET_LABELS")
    assert recbench.figures.dataset_label("yelp") == "Yelp"


# ----------------------------------------------------------------------------- records and the migration


def test_new_records_store_their_overrides(tiny_split: Split, tmp_path: Path) -> None:
    from recbench.plan import run_grid
    from recbench.runner import RunOptions

    opts = RunOptions(out=tmp_path, overrides={"bpr": {"epochs": "2"}})
    recs = run_grid([tiny_split.dataset], ["itempop", "bpr"], opts, split_loader=lambda _: tiny_split)
    assert [r.data["overrides"] for r in recs] == [{}, {"epochs": 2}]
    stored = sorted(iter_records(tmp_path), key=lambda r: r["model"])
    assert [r.data["overrides"] for r in stored] == [{"epochs": 2}, {}]
    assert [record_label(r) for r in stored] == ["bpr[epochs=2]", "itempop"]


def _migration() -> Any:
    spec = importlib.util.spec_from_file_location(
        "add_record_overrides", ROOT / "benchmarks" / "add_record_overrides.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_migration_adds_overrides_to_old_records(tiny_split: Split, tmp_path: Path) -> None:
    from recbench.plan import run_grid
    from recbench.runner import RunOptions

    for sub in ("", "split-seeds"):
        opts = RunOptions(out=tmp_path / sub, overrides={"bpr": {"epochs": "2"}})
        run_grid([tiny_split.dataset], ["itempop", "bpr"], opts, split_loader=lambda _: tiny_split)
    paths = sorted(tmp_path.rglob("*.json"))
    assert len(paths) == 4
    for p in paths:  # as records were before issue 15
        d = json.loads(p.read_text())
        del d["overrides"]
        p.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
    labels = sorted(record_label(read_record(p)) for p in paths)
    mod = _migration()
    counts = mod.migrate(tmp_path, dry_run=True)
    assert counts["added"] == 4 and all("overrides" not in json.loads(p.read_text()) for p in paths)
    counts = mod.migrate(tmp_path)
    assert counts == {
        "records": 4,
        "had_overrides": 0,
        "added": 4,
        "field_by_field": 0,
        "label_changed": 0,
        "unreadable": 0,
    }
    recs = [read_record(p) for p in paths]  # the ranks still match their hash
    assert sorted(record_label(r) for r in recs) == labels == ["bpr[epochs=2]", "bpr[epochs=2]", "itempop", "itempop"]
    assert sorted(json.dumps(r.data["overrides"]) for r in recs) == ['{"epochs": 2}', '{"epochs": 2}', "{}", "{}"]
    assert mod.migrate(tmp_path)["had_overrides"] == 4  # idempotent


def test_grid_labels_sort_numerically_and_the_default_is_marked() -> None:
    """Issue 16, finding 4: ``n_negatives=10`` sorted after ``=2``, the default labelled."""
    from recbench.report.labels import mark_defaults, order_models

    labels = ["opeci[n_negatives=10]", "opeci[n_negatives=2]", "opeci", "opeci[n_negatives=4]", "ncf"]
    ordered = order_models(labels)
    assert [c for c in ordered if c.startswith("opeci")] == [
        "opeci",
        "opeci[n_negatives=2]",
        "opeci[n_negatives=4]",
        "opeci[n_negatives=10]",
    ]
    marked = mark_defaults(ordered)
    assert "opeci (defaults)" in marked and "ncf" in marked  # ncf has no variant beside it

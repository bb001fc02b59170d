"""The published results rebuild from a fresh machine: the splits of ml-100k and FilmTrust rebuilt
from the local copies of the data sets carry the fingerprints of every committed record, and a
committed BPR and NCF record rerun with ``recbench run --from-record`` on a fresh cache give the
record's per-user ranks exactly (NCF's records are made with ``--portable-floats``: native float
kernels differ between CPU models, see :mod:`recbench.numerics`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from recbench.provenance import hardware
from recbench.results import iter_records, read_record

from ._procs import child_env, recbench

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def shared_data() -> Path | None:
    """The local copies of the data sets: $RECBENCH_SHARED_DATA, else ../shared/data beside the
    checkout (or beside /work/main, where the project's machines keep them)."""
    env = os.environ.get("RECBENCH_SHARED_DATA")
    for p in [Path(env)] if env else [REPO.parent / "shared" / "data", Path("/work/shared/data")]:
        if (p / "ml-100k" / "u.data").exists() and (p / "filmtrust").exists():
            return p
    return None


DATA = shared_data()
needs_data = pytest.mark.skipif(
    DATA is None,
    reason="the shared data sets (../shared/data or $RECBENCH_SHARED_DATA) are absent here; "
    "they cannot be redistributed with the project",
)


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    assert DATA is not None
    env = child_env(RECBENCH_HOME=str(tmp_path_factory.mktemp("fresh-home")))
    for ds in ("ml-100k", "filmtrust"):
        r = recbench(["fetch", ds, "--from", str(DATA / ds)], env=env)
        assert r.returncode == 0, r.stderr
    return env


def _published(dataset: str, model: str | None = None) -> list:
    return [
        r
        for r in iter_records(REPO / "results", with_ranks=False)
        if r["dataset"] == dataset and model in (None, r["model"])
    ]


@needs_data
@pytest.mark.parametrize("dataset", ["ml-100k", "filmtrust"])
def test_fresh_splits_carry_the_published_fingerprints(
    dataset: str, fresh_home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recbench.data import load_split

    recs = _published(dataset)
    assert recs, f"no published {dataset} records"
    want = {
        (r["split_info"]["seed"], r["split_info"]["validation"], r["split_info"]["n_negatives"]): r["split"]
        for r in recs
    }
    monkeypatch.setenv("RECBENCH_HOME", fresh_home["RECBENCH_HOME"])
    for (seed, validation, n_neg), fp in want.items():
        assert load_split(dataset, seed=seed, validation=validation, n_negatives=n_neg).fingerprint == fp
    assert all(
        want[(r["split_info"]["seed"], r["split_info"]["validation"], r["split_info"]["n_negatives"])] == r["split"]
        for r in recs
    )


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("model", ["bpr", "ncf"])
def test_from_record_reproduces_a_published_record(model: str, fresh_home: dict[str, str], tmp_path: Path) -> None:
    """BPR (``implicit``) is exact on any CPU; the published NCF records were made with
    ``--portable-floats``, whose kernels are meant to give the same bits on every x86-64 CPU with
    AVX2: here, whatever CPU runs the suite, the rerun must match the record rank for rank."""
    # the seed-0 record of the default config (for NCF, the one made with portable floats; the
    # native records of Table 2 beside it rerun exactly on the CPU model that made them)
    floats = "portable" if model == "ncf" else "native"
    (path,) = [
        r.path
        for r in _published("ml-100k", model)
        if r["seed"] == 0 and not r.data.get("tags") and r.data.get("floats", "native") == floats
    ]
    old = read_record(path)
    r = recbench(["run", "--from-record", str(path), "--out", str(tmp_path)], env=fresh_home, timeout=280)
    assert r.returncode == 0, r.stderr
    (new,) = list(iter_records(tmp_path))
    assert new["key"] == old["key"] and new["split"] == old["split"]
    where = json.dumps({"record_cpu": old["hardware"]["cpu"], "this_cpu": hardware()["cpu"]})
    for k in old.ranks:
        assert np.array_equal(new.ranks[k], old.ranks[k]), (k, where)
    assert "identical metrics to the record" in r.stderr, where


def test_todays_code_gives_every_current_record_its_key() -> None:
    """Adding a config field (or changing the key's code) must not orphan committed records: for
    every record of its model's current revision, the key computed now from the record's own
    config, split and schedule is the key it was stored under (records of older revisions are
    never reused, by design)."""
    from types import SimpleNamespace

    from recbench.plan import cell_from_record
    from recbench.registry import get_model_class
    from recbench.results import record_key
    from recbench.runner import cell_identity

    checked: set[str] = set()
    folders = sorted({p.parent for p in (REPO / "results").rglob("records")})  # results/, issue13-init/, ...
    for rec in (r for folder in folders for r in iter_records(folder, with_ranks=False)):
        cell = cell_from_record(rec.data)
        cls = get_model_class(cell.ref or cell.model)
        if rec.data.get("revision", 1) != cls.revision_of(cell.config):
            continue
        split = SimpleNamespace(dataset=rec["dataset"], fingerprint=rec["split"])
        ident = cell_identity(split, cell, rec.data.get("device", "cpu"), rec.data.get("floats", "native"))
        assert record_key(ident) == rec["key"], rec.path
        checked.add(rec["model"])
    assert {"opeci", "cadncf", "ncf", "bpr"} <= checked, checked

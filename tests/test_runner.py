"""The run grid: records, resume after an interruption, failures recorded, overrides checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from baselines.itempop import ItemPop
from recbench import registry
from recbench.data.types import Split, TrainData
from recbench.models.base import BaseModel, ConfigError, FitContext
from recbench.plan import parse_overrides, run_grid
from recbench.results import iter_records
from recbench.runner import RunOptions


@dataclass(frozen=True)
class BoomConfig:
    when: str = "fit"


class Boom(BaseModel):
    """A model that raises, to check the grid records the failure and goes on."""

    name: ClassVar[str] = "boom"
    Config: ClassVar[type] = BoomConfig

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        raise RuntimeError("kaboom")


class Interrupt(ItemPop):
    name: ClassVar[str] = "interrupt"

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        raise KeyboardInterrupt


@pytest.fixture
def extra_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.MODELS, "boom", Boom)
    monkeypatch.setitem(registry.MODELS, "interrupt", Interrupt)


def grid(split: Split, models: list[str], out: Path, **kw: object) -> list:
    opts = RunOptions(out=out, **kw)  # type: ignore[arg-type]
    return run_grid([split.dataset], models, opts, split_loader=lambda _: split)


def test_records_written_and_resumed(small_split: Split, tmp_path: Path) -> None:
    recs = grid(small_split, ["itempop", "bpr"], tmp_path, seeds=(0, 1), protocols=("sampled", "full"))
    assert [r.status for r in recs] == ["ok"] * 4
    on_disk = list(iter_records(tmp_path))
    assert len(on_disk) == 4
    r = on_disk[0]
    assert r["split"] == small_split.fingerprint
    assert set(r.ranks) >= {"test/sampled", "test/full", "validation/sampled"}
    assert len(r.ranks["test/sampled"]) == len(small_split.test)
    assert r["versions"]["numpy"] and r["hardware"]["cores"]
    assert r["timing"]["fit_s"] >= 0 and r["peak_rss_mb"] > 0
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "records").rglob("*")}
    again = grid(small_split, ["itempop", "bpr"], tmp_path, seeds=(0, 1), protocols=("sampled", "full"))
    assert [a.key for a in again] == [b.key for b in recs]
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "records").rglob("*")}


def test_resume_after_interruption(small_split: Split, tmp_path: Path, extra_models: None) -> None:
    with pytest.raises(KeyboardInterrupt):
        grid(small_split, ["itempop", "interrupt", "bpr"], tmp_path)
    assert [r["model"] for r in iter_records(tmp_path)] == ["itempop"]
    path = next(iter_records(tmp_path)).path
    first = path.stat().st_mtime_ns
    recs = grid(small_split, ["itempop", "bpr"], tmp_path)
    assert [r.status for r in recs] == ["ok", "ok"]
    assert path.stat().st_mtime_ns == first  # reused, not redone
    assert sorted(r["model"] for r in iter_records(tmp_path)) == ["bpr", "itempop"]


def test_a_failing_model_is_recorded_and_the_grid_goes_on(
    small_split: Split, tmp_path: Path, extra_models: None
) -> None:
    recs = grid(small_split, ["boom", "itempop"], tmp_path)
    assert [r.status for r in recs] == ["failed", "ok"]
    assert "kaboom" in recs[0]["error"]
    # a failed cell is retried on the next run (the failure may have been transient)
    again = grid(small_split, ["boom"], tmp_path)
    assert again[0]["created"] and again[0].status == "failed"


def test_force_redoes(small_split: Split, tmp_path: Path) -> None:
    a = grid(small_split, ["itempop"], tmp_path)[0]
    b = grid(small_split, ["itempop"], tmp_path, force=True)[0]
    assert a.key == b.key and a.path == b.path


def test_other_config_is_another_record(small_split: Split, tmp_path: Path) -> None:
    a = grid(small_split, ["bpr"], tmp_path, overrides={"bpr": {"epochs": "3"}})[0]
    b = grid(small_split, ["bpr"], tmp_path, overrides={"bpr": {"epochs": "4"}})[0]
    assert a.key != b.key
    assert b["config"]["epochs"] == 4


def test_overrides_are_checked_before_any_work(small_split: Split, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid: embedding_size"):
        grid(small_split, ["bpr"], tmp_path, overrides={"bpr": {"nope": "1"}})
    with pytest.raises(ConfigError, match="expected an integer"):
        grid(small_split, ["bpr"], tmp_path, overrides={"bpr": {"epochs": "many"}})
    with pytest.raises(ConfigError, match="not in --models"):
        grid(small_split, ["bpr"], tmp_path, overrides={"ncf": {"epochs": "1"}})
    assert not (tmp_path / "records").exists()


def test_parse_overrides() -> None:
    assert parse_overrides(["ncf.learning_rate=0.005", "NCF.epochs=3"]) == {
        "ncf": {"learning_rate": "0.005", "epochs": "3"}
    }
    with pytest.raises(ConfigError, match=r"MODEL\.PARAM=VALUE"):
        parse_overrides(["learning_rate=0.1"])


def test_unknown_model() -> None:
    with pytest.raises(ConfigError, match="valid: itempop, bpr"):
        registry.parse_model_list("itempop,nosuch")


def test_unknown_protocol() -> None:
    with pytest.raises(ConfigError, match="valid: sampled, full"):
        RunOptions(protocols=("loo",))

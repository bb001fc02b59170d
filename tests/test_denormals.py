"""Subnormal floats are flushed to zero in every fit (recbench.numerics): the switch works, a
fit runs with it and its record says so, and ``--from-record`` reruns a record made before the
switch (no ``denormals`` field) with subnormals kept, as it was made."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.itempop import ItemPop
from recbench import registry
from recbench.cli import app
from recbench.data.types import Split, TrainData
from recbench.models.base import ConfigError, FitContext
from recbench.numerics import set_denormals
from recbench.plan import run_grid
from recbench.results import iter_records
from recbench.runner import RunOptions

x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="FTZ/DAZ are x86 bits")
SUBNORMAL = 1e-39  # below float32's smallest normal, 1.18e-38


def _survives() -> bool:
    """Whether a subnormal float32 survives arithmetic in this process now."""
    return bool((torch.tensor([SUBNORMAL], dtype=torch.float32) * 1.0).item() != 0.0)


@pytest.fixture
def keep_after() -> object:
    yield
    set_denormals("keep")  # torch's default, for the tests after this one in the worker


@x86
def test_set_denormals_switches_flushing(keep_after: object) -> None:
    assert set_denormals("keep") == "keep" and _survives()
    assert set_denormals("flush") == "flush" and not _survives()
    assert set_denormals("keep") == "keep" and _survives()
    with pytest.raises(ConfigError, match="denormals 'sometimes'; valid: flush, keep"):
        set_denormals("sometimes")
    with pytest.raises(ConfigError, match="denormals"):
        RunOptions(out=Path("x"), denormals="sometimes")


class Probe(ItemPop):
    """ItemPop that notes whether subnormals survived arithmetic during its fit."""

    name: ClassVar[str] = "probe"
    seen: ClassVar[list[bool]] = []

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        Probe.seen.append(_survives())
        super().fit(train, rng, ctx)


@x86
@pytest.mark.parametrize("mode", ["flush", "keep"])
def test_a_fit_runs_in_its_mode_and_the_record_says_so(
    mode: str, small_split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_after: object
) -> None:
    monkeypatch.setitem(registry.MODELS, "probe", Probe)
    Probe.seen.clear()
    set_denormals("keep" if mode == "flush" else "flush")  # the opposite, to see the fit switch it
    opts = RunOptions(
        out=tmp_path, seeds=(0,), protocols=("sampled",), **({} if mode == "flush" else {"denormals": mode})
    )
    (rec,) = run_grid([small_split.dataset], ["probe"], opts, split_loader=lambda _: small_split)
    assert rec.status == "ok" and Probe.seen == [mode == "keep"]
    (on_disk,) = list(iter_records(tmp_path))
    assert on_disk["denormals"] == mode


def test_a_record_from_before_is_rerun_with_subnormals_kept(tmp_path: Path, keep_after: object) -> None:
    from recbench.rerun import prepare_rerun

    r = CliRunner().invoke(
        app, ["run", "-d", "synthetic", "-m", "itempop", "--seeds", "0", "--out", str(tmp_path / "a")]
    )
    assert r.exit_code == 0, r.output
    (rec,) = list(iter_records(tmp_path / "a"))
    assert rec.path is not None and rec["denormals"] == "flush"
    assert prepare_rerun(rec.path, out=tmp_path / "b").opts.denormals == "flush"
    d = json.loads(rec.path.read_text())
    del d["denormals"]  # as every record made before the switch
    rec.path.write_text(json.dumps(d))
    assert prepare_rerun(rec.path, out=tmp_path / "b").opts.denormals == "keep"

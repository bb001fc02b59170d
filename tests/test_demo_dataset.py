"""The embedded ``synthetic`` data set is sized for a demo (issue 16): OPECI at its defaults sees
a few thousand samples per epoch (not 105K), and the set still has enough structure that BPR and
NCF at their defaults clearly beat ItemPop."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recbench.cli import app
from recbench.data import load_dataset
from recbench.data.split import leave_one_out
from recbench.models.opeci import OPECIConfig
from recbench.results import iter_records


def test_embedded_set_is_demo_sized() -> None:
    data = load_dataset("synthetic")
    split = leave_one_out(data, seed=0)
    samples = len(split.train.users) * (1 + OPECIConfig().n_negatives)  # one OPECI epoch at its defaults
    assert data.n_users <= 150 and data.n_items <= 200
    assert samples <= 8_000, f"{samples} OPECI samples per epoch: too slow for a demo"
    assert len(split.test) == data.n_users  # every user is evaluated


def test_models_beat_itempop_on_the_demo_set(tmp_path: Path) -> None:
    """The run of the README's example without OPECI (seconds): default configs, no --dataset."""
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["run", "--models", "itempop,bpr,ncf", "--out", str(out)])
    assert r.exit_code == 0, r.output
    hr = {rec["model"]: rec["metrics"]["sampled"]["hr@10"] for rec in iter_records(out)}
    assert {rec["dataset"] for rec in iter_records(out)} == {"synthetic"}
    assert hr["bpr"] >= hr["itempop"] + 0.15 and hr["ncf"] >= hr["itempop"] + 0.1, json.dumps(hr)

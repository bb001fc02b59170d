"""Models: a diverging loss ends that model with its error recorded while the grid goes on;
out-of-range ids passed to ``score`` raise a clear error, for every registered model."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from recbench import registry
from recbench.cli import app
from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.data.types import Split, TrainData
from recbench.models.base import Model, ModelError
from recbench.models.torch import TorchModel
from recbench.plan import run_grid
from recbench.results import iter_records
from recbench.runner import RunOptions, build_model

from ._procs import cli


def test_diverging_losses_are_recorded_and_the_grid_goes_on(fault: Any, tmp_path: Path) -> None:
    out = tmp_path / "results"
    r = cli(
        [
            "run",
            "-d",
            "synthetic",
            "-m",
            "ncf,bpr,itempop",
            "--out",
            out,
            "--set",
            "ncf.learning_rate=1e9",
            "--set",
            "ncf.epochs=2",
            "--set",
            "ncf.batch_size=4096",
            "--set",
            "bpr.learning_rate=1e30",
            "--set",
            "bpr.epochs=5",
        ]
    )
    recs = {rec["model"]: rec for rec in iter_records(out)}
    with fault("NCF trained with learning_rate=1e9 (PyTorch loop: loss becomes NaN)", "models") as f:
        assert r.exit_code == 1, r.output
        assert recs["ncf"].status == "failed"
        assert "loss is nan" in recs["ncf"]["error"] and "learning_rate" in recs["ncf"]["error"]
        assert recs["ncf"].ranks == {} and recs["ncf"]["metrics"] == {}
        f.observed(f"cell recorded as failed with “{recs['ncf']['error']}”; no metrics or ranks kept")
    with fault("BPR trained with learning_rate=1e30 (implicit: factors become NaN)", "models") as f:
        assert recs["bpr"].status == "failed" and "NaN" in recs["bpr"]["error"]
        f.observed(f"cell recorded as failed with “{recs['bpr']['error']}”")
    with fault("the grid around two diverging models", "models", counted=False) as f:
        assert recs["itempop"].status == "ok"
        assert "2 cell(s) failed" in r.stderr
        assert "Failed cells:" in r.stdout and "loss is nan" in r.stdout
        rep = CliRunner().invoke(app, ["report", "--results", str(out), "--format", "json"])
        doc = json.loads(rep.stdout)
        assert {row["model"] for row in doc["rows"]} == {"itempop"} and len(doc["failed"]) == 2
        f.observed(
            "the next model (itempop) still ran and was recorded; `run` printed its table with a "
            "'Failed cells' list and exited 1; `report` shows only the successful model and lists "
            "the two failures"
        )


# ----------------------------------------------------------------------------- inf loss


@dataclass(frozen=True)
class InfConfig:
    epochs: int = 2
    batch_size: int = 256
    learning_rate: float = 1e-3
    reg: float = 0.0
    n_negatives: int = 1
    blow_up_at_batch: int = 3


class _Dot(nn.Module):
    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.u = nn.Embedding(n_users, 4)
        self.i = nn.Embedding(n_items, 4)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.u(users) * self.i(items)).sum(-1)


class InfLoss(TorchModel):
    """A tiny PyTorch model on the shared loop whose loss turns +inf at a given batch."""

    name: ClassVar[str] = "infloss"
    Config: ClassVar[type] = InfConfig

    def build_module(self, train: TrainData) -> nn.Module:
        self._batches = 0
        return _Dot(train.n_users, train.n_items)

    def batch_loss(self, users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self._batches += 1
        loss = super().batch_loss(users, items, targets)
        return loss * float("inf") if self._batches >= self.config.blow_up_at_batch else loss


@pytest.fixture(scope="module")
def tiny() -> Split:
    return leave_one_out(make_synthetic(n_users=60, n_items=150, mean_interactions=20, seed=1, name="tiny"), seed=0)


def test_infinite_loss_in_the_shared_training_loop(
    fault: Any, tiny: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.MODELS, "infloss", InfLoss)
    with fault("a PyTorch model whose loss becomes +inf at its 3rd batch", "models") as f:
        recs = run_grid(["tiny"], ["infloss", "itempop"], RunOptions(out=tmp_path), split_loader=lambda _: tiny)
        assert [r.status for r in recs] == ["failed", "ok"]
        assert "loss is inf at epoch 1, batch 2" in recs[0]["error"]
        assert "ModelError" in recs[0]["error"]
        f.observed(f"cell recorded as failed with “{recs[0]['error']}”, the next model ran")


# ----------------------------------------------------------------------------- out-of-range ids


@pytest.fixture(scope="module")
def fitted(tiny: Split) -> dict[str, Model]:
    """Every registered model, fitted on a tiny split with one epoch where it has epochs."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = {}
        for name, cls in registry.MODELS.items():
            fields = {f.name for f in dataclasses.fields(cls.Config)}
            overrides = {k: v for k, v in {"epochs": "1", "batch_size": "512"}.items() if k in fields}
            m = build_model(name, overrides)
            m.fit(tiny.train, np.random.default_rng(0))
            models[name] = m
        return models
    finally:
        torch.set_num_threads(torch_threads)


def _calls(split: Split) -> list[tuple[str, Callable[[Model], Any], type[Exception], str]]:
    nu, ni = split.n_users, split.n_items
    z = np.zeros(1, dtype=np.int64)
    return [
        (
            f"user id = n_users ({nu}) passed to score",
            lambda m: m.score(np.array([nu]), z),
            IndexError,
            f"user id out of range 0..{nu - 1}",
        ),
        (
            f"item id = n_items ({ni}) passed to score",
            lambda m: m.score(z, np.array([ni])),
            IndexError,
            f"item id out of range 0..{ni - 1}",
        ),
        ("negative user id passed to score", lambda m: m.score(np.array([-1]), z), IndexError, "user id out of range"),
        ("negative item id passed to score", lambda m: m.score(z, np.array([-3])), IndexError, "item id out of range"),
        (
            "out-of-range user passed to score_matrix (full ranking)",
            lambda m: m.score_matrix(np.array([0, nu + 7])),
            IndexError,
            "user id out of range",
        ),
        (
            "users and items of different lengths passed to score",
            lambda m: m.score(np.array([0, 1]), z),
            ValueError,
            "same shape",
        ),
        (
            "fractional item id (1.5) passed to score",
            lambda m: m.score(z, np.array([1.5])),
            ValueError,
            "items: ids must be whole numbers, got 1.5",
        ),
        (
            "NaN user id passed to score_matrix",
            lambda m: m.score_matrix(np.array([0.0, np.nan])),
            ValueError,
            "users: ids must be whole numbers, got nan",
        ),
        (
            "string item ids passed to score",
            lambda m: m.score(z, np.array(["0"])),
            TypeError,
            "items: ids must be integers",
        ),
    ]


@pytest.mark.parametrize("case", range(9))
def test_out_of_range_ids_raise_a_clear_error(fault: Any, fitted: dict[str, Model], tiny: Split, case: int) -> None:
    what, call, exc, message = _calls(tiny)[case]
    with fault(f"{what} (every registered model: {', '.join(fitted)})", "models") as f:
        seen = []
        for name, m in fitted.items():
            with pytest.raises(exc) as e:
                call(m)
            assert message in str(e.value), (name, str(e.value))
            seen.append(f"{type(e.value).__name__}: {e.value}")
        f.observed(f"each raises {exc.__name__} before any lookup, e.g. “{seen[0]}”")


def test_score_before_fit(fault: Any) -> None:
    with fault(f"score called before fit (every registered model: {', '.join(registry.MODELS)})", "models") as f:
        for name in registry.MODELS:
            with pytest.raises(ModelError, match="before fit"):
                build_model(name).score(np.zeros(1, np.int64), np.zeros(1, np.int64))
        f.observed(f"each raises ModelError, e.g. “{name}: score() called before fit()”")

"""The vectorised evaluator against a slow, obviously correct per-user reference."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from recbench.data.types import HeldOut, Split, TrainData
from recbench.eval.evaluator import evaluate, full_ranks, sampled_ranks
from recbench.models.base import BaseModel


class TableModel(BaseModel):
    """Scores from a fixed users × items table (for evaluator tests)."""

    name: ClassVar[str] = "table"
    Config: ClassVar[type] = dict

    def __init__(self, table: np.ndarray) -> None:
        super().__init__({})
        self.table = table
        self.n_users, self.n_items = table.shape

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.table[users, items]


def reference_sampled(table: np.ndarray, held: HeldOut) -> np.ndarray:
    out = []
    for k, u in enumerate(held.users):
        pos = table[u, held.candidates[k, 0]]
        out.append(sum(1 for j in held.candidates[k, 1:] if not table[u, j] < pos))
    return np.array(out)


def reference_full(table: np.ndarray, train: TrainData, held: HeldOut) -> np.ndarray:
    seen = {(int(u), int(i)) for u, i in zip(train.users, train.items, strict=True)}
    out = []
    for u, item in zip(held.users, held.items, strict=True):
        pos = table[u, item]
        r = 0
        for j in range(train.n_items):
            if j == item or (int(u), j) in seen:
                continue
            if not table[u, j] < pos:  # >= and NaN both count against
                r += 1
        out.append(r)
    return np.array(out)


@pytest.mark.parametrize("discrete", [False, True])
def test_matches_reference(small_split: Split, rng: np.random.Generator, discrete: bool) -> None:
    table = rng.normal(size=(small_split.n_users, small_split.n_items))
    if discrete:  # many ties
        table = np.round(table)
    model = TableModel(table)
    np.testing.assert_array_equal(sampled_ranks(model, small_split.test), reference_sampled(table, small_split.test))
    np.testing.assert_array_equal(
        full_ranks(model, small_split.train, small_split.test)[0],
        reference_full(table, small_split.train, small_split.test),
    )


def test_constant_scores_get_no_lucky_hits(small_split: Split) -> None:
    model = TableModel(np.zeros((small_split.n_users, small_split.n_items)))
    r = evaluate(model, small_split.train, small_split.test, "sampled")
    assert (r == small_split.test.candidates.shape[1] - 1).all()
    rf, ncand = full_ranks(model, small_split.train, small_split.test)
    assert (rf == ncand - 1).all()


def test_nan_scores_count_as_worst(small_split: Split) -> None:
    table = np.full((small_split.n_users, small_split.n_items), np.nan)
    r = sampled_ranks(TableModel(table), small_split.test)
    assert (r == 99).all()


def test_perfect_model_ranks_zero(small_split: Split) -> None:
    table = np.zeros((small_split.n_users, small_split.n_items))
    table[small_split.test.users, small_split.test.items] = 1.0
    m = TableModel(table)
    assert (sampled_ranks(m, small_split.test) == 0).all()
    assert (full_ranks(m, small_split.train, small_split.test)[0] == 0).all()


def test_training_items_are_excluded_from_full_ranking(small_split: Split) -> None:
    # training items score highest; they must not push the held-out item down
    table = np.zeros((small_split.n_users, small_split.n_items))
    table[small_split.train.users, small_split.train.items] = 10.0
    table[small_split.test.users, small_split.test.items] = 1.0
    assert (full_ranks(TableModel(table), small_split.train, small_split.test)[0] == 0).all()


def test_unknown_protocol(small_split: Split) -> None:
    with pytest.raises(ValueError, match="sampled, full"):
        evaluate(
            TableModel(np.zeros((small_split.n_users, small_split.n_items))), small_split.train, small_split.test, "loo"
        )

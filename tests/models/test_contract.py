"""The contract every registered model inherits (after ``implicit``'s recommender_base_test):
fit on tiny synthetic data, score pairs and whole rows consistently, reject bad ids, and be
deterministic for a seed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recbench.data.types import Split
from recbench.models.base import Model, ModelError, apply_overrides
from recbench.registry import MODELS

# Small settings so the contract runs in seconds for every model; only fields a config has.
FAST = {"epochs": 2, "embedding_size": 8, "batch_size": 512, "n_negatives": 2, "threads": 1}


def build(name: str) -> Model:
    cls = MODELS[name]
    cfg = cls.Config()
    fields = {f.name for f in dataclasses.fields(cfg)}
    return cls(apply_overrides(cfg, {k: v for k, v in FAST.items() if k in fields}, name))


@pytest.fixture(scope="module")
def fitted(tiny_split: Split) -> dict[str, Model]:
    out = {}
    for name in MODELS:
        m = build(name)
        m.fit(tiny_split.train, np.random.default_rng(0))
        out[name] = m
    return out


@pytest.mark.parametrize("name", list(MODELS))
class TestModelContract:
    def test_is_a_model(self, name: str) -> None:
        m = build(name)
        assert isinstance(m, Model)
        assert MODELS[name].name == name
        assert dataclasses.is_dataclass(m.config)
        assert m.config.__dataclass_params__.frozen

    def test_score_shapes_and_finiteness(self, name: str, fitted: dict, tiny_split: Split) -> None:
        m = fitted[name]
        users = tiny_split.test.users
        cands = tiny_split.test.candidates
        s = m.score(np.repeat(users, cands.shape[1]), cands.ravel())
        assert s.shape == (cands.size,)
        assert np.isfinite(s).all()
        full = m.score_matrix(users[:7])
        assert full.shape == (7, tiny_split.n_items)
        assert np.isfinite(full).all()

    def test_pairs_agree_with_rows(self, name: str, fitted: dict, tiny_split: Split, rng: np.random.Generator) -> None:
        m = fitted[name]
        users = rng.integers(0, tiny_split.n_users, size=5)
        full = m.score_matrix(users)
        items = rng.integers(0, tiny_split.n_items, size=(5, 9))
        pairs = m.score(np.repeat(users, 9), items.ravel()).reshape(5, 9)
        np.testing.assert_allclose(pairs, np.take_along_axis(full, items, axis=1), rtol=1e-4, atol=1e-5)

    def test_out_of_range_ids_raise(self, name: str, fitted: dict, tiny_split: Split) -> None:
        m = fitted[name]
        with pytest.raises(IndexError):
            m.score(np.array([tiny_split.n_users]), np.array([0]))
        with pytest.raises(IndexError):
            m.score(np.array([0]), np.array([tiny_split.n_items]))
        with pytest.raises(IndexError):
            m.score(np.array([-1]), np.array([0]))
        with pytest.raises(IndexError):
            m.score_matrix(np.array([tiny_split.n_users + 3]))

    def test_score_before_fit_is_an_error(self, name: str) -> None:
        with pytest.raises(ModelError):
            build(name).score(np.array([0]), np.array([0]))

    def test_deterministic_for_a_seed(self, name: str, tiny_split: Split) -> None:
        a, b = build(name), build(name)
        a.fit(tiny_split.train, np.random.default_rng(7))
        b.fit(tiny_split.train, np.random.default_rng(7))
        users = tiny_split.test.users[:10]
        np.testing.assert_array_equal(a.score_matrix(users), b.score_matrix(users))

    def test_fit_does_not_mutate_training_data(self, name: str, tiny_split: Split) -> None:
        before = (tiny_split.train.users.copy(), tiny_split.train.items.copy(), tiny_split.train.ratings.copy())
        build(name).fit(tiny_split.train, np.random.default_rng(0))
        for a, b in zip(before, (tiny_split.train.users, tiny_split.train.items, tiny_split.train.ratings), strict=True):
            np.testing.assert_array_equal(a, b)

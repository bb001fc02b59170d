"""The contract every model must honour, as a test class to inherit (after ``implicit``'s
``recommender_base_test`` and LensKit's shipped model tests).

For a model of your own::

    from recbench.testing import ModelContract
    from mypkg.models import MyModel

    class TestMyModel(ModelContract):
        model_class = MyModel

pytest then fits it on small synthetic data and checks that it is a model (a frozen config), that
pair scores and whole rows agree and are finite, that bad ids raise, that scoring before fitting
is an error, that a seed makes it deterministic and that fitting leaves the data untouched.
``fast`` holds small settings applied to the fields the config has. Needs pytest.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pytest

from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.data.types import Split
from recbench.models.base import Model, ModelError, apply_overrides

FAST = {"epochs": 2, "embedding_size": 8, "batch_size": 512, "n_negatives": 2, "threads": 1}


class ModelContract:
    model_class: ClassVar[type]
    fast: ClassVar[dict[str, Any]] = FAST

    @classmethod
    def build(cls) -> Model:
        cfg = cls.model_class.Config()
        fields = {f.name for f in dataclasses.fields(cfg)}
        return cls.model_class(
            apply_overrides(cfg, {k: v for k, v in cls.fast.items() if k in fields}, cls.model_class.name)
        )

    @pytest.fixture(scope="class")
    @classmethod
    def contract_split(cls) -> Split:
        data = make_synthetic(n_users=60, n_items=150, mean_interactions=20, seed=1, name="contract")
        return leave_one_out(data, seed=0, validation=True)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, contract_split: Split) -> Model:
        m = cls.build()
        m.fit(contract_split.train, np.random.default_rng(0))
        return m

    def test_is_a_model(self) -> None:
        m = self.build()
        assert isinstance(m, Model)
        assert dataclasses.is_dataclass(m.config)
        assert m.config.__dataclass_params__.frozen

    def test_score_shapes_and_finiteness(self, fitted: Model, contract_split: Split) -> None:
        users = contract_split.test.users
        cands = contract_split.test.candidates
        s = fitted.score(np.repeat(users, cands.shape[1]), cands.ravel())
        assert s.shape == (cands.size,)
        assert np.isfinite(s).all()
        full = fitted.score_matrix(users[:7])
        assert full.shape == (7, contract_split.n_items)
        assert np.isfinite(full).all()

    def test_pairs_agree_with_rows(self, fitted: Model, contract_split: Split) -> None:
        rng = np.random.default_rng(12345)
        users = rng.integers(0, contract_split.n_users, size=5)
        full = fitted.score_matrix(users)
        items = rng.integers(0, contract_split.n_items, size=(5, 9))
        pairs = fitted.score(np.repeat(users, 9), items.ravel()).reshape(5, 9)
        np.testing.assert_allclose(pairs, np.take_along_axis(full, items, axis=1), rtol=1e-4, atol=1e-5)

    def test_out_of_range_ids_raise(self, fitted: Model, contract_split: Split) -> None:
        with pytest.raises(IndexError):
            fitted.score(np.array([contract_split.n_users]), np.array([0]))
        with pytest.raises(IndexError):
            fitted.score(np.array([0]), np.array([contract_split.n_items]))
        with pytest.raises(IndexError):
            fitted.score(np.array([-1]), np.array([0]))
        with pytest.raises(IndexError):
            fitted.score_matrix(np.array([contract_split.n_users + 3]))

    def test_score_before_fit_is_an_error(self) -> None:
        with pytest.raises(ModelError):
            self.build().score(np.array([0]), np.array([0]))

    def test_deterministic_for_a_seed(self, contract_split: Split) -> None:
        a, b = self.build(), self.build()
        a.fit(contract_split.train, np.random.default_rng(7))
        b.fit(contract_split.train, np.random.default_rng(7))
        users = contract_split.test.users[:10]
        np.testing.assert_array_equal(a.score_matrix(users), b.score_matrix(users))

    def test_fit_does_not_mutate_training_data(self, contract_split: Split) -> None:
        t = contract_split.train
        before = (t.users.copy(), t.items.copy(), t.ratings.copy())
        self.build().fit(t, np.random.default_rng(0))
        for a, b in zip(before, (t.users, t.items, t.ratings), strict=True):
            np.testing.assert_array_equal(a, b)


# Operators that make the host wait for a device: a scalar read, or an output whose shape
# depends on the data (on CUDA both copy to the host and synchronise).
HOST_SYNC_OPS = (
    "_local_scalar_dense",  # .item(), int(t), float(t), bool(t), `if t:`
    "nonzero",  # t.nonzero(), boolean-mask indexing
    "masked_select",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "repeat_interleave",  # with a tensor of repeats
    "equal",  # torch.equal
)


def no_host_sync() -> Any:
    """A context in which any operator of :data:`HOST_SYNC_OPS` raises ``AssertionError``:
    a check, on the CPU, that a step would run on an accelerator without synchronising with
    the host (``torch.compile`` without graph breaks, CUDA graphs)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _NoHostSync(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            name = func.overloadpacket.__name__
            if name in HOST_SYNC_OPS:
                raise AssertionError(f"host synchronisation: aten::{name}")
            return func(*args, **(kwargs or {}))

    return _NoHostSync()

"""A model from outside the package: item co-occurrence (README, "Adding a model")."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recbench.data.types import TrainData
from recbench.models.base import BaseModel, FitContext


@dataclass(frozen=True)
class CoCountConfig:
    shrink: float = 10.0  # damps the counts of popular items


class CoCount(BaseModel):
    """A user's score for an item: how often it was rated together with the user's items."""

    name: ClassVar[str] = "cocount"
    Config: ClassVar[type] = CoCountConfig

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        self.n_users, self.n_items = train.n_users, train.n_items
        self.x = train.csr.astype(np.float32)
        self.x.data[:] = 1.0  # rated or not
        co = (self.x.T @ self.x).toarray()
        np.fill_diagonal(co, 0.0)
        self.sim = co / (co.sum(0, keepdims=True) + self.config.shrink)

    def _score_matrix(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.x[users] @ self.sim, dtype=np.float32)

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(users, return_inverse=True)
        return self._score_matrix(uniq)[inv, items]

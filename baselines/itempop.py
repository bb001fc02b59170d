"""ItemPop: an item's score is its number of training interactions (the non-personalised
popularity baseline of the NCF and OPECI papers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recbench.data.types import TrainData
from recbench.models.base import BaseModel, FitContext


@dataclass(frozen=True)
class ItemPopConfig:
    """ItemPop has nothing to tune."""


class ItemPop(BaseModel):
    summary: ClassVar[str] = "items ranked by their number of training interactions"
    paper: ClassVar[str] = "non-personalised baseline"
    name: ClassVar[str] = "itempop"
    Config: ClassVar[type] = ItemPopConfig

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        self.n_users, self.n_items = train.n_users, train.n_items
        self.popularity = train.item_counts.astype(np.float32)

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.popularity[items]

    def _score_matrix(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), self.n_items)).copy()

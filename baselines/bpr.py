"""BPR (Rendle, Freudenthaler, Gantner and Schmidt-Thieme, "BPR: Bayesian Personalized Ranking
from Implicit Feedback", UAI 2009), as a thin adapter over ``implicit``'s implementation.

The adapter adds nothing to the fit: it binarises the training matrix (any rating is a positive),
calls ``implicit`` (its GPU build when ``--device cuda`` and available), and scores with the
learned factors. ``implicit`` folds the item bias into an extra factor column; scores are
``user_factors · item_factors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recbench.data.types import TrainData
from recbench.models.base import BaseModel, FitContext


@dataclass(frozen=True)
class BPRConfig:
    embedding_size: int = 64
    learning_rate: float = 0.01
    reg: float = 0.01
    epochs: int = 100
    threads: int = 1  # implicit is Hogwild-parallel: >1 thread is not bit-reproducible


class BPR(BaseModel):
    summary: ClassVar[str] = "matrix factorisation trained with the BPR pairwise loss (adapter over `implicit`)"
    paper: ClassVar[str] = "Rendle et al., UAI 2009"
    name: ClassVar[str] = "bpr"
    Config: ClassVar[type] = BPRConfig

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        import implicit

        cfg = self.config
        self.n_users, self.n_items = train.n_users, train.n_items
        x = train.csr.copy()
        x.data[:] = 1.0
        use_gpu = bool(ctx and ctx.device in ("cuda", "auto") and implicit.gpu.HAS_CUDA)
        model = implicit.bpr.BayesianPersonalizedRanking(
            factors=cfg.embedding_size,
            learning_rate=cfg.learning_rate,
            regularization=cfg.reg,
            iterations=cfg.epochs,
            num_threads=cfg.threads,
            random_state=int(rng.integers(0, 2**31 - 1)),
            use_gpu=use_gpu,
        )
        model.fit(sp.csr_matrix(x, dtype=np.float32), show_progress=False)
        if use_gpu:
            model = model.to_cpu()
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.user_factors[users], self.item_factors[items])

    def _score_matrix(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

"""CML (Hsieh, Yang, Cui, Lin, Belongie and Estrin, "Collaborative Metric Learning", WWW 2017).

Users and items are points in one Euclidean space (dimension ``embedding_size`` = 64); the score
of a pair is minus their squared distance. For every training positive (i, j) each epoch samples U
(``n_negatives`` = 20, the pairwise scheme of :mod:`recbench.models.sampling`) items the user has not
interacted with, and the loss (eq. 4–6) is

    w_ij · [m + d(i, j)² − d(i, k)²]_+        with k the closest of the U negatives,
    w_ij = log(1 + ⌊J · M / U⌋),              J = n_items, M = #negatives inside the margin,

(margin m = 0.5; the rank weight is a constant, not differentiated), averaged over the batch's
positives, plus the covariance regulariser ``λ_c · L_c``. After every optimiser step all
embeddings are projected back into the unit ball (``clip_norm`` = 1).

Where we interpreted:

- **Covariance loss.** The paper defines ``C_ij = 1/N Σ_n (y_i^n − μ_i)(y_j^n − μ_j)`` over the
  N latent vectors of a batch and ``L_c = 1/N (‖C‖_f − ‖diag(C)‖²₂)``; the norms are
  inconsistent as printed, and the released code sums the raw (signed) off-diagonal entries of C
  over the whole user and item tables. We use the evident intent, the squared off-diagonal
  Frobenius norm ``Σ_{i≠j} C_ij²``, over the users, positives and negatives of the batch, without
  the extra 1/N (C is already a mean), weighted by ``cov_weight`` = 1.0 (the released code's
  ``cov_loss_weight`` default).
- **Optimiser and schedule.** The shared loop's Adam (learning rate 1e-3, no L2: the unit ball is
  the regulariser), batches of 256 positives (each with its U negatives), 30 epochs. The paper
  does not fix these for our data sets; on ml-100k's *validation* split lr 1e-3 reached HR@10
  0.655 / NDCG@10 0.392 after 30 epochs (still rising slowly), while lr 5e-3 plateaued at
  ~0.60–0.61 from epoch 5 (with or without the covariance term).
- Hardest negative and the ``log(1 + ⌊J·M/U⌋)`` weight follow the paper (the released code omits
  the floor). Initial embeddings are N(0, 1/d) per coordinate (norm ≈ 1), as in the released
  code, then clipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from recbench.data.types import TrainData
from recbench.models.sampling import Batches, pairwise_batches
from recbench.models.torch import TorchModel


@dataclass(frozen=True)
class CMLConfig:
    embedding_size: int = 64
    margin: float = 0.5
    n_negatives: int = 20  # U
    epochs: int = 30
    batch_size: int = 256  # positives per batch
    learning_rate: float = 1e-3
    reg: float = 0.0
    cov_weight: float = 1.0  # λ_c
    clip_norm: float = 1.0
    rank_weight: bool = True


class CMLModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, d: int, clip_norm: float) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, d)
        self.item = nn.Embedding(n_items, d)
        for e in (self.user, self.item):
            nn.init.normal_(e.weight, std=1.0 / math.sqrt(d))
        self.clip_norm = clip_norm
        self.clip()

    @torch.no_grad()
    def clip(self) -> None:
        for e in (self.user, self.item):
            e.weight.renorm_(2, 0, self.clip_norm)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Minus the squared distance, as ``‖u‖² + ‖v‖² − 2u·v`` (the same formula as the
        whole-row path, so pair and row scores agree)."""
        u, v = self.user(users), self.item(items)
        return -((u * u).sum(1) + (v * v).sum(1) - 2.0 * (u * v).sum(1))


def covariance_penalty(x: torch.Tensor) -> torch.Tensor:
    """``Σ_{i≠j} C_ij²`` of the covariance C of the rows of ``x`` (``[N, d]``)."""
    xc = x - x.mean(0, keepdim=True)
    c = xc.T @ xc / x.shape[0]
    return (c * c).sum() - (torch.diagonal(c) ** 2).sum()


class CML(TorchModel):
    """CML (see the module docstring)."""

    summary: ClassVar[str] = "metric learning: users near the items they like, hinge loss with a margin"
    paper: ClassVar[str] = "Hsieh et al., WWW 2017"

    name: ClassVar[str] = "cml"
    Config: ClassVar[type] = CMLConfig

    def build_module(self, train: TrainData) -> nn.Module:
        cfg = self.config
        return CMLModule(train.n_users, train.n_items, cfg.embedding_size, cfg.clip_norm)

    def batches(self, train: TrainData, rng: np.random.Generator) -> Batches:
        """Pairwise: batches of positives, each with ``n_negatives`` (U) sampled negatives."""
        return pairwise_batches(
            train,
            rng,
            batch_size=int(self.config.batch_size),
            n_negatives=int(self.config.n_negatives),
            device=self.device,
        )

    def batch_loss(
        self, users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Weighted hinge on the nearest of each positive's U negatives, plus the covariance
        penalty (``targets`` are all 1 and unused)."""
        assert isinstance(self.module, CMLModule)
        cfg = self.config
        u = self.module.user(users)  # [B, d]
        p = self.module.item(items)  # [B, d]
        n = self.module.item(negatives)  # [B, U, d]
        d_pos = ((u - p) ** 2).sum(-1)  # [B]
        d_neg = ((u.unsqueeze(1) - n) ** 2).sum(-1)  # [B, U]
        hinge = torch.relu(cfg.margin + d_pos - d_neg.min(1).values)
        if cfg.rank_weight:
            with torch.no_grad():
                n_u = negatives.shape[1]
                inside = (cfg.margin + d_pos.unsqueeze(1) - d_neg > 0).sum(1)
                w = torch.log1p(torch.floor(self.n_items * inside / n_u))
            hinge = hinge * w
        loss = hinge.mean()
        if cfg.cov_weight:
            x = torch.cat((u, p, n.reshape(-1, n.shape[-1])))
            loss = loss + cfg.cov_weight * covariance_penalty(x)
        return loss

    def after_step(self) -> None:
        assert isinstance(self.module, CMLModule)
        self.module.clip()

    def _score_matrix(self, users: np.ndarray) -> np.ndarray:
        assert isinstance(self.module, CMLModule)
        with torch.no_grad():
            u = self.module.user(torch.from_numpy(users).to(self.device))
            v = self.module.item.weight
            s = -((u * u).sum(1, keepdim=True) + (v * v).sum(1).unsqueeze(0) - 2.0 * (u @ v.T))
            return s.float().cpu().numpy()

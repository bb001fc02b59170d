"""CADNCF (Zhang, Qin, Li and Wang, "Cross Product and Attention Based Deep Neural Collaborative
Filtering", 2020), the OPECI authors' predecessor model.

User and item ID embeddings ``p_u, q_i ∈ R^d`` (d = 64); their outer product ``M = p_u q_iᵀ``
(d × d); one self-attention head over the d rows of M; an MLP with batch normalisation on the
flattened attended matrix; a sigmoid output; the normalised cross-entropy loss (target
``rating / max(R)`` for a positive, 0 for a sampled negative).

The paper is not freely available, so this is our reading of its abstract and of how the OPECI
paper describes it: **CADNCF is OPECI without the neighbourhood aggregation layer and with a
single attention head**. It therefore reuses OPECI's blocks from :mod:`recbench.models.attention`
unchanged: :class:`CorrelationAttention` with ``n_heads = 1`` (Q, K, V = sigmoid(M W), scaled
dot-product attention, output projection ``W^O``; the rank-one fast path, exact for
``M = p qᵀ``) and :class:`CorrelationHead` (``d² → 256 → 64 → 1`` with batch normalisation).

Defaults and where we chose them:

- ``d_k = d_v = 16``, the attention module's defaults (OPECI's chosen defaults; the paper gives
  none).
- Adam, learning rate 1e-3, batch 256, 6 negatives per positive and L2 (Adam weight decay)
  ``reg = 0`` — OPECI's stated settings for ML-100K/FilmTrust except the L2: OPECI's "L2 0.001"
  applied as Adam weight decay to the ID embeddings (which are dense-updated every step) shrank
  the embeddings of every user and item not in the batch and hurt accuracy in our checks on
  synthetic data, so it is off by default and available as ``--set cadncf.reg=0.001``.
- Embeddings are initialised N(0, ``init_std``²) with ``init_std = 1``: with the attention
  block's ``N(0, 1/d)`` projections this puts ``M W`` at unit scale, so the sigmoids start in
  their sensitive range (with NCF's 0.01 the entries of M are ~1e-4 and every Q, K, V starts at
  0.5). 20 epochs.
- Scores are the logits (monotone in ŷ); inference runs in eval mode (batch norm uses its running
  statistics), so a pair's score does not depend on the rest of the batch.

Known weakness of this reading (measured, not tuned away): for ``M = p qᵀ`` every row a of
``sigmoid(M W)`` is a function of the single scalar ``p_a`` (``Q_a = σ(p_a·qᵀW^Q)`` etc.), and
with near-uniform attention each output row is close to the mean of the value rows, in which the
user enters only through the distribution of its embedding's entries (for signed entries the
mean of ``σ(p_b c)`` is ≈ 0.5 whatever c). Little user information reaches the MLP: on the
synthetic test data CADNCF stays around ItemPop's HR@10 where NCF and DMF are far above it,
whereas the same MLP on ``flatten(p qᵀ)`` without the attention block learns quickly. OPECI's
factors are ReLU outputs (non-negative, with a bias), which avoids the symmetric case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from recbench.data.types import TrainData
from recbench.models.attention import CorrelationAttention, CorrelationHead
from recbench.training import TorchModel


@dataclass(frozen=True)
class CADNCFConfig:
    embedding_size: int = 64  # d
    n_heads: int = 1  # H: CADNCF has a single head
    d_k: int = 16
    d_v: int = 16
    hidden: tuple[int, ...] = (256, 64)  # MLP widths after flatten(O) (d²)
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    reg: float = 0.0
    n_negatives: int = 6
    init_std: float = 1.0


class CADNCFModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: CADNCFConfig) -> None:
        super().__init__()
        d = cfg.embedding_size
        self.user = nn.Embedding(n_users, d)
        self.item = nn.Embedding(n_items, d)
        nn.init.normal_(self.user.weight, std=cfg.init_std)
        nn.init.normal_(self.item.weight, std=cfg.init_std)
        self.attention = CorrelationAttention(d, cfg.n_heads, cfg.d_k, cfg.d_v, rank_one=True)
        self.head = CorrelationHead(d, tuple(cfg.hidden))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` for the pairs."""
        return self.head(self.attention(self.user(users), self.item(items)))


class CADNCF(TorchModel):
    """CADNCF (see the module docstring)."""

    name: ClassVar[str] = "cadncf"
    Config: ClassVar[type] = CADNCFConfig
    sampling = "pointwise"
    target = "nce"
    output = "logit"
    inference_batch: ClassVar[int] = 4096  # a pair holds several d×d intermediates
    cpu_inference_batch: ClassVar[int] = 4096

    def build_module(self, train: TrainData) -> nn.Module:
        return CADNCFModule(train.n_users, train.n_items, self.config)

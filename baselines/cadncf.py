"""CADNCF (Zhang, Qin, Li and Wang, "Cross Product and Attention Based Deep Neural Collaborative
Filtering", 2020), the OPECI authors' predecessor model, in three readings, and the floor they
share.

User and item ID embeddings ``p_u, q_i ∈ R^d`` (d = 64); their outer product ``M = p_u q_iᵀ``
(d × d); an attention module on M; an MLP with batch normalisation on the flattened result; a
sigmoid output; the normalised cross-entropy loss (target ``rating / max(R)`` for a positive, 0
for a sampled negative). The paper is not freely available; its abstract says the attention
module "extracts the useful information from the correlation matrix and eliminates noise"
before the MLP. Readings, one class (``gate``), each a registered name:

- ``cadncf`` (``gate = "attention"``, the default): an AFM-style attention **gate on M's
  entries** (Xiao et al., AFM, IJCAI 2017, score each pairwise interaction and reweight it by a
  softmax). Here an interaction is the scalar ``m_rs``, so its score is a learned affine
  function of it at its position, ``s_rs = a_rs · m̃_rs + b_rs`` (``m̃`` = M standardised per
  sample, ``a, b ∈ R^{d×d}``), ``A = softmax over the d² entries``, ``O = d² · A ⊙ M`` (scaled so
  that a uniform gate leaves M unchanged), then ``MLP(flatten(O))``. The gate can only
  reweight entries, so every entry of M keeps reaching the MLP: no collapse to one scalar.
  (AFM's hidden layer, one t-wide ReLU layer per entry, cost 591 ms per batch of 256 at d = 64,
  t = 16 against 73 ms for ``cadncf-mhsa``: 1,600 s per ml-100k epoch; the affine score costs
  what the floor costs.)
- ``cadncf-mhsa`` (``gate = "mhsa"``): revision 1's reading, OPECI without the aggregation and
  with one head: the multi-head self-attention block of :mod:`recbench.models.attention` over the
  rows of M. For ``M = p qᵀ`` every row r of ``sigmoid(M W)`` is a function of the scalar
  ``p_r``, and with near-uniform attention every output row is ≈ the mean over rows of the value
  rows: little user information reaches the MLP (``recbench diagnose`` measures it).
- ``outer-mlp`` (``gate = "none"``): no attention, ``MLP(flatten(p qᵀ))`` — an ONCF-style
  outer-product MLP (He et al., IJCAI 2018, with an MLP instead of convolutions): the floor any
  attention reading should beat.

Defaults and where we chose them: ``d_k = d_v = 16`` (``cadncf-mhsa``); Adam, learning rate
1e-3, batch 256, 6 negatives, ``reg = 0`` (the paper's λ‖θ‖² on the summed loss when set, see
:class:`recbench.models.torch.TorchModel`), 20 epochs — OPECI's stated settings. Embeddings are
initialised N(0, ``init_std``²): 0.01 (NCF's convention; the batch norm after the MLP's first
layer makes the gate and the floor insensitive to the scale of M) for ``cadncf`` and
``outer-mlp``; 1.0 for ``cadncf-mhsa``, whose sigmoids would otherwise all start at 0.5. Scores are the
logits (monotone in ŷ); inference runs in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from recbench.data.types import TrainData
from recbench.models.attention import CorrelationAttention, CorrelationHead
from recbench.models.sampling import Batches, rating_targets
from recbench.models.torch import TorchModel


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
    init_std: float = 0.01
    gate: Literal["attention", "mhsa", "none"] = "attention"


class EntryGate(nn.Module):
    """AFM-style attention over the d² entries of M: ``O = d² · softmax(s) ⊙ M`` with
    ``s_rs = a_rs · m̃_rs + b_rs`` (see the module docstring)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(d, d))
        self.b = nn.Parameter(torch.zeros(d, d))
        nn.init.normal_(self.a, std=1.0 / d)

    def weights(self, m: torch.Tensor) -> torch.Tensor:
        """``A``: ``[B, d, d]`` → ``[B, d, d]``, each sample's entries summing to 1."""
        b, d, _ = m.shape
        # m is tiny at initialisation (σ² = 1e-8 with σ = 0.01 embeddings): scores read its
        # standardised values
        z = m / m.reshape(b, -1).std(dim=1).clamp_min(1e-12).view(b, 1, 1)
        scores = (z * self.a + self.b).reshape(b, d * d)
        return torch.softmax(scores, dim=1).reshape(b, d, d)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        d = m.shape[1]
        return (d * d) * self.weights(m) * m


class CADNCFModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: CADNCFConfig) -> None:
        super().__init__()
        d = cfg.embedding_size
        self.gate = cfg.gate
        self.user = nn.Embedding(n_users, d)
        self.item = nn.Embedding(n_items, d)
        nn.init.normal_(self.user.weight, std=cfg.init_std)
        nn.init.normal_(self.item.weight, std=cfg.init_std)
        self.attention: nn.Module | None = None
        if cfg.gate == "mhsa":
            self.attention = CorrelationAttention(d, cfg.n_heads, cfg.d_k, cfg.d_v, rank_one=True)
        elif cfg.gate == "attention":
            self.attention = EntryGate(d)
        self.head = CorrelationHead(d, tuple(cfg.hidden))

    def pair_inputs(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p, q)`` per pair (for :mod:`recbench.diagnose`)."""
        return self.user(users), self.item(items)

    def attention_weights(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor | None:
        """Rows of attention weights for :mod:`recbench.diagnose`: ``[B, H, d, d]`` over M's rows
        (``mhsa``), ``[B, d²]`` over M's entries (``attention``), None (``none``)."""
        m = p.unsqueeze(2) * q.unsqueeze(1)
        if isinstance(self.attention, CorrelationAttention):
            return self.attention.attention_weights(m)
        if isinstance(self.attention, EntryGate):
            return self.attention.weights(m).reshape(m.shape[0], -1)
        return None

    def attended(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """The MLP's input as a ``[B, d, d]`` matrix."""
        if self.gate == "mhsa":
            assert self.attention is not None
            return self.attention(p, q)
        m = p.unsqueeze(2) * q.unsqueeze(1)
        return m if self.attention is None else self.attention(m)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` for the pairs."""
        return self.head(self.attended(*self.pair_inputs(users, items)))


class CADNCF(TorchModel):
    """CADNCF (see the module docstring)."""

    summary: ClassVar[str] = "ID outer product p qᵀ, an attention gate on its entries, an MLP"
    paper: ClassVar[str] = "Zhang et al., 2020 (our reading)"

    name: ClassVar[str] = "cadncf"
    Config: ClassVar[type] = CADNCFConfig
    revision: ClassVar[int] = 2  # the attention-gate reading (revision 1: today's cadncf-mhsa)
    inference_batch: ClassVar[int] = 4096  # a pair holds several d×d intermediates
    cpu_inference_batch: ClassVar[int] = 4096

    def build_module(self, train: TrainData) -> nn.Module:
        return CADNCFModule(train.n_users, train.n_items, self.config)

    def batches(self, train: TrainData, rng: np.random.Generator) -> Batches:
        """Pointwise, with target ``rating / max(R)`` for a positive."""
        return self.pointwise(train, rng, positive_targets=rating_targets(train))


class CADNCFMHSA(CADNCF):
    """``cadncf-mhsa``: revision 1's reading, the multi-head self-attention block over M's rows."""

    summary: ClassVar[str] = "ID outer product with self-attention over its rows (revision 1's reading)"
    paper: ClassVar[str] = "Zhang et al., 2020 (our reading)"

    name: ClassVar[str] = "cadncf-mhsa"

    @dataclass(frozen=True)
    class Config(CADNCFConfig):
        init_std: float = 1.0
        gate: Literal["attention", "mhsa", "none"] = "mhsa"


class OuterMLP(CADNCF):
    """``outer-mlp``: MLP(flatten(p qᵀ)), no attention (the floor of the CADNCF readings)."""

    summary: ClassVar[str] = "MLP on the ID outer product, no attention (the floor)"
    paper: ClassVar[str] = "ONCF-style, He et al., IJCAI 2018"

    name: ClassVar[str] = "outer-mlp"

    @dataclass(frozen=True)
    class Config(CADNCFConfig):
        gate: Literal["attention", "mhsa", "none"] = "none"

"""OPECI: "Outer Product to Enhance Correlation Information of embedding dimensions for
recommendation", with its ablation variants (``opeci-inner``, ``opeci-i``, ``opeci-u``,
``opeci-iu``).

The model, as the paper defines it (d the embedding size, σ = ReLU):

1. **Latent factors by attention over neighbourhoods with opinion embeddings.** One opinion
   embedding ``e_r ∈ R^d`` per distinct rating value (|R| from the training data's rating scale:
   5 for MovieLens, 8 for FilmTrust), shared by both sides. For user i and each item a ∈ N(i):
   ``x_ia = e_{r_ia} ⊙ q_a``; ``α*_ia = w_2ᵀ σ(W_1 [x_ia ⊕ p_i] + b_1) + b_2``, softmax over N(i);
   ``h_i = σ(W_U Σ_a α_ia x_ia + b)``. Items symmetrically over the users C(j) who rated them,
   with their own attention network: ``f_jt = e_{r_jt} ⊙ p_t``, ``z_j = σ(W_V Σ_t β_jt f_jt + b)``.
2. **Correlation matrix** ``M = h_i z_jᵀ``.
3. **Multi-head self-attention over the rows of M** and 4. **an MLP with batch normalisation**
   (:mod:`recbench.models.attention`), ``ŷ = sigmoid(MLP(flatten(O)))``; the module returns the
   logit and the loss applies the sigmoid inside the normalised cross-entropy (pointwise
   batches with target ``rating / max(R)`` for a positive, 0 for a sampled negative).

Decisions the paper leaves open, each behind a config switch (numbers measured on synthetic
data shaped like ml-100k and on the ``small_split`` fixture; see the closing note of issue 5):

- ``exclude_target`` (default ``True``): during training, a pair (i, j) that is a training
  interaction has j removed from N(i) and i removed from C(j), so the model cannot read its own
  label (the rating, through ``e_{r_ij}``) from the neighbourhood; at test time the held-out item
  is never in N(i) either. Exact per pair: factors are computed once per distinct
  *(node, dropped neighbour)* key. A neighbourhood left empty aggregates to the zero vector
  (``h = σ(b)``), never a NaN. Inference uses the full training neighbourhoods.
- ``exclude_negatives`` (default ``True``, only with ``exclude_target``): a sampled negative
  loses one uniformly random neighbour on each side too. Without it, the full-neighbourhood
  factor of a user (item) appears only in negatives during training, and the model learns that
  shortcut: training loss falls fast while validation HR falls (it cannot be used at test time,
  where every candidate sees full neighbourhoods).
- ``max_neighbors`` (default ``None`` = all neighbours, segment softmax over a flat CSR layout):
  an int K draws, per training step, a uniform sample of K neighbours (without replacement) for
  each neighbourhood larger than K; inference always uses all neighbours.
- ``attention_hidden`` (default 64 = d): the width of W_1 in both aggregation attention networks
  (the paper gives none; GraphRec's networks of the same form use d).
- ``n_heads = 4``, ``d_k = d_v = 16``: the paper gives neither; with d = 64, ``H·d_v = d`` keeps
  ``concat(O_h)`` square like M (the Transformer convention d_k = d/H): four heads see four
  different projections of each row for the cost of one d-wide head.
- ``mlp_hidden = (256, 64)``: d² = 4096 → 256 → 64 → 1, a tower shrinking ≥ 4× per layer as in
  NCF's MLP, batch normalisation after each hidden Linear.
- ``epochs = 20``: a CPU-feasible default (the paper gives none); early stopping on the
  validation split is the runner's option.
- Initialisation: Xavier-uniform for W_U, W_V (the paper); N(0, 1) for the user, item and
  opinion embeddings (PyTorch's embedding default; the paper gives none), **chosen on the
  validation item** against the small initialisations NCF and its successors use, measured on
  ml-100k (2 epochs, seed 0, the paper's lr 1e-3 and λ 1e-3; ``results/issue13-init/``):
  validation HR@10 / NDCG@10 0.579 / 0.333 with N(0, 1) against 0.391 / 0.205 (ItemPop's level)
  with Xavier-uniform (``embedding_init = "xavier"``), which was also 1.9× slower per epoch; N(0,
  0.01²) (``embedding_std = 0.01``) is degenerate here — OPECI's factors are products
  ``e_r ⊙ q_a`` of two embeddings, so M starts near 1e-8 and the scores tie (validation HR@10
  0.000 on ml-100k, as on the synthetic fixture). Gaussian W^Q, W^K, W^V (the paper) whose scale
  (``qkv_init_std = None``) is set at build time so that the pre-sigmoid projections of M have
  unit standard deviation on random pairs of the training graph (a fixed nominal 1/√d gave
  0.273 against 0.337 on the synthetic fixture, d = 8).
- ``reg = 0.001`` is the paper's λ of eq. 20, a penalty λ‖θ‖² on all parameters added to the
  loss summed over the batch (:class:`recbench.models.torch.TorchModel`); revision 1 applied λ as
  Adam's weight decay on the mean loss, 256× stronger.
- ``precise_bn_batches = 50``: after each epoch the head's batch-norm statistics are re-estimated
  as plain averages over 50 fresh training batches with the final weights (Wu & Johnson's
  "precise BN"; the hook ``after_epoch`` of the shared loop, counted in the epoch's seconds). The
  running averages lag the weights; with L2 0.001 the lag alone dropped validation HR@10 from
  0.29 to 0.05 on the synthetic fixture.
- ``precision = "auto"``: training runs the correlation block and the MLP under bf16 autocast
  where the hardware has native bf16 (this CPU: AVX512-BF16); aggregation, softmax
  normalisation, batch norm and the loss stay float32, and inference is always float32.
  ``"fp32"`` / ``"bf16"`` force either.
- ``rank_one = True``: the block's rank-one fast path (``False`` builds M, for measurement).

Variants (config switches of one class; the subclasses only change defaults and ``name``):

- ``block = "residual"`` (``opeci-res``): the block as a Transformer layer,
  ``O = LayerNorm(M + MHSA(M))`` (post-norm, over each row of M), the MLP on ``flatten(O)``. Read
  literally (``block = "paper"``), M = h zᵀ is rank one, so token r of the self-attention is
  ``h_r zᵀ``, identified only by the scalar ``h_r``; with sigmoid Q/K/V and near-uniform
  attention every output row is ≈ the mean over rows of ``σ(h_s W_Vᵀ z)``, a function of the
  multiset of h's entries: ``recbench diagnose opeci`` measures a participation ratio of ≈ 1.0
  and an attention entropy of ≈ 1.000 (uniform). The residual lets M itself reach the MLP when
  attention is uniform, as in every Transformer layer; the paper gives no residual and no
  normalisation, so this is a named alternative, not the default.

- ``interaction = "inner"`` (``opeci-inner``): the paper "deformed the inner product output into
  a 2-D matrix and fed it to the attention network". We read this as ``M = diag(h ⊙ z)``: the
  d×d matrix holding the inner product's d terms on its diagonal (its trace is ``hᵀz``). It is
  exactly the outer product with the cross-dimension correlations (the off-diagonal entries)
  removed, which is what the ablation is meant to isolate, and it keeps the same block, head and
  parameter count for every d (reshaping ``h ⊙ z`` into a √d×√d grid would need a square d,
  fails for ML-1M's d = 32, and changes the block's size).
- ``user_aggregation`` / ``item_aggregation = "mean"`` (``opeci-u``, ``opeci-i``, ``opeci-iu``):
  α (resp. β) = 1/|N(i)| instead of attention, on the user side, the item side, or both.

Computation: neighbours in a flat CSR layout gathered for the batch's distinct keys only
(``torch.unique`` + inverse); ``e_r ⊙ q_a`` and its ``W_1`` projection once per distinct
(neighbour, rating) pair of the batch; segment softmax with ``scatter_reduce(amax)`` and
``index_add``; gathers by ``index_select`` (the backward of ``t[idx]`` is not deterministic with
several threads); the correlation block's rank-one path. For inference all users' and items'
factors are computed once and cached until the next ``invalidate_cache`` (every epoch
start/end); ``score_matrix`` batches the block over (user, item) pairs from the cache.

Execution switches (the same function, other float rounding; not part of a record's key,
:func:`recbench.models.base.identity_config`; issue 17):

- ``loo_aggregation = True``: a training pair's neighbourhood minus one neighbour from one
  pass over its node's full neighbourhood, ``(S − e_x x_x) / (Z − e_x)``
  (:meth:`Aggregator.forward_leave_one_out`), falling back to the direct computation where
  the subtraction would cancel digits; ``False`` aggregates once per distinct (node, dropped
  neighbour) key (the reference the tests compare against).
- ``fold_output = True``: at inference ``W^O`` is folded into the MLP's first Linear (exact:
  nothing nonlinear lies between them; the paper's block only, not ``opeci-res``).
- ``layout = "auto"``: the CSR layout on a CPU; on CUDA a dense padded layout
  (:class:`PaddedNeighbourhoods`) whose training step has static shapes and never synchronises
  with the host (tested on the CPU with :func:`recbench.testing.no_host_sync`). With
  ``max_neighbors`` the two layouts draw their samples differently (the same distribution).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from recbench.data.types import TrainData
from recbench.models.aggregation import Aggregator, Neighbourhoods, PaddedNeighbourhoods
from recbench.models.attention import CorrelationAttention, CorrelationHead
from recbench.models.sampling import Batches, rating_targets
from recbench.models.torch import TorchModel


@dataclass(frozen=True)
class OPECIConfig:
    embedding_size: int = 64
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 0.001
    reg: float = 0.001
    n_negatives: int = 6
    n_heads: int = 4
    d_k: int = 16
    d_v: int = 16
    mlp_hidden: tuple[int, ...] = (256, 64)
    attention_hidden: int = 64
    exclude_target: bool = True
    exclude_negatives: bool = True
    max_neighbors: int | None = None
    interaction: Literal["outer", "inner"] = "outer"
    user_aggregation: Literal["attention", "mean"] = "attention"
    item_aggregation: Literal["attention", "mean"] = "attention"
    rank_one: bool = True
    qkv_init_std: float | None = None
    precise_bn_batches: int = 50
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    embedding_init: Literal["normal", "xavier"] = "normal"
    embedding_std: float = 1.0  # σ of the "normal" init of user, item and opinion embeddings
    block: Literal["paper", "residual"] = "paper"
    # execution only (the same function, other float rounding; not part of a record's key):
    loo_aggregation: bool = field(default=True, metadata={"execution": True})
    fold_output: bool = field(default=True, metadata={"execution": True})
    layout: Literal["auto", "csr", "padded"] = field(default="auto", metadata={"execution": True})


# ----------------------------------------------------------------------------- the module


class OPECIModule(nn.Module):
    def __init__(self, cfg: OPECIConfig, train: TrainData) -> None:
        super().__init__()
        d = int(cfg.embedding_size)
        self.cfg = cfg
        self.n_users, self.n_items = train.n_users, train.n_items
        self.user_emb = nn.Embedding(train.n_users, d)
        self.item_emb = nn.Embedding(train.n_items, d)
        self.opinion = nn.Embedding(len(train.rating_values), d)
        for e in (self.user_emb, self.item_emb, self.opinion):
            if cfg.embedding_init == "xavier":
                nn.init.xavier_uniform_(e.weight)
            else:
                nn.init.normal_(e.weight, std=float(cfg.embedding_std))
        self.user_agg = Aggregator(d, cfg.attention_hidden, cfg.user_aggregation)
        self.item_agg = Aggregator(d, cfg.attention_hidden, cfg.item_aggregation)
        self.block = CorrelationAttention(
            d, cfg.n_heads, cfg.d_k, cfg.d_v, rank_one=cfg.rank_one, init_std=cfg.qkv_init_std
        )
        self.head = CorrelationHead(d, tuple(cfg.mlp_hidden))
        # opeci-res: O = LayerNorm(M + MHSA(M)), normalised over each row of M (a token)
        self.norm = nn.LayerNorm(d) if cfg.block == "residual" else None
        self._padded: dict[str, PaddedNeighbourhoods] = {}  # built on first use (layout "padded")
        self.user_nbrs = Neighbourhoods(train.csr, train.rating_values)  # N(i): items, ratings
        self.item_nbrs = Neighbourhoods(train.csc.T.tocsr(), train.rating_values)  # C(j)
        if cfg.qkv_init_std is None:
            self.scale_projections()
        keys = np.sort(train.users.astype(np.int64) * train.n_items + train.items.astype(np.int64))
        self.pair_keys = torch.from_numpy(keys)

    @torch.no_grad()
    def scale_projections(self, n: int = 512) -> None:
        """Rescale the Gaussian W^Q, W^K, W^V so that the pre-sigmoid projections of M have
        unit standard deviation on random (user, item) pairs of the training graph."""
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ())))
        users = torch.randint(0, self.n_users, (n,), generator=g)
        items = torch.randint(0, self.n_items, (n,), generator=g)
        h, z = self.user_factors(users), self.item_factors(items)
        w = self.block.w_qkv
        pre = (h * z).unsqueeze(2) * w if self.cfg.interaction == "inner" else h.unsqueeze(2) * (z @ w).unsqueeze(1)
        std = float(pre.std())
        if std > 0 and np.isfinite(std):
            w.mul_(1.0 / std)

    def _apply(self, fn, recurse=True):  # keep the graph tensors on the module's device
        out = super()._apply(fn, recurse)
        dev = self.user_emb.weight.device
        self.user_nbrs.to(dev)
        self.item_nbrs.to(dev)
        for padded in self._padded.values():
            padded.to(dev)
        self.pair_keys = self.pair_keys.to(dev)
        return out

    # ------------------------------------------------------------------ factors
    def user_factors(
        self,
        users: torch.Tensor,
        exclude: torch.Tensor | None = None,
        max_neighbors: int | None = None,
    ) -> torch.Tensor:
        """``h`` for ``users`` (``[S]``), each with optionally one item dropped from N(i)."""
        seg, items, r = self.user_nbrs.gather(users, exclude, max_neighbors)
        own = self.user_emb.weight.index_select(0, users)
        return self.user_agg(self.item_emb.weight, self.opinion.weight, items, r, own, seg)

    def item_factors(
        self,
        items: torch.Tensor,
        exclude: torch.Tensor | None = None,
        max_neighbors: int | None = None,
    ) -> torch.Tensor:
        """``z`` for ``items`` (``[S]``), each with optionally one user dropped from C(j)."""
        seg, users, r = self.item_nbrs.gather(items, exclude, max_neighbors)
        own = self.item_emb.weight.index_select(0, items)
        return self.item_agg(self.user_emb.weight, self.opinion.weight, users, r, own, seg)

    def is_training_pair(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.pair_keys, keys).clamp_max(len(self.pair_keys) - 1)
        return self.pair_keys[pos] == keys

    def pair_factors(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)`` for each pair, computed once per distinct key: the user (item) alone, or,
        with ``exclude_target`` in training, the user (item) with one neighbour dropped: the
        pair's item (user) when the pair is a training interaction, and, with
        ``exclude_negatives``, a uniformly random neighbour for a sampled negative."""
        k = self.cfg.max_neighbors if self.training else None
        if self.padded_layout():
            u_ex = i_ex = None
            if self.training and self.cfg.exclude_target:
                u_ex, i_ex = self.dropped_neighbours(users, items)
            return self.padded_factors("user", users, u_ex, k), self.padded_factors("item", items, i_ex, k)
        if self.training and self.cfg.exclude_target:
            u_ex, i_ex = self.dropped_neighbours(users, items)
            if self.cfg.loo_aggregation and k is None:
                return self.excluded_factors("user", users, u_ex), self.excluded_factors("item", items, i_ex)
            uk, uinv = torch.unique(users * (self.n_items + 1) + u_ex + 1, return_inverse=True)
            ik, iinv = torch.unique(items * (self.n_users + 1) + i_ex + 1, return_inverse=True)
            h = self.user_factors(uk // (self.n_items + 1), uk % (self.n_items + 1) - 1, k)
            z = self.item_factors(ik // (self.n_users + 1), ik % (self.n_users + 1) - 1, k)
        else:
            uu, uinv = torch.unique(users, return_inverse=True)
            ii, iinv = torch.unique(items, return_inverse=True)
            h = self.user_factors(uu, None, k)
            z = self.item_factors(ii, None, k)
        # index_select, not h[inv]: its backward (index_add) is deterministic with threads
        return h.index_select(0, uinv), z.index_select(0, iinv)

    def dropped_neighbours(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The neighbour each training pair drops on either side (``exclude_target``): the
        pair's item (user) for a training interaction, a uniformly random neighbour for a
        sampled negative (``exclude_negatives``, else none: −1)."""
        pos = self.is_training_pair(users, items)
        if self.cfg.exclude_negatives:
            u_other = self.user_nbrs.random_neighbour(users)
            i_other = self.item_nbrs.random_neighbour(items)
        else:
            u_other = i_other = torch.full_like(users, -1)
        return torch.where(pos, items, u_other), torch.where(pos, users, i_other)

    def padded_layout(self) -> bool:
        """Aggregate over the dense padded layout? ``auto``: on CUDA (static shapes, no host
        synchronisation), the CSR layout elsewhere (fewer rows: faster on a CPU)."""
        if self.cfg.layout == "auto":
            return self.user_emb.weight.device.type == "cuda"
        return self.cfg.layout == "padded"

    def padded_factors(
        self, side: str, nodes: torch.Tensor, exclude: torch.Tensor | None, max_neighbors: int | None
    ) -> torch.Tensor:
        """Factors of ``nodes`` [P] (one per pair, each dropping ``exclude``) over the padded
        layout (:meth:`Aggregator.forward_padded`)."""
        if side not in self._padded:
            csr = self.user_nbrs if side == "user" else self.item_nbrs
            self._padded[side] = PaddedNeighbourhoods(csr).to(self.user_emb.weight.device)
        nbr, rating, valid = self._padded[side].rows(nodes, exclude, max_neighbors)
        own_w, other_w = (
            (self.user_emb.weight, self.item_emb.weight)
            if side == "user"
            else (self.item_emb.weight, self.user_emb.weight)
        )
        agg = self.user_agg if side == "user" else self.item_agg
        return agg.forward_padded(other_w, self.opinion.weight, nbr, rating, valid, own_w.index_select(0, nodes))

    def excluded_factors(self, side: str, nodes: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
        """Factors of ``nodes`` [P], each with neighbour ``exclude`` [P] (−1: none) dropped, by
        the leave-one-out identity (:meth:`Aggregator.forward_leave_one_out`): one aggregation
        per distinct node instead of one per distinct (node, dropped neighbour) key. Pairs
        whose dropped neighbour held more than half the attention are recomputed directly
        (:meth:`user_factors` / :meth:`item_factors` with ``exclude``), exactly as the
        reference path computes every pair."""
        nbrs = self.user_nbrs if side == "user" else self.item_nbrs
        own_w, other_w = (
            (self.user_emb.weight, self.item_emb.weight)
            if side == "user"
            else (self.item_emb.weight, self.user_emb.weight)
        )
        agg = self.user_agg if side == "user" else self.item_agg
        distinct, pair_seg = torch.unique(nodes, return_inverse=True)
        seg, nbr, rating = nbrs.gather(distinct)
        counts = nbrs.indptr[distinct + 1] - nbrs.indptr[distinct]
        seg_start = torch.cumsum(counts, 0) - counts
        offset = nbrs.locate(nodes, exclude)
        drop_row = torch.where(offset >= 0, seg_start.index_select(0, pair_seg) + offset, -1)
        own = own_w.index_select(0, distinct)
        out, unstable = agg.forward_leave_one_out(
            other_w, self.opinion.weight, nbr, rating, own, seg, pair_seg, drop_row
        )
        redo = unstable.nonzero().squeeze(1)
        if len(redo):
            direct = self.user_factors if side == "user" else self.item_factors
            out = out.index_copy(0, redo, direct(nodes.index_select(0, redo), exclude.index_select(0, redo)))
        return out

    # ------------------------------------------------------------------ scoring
    def low_precision(self, device: torch.device) -> bool:
        """Train the block and head under bf16 autocast? ``auto``: where the hardware has
        native bf16 (AVX512-BF16/AMX CPUs, bf16-capable GPUs). Inference is always float32."""
        if self.cfg.precision != "auto":
            return self.cfg.precision == "bf16"
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False

    def correlation(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``M``: ``h zᵀ`` (outer) or ``diag(h ⊙ z)`` (inner), ``[B, d, d]``."""
        if self.cfg.interaction == "inner":
            return torch.diag_embed(h * z)
        return h.unsqueeze(2) * z.unsqueeze(1)

    def attended(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The block's output, the MLP's input: ``O`` (the paper) or ``LayerNorm(M + O)``."""
        o = self.block.forward_diagonal(h * z) if self.cfg.interaction == "inner" else self.block(h, z)
        if self.norm is not None:
            o = self.norm((self.correlation(h, z) + o).float())
        return o

    def interact(self, h: torch.Tensor, z: torch.Tensor, folded: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for factor pairs ``[B, d]``. ``folded``: the head's first weight with ``W^O``
        folded in (:meth:`CorrelationHead.fold`, the paper's block only), skipping ``W^O``."""
        if folded is not None:
            inner = self.cfg.interaction == "inner"
            c = self.block.forward_diagonal(h * z, project=False) if inner else self.block(h, z, project=False)
            return self.head(c, first=folded).float()
        low = self.training and self.low_precision(h.device)
        with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=low):
            return self.head(self.attended(h, z)).float()

    def folded_weight(self) -> torch.Tensor | None:
        """The head's first weight with ``W^O`` folded in, where that is exact (the paper's
        block: nothing between ``W^O`` and the MLP); ``None`` otherwise."""
        if not self.cfg.fold_output or self.norm is not None:
            return None
        return self.head.fold(self.block.w_o)

    def pair_inputs(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)`` per pair with full neighbourhoods (inference; for :mod:`recbench.diagnose`)."""
        return self.user_factors(users), self.item_factors(items)

    def attention_weights(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The block's attention over M's rows, ``[B, H, d, d]`` (for :mod:`recbench.diagnose`)."""
        return self.block.attention_weights(self.correlation(h, z))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h, z = self.pair_factors(users, items)
        return self.interact(h, z)


# ----------------------------------------------------------------------------- the model


class OPECI(TorchModel):
    """OPECI with the paper's defaults; see the module docstring for every decision."""

    summary: ClassVar[str] = "neighbourhood factors with opinion embeddings, outer product, self-attention, MLP"
    paper: ClassVar[str] = "the OPECI paper"

    name: ClassVar[str] = "opeci"
    Config: ClassVar[type] = OPECIConfig
    revision: ClassVar[int] = 2  # the paper's L2 scale and small embedding init (issue 13)
    inference_batch: ClassVar[int] = 4096
    cpu_inference_batch: ClassVar[int] = 4096
    factor_chunk: ClassVar[int] = 4096  # nodes per chunk when computing all factors

    def __init__(self, config: OPECIConfig | None = None) -> None:
        super().__init__(config)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._folded: torch.Tensor | None = None  # the folded W^O, with the factor cache

    def build_module(self, train: TrainData) -> nn.Module:
        return OPECIModule(self.config, train)

    def batches(self, train: TrainData, rng: np.random.Generator) -> Batches:
        """Pointwise, with target ``rating / max(R)`` for a positive."""
        return self.pointwise(train, rng, positive_targets=rating_targets(train))

    def invalidate_cache(self) -> None:
        self._cache = None
        self._folded = None

    def after_epoch(self, train: TrainData, rng: np.random.Generator) -> None:
        if self.config.precise_bn_batches > 0:
            self.recalibrate_bn(train, rng, int(self.config.precise_bn_batches))

    @torch.no_grad()
    def recalibrate_bn(self, train: TrainData, rng: np.random.Generator, n_batches: int = 50) -> None:
        """Precise BN: re-estimate the head's batch-norm statistics as plain averages over
        ``n_batches`` fresh training batches with the final weights (no update of weights)."""
        m = self.module
        assert isinstance(m, OPECIModule)
        bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm1d)]
        saved = [b.momentum for b in bns]
        for b in bns:
            b.reset_running_stats()
            b.momentum = None  # cumulative average
        m.train()
        for users, items, _ in itertools.islice(self.batches(train, rng), n_batches):
            m(users, items)
        for b, mom in zip(bns, saved, strict=True):
            b.momentum = mom
        m.eval()
        self._cache = None

    def training_stages(
        self, users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, Callable[[], object]]:
        """One training step of this batch cut into its stages, each a callable doing that
        stage's forward and backward on its own (inputs of the later stages precomputed and
        detached), for ``recbench bench``'s per-stage rates: ``aggregation`` (both sides'
        factors), ``block`` (the correlation attention, ``W^O`` included), ``mlp`` (the head) and
        ``optimiser`` (one Adam step of a separate optimiser; it changes the weights, so the
        caller restores them)."""
        m = self.module
        assert isinstance(m, OPECIModule)
        m.train()
        low = m.low_precision(users.device)
        with torch.no_grad():
            h0, z0 = m.pair_factors(users, items)
            with torch.autocast(users.device.type, dtype=torch.bfloat16, enabled=low):
                o0 = m.attended(h0, z0).float()

        def aggregation() -> None:
            h, z = m.pair_factors(users, items)
            (h.sum() + z.sum()).backward()

        def block() -> None:
            h, z = h0.clone().requires_grad_(), z0.clone().requires_grad_()
            with torch.autocast(users.device.type, dtype=torch.bfloat16, enabled=low):
                o = m.attended(h, z)
            o.float().sum().backward()

        def mlp() -> None:
            o = o0.clone().requires_grad_()
            with torch.autocast(users.device.type, dtype=torch.bfloat16, enabled=low):
                out = m.head(o)
            out.float().sum().backward()

        opt = self.optimizer()
        self.batch_loss(users, items, targets).backward()  # gradients for the optimiser stage
        return {"aggregation": aggregation, "block": block, "mlp": mlp, "optimiser": opt.step}

    @torch.no_grad()
    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All users' ``h`` and all items' ``z`` (full neighbourhoods), cached until the
        parameters next change."""
        if self._cache is None:
            m = self.module
            assert isinstance(m, OPECIModule)
            was_training = m.training
            m.eval()
            dev = self.device
            h = torch.cat(
                [
                    m.user_factors(torch.arange(s, min(s + self.factor_chunk, m.n_users), device=dev))
                    for s in range(0, m.n_users, self.factor_chunk)
                ]
            )
            z = torch.cat(
                [
                    m.item_factors(torch.arange(s, min(s + self.factor_chunk, m.n_items), device=dev))
                    for s in range(0, m.n_items, self.factor_chunk)
                ]
            )
            m.train(was_training)
            self._cache = (h, z)
            self._folded = m.folded_weight()
        return self._cache

    @torch.no_grad()
    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.module, OPECIModule)
        h, z = self.factors()
        return self.module.interact(h[users], z[items], self._folded)

    def _score_matrix(self, users: np.ndarray) -> np.ndarray:
        """Every item for each user, from the cached factors, the block batched over pairs."""
        assert self.module is not None
        self.module.eval()
        n = self.n_items
        out = np.empty((len(users), n), dtype=np.float32)
        all_items = torch.arange(n, device=self.device)
        per = max(1, self.inference_batch // n)
        with torch.no_grad():
            for s in range(0, len(users), per):
                u = torch.from_numpy(users[s : s + per]).to(self.device)
                uu = u.repeat_interleave(n)
                ii = all_items.repeat(len(u))
                for c in range(0, len(uu), self.inference_batch):
                    scores = self.predict(uu[c : c + self.inference_batch], ii[c : c + self.inference_batch])
                    out.reshape(-1)[s * n + c : s * n + c + len(scores)] = scores.float().cpu().numpy()
        return out


class OPECIInner(OPECI):
    """``opeci-inner``: M = diag(h ⊙ z) instead of h zᵀ (see the module docstring)."""

    summary: ClassVar[str] = "OPECI ablation: M = diag(h ⊙ z), the inner product's terms"
    paper: ClassVar[str] = "the OPECI paper, Figure 2"

    name: ClassVar[str] = "opeci-inner"

    @dataclass(frozen=True)
    class Config(OPECIConfig):
        interaction: Literal["outer", "inner"] = "inner"


class OPECIResidual(OPECI):
    """``opeci-res``: the block as a Transformer layer, ``O = LayerNorm(M + MHSA(M))`` (see the
    module docstring)."""

    summary: ClassVar[str] = "OPECI with the block as a Transformer layer, LayerNorm(M + MHSA(M))"
    paper: ClassVar[str] = "the OPECI paper (our variant)"

    name: ClassVar[str] = "opeci-res"

    @dataclass(frozen=True)
    class Config(OPECIConfig):
        block: Literal["paper", "residual"] = "residual"


class OPECIMeanItem(OPECI):
    """``opeci-i``: mean aggregation instead of attention on the item side."""

    summary: ClassVar[str] = "OPECI ablation: mean aggregation on the item side"
    paper: ClassVar[str] = "the OPECI paper, Figure 3"

    name: ClassVar[str] = "opeci-i"

    @dataclass(frozen=True)
    class Config(OPECIConfig):
        item_aggregation: Literal["attention", "mean"] = "mean"


class OPECIMeanUser(OPECI):
    """``opeci-u``: mean aggregation instead of attention on the user side."""

    summary: ClassVar[str] = "OPECI ablation: mean aggregation on the user side"
    paper: ClassVar[str] = "the OPECI paper, Figure 3"

    name: ClassVar[str] = "opeci-u"

    @dataclass(frozen=True)
    class Config(OPECIConfig):
        user_aggregation: Literal["attention", "mean"] = "mean"


class OPECIMeanBoth(OPECI):
    """``opeci-iu``: mean aggregation on both sides."""

    summary: ClassVar[str] = "OPECI ablation: mean aggregation on both sides"
    paper: ClassVar[str] = "the OPECI paper, Figure 3"

    name: ClassVar[str] = "opeci-iu"

    @dataclass(frozen=True)
    class Config(OPECIConfig):
        user_aggregation: Literal["attention", "mean"] = "mean"
        item_aggregation: Literal["attention", "mean"] = "mean"

"""OPECI's network: its config and the ``nn.Module`` (neighbourhood factors, the correlation
block and the MLP head), for :class:`recbench.models.opeci.OPECI`, whose docstring gives the
paper's equations and every decision the paper leaves open."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from recbench.data.types import TrainData
from recbench.models.aggregation import Aggregator, Neighbourhoods, PaddedNeighbourhoods
from recbench.models.attention import CorrelationAttention, CorrelationHead
from recbench.models.base import EXECUTION, added_later


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
    # RecBole's batch layout (each positive followed by its own negatives); a variant (issue 17)
    batch_order: Literal["shuffled", "grouped"] = field(default="shuffled", metadata=added_later("shuffled"))
    # execution only (the same function, other float rounding; not part of a record's key):
    loo_aggregation: bool = field(default=True, metadata=EXECUTION)
    fold_output: bool = field(default=True, metadata=EXECUTION)
    layout: Literal["auto", "csr", "padded"] = field(default="auto", metadata=EXECUTION)


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

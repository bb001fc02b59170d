"""OPECI's neighbourhood aggregation (eqs. 5–12 of the OPECI paper): neighbour lists in CSR
form, the segment softmax, and the attention-weighted aggregator of one side, with the
leave-one-out identity that serves training pairs from one pass per distinct node (issue 17).
The model itself, and every decision the paper leaves open, is in :mod:`recbench.models.opeci`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn


class Neighbourhoods:
    """One side's neighbour lists in CSR form: for node n, ``nbr[indptr[n]:indptr[n+1]]`` with
    rating indices ``rating[...]`` (index into the sorted rating values)."""

    def __init__(self, m: sp.csr_matrix, rating_values: tuple[float, ...]) -> None:
        m = m.tocsr()
        m.sort_indices()
        values = np.asarray(sorted(rating_values), dtype=np.float32)
        r_idx = np.searchsorted(values, m.data.astype(np.float32))
        if (r_idx >= len(values)).any() or not np.allclose(values[np.minimum(r_idx, len(values) - 1)], m.data):
            raise ValueError("a training rating is not one of the declared rating values")
        self.indptr = torch.from_numpy(m.indptr.astype(np.int64))
        self.nbr = torch.from_numpy(m.indices.astype(np.int64))
        self.rating = torch.from_numpy(r_idx.astype(np.int64))
        self.n_nodes, self.n_other = m.shape
        # (node, neighbour) as one sorted int64 key per CSR entry, for :meth:`locate`
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        self.keys = torch.from_numpy(rows * m.shape[1] + m.indices.astype(np.int64))

    def to(self, device: torch.device) -> Neighbourhoods:
        for k in ("indptr", "nbr", "rating", "keys"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    def random_neighbour(self, nodes: torch.Tensor) -> torch.Tensor:
        """One uniformly random neighbour of each node (−1 for a node without any)."""
        start = self.indptr[nodes]
        counts = self.indptr[nodes + 1] - start
        offset = (torch.rand(len(nodes), device=nodes.device) * counts).long()
        pick = start + torch.minimum(offset, (counts - 1).clamp_min(0))
        return torch.where(counts > 0, self.nbr[pick.clamp_max(max(len(self.nbr) - 1, 0))], -1)

    def locate(self, nodes: torch.Tensor, nbrs: torch.Tensor) -> torch.Tensor:
        """Offset of neighbour ``nbrs[k]`` within node ``nodes[k]``'s sorted list (−1 where
        ``nbrs[k]`` is −1 or not a neighbour)."""
        if len(self.keys) == 0:
            return torch.full_like(nodes, -1)
        want = nodes * self.n_other + nbrs.clamp_min(0)
        pos = torch.searchsorted(self.keys, want).clamp_max(len(self.keys) - 1)
        found = (nbrs >= 0) & (self.keys[pos] == want)
        return torch.where(found, pos - self.indptr[nodes], -1)

    def gather(
        self,
        nodes: torch.Tensor,
        exclude: torch.Tensor | None = None,
        max_neighbors: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat neighbour layout of ``nodes`` (``[S]``): ``(seg, nbr, rating)``, each ``[N]``,
        ``seg`` sorted, the segment (index into ``nodes``) of each neighbour.

        ``exclude`` (``[S]``, −1 for none) drops that neighbour from its node's list;
        ``max_neighbors`` keeps a uniform random sample of at most K per segment."""
        start = self.indptr[nodes]
        counts = self.indptr[nodes + 1] - start
        seg = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), counts)
        seg_start = torch.cumsum(counts, 0) - counts
        flat = start[seg] + torch.arange(len(seg), device=nodes.device) - seg_start[seg]
        nbr = self.nbr[flat]
        rating = self.rating[flat]
        if exclude is not None:
            keep = nbr != exclude[seg]
            seg, nbr, rating = seg[keep], nbr[keep], rating[keep]
        if max_neighbors is not None and len(seg):
            counts = torch.bincount(seg, minlength=len(nodes))
            if int(counts.max()) > max_neighbors:
                # rank neighbours within each segment by a random key; keep the first K
                order = torch.argsort(
                    seg.to(torch.float64) + torch.rand(len(seg), dtype=torch.float64, device=seg.device)
                )
                seg_start = torch.cumsum(counts, 0) - counts
                rank = torch.empty_like(order)
                rank[order] = torch.arange(len(order), device=seg.device)
                keep = (rank - seg_start[seg]) < max_neighbors
                seg, nbr, rating = seg[keep], nbr[keep], rating[keep]
        return seg, nbr, rating


def segment_softmax(scores: torch.Tensor, seg: torch.Tensor, n_seg: int) -> torch.Tensor:
    """Softmax of ``scores`` within each segment (``seg`` ids in ``0..n_seg-1``). Empty segments
    simply have no entries; nothing is divided by zero."""
    with torch.no_grad():
        smax = torch.full((n_seg,), float("-inf"), dtype=scores.dtype, device=scores.device)
        smax = smax.scatter_reduce(0, seg, scores, reduce="amax", include_self=True)
    e = torch.exp(scores - smax[seg])
    denom = torch.zeros(n_seg, dtype=scores.dtype, device=scores.device).index_add(0, seg, e)
    return e / denom.index_select(0, seg)


class Aggregator(nn.Module):
    """One side's factor: ``σ(W Σ_n α_n x_n + b)`` with α by the paper's two-layer attention
    network on ``[x_n ⊕ own embedding]`` (``mode="attention"``) or ``1/|N|`` (``"mean"``)."""

    def __init__(self, d: int, hidden: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode == "attention":
            self.w1 = nn.Linear(2 * d, hidden)
            self.w2 = nn.Linear(hidden, 1)
        self.out = nn.Linear(d, d)  # W_U or W_V
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def opinion_table(
        other: torch.Tensor, opinion: torch.Tensor, nbr: torch.Tensor, rating: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct ``x = e_r ⊙ q_a`` of a batch's neighbour rows: ``(table [T, d], inv [N])``
        with ``x_n = table[inv[n]]``. A batch's ~40K neighbour rows hold only ~11K distinct
        (neighbour, rating) pairs on ml-100k, so products and ``W_1`` projections are made once
        per distinct pair."""
        n_r = opinion.shape[0]
        keys, inv = torch.unique(nbr * n_r + rating, return_inverse=True)
        table = opinion.index_select(0, keys % n_r) * other.index_select(0, keys // n_r)
        return table, inv

    def scores(self, table: torch.Tensor, inv: torch.Tensor, own: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The attention network's score ``α*`` of each neighbour row, ``[N]``."""
        d = table.shape[1]
        w = self.w1.weight
        # W_1 [x ⊕ p] = W_1x x + W_1p p: W_1x x once per distinct x, W_1p p once per segment
        pre = (table @ w[:, :d].T).index_select(0, inv) + (own @ w[:, d:].T + self.w1.bias).index_select(0, seg)
        return self.w2(F.relu(pre)).squeeze(-1)

    def weights(
        self,
        table: torch.Tensor,
        inv: torch.Tensor,
        own: torch.Tensor,
        seg: torch.Tensor,
        n_seg: int,
    ) -> torch.Tensor:
        """α over each segment, ``[N]``."""
        if self.mode == "mean":
            counts = torch.bincount(seg, minlength=n_seg).clamp_min(1).to(table.dtype)
            return 1.0 / counts.index_select(0, seg)
        return segment_softmax(self.scores(table, inv, own, seg), seg, n_seg)

    def forward(
        self,
        other: torch.Tensor,
        opinion: torch.Tensor,
        nbr: torch.Tensor,
        rating: torch.Tensor,
        own: torch.Tensor,
        seg: torch.Tensor,
    ) -> torch.Tensor:
        """Factors of ``len(own)`` nodes from their flat neighbour lists (``nbr``, ``rating``,
        segment ids ``seg``); ``other`` holds the neighbours' embeddings."""
        n_seg = own.shape[0]
        table, inv = self.opinion_table(other, opinion, nbr, rating)
        alpha = self.weights(table, inv, own, seg, n_seg)
        agg = torch.zeros(n_seg, table.shape[1], dtype=table.dtype, device=table.device)
        agg = agg.index_add(0, seg, alpha.unsqueeze(1) * table.index_select(0, inv))
        return F.relu(self.out(agg))

    def forward_padded(
        self,
        other: torch.Tensor,
        opinion: torch.Tensor,
        nbr: torch.Tensor,
        rating: torch.Tensor,
        valid: torch.Tensor,
        own: torch.Tensor,
    ) -> torch.Tensor:
        """Factors of P nodes from fixed-width neighbour rows (:class:`PaddedNeighbourhoods`):
        ``nbr``, ``rating``, ``valid`` ``[P, K]``, ``own`` ``[P, d]``. The same function as
        :meth:`forward` (a softmax over the valid entries; none valid: the zero vector), with
        static shapes and no host synchronisation."""
        p, k = nbr.shape
        x = (opinion.index_select(0, rating.reshape(-1)) * other.index_select(0, nbr.reshape(-1))).view(p, k, -1)
        if self.mode == "mean":
            e = valid.to(x.dtype)
        else:
            d = x.shape[-1]
            w = self.w1.weight
            pre = x @ w[:, :d].T + (own @ w[:, d:].T + self.w1.bias).unsqueeze(1)
            scores = self.w2(F.relu(pre)).squeeze(-1).masked_fill(~valid, float("-inf"))
            with torch.no_grad():
                smax = scores.amax(1, keepdim=True)
                smax = torch.where(torch.isfinite(smax), smax, 0.0)
            e = torch.exp(scores - smax)  # exp(−inf) = 0 for the invalid entries
        z = e.sum(1, keepdim=True)
        agg = torch.where(z > 0, torch.bmm(e.unsqueeze(1), x).squeeze(1) / z.clamp_min(1e-30), 0.0)
        return F.relu(self.out(agg))

    def forward_leave_one_out(
        self,
        other: torch.Tensor,
        opinion: torch.Tensor,
        nbr: torch.Tensor,
        rating: torch.Tensor,
        own: torch.Tensor,
        seg: torch.Tensor,
        pair_seg: torch.Tensor,
        drop_row: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors of pairs, each its node's neighbourhood with at most one row dropped, from one
        pass over the full neighbourhoods of the distinct nodes (``own``, ``seg`` as in
        :meth:`forward`): ``pair_seg`` [P] is each pair's node (index into ``own``),
        ``drop_row`` [P] the flat row (index into ``nbr``) it drops, −1 for none.

        With ``e_a = exp(α*_a − max)`` (1 for mean aggregation), ``S = Σ e_a x_a`` and
        ``Z = Σ e_a`` over the full neighbourhood, dropping row x gives exactly
        ``(S − e_x x_x) / (Z − e_x)``: the softmax over the remaining rows. The subtractions
        cancel digits where x held most of the weight or most of the sum, so pairs with
        ``α_x > 1/2`` or ``‖e_x x_x‖ > ‖S − e_x x_x‖`` are flagged (second output, [P] bool) for
        the caller to recompute directly (the others' error is at most ~2× a plain sum's); a
        neighbourhood left empty aggregates to zero, as in :meth:`forward`."""
        n_seg = own.shape[0]
        table, inv = self.opinion_table(other, opinion, nbr, rating)
        x = table.index_select(0, inv)
        if self.mode == "mean":
            e = torch.ones(len(seg), dtype=table.dtype, device=table.device)
        else:
            sc = self.scores(table, inv, own, seg)
            with torch.no_grad():
                smax = torch.full((n_seg,), float("-inf"), dtype=sc.dtype, device=sc.device)
                smax = smax.scatter_reduce(0, seg, sc, reduce="amax", include_self=True)
            e = torch.exp(sc - smax.index_select(0, seg))
        big_s = torch.zeros(n_seg, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, seg, e.unsqueeze(1) * x)
        big_z = torch.zeros(n_seg, dtype=x.dtype, device=x.device).index_add(0, seg, e)
        has = drop_row >= 0
        row = drop_row.clamp_min(0)
        e_x = torch.where(has, e.index_select(0, row), 0.0) if len(e) else torch.zeros_like(pair_seg, dtype=x.dtype)
        x_x = x.index_select(0, row) if len(e) else x.new_zeros(len(pair_seg), x.shape[1])
        z = big_z.index_select(0, pair_seg)
        num = big_s.index_select(0, pair_seg) - e_x.unsqueeze(1) * x_x
        den = z - e_x
        agg = torch.where((den > 0).unsqueeze(1), num / den.clamp_min(1e-30).unsqueeze(1), 0.0)
        with torch.no_grad():  # cancellation: at most ~2× the rounding error of a plain sum
            unstable = (e_x > 0.5 * z) | (e_x * x_x.norm(dim=1) > num.norm(dim=1))
        return F.relu(self.out(agg)), unstable


class PaddedNeighbourhoods:
    """One side's neighbour lists as a dense ``[n_nodes, K]`` table (K the largest degree,
    ``valid`` marking real entries): every batch gathers fixed-shape rows, with no
    data-dependent ``unique``, mask or ``repeat_interleave``, so a training step runs without
    host synchronisation (CUDA graphs, ``torch.compile``). It costs ``P × K`` rows per batch
    instead of the CSR layout's actual neighbours: the layout for accelerators."""

    def __init__(self, csr: Neighbourhoods) -> None:
        indptr = csr.indptr.cpu()
        counts = (indptr[1:] - indptr[:-1]).long()
        k = max(int(counts.max()) if len(counts) else 0, 1)
        n = csr.n_nodes
        col = torch.arange(k).expand(n, k)
        self.valid = col < counts.unsqueeze(1)
        flat = (indptr[:-1].unsqueeze(1) + col).clamp_max(max(len(csr.nbr) - 1, 0))
        has_any = len(csr.nbr) > 0
        self.nbr = torch.where(self.valid, csr.nbr.cpu()[flat], 0) if has_any else torch.zeros(n, k, dtype=torch.long)
        self.rating = torch.where(self.valid, csr.rating.cpu()[flat], 0) if has_any else torch.zeros_like(self.nbr)
        self.width = k

    def to(self, device: torch.device) -> PaddedNeighbourhoods:
        for name in ("valid", "nbr", "rating"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def rows(
        self, nodes: torch.Tensor, exclude: torch.Tensor | None = None, max_neighbors: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(nbr, rating, valid)``, each ``[P, K']``, for ``nodes`` [P]; ``exclude`` [P] (−1:
        none) masks that neighbour out; ``max_neighbors`` keeps a uniform random sample of at
        most that many valid entries per row (``K' = min(K, max_neighbors)``)."""
        nbr = self.nbr.index_select(0, nodes)
        rating = self.rating.index_select(0, nodes)
        valid = self.valid.index_select(0, nodes)
        if exclude is not None:
            valid = valid & (nbr != exclude.unsqueeze(1))
        if max_neighbors is not None and max_neighbors < self.width:
            key = torch.where(valid, torch.rand(valid.shape, device=valid.device), -1.0)
            keep = key.topk(max_neighbors, dim=1).indices
            nbr, rating = nbr.gather(1, keep), rating.gather(1, keep)
            valid = key.gather(1, keep) >= 0
        return nbr, rating, valid

"""OPECI: "Outer Product to Enhance Correlation Information of embedding dimensions for
recommendation", with its ablation variants (``opeci-inner``, ``opeci-i``, ``opeci-u``,
``opeci-iu``), its residual reading ``opeci-res`` and the same ablations of that reading
(``opeci-res-inner``, ``opeci-res-i``, ``opeci-res-u``, ``opeci-res-iu``).

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
  0.29 to 0.05 on the synthetic fixture. Re-checked once L2 was at the paper's scale (issue 13,
  ``benchmarks/precise_bn.sh``, validation item): on the built-in synthetic data set (≈ 19
  batches per epoch, 5 seeds) it still helps, validation HR@10 0.682 against 0.608 without
  (paired t over seeds p = 0.06; equal on 1 seed, better on 4); on FilmTrust (5 epochs, seed 0)
  it changes nothing (best validation NDCG@10 0.8095 with, 0.809 without). Kept: the fewer
  batches an epoch has, the more the running averages lag, and it costs 50 forward passes.
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
  normalisation, so this is a named alternative, not the default. On its converged ml-100k fits
  (3 seeds) attention stays exactly uniform (entropy 1.0000 of its maximum) while 5.6–9.6
  directions reach the MLP: what learns is the residual path, the MLP on the outer product.

- ``interaction = "inner"`` (``opeci-inner``): the paper "deformed the inner product output into
  a 2-D matrix and fed it to the attention network". We read this as ``M = diag(h ⊙ z)``: the
  d×d matrix holding the inner product's d terms on its diagonal (its trace is ``hᵀz``). It is
  exactly the outer product with the cross-dimension correlations (the off-diagonal entries)
  removed, which is what the ablation is meant to isolate, and it keeps the same block, head and
  parameter count for every d (reshaping ``h ⊙ z`` into a √d×√d grid would need a square d,
  fails for ML-1M's d = 32, and changes the block's size).
- ``user_aggregation`` / ``item_aggregation = "mean"`` (``opeci-u``, ``opeci-i``, ``opeci-iu``):
  α (resp. β) = 1/|N(i)| instead of attention, on the user side, the item side, or both.
- The same three switches on the residual block (``opeci-res-inner``, ``opeci-res-i``,
  ``opeci-res-u``, ``opeci-res-iu``): the paper's ablations (its Figures 2 and 3) asked of the
  reading that learns. Issue 13 measured ``opeci-res`` ahead of ``opeci`` on ml-100k (tuned and
  early-stopped on the validation item, sampled test HR@10 0.632 ± 0.006 against 0.579 ± 0.016
  over 3 seeds, paired p 1e-5; ``results/issue13-verdict.md``); an ablation of a
  block that passes one number about the user (``opeci``, see ``recbench diagnose``) cannot
  tell whether the outer product or the attention networks matter.

Computation: neighbours in a flat CSR layout gathered for the batch's distinct keys only
(``torch.unique`` + inverse); ``e_r ⊙ q_a`` and its ``W_1`` projection once per distinct
(neighbour, rating) pair of the batch; segment softmax with ``scatter_reduce(amax)`` and
``index_add``; gathers by ``index_select`` (the backward of ``t[idx]`` is not deterministic with
several threads); the correlation block's rank-one path. For inference all users' and items'
factors are computed once and cached until the next ``invalidate_cache`` (every epoch
start/end); ``score_matrix`` batches the block over (user, item) pairs from the cache.

- ``batch_order = "shuffled"``: every epoch's instances (each positive and its ``n_negatives``
  sampled negatives) in one random order, as the paper's pointwise loss over instances reads.
  ``"grouped"`` is RecBole's layout: shuffled positives, each followed by its own negatives. The
  same instances per epoch; a batch of 256 holds the users of 36 positives instead of ~240
  distinct users, so the user side aggregates far fewer neighbourhoods per step (faster), but
  batch normalisation and each step's gradient see less varied users. A named alternative for
  measurement on the validation item (issue 17), not the default; added after the first records,
  so it enters a record's key only when set (:func:`recbench.models.base.added_later`).

Execution switches (the same function, other float rounding; not part of a record's key,
:func:`recbench.models.base.identity_config`; issue 17):

- ``loo_aggregation = True``: a training pair's neighbourhood minus one neighbour from one
  pass over its node's full neighbourhood, ``(S − e_x x_x) / (Z − e_x)``
  (:meth:`recbench.models.aggregation.Aggregator.forward_leave_one_out`), falling back to the
  direct computation where the subtraction would cancel digits; ``False`` aggregates once per
  distinct (node, dropped neighbour) key (the reference the tests compare against).
- ``fold_output = True``: at inference ``W^O`` is folded into the MLP's first Linear (exact:
  nothing nonlinear lies between them; the paper's block only, not ``opeci-res``).
- ``layout = "auto"``: the CSR layout on a CPU; on CUDA a dense padded layout
  (:class:`recbench.models.aggregation.PaddedNeighbourhoods`) whose training step has static
  shapes and never synchronises with the host (tested on the CPU with
  :func:`recbench.testing.no_host_sync`). With ``max_neighbors`` the two layouts draw their
  samples differently (the same distribution).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from recbench.data.types import TrainData
from recbench.models.opeci_module import OPECIConfig, OPECIModule
from recbench.models.sampling import Batches, rating_targets
from recbench.models.torch import TorchModel

# ----------------------------------------------------------------------------- the model


class OPECI(TorchModel):
    """OPECI with the paper's defaults; see the module docstring for every decision."""

    summary: ClassVar[str] = "neighbourhood factors with opinion embeddings, outer product, self-attention, MLP"
    paper: ClassVar[str] = "the OPECI paper"

    name: ClassVar[str] = "opeci"
    Config: ClassVar[type] = OPECIConfig
    revision: ClassVar[int] = 2  # the paper's L2 scale (issue 13; the N(0, 1) init chosen on validation)
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
        """Pointwise, with target ``rating / max(R)`` for a positive; shuffled instances, or
        each positive followed by its own negatives (``batch_order = "grouped"``)."""
        grouped = self.config.batch_order == "grouped"
        return self.pointwise(train, rng, positive_targets=rating_targets(train), grouped=grouped)

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


class OPECIResInner(OPECIResidual):
    """``opeci-res-inner``: ``opeci-res`` with M = diag(h ⊙ z) (the ablation of Figure 2)."""

    summary: ClassVar[str] = "opeci-res ablation: M = diag(h ⊙ z), the inner product's terms"
    paper: ClassVar[str] = "the OPECI paper, Figure 2 (on our residual reading)"

    name: ClassVar[str] = "opeci-res-inner"

    @dataclass(frozen=True)
    class Config(OPECIResidual.Config):
        interaction: Literal["outer", "inner"] = "inner"


class OPECIResMeanItem(OPECIResidual):
    """``opeci-res-i``: ``opeci-res`` with mean aggregation on the item side."""

    summary: ClassVar[str] = "opeci-res ablation: mean aggregation on the item side"
    paper: ClassVar[str] = "the OPECI paper, Figure 3 (on our residual reading)"

    name: ClassVar[str] = "opeci-res-i"

    @dataclass(frozen=True)
    class Config(OPECIResidual.Config):
        item_aggregation: Literal["attention", "mean"] = "mean"


class OPECIResMeanUser(OPECIResidual):
    """``opeci-res-u``: ``opeci-res`` with mean aggregation on the user side."""

    summary: ClassVar[str] = "opeci-res ablation: mean aggregation on the user side"
    paper: ClassVar[str] = "the OPECI paper, Figure 3 (on our residual reading)"

    name: ClassVar[str] = "opeci-res-u"

    @dataclass(frozen=True)
    class Config(OPECIResidual.Config):
        user_aggregation: Literal["attention", "mean"] = "mean"


class OPECIResMeanBoth(OPECIResidual):
    """``opeci-res-iu``: ``opeci-res`` with mean aggregation on both sides."""

    summary: ClassVar[str] = "opeci-res ablation: mean aggregation on both sides"
    paper: ClassVar[str] = "the OPECI paper, Figure 3 (on our residual reading)"

    name: ClassVar[str] = "opeci-res-iu"

    @dataclass(frozen=True)
    class Config(OPECIResidual.Config):
        user_aggregation: Literal["attention", "mean"] = "mean"
        item_aggregation: Literal["attention", "mean"] = "mean"

"""OPECI: the vectorised neighbourhood aggregation against a slow per-user reference, the
target-exclusion and sampling edge cases, the variants, training and scoring."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from recbench.data.types import Split, TrainData
from recbench.models.aggregation import Neighbourhoods, segment_softmax
from recbench.models.base import apply_overrides
from recbench.models.opeci import (
    OPECI,
    OPECIInner,
    OPECIMeanBoth,
    OPECIMeanItem,
    OPECIMeanUser,
    OPECIModule,
    OPECIResidual,
    OPECIResInner,
    OPECIResMeanBoth,
    OPECIResMeanItem,
    OPECIResMeanUser,
)

FAST = {
    "epochs": 1,
    "embedding_size": 8,
    "batch_size": 128,
    "n_negatives": 2,
    "mlp_hidden": (16, 8),
}


def toy_train() -> TrainData:
    """5 users × 6 items; user 3 has a single rating, user 4 none; item 5 has one rater."""
    pairs = [
        (0, 0, 5.0), (0, 1, 3.0), (0, 2, 1.0), (0, 4, 4.0),
        (1, 0, 2.0), (1, 3, 5.0),
        (2, 1, 4.0), (2, 2, 4.0), (2, 3, 1.0), (2, 4, 2.0), (2, 5, 3.0),
        (3, 2, 5.0),
    ]  # fmt: skip
    u, i, r = (np.array(x) for x in zip(*pairs, strict=True))
    return TrainData(
        users=u.astype(np.int32),
        items=i.astype(np.int32),
        ratings=r.astype(np.float32),
        n_users=5,
        n_items=6,
        rating_values=(1.0, 2.0, 3.0, 4.0, 5.0),
    )


def toy_module(**over: object) -> OPECIModule:
    torch.manual_seed(0)
    cfg = apply_overrides(OPECI.Config(), {**FAST, **over})
    return OPECIModule(cfg, toy_train())


def reference_factor(mod: OPECIModule, side: str, node: int, exclude: int = -1) -> torch.Tensor:
    """The paper's equations for one user (or item), one neighbour at a time."""
    train = toy_train()
    if side == "user":
        nbrs = [
            (int(a), float(r)) for u, a, r in zip(train.users, train.items, train.ratings, strict=True) if u == node
        ]
        own, other, agg = mod.user_emb.weight[node], mod.item_emb.weight, mod.user_agg
    else:
        nbrs = [
            (int(t), float(r)) for t, a, r in zip(train.users, train.items, train.ratings, strict=True) if a == node
        ]
        own, other, agg = mod.item_emb.weight[node], mod.user_emb.weight, mod.item_agg
    nbrs = [(n, r) for n, r in nbrs if n != exclude]
    xs = [mod.opinion.weight[int(r) - 1] * other[n] for n, r in nbrs]
    if not xs:
        total = torch.zeros_like(own)
    elif agg.mode == "mean":
        total = torch.stack(xs).mean(0)
    else:
        scores = torch.stack([agg.w2(torch.relu(agg.w1(torch.cat([x, own])))).squeeze() for x in xs])
        alpha = torch.softmax(scores, 0)
        total = sum(a * x for a, x in zip(alpha, xs, strict=True))
    return torch.relu(agg.out(total))


# ----------------------------------------------------------------------------- neighbourhoods


def test_gather_lists_neighbours_and_excludes() -> None:
    nb = Neighbourhoods(toy_train().csr, (1.0, 2.0, 3.0, 4.0, 5.0))
    seg, nbr, rating = nb.gather(torch.tensor([2, 0, 4, 3]))
    assert seg.tolist() == [0] * 5 + [1] * 4 + [3]
    assert nbr.tolist() == [1, 2, 3, 4, 5, 0, 1, 2, 4, 2]
    assert rating.tolist() == [3, 3, 0, 1, 2, 4, 2, 0, 3, 4]
    seg, nbr, _ = nb.gather(torch.tensor([2, 0, 3]), exclude=torch.tensor([3, -1, 2]))
    assert seg.tolist() == [0] * 4 + [1] * 4  # user 3 left empty
    assert 3 not in nbr[:4].tolist()


def test_gather_samples_at_most_k_distinct_neighbours() -> None:
    nb = Neighbourhoods(toy_train().csr, (1.0, 2.0, 3.0, 4.0, 5.0))
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        seg, nbr, _ = nb.gather(torch.tensor([2, 1, 3]), max_neighbors=2)
        counts = torch.bincount(seg, minlength=3).tolist()
        assert counts == [2, 2, 1]
        first = nbr[seg == 0].tolist()
        assert len(set(first)) == 2 and set(first) <= {1, 2, 3, 4, 5}
        seen.update(first)
    assert seen == {1, 2, 3, 4, 5}  # uniform: every neighbour gets drawn


def test_segment_softmax_sums_to_one_with_single_and_empty_segments() -> None:
    seg = torch.tensor([0, 0, 0, 2, 3, 3])
    scores = torch.tensor([1.0, 2.0, 1000.0, -5.0, 0.0, -1000.0], requires_grad=True)
    a = segment_softmax(scores, seg, 5)
    assert torch.isfinite(a).all()
    sums = torch.zeros(5).index_add(0, seg, a)
    torch.testing.assert_close(sums, torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]))
    assert a[3].item() == 1.0  # a single neighbour gets all the weight
    (a * torch.arange(6.0)).sum().backward()
    assert torch.isfinite(scores.grad).all()


# ----------------------------------------------------------------------------- aggregation


@pytest.mark.parametrize("mode", ["attention", "mean"])
def test_aggregation_matches_per_user_reference(mode: str) -> None:
    mod = toy_module(user_aggregation=mode, item_aggregation=mode)
    with torch.no_grad():
        h = mod.user_factors(torch.arange(5))
        z = mod.item_factors(torch.arange(6))
        for u in range(5):
            torch.testing.assert_close(h[u], reference_factor(mod, "user", u), atol=1e-6, rtol=1e-5)
        for i in range(6):
            torch.testing.assert_close(z[i], reference_factor(mod, "item", i), atol=1e-6, rtol=1e-5)
        # with one neighbour excluded, incl. user 3's only rating and item 5's only rater
        hx = mod.user_factors(torch.tensor([0, 2, 3]), torch.tensor([1, -1, 2]))
        for k, (u, ex) in enumerate([(0, 1), (2, -1), (3, 2)]):
            torch.testing.assert_close(hx[k], reference_factor(mod, "user", u, ex), atol=1e-6, rtol=1e-5)
        zx = mod.item_factors(torch.tensor([5, 0]), torch.tensor([2, 1]))
        torch.testing.assert_close(zx[0], reference_factor(mod, "item", 5, 2), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(zx[1], reference_factor(mod, "item", 0, 1), atol=1e-6, rtol=1e-5)
    # an empty neighbourhood aggregates to zero: h = ReLU(b), finite
    torch.testing.assert_close(hx[2], torch.relu(mod.user_agg.out.bias.detach()))


def test_attention_weights_sum_to_one_per_neighbourhood() -> None:
    mod = toy_module()
    users = torch.tensor([0, 1, 2, 3])
    seg, items, r = mod.user_nbrs.gather(users, torch.tensor([-1, 3, -1, 2]))
    table, inv = mod.user_agg.opinion_table(mod.item_emb.weight, mod.opinion.weight, items, r)
    torch.testing.assert_close(table[inv], mod.opinion.weight[r] * mod.item_emb.weight[items])
    assert len(table) == len(set(zip(items.tolist(), r.tolist(), strict=True)))
    alpha = mod.user_agg.weights(table, inv, mod.user_emb.weight[users], seg, 4)
    sums = torch.zeros(4).index_add(0, seg, alpha.detach())
    torch.testing.assert_close(sums, torch.tensor([1.0, 1.0, 1.0, 0.0]))  # user 1: one left


def test_exclude_target_is_exact_per_pair() -> None:
    mod = toy_module(exclude_negatives=False)
    mod.train()
    users = torch.tensor([0, 0, 2, 3, 0])
    items = torch.tensor([1, 4, 5, 2, 3])  # training pairs, except (0, 3)
    with torch.no_grad():
        h, z = mod.pair_factors(users, items)
        exp_h = mod.user_factors(users, torch.tensor([1, 4, 5, 2, -1]))
        exp_z = mod.item_factors(items, torch.tensor([0, 0, 2, 3, -1]))
        torch.testing.assert_close(h, exp_h)
        torch.testing.assert_close(z, exp_z)
        assert torch.isfinite(mod(users, items)).all()
        mod.eval()  # no exclusion at inference
        h, _ = mod.pair_factors(users, items)
        torch.testing.assert_close(h, mod.user_factors(users).detach())
        off = toy_module(exclude_target=False)
        off.train()
        h_off, _ = off.pair_factors(users, items)
        torch.testing.assert_close(h_off, off.user_factors(users))


def test_negatives_lose_one_random_neighbour_like_positives() -> None:
    """With ``exclude_negatives`` a sampled negative's factors also miss one neighbour (a
    uniformly random one), so the full-neighbourhood factor never marks a pair as negative."""
    mod = toy_module()
    mod.train()
    torch.manual_seed(0)
    with torch.no_grad():
        users, items = torch.tensor([2] * 40), torch.tensor([0] * 40)  # (2, 0): a negative
        h, z = mod.pair_factors(users, items)
        nbrs_u, nbrs_i = [1, 2, 3, 4, 5], [0, 1]
        cand_h = mod.user_factors(torch.tensor([2] * 5), torch.tensor(nbrs_u))
        cand_z = mod.item_factors(torch.tensor([0] * 2), torch.tensor(nbrs_i))
        hit_h = [int(torch.isclose(cand_h, row).all(1).nonzero()[0]) for row in h]
        hit_z = [int(torch.isclose(cand_z, row).all(1).nonzero()[0]) for row in z]
    assert set(hit_h) == set(range(5)) and set(hit_z) == {0, 1}  # each neighbour gets dropped
    nb = mod.user_nbrs
    assert nb.random_neighbour(torch.tensor([4, 4])).tolist() == [-1, -1]  # no neighbours


def test_inner_variant_uses_the_diagonal_matrix() -> None:
    mod = toy_module(interaction="inner")
    mod.eval()
    h, z = torch.rand(4, 8), torch.rand(4, 8)
    expected = mod.head(mod.block.forward_matrix(torch.diag_embed(h * z)))
    torch.testing.assert_close(mod.interact(h, z), expected, atol=1e-5, rtol=1e-5)


def test_variants_are_config_switches() -> None:
    assert OPECIInner.Config().interaction == "inner"
    assert OPECIMeanItem.Config().item_aggregation == "mean"
    assert OPECIMeanItem.Config().user_aggregation == "attention"
    assert OPECIMeanUser.Config().user_aggregation == "mean"
    b = OPECIMeanBoth.Config()
    assert (b.user_aggregation, b.item_aggregation) == ("mean", "mean")
    names = {c.name for c in (OPECI, OPECIInner, OPECIMeanItem, OPECIMeanUser, OPECIMeanBoth)}
    assert names == {"opeci", "opeci-inner", "opeci-i", "opeci-u", "opeci-iu"}
    # the same ablations of the residual reading: one switch each on top of block = "residual"
    res = {
        OPECIResInner: {"interaction": "inner"},
        OPECIResMeanItem: {"item_aggregation": "mean"},
        OPECIResMeanUser: {"user_aggregation": "mean"},
        OPECIResMeanBoth: {"user_aggregation": "mean", "item_aggregation": "mean"},
    }
    assert OPECIResidual.Config().block == "residual"
    for cls, switches in res.items():
        assert cls.name.startswith("opeci-res-") and issubclass(cls, OPECIResidual)
        assert asdict(cls.Config()) == asdict(replace(OPECIResidual.Config(), **switches))
    d = OPECI.Config()
    assert (d.embedding_size, d.learning_rate, d.reg, d.batch_size, d.n_negatives) == (
        64,
        0.001,
        0.001,
        256,
        6,
    )
    assert (d.n_heads, d.d_k, d.d_v, d.mlp_hidden) == (4, 16, 16, (256, 64))


def test_mean_variant_has_no_attention_parameters() -> None:
    mod = toy_module(user_aggregation="mean")
    assert not hasattr(mod.user_agg, "w1")
    assert hasattr(mod.item_agg, "w1")


# ----------------------------------------------------------------------------- training


def fitted(split: Split, seed: int = 0, **over: object) -> OPECI:
    m = OPECI(apply_overrides(OPECI.Config(), {**FAST, **over}))
    m.fit(split.train, np.random.default_rng(seed))
    return m


def test_a_few_steps_lower_the_loss(tiny_split: Split) -> None:
    m = OPECI(apply_overrides(OPECI.Config(), {**FAST, "learning_rate": 0.01}))
    m.n_users, m.n_items = tiny_split.n_users, tiny_split.n_items
    torch.manual_seed(0)
    m.module = m.build_module(tiny_split.train)
    opt = m.optimizer()
    u, i, t = next(m.batches(tiny_split.train, np.random.default_rng(0)))
    losses = []
    for _ in range(30):
        loss = m.batch_loss(u, i, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tc = t.clamp(1e-7, 1 - 1e-7)
    floor = float(-(tc * tc.log() + (1 - tc) * (1 - tc).log()).mean())  # soft targets' entropy
    assert losses[-1] - floor < 0.5 * (losses[0] - floor)


def test_deterministic_and_pairs_match_rows(tiny_split: Split) -> None:
    a, b = fitted(tiny_split, 3), fitted(tiny_split, 3)
    users = tiny_split.test.users[:6]
    full = a.score_matrix(users)
    np.testing.assert_array_equal(full, b.score_matrix(users))
    items = np.random.default_rng(0).integers(0, tiny_split.n_items, size=(6, 11))
    pairs = a.score(np.repeat(users, 11), items.ravel()).reshape(6, 11)
    np.testing.assert_allclose(pairs, np.take_along_axis(full, items, 1), rtol=1e-5, atol=1e-5)


def test_variants_and_options_train(tiny_split: Split) -> None:
    for over in (
        {"interaction": "inner"},
        {"user_aggregation": "mean", "item_aggregation": "mean"},
        {"max_neighbors": 3},
        {"rank_one": False},
        {"exclude_target": False},
    ):
        m = fitted(tiny_split, **over)
        s = m.score_matrix(tiny_split.test.users[:3])
        assert np.isfinite(s).all(), over


def hit_rate(m: object, split: Split) -> float:
    u, c = split.test.users, split.test.candidates
    s = m.score(np.repeat(u, c.shape[1]), c.ravel()).reshape(c.shape)
    rank = (s[:, 1:] > s[:, :1]).sum(1) + (s[:, 1:] == s[:, :1]).sum(1)  # ties count against
    return float((rank < 10).mean())


@pytest.mark.slow
def test_learns_well_above_chance(small_split: Split) -> None:
    """HR@10 of a random ranking is 0.10. OPECI reaches ItemPop's level on this popularity-skewed
    synthetic fixture (ItemPop: 0.36 validation / 0.32 test; OPECI d = 32, 8 epochs, L2 0:
    0.37 / 0.32) but does not beat it clearly; that comparison is reported, not asserted."""
    over = {"embedding_size": 16, "epochs": 2, "reg": 0.0, "mlp_hidden": (64, 16)}
    m = OPECI(apply_overrides(OPECI.Config(), {**over, "n_negatives": 3, "precise_bn_batches": 10}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small ops: a second thread only adds barriers on a busy box
    try:
        m.fit(small_split.train, np.random.default_rng(0))
    finally:
        torch.set_num_threads(threads)
    assert hit_rate(m, small_split) > 0.2  # 2× chance; this config gets 0.28 (seeds 0, 1)

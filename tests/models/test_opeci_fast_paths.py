"""OPECI's exact savings (issue 17) against the direct computation they replace: the
leave-one-out aggregation of training pairs and the ``W^O`` fold at inference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recbench.data.types import TrainData
from recbench.models.base import apply_overrides, identity_config
from recbench.models.opeci import OPECI, OPECIModule

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py

SMALL = {"embedding_size": 8, "mlp_hidden": (16, 8), "batch_size": 64, "n_negatives": 2, "precision": "fp32"}


def random_train(rng: np.random.Generator, n_users: int = 40, n_items: int = 50, n: int = 500) -> TrainData:
    """A random rating graph with a user of one rating and an item of one rater (both edge
    cases of the identity: dropping the only neighbour leaves an empty neighbourhood)."""
    u = rng.integers(0, n_users - 1, n)
    i = rng.integers(0, n_items - 1, n)
    keys = np.unique(u * n_items + i)
    u, i = keys // n_items, keys % n_items
    u = np.append(u, [n_users - 1, 0])  # user n_users-1: one rating; item n_items-1: one rater
    i = np.append(i, [0, n_items - 1])
    r = rng.integers(1, 6, len(u)).astype(np.float32)
    return TrainData(
        users=u.astype(np.int32),
        items=i.astype(np.int32),
        ratings=r,
        n_users=n_users,
        n_items=n_items,
        rating_values=(1.0, 2.0, 3.0, 4.0, 5.0),
    )


def twins(train: TrainData, **over: object) -> tuple[OPECIModule, OPECIModule]:
    """The fast and the direct module, with identical weights."""
    torch.manual_seed(0)
    cfg = apply_overrides(OPECI.Config(), {**SMALL, **over})
    fast = OPECIModule(cfg, train)
    slow = OPECIModule(dataclasses.replace(cfg, loo_aggregation=False), train)
    slow.load_state_dict(fast.state_dict())
    fast.train()
    slow.train()
    return fast, slow


def batch(train: TrainData, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pairs (dropping their own target) and random pairs (dropping a random
    neighbour), including the single-neighbour user and item."""
    pos = rng.choice(len(train.users), 60, replace=False)
    users = np.concatenate([train.users[pos], rng.integers(0, train.n_users, 60), [train.n_users - 1]])
    items = np.concatenate([train.items[pos], rng.integers(0, train.n_items, 60), [0]])
    return torch.from_numpy(users.astype(np.int64)), torch.from_numpy(items.astype(np.int64))


@pytest.mark.parametrize("mode", ["attention", "mean"])
def test_leave_one_out_factors_and_gradients_match_the_direct_path(rng: np.random.Generator, mode: str) -> None:
    train = random_train(rng)
    fast, slow = twins(train, user_aggregation=mode, item_aggregation=mode)
    users, items = batch(train, rng)
    out = {}
    for name, m in (("fast", fast), ("slow", slow)):
        torch.manual_seed(1)  # the same random neighbours dropped for the negatives
        h, z = m.pair_factors(users, items)
        (h.square().sum() + (z * torch.arange(z.shape[1])).sum()).backward()
        out[name] = (h.detach(), z.detach())
    for a, b in zip(out["fast"], out["slow"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    scale = max(float(p.grad.abs().max()) for p in slow.parameters() if p.grad is not None)
    for (name, p), q in zip(fast.named_parameters(), slow.parameters(), strict=True):
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_leave_one_out_falls_back_where_the_dropped_neighbour_dominates(rng: np.random.Generator) -> None:
    """A neighbour holding > 1/2 of the attention is recomputed directly: those pairs are
    bit-identical to the direct path, and no pair's factor is a cancellation artefact."""
    train = random_train(rng)
    fast, slow = twins(train)
    with torch.no_grad():  # make item 3 dominate every user's attention
        fast.item_emb.weight[3] *= 50
        slow.item_emb.weight[3] *= 50
    users = torch.from_numpy(train.users[train.items == 3].astype(np.int64))
    items = torch.full_like(users, 3)
    n = users
    table_share = []
    for u in n.tolist():
        seg, nbr, r = fast.user_nbrs.gather(torch.tensor([u]))
        table, inv = fast.user_agg.opinion_table(fast.item_emb.weight, fast.opinion.weight, nbr, r)
        alpha = fast.user_agg.weights(table, inv, fast.user_emb.weight[[u]], seg, 1)
        table_share.append(float(alpha[nbr == 3].sum().detach()))
    assert max(table_share) > 0.5  # the fallback is exercised
    with torch.no_grad():
        h_fast = fast.excluded_factors("user", users, items)
        h_slow = slow.user_factors(users, items)
    dominated = torch.tensor(table_share) > 0.5
    assert torch.equal(h_fast[dominated], h_slow[dominated])
    torch.testing.assert_close(h_fast, h_slow, rtol=1e-5, atol=1e-6)


def test_training_losses_match_over_steps(rng: np.random.Generator) -> None:
    train = random_train(rng)
    losses = {}
    for loo in (True, False):
        cfg = apply_overrides(OPECI.Config(), {**SMALL, "epochs": 1, "loo_aggregation": loo, "precise_bn_batches": 0})
        m = OPECI(cfg)
        seen: list[float] = []
        orig = m.batch_loss

        def record(*args: object, _orig=orig, _seen=seen) -> torch.Tensor:
            loss = _orig(*args)
            _seen.append(float(loss.detach()))
            return loss

        m.batch_loss = record  # type: ignore[method-assign]
        torch.manual_seed(0)
        m.fit(train, np.random.default_rng(0))
        losses[loo] = seen
    assert len(losses[True]) == len(losses[False]) >= 5
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


@pytest.mark.parametrize("interaction", ["outer", "inner"])
def test_folded_output_projection_scores_like_the_unfolded_head(rng: np.random.Generator, interaction: str) -> None:
    train = random_train(rng)
    scores = {}
    for fold in (True, False):
        cfg = apply_overrides(OPECI.Config(), {**SMALL, "epochs": 1, "fold_output": fold, "interaction": interaction})
        m = OPECI(cfg)
        torch.manual_seed(0)
        m.fit(train, np.random.default_rng(0))
        assert (m._folded is not None) == fold or m._cache is None
        scores[fold] = m.score_matrix(np.arange(train.n_users))
    np.testing.assert_allclose(scores[True], scores[False], rtol=1e-4, atol=1e-5)
    assert (np.argsort(-scores[True], axis=1)[:, :5] == np.argsort(-scores[False], axis=1)[:, :5]).mean() > 0.99


def test_residual_block_is_never_folded() -> None:
    train = random_train(np.random.default_rng(0))
    torch.manual_seed(0)
    mod = OPECIModule(apply_overrides(OPECI.Config(), {**SMALL, "block": "residual"}), train)
    assert mod.folded_weight() is None


def test_execution_switches_are_not_part_of_a_record_key() -> None:
    cfg = OPECI.Config()
    fast_off = dataclasses.replace(cfg, loo_aggregation=False, fold_output=False)
    assert identity_config(cfg) == identity_config(fast_off)
    assert "loo_aggregation" not in identity_config(cfg) and "rank_one" in identity_config(cfg)


def test_an_option_added_later_enters_the_key_only_away_from_its_default() -> None:
    cfg = OPECI.Config()
    assert "batch_order" not in identity_config(cfg)  # records made before it existed keep their keys
    grouped = dataclasses.replace(cfg, batch_order="grouped")
    assert identity_config(grouped) == {**identity_config(cfg), "batch_order": "grouped"}


def test_options_added_later_keep_their_original_default() -> None:
    """Records made before an ``added_later`` field existed ran its original value and store
    nothing for it: changing its default would silently relabel them."""
    from recbench.registry import MODELS

    for cls in MODELS.values():
        for f in dataclasses.fields(cls.Config):
            if f.metadata.get("added_later"):
                assert getattr(cls.Config(), f.name) == f.metadata["original"], (cls.name, f.name)


def test_grouped_batches_hold_each_positive_with_its_own_negatives(rng: np.random.Generator) -> None:
    """``batch_order = "grouped"``: the same instances as the shuffled order (every training
    pair once as a positive, ``n_negatives`` negatives of its user), laid out as runs of
    ``1 + n_negatives`` rows of one user, the positive first; fewer distinct users per batch."""
    from recbench.models.sampling import pointwise_instances

    train = random_train(rng)
    k = 1 + SMALL["n_negatives"]
    inst = {
        grouped: pointwise_instances(train, np.random.default_rng(1), SMALL["n_negatives"], grouped=grouped)
        for grouped in (False, True)
    }
    users, items, targets = inst[True].users, inst[True].items, inst[True].targets
    assert (users.reshape(-1, k) == users[::k, None]).all()
    assert (targets[::k] > 0).all() and (targets.reshape(-1, k)[:, 1:] == 0).all()
    train_keys = np.sort(train.users.astype(np.int64) * train.n_items + train.items)
    assert np.array_equal(np.sort(users[targets > 0].astype(np.int64) * train.n_items + items[targets > 0]), train_keys)
    assert np.array_equal(np.sort(users), np.sort(inst[False].users))
    # the model asks for this layout, and a batch then holds fewer distinct users
    bs = SMALL["batch_size"]
    distinct = {}
    for order in ("shuffled", "grouped"):
        model = OPECI(apply_overrides(OPECI.Config(), {**SMALL, "batch_order": order}))
        batch_users = [b[0].numpy() for b in model.batches(train, np.random.default_rng(1))]
        if order == "grouped":
            n = len(users) // bs * bs
            assert np.array_equal(np.concatenate(batch_users)[:n], users[:n])
        distinct[order] = np.mean([len(np.unique(u)) for u in batch_users if len(u) == bs])
    assert distinct["grouped"] < 0.6 * distinct["shuffled"], distinct


@pytest.mark.parametrize("over", [{}, {"user_aggregation": "mean"}, {"max_neighbors": 3}, {"exclude_target": False}])
def test_padded_layout_matches_the_csr_layout(rng: np.random.Generator, over: dict) -> None:
    """The accelerator layout computes the same factors (exactly the direct exclusion, no
    identity) and gradients; with ``max_neighbors`` only the same distribution (checked by
    its shape: at most K valid entries)."""
    train = random_train(rng)
    torch.manual_seed(0)
    cfg = apply_overrides(OPECI.Config(), {**SMALL, **over})
    csr = OPECIModule(dataclasses.replace(cfg, layout="csr"), train)
    padded = OPECIModule(dataclasses.replace(cfg, layout="padded"), train)
    padded.load_state_dict(csr.state_dict())
    csr.train()
    padded.train()
    users, items = batch(train, rng)
    if "max_neighbors" in over:
        h, z = padded.pair_factors(users, items)
        assert h.shape == (len(users), 8) and torch.isfinite(h).all() and torch.isfinite(z).all()
        nbr, _, valid = padded._padded["user"].rows(users, None, 3)
        full = padded._padded["user"].valid.index_select(0, users).sum(1)
        assert valid.shape[1] == 3 and torch.equal(valid.sum(1), full.clamp_max(3))
        assert (padded._padded["user"].nbr.index_select(0, users).unsqueeze(2) == nbr.unsqueeze(1)).any(1)[valid].all()
        return
    out = {}
    for name, m in (("csr", csr), ("padded", padded)):
        torch.manual_seed(1)
        h, z = m.pair_factors(users, items)
        (h.square().sum() + z.sum()).backward()
        out[name] = (h.detach(), z.detach())
    for a, b in zip(out["padded"], out["csr"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    scale = max(float(p.grad.abs().max()) for p in csr.parameters() if p.grad is not None)
    for (name, p), q in zip(padded.named_parameters(), csr.parameters(), strict=True):
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_the_padded_training_step_never_synchronises_with_the_host(rng: np.random.Generator) -> None:
    from recbench.testing import no_host_sync

    train = random_train(rng)
    m = OPECI(apply_overrides(OPECI.Config(), {**SMALL, "epochs": 1, "layout": "padded"}))
    m.init_module(train, np.random.default_rng(0))
    batches = m.batches(train, np.random.default_rng(0))
    users, items, targets = next(batches)
    m.module.train()
    m.module.pair_factors(users, items)  # builds the padded tables (once, outside the step)
    with no_host_sync():
        loss = m.batch_loss(users, items, targets)
        loss.backward()
    # the CSR layout does synchronise (unique, masks): the check can fail
    m2 = OPECI(apply_overrides(OPECI.Config(), {**SMALL, "epochs": 1, "layout": "csr"}))
    m2.init_module(train, np.random.default_rng(0))
    m2.module.train()
    with pytest.raises(AssertionError, match="host synchronisation"), no_host_sync():
        m2.batch_loss(users, items, targets)

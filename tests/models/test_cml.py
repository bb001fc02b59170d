"""CML: the WARP-weighted hinge against a per-sample reference, unit-ball clipping, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines.cml import CML, CMLConfig, CMLModule, covariance_penalty
from baselines.itempop import ItemPop
from recbench.data.types import Split
from recbench.eval.evaluator import sampled_ranks
from recbench.eval.metrics import summarize
from recbench.models.trainer import Trainer

FAST = CMLConfig(epochs=2, embedding_size=16, n_negatives=5, batch_size=128)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


def hr10(model, held) -> float:  # type: ignore[no-untyped-def]
    return summarize(sampled_ranks(model, held))["hr@10"]


def test_defaults_follow_the_paper() -> None:
    c = CMLConfig()
    assert (c.embedding_size, c.margin, c.n_negatives, c.clip_norm) == (64, 0.5, 20, 1.0)


def test_score_is_minus_squared_distance() -> None:
    mod = CMLModule(5, 7, 4, clip_norm=1.0)
    u, i = torch.tensor([0, 4, 2]), torch.tensor([6, 0, 2])
    want = -((mod.user(u) - mod.item(i)) ** 2).sum(1)
    torch.testing.assert_close(mod(u, i), want, rtol=1e-5, atol=1e-6)
    assert (mod.user.weight.norm(dim=1) <= 1 + 1e-5).all()


def test_loss_matches_a_per_sample_reference(tiny_split: Split) -> None:
    """Hardest negative, margin, weight log(1 + ⌊J·M/U⌋) and the covariance term, per sample."""
    cfg = CMLConfig(embedding_size=6, n_negatives=5, margin=0.5, cov_weight=0.7, epochs=0)
    m = CML(cfg)
    m.fit(tiny_split.train, np.random.default_rng(0))
    assert isinstance(m.module, CMLModule)
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, m.n_users, (9,), generator=g)
    items = torch.randint(0, m.n_items, (9,), generator=g)
    negs = torch.randint(0, m.n_items, (9, 5), generator=g)
    got = m.batch_loss(users, items, torch.ones(9), negs)

    U, V = m.module.user.weight.detach().double(), m.module.item.weight.detach().double()
    total = 0.0
    for b in range(9):
        u = U[users[b]]
        d_pos = float(((u - V[items[b]]) ** 2).sum())
        d_neg = [float(((u - V[k]) ** 2).sum()) for k in negs[b]]
        inside = sum(0.5 + d_pos - d > 0 for d in d_neg)
        w = math.log(1 + math.floor(m.n_items * inside / 5))
        total += w * max(0.0, 0.5 + d_pos - min(d_neg))
    rows = torch.cat((U[users], V[items], V[negs.reshape(-1)]))
    xc = rows - rows.mean(0)
    c = xc.T @ xc / len(rows)
    cov = float((c**2).sum() - (torch.diagonal(c) ** 2).sum())
    assert float(got.detach()) == pytest.approx(total / 9 + 0.7 * cov, rel=1e-5)
    assert float(covariance_penalty(rows.float())) == pytest.approx(cov, rel=1e-4)


def test_no_violation_no_loss(tiny_split: Split) -> None:
    m = CML(CMLConfig(embedding_size=2, n_negatives=3, cov_weight=0.0, epochs=0))
    m.fit(tiny_split.train, np.random.default_rng(0))
    assert isinstance(m.module, CMLModule)
    with torch.no_grad():
        m.module.user.weight[0] = torch.tensor([1.0, 0.0])
        m.module.item.weight[0] = torch.tensor([1.0, 0.0])  # the positive, at distance 0
        m.module.item.weight[1:] = torch.tensor([-1.0, 0.0])  # negatives at squared distance 4
    loss = m.batch_loss(torch.tensor([0]), torch.tensor([0]), torch.ones(1), torch.tensor([[1, 2, 3]]))
    assert float(loss.detach()) == 0.0


def test_embeddings_stay_in_the_unit_ball(tiny_split: Split) -> None:
    m = CML(CMLConfig(epochs=2, embedding_size=8, n_negatives=4, learning_rate=0.05))
    m.fit(tiny_split.train, np.random.default_rng(0))
    assert isinstance(m.module, CMLModule)
    for e in (m.module.user.weight, m.module.item.weight):
        assert float(e.detach().norm(dim=1).max()) <= 1.0 + 1e-5


def test_few_steps_lower_the_loss(tiny_split: Split) -> None:
    m = CML(CMLConfig(epochs=0, embedding_size=16, n_negatives=5, learning_rate=0.01))
    m.fit(tiny_split.train, np.random.default_rng(0))
    assert m.module is not None
    trainer = Trainer(m)
    trainer.opt = m.optimizer()
    g = torch.Generator().manual_seed(1)
    k = torch.randint(0, len(tiny_split.train), (256,), generator=g)
    u = torch.from_numpy(tiny_split.train.users.astype(np.int64))[k]
    i = torch.from_numpy(tiny_split.train.items.astype(np.int64))[k]
    negs = torch.randint(0, m.n_items, (256, 5), generator=g)
    first = float(m.batch_loss(u, i, torch.ones(256), negs).detach())
    for _ in range(30):
        trainer.step(m.batch_loss(u, i, torch.ones(256), negs))
    assert float(m.batch_loss(u, i, torch.ones(256), negs).detach()) < 0.8 * first


def test_deterministic_and_pairs_match_batch(tiny_split: Split) -> None:
    a, b = CML(FAST), CML(FAST)
    a.fit(tiny_split.train, np.random.default_rng(5))
    b.fit(tiny_split.train, np.random.default_rng(5))
    users = np.repeat(tiny_split.test.users, 4)
    items = tiny_split.test.candidates[:, :4].ravel()
    batch = a.score(users, items)
    np.testing.assert_array_equal(batch, b.score(users, items))
    single = np.array([a.score(users[k : k + 1], items[k : k + 1])[0] for k in range(0, len(users), 7)])
    np.testing.assert_allclose(batch[::7], single, rtol=1e-5, atol=1e-6)


def test_learns_beyond_itempop(small_split: Split) -> None:
    pop = ItemPop()
    pop.fit(small_split.train, np.random.default_rng(0))
    m = CML(CMLConfig(epochs=10, embedding_size=32, learning_rate=0.01))
    m.fit(small_split.train, np.random.default_rng(0))
    hr_pop, hr = hr10(pop, small_split.test), hr10(m, small_split.test)
    assert hr > hr_pop + 0.08, (hr, hr_pop)

"""DMF: sparse row/column towers against a dense reference, cosine output, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.dmf import COS_MIN, DMF, DMFConfig, DMFModule, SparseRows
from baselines.itempop import ItemPop
from recbench.data.types import Split, TrainData
from recbench.eval.evaluator import sampled_ranks
from recbench.eval.metrics import summarize
from recbench.models.sampling import pointwise_instances
from recbench.models.trainer import Trainer

FAST = DMFConfig(epochs=2, hidden=(32,), embedding_size=16, n_negatives=2, learning_rate=1e-3)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


def hr10(model, held) -> float:  # type: ignore[no-untyped-def]
    return summarize(sampled_ranks(model, held))["hr@10"]


def _train() -> TrainData:
    rng = np.random.default_rng(0)
    keys = rng.choice(7 * 11, size=30, replace=False)
    return TrainData(
        users=(keys // 11).astype(np.int32),
        items=(keys % 11).astype(np.int32),
        ratings=rng.integers(1, 6, size=30).astype(np.float32),
        n_users=8,  # user 7 has no interactions: an empty row
        n_items=12,  # item 11 has none: an empty column
        rating_values=(1.0, 2.0, 3.0, 4.0, 5.0),
    )


def test_defaults_follow_the_paper() -> None:
    c = DMFConfig()
    assert ((*c.hidden, c.embedding_size), c.n_negatives, c.learning_rate, c.batch_size) == (
        (256, 64),
        7,
        1e-4,
        256,
    )
    # cross-entropy of probabilities (the cosine), clamped (normalised targets:
    # test_rating_targets_in_every_nce_model)
    assert float(DMF().loss(torch.full((1,), 0.5), torch.ones(1))) == pytest.approx(np.log(2))
    assert np.isfinite(float(DMF().loss(torch.ones(1), torch.zeros(1))))


def test_gather_returns_the_sparse_rows() -> None:
    train = _train()
    rows = SparseRows(train.csr)
    ids = torch.tensor([3, 7, 3, 0])
    cols, vals, offsets, bag = rows.gather(ids)
    dense = train.csr.toarray()
    rebuilt = np.zeros((4, train.n_items), np.float32)
    np.add.at(rebuilt, (bag.numpy(), cols.numpy()), vals.numpy())
    np.testing.assert_array_equal(rebuilt, dense[ids.numpy()])
    np.testing.assert_array_equal(
        offsets.numpy(), np.concatenate([[0], np.cumsum((dense[ids.numpy()] != 0).sum(1))[:-1]])
    )


def test_towers_and_gradients_match_a_dense_reference() -> None:
    """The sparse forward and the custom ``Sᵀ G`` backward equal dense ``Y W`` autograd."""
    train = _train()
    torch.manual_seed(0)
    mod = DMFModule(train, (5, 3), std=0.3)
    users = torch.tensor([0, 3, 3, 7, 1, 0])
    items = torch.tensor([2, 2, 11, 4, 0, 2])
    pred = mod(users, items)
    pred.sum().backward()
    got = {n: p.grad.clone() for n, p in mod.named_parameters()}

    y = torch.from_numpy(train.csr.toarray())
    ref = {n: p.detach().clone().requires_grad_() for n, p in mod.named_parameters()}

    def tower(side: str, x: torch.Tensor) -> torch.Tensor:
        h = x @ ref[f"{side}_tower.first"]
        return torch.relu(h @ ref[f"{side}_tower.mlp.0.weight"].T + ref[f"{side}_tower.mlp.0.bias"])

    p = tower("user", y[users])
    q = tower("item", y.T[items])
    cos = (p * q).sum(1) / (p.norm(dim=1).clamp_min(1e-12) * q.norm(dim=1).clamp_min(1e-12))
    ref_pred = cos.clamp_min(COS_MIN)
    ref_pred.sum().backward()
    torch.testing.assert_close(pred, ref_pred, rtol=1e-5, atol=1e-6)
    for n, g in got.items():
        torch.testing.assert_close(g, ref[n].grad, rtol=1e-4, atol=1e-6, msg=n)


def test_prediction_is_a_clamped_cosine() -> None:
    train = _train()
    mod = DMFModule(train, (5, 3), std=0.3)
    out = mod(torch.tensor([0, 1, 7]), torch.tensor([0, 1, 11]))
    assert out.shape == (3,)
    assert (out >= COS_MIN).all() and (out <= 1 + 1e-6).all()
    # the empty user row (7) and the empty item column (11) give the lower clamp, not NaN
    assert torch.isfinite(out).all() and bool(out[2] >= COS_MIN)


def test_few_steps_lower_the_loss(tiny_split: Split) -> None:
    m = DMF(DMFConfig(epochs=0, hidden=(32,), embedding_size=16, learning_rate=1e-3))
    m.fit(tiny_split.train, np.random.default_rng(0))
    assert m.module is not None
    m.module.train()
    trainer = Trainer(m)
    trainer.opt = m.optimizer()
    inst = pointwise_instances(tiny_split.train, np.random.default_rng(1), m.config.n_negatives)
    u, i, y = (torch.from_numpy(a[:512]) for a in (inst.users, inst.items, inst.targets))
    first = float(m.batch_loss(u, i, y).detach())
    for _ in range(30):
        trainer.step(m.batch_loss(u, i, y))
    assert float(m.batch_loss(u, i, y).detach()) < first - 0.02


def test_deterministic_and_pairs_match_batch(tiny_split: Split) -> None:
    a, b = DMF(FAST), DMF(FAST)
    a.fit(tiny_split.train, np.random.default_rng(5))
    b.fit(tiny_split.train, np.random.default_rng(5))
    users = np.repeat(tiny_split.test.users, 4)
    items = tiny_split.test.candidates[:, :4].ravel()
    batch = a.score(users, items)
    np.testing.assert_array_equal(batch, b.score(users, items))
    single = np.array([a.score(users[k : k + 1], items[k : k + 1])[0] for k in range(0, len(users), 7)])
    np.testing.assert_allclose(batch[::7], single, rtol=1e-5, atol=1e-6)
    # the cached inference factors equal the training forward (unclamped cosine)
    assert a.module is not None
    with torch.no_grad():
        fwd = a.module(torch.from_numpy(users[:50]), torch.from_numpy(items[:50].astype(np.int64)))
    np.testing.assert_allclose(np.maximum(batch[:50], COS_MIN), fwd.numpy(), rtol=1e-5, atol=1e-6)


def test_learns_beyond_itempop(small_split: Split) -> None:
    pop = ItemPop()
    pop.fit(small_split.train, np.random.default_rng(0))
    m = DMF(DMFConfig(epochs=4, hidden=(64,), embedding_size=32, n_negatives=4, learning_rate=1e-3))
    m.fit(small_split.train, np.random.default_rng(0))
    hr_pop, hr = hr10(pop, small_split.test), hr10(m, small_split.test)
    assert hr > hr_pop + 0.15, (hr, hr_pop)

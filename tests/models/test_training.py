"""The shared PyTorch training loop (:class:`Trainer`) and the sampling schemes: sampling,
targets, batches, the NaN guard, early stopping, seeding."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from recbench.data.types import Split, TrainData
from recbench.models.base import FitContext, ModelError
from recbench.models.sampling import (
    Batches,
    pairwise_batches,
    pointwise_batches,
    pointwise_instances,
    rating_targets,
    sample_negatives,
)
from recbench.models.torch import TorchModel
from recbench.models.trainer import Trainer
from recbench.registry import MODELS


@dataclass(frozen=True)
class ToyConfig:
    embedding_size: int = 8
    epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 0.01
    reg: float = 0.0
    n_negatives: int = 2


class ToyModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, d: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, d)
        self.item = nn.Embedding(n_items, d)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user(users) * self.item(items)).sum(1)


class Toy(TorchModel):
    """A dot-product model that records what the loop hands it."""

    name: ClassVar[str] = "toy"
    Config: ClassVar[type] = ToyConfig

    def __init__(self, config: Any | None = None) -> None:
        super().__init__(config)
        self.seen: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.fit_train: TrainData | None = None

    def build_module(self, train: TrainData) -> nn.Module:
        self.fit_train = train
        return ToyModule(train.n_users, train.n_items, self.config.embedding_size)

    def batch_loss(self, users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.seen.append((users.numpy().copy(), items.numpy().copy(), targets.numpy().copy(), None))
        return super().batch_loss(users, items, targets)


class ToyNCE(Toy):
    def batches(self, train: TrainData, rng: np.random.Generator) -> Batches:
        cfg = self.config
        return pointwise_batches(
            train,
            rng,
            batch_size=cfg.batch_size,
            n_negatives=cfg.n_negatives,
            device=self.device,
            positive_targets=rating_targets(train),
        )


class ToyPairwise(Toy):
    def batches(self, train: TrainData, rng: np.random.Generator) -> Batches:
        cfg = self.config
        return pairwise_batches(train, rng, batch_size=cfg.batch_size, n_negatives=cfg.n_negatives, device=self.device)

    def batch_loss(  # type: ignore[override]
        self, users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        self.seen.append((users.numpy().copy(), items.numpy().copy(), targets.numpy().copy(), negatives.numpy().copy()))
        pos = self.forward(users, items)
        neg = self.forward(users.unsqueeze(1).expand_as(negatives).reshape(-1), negatives.reshape(-1))
        return -torch.nn.functional.logsigmoid(pos.unsqueeze(1) - neg.view(negatives.shape)).mean()


def _seen(model: Toy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.concatenate([s[k] for s in model.seen]) for k in range(3))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- sampling


def test_sampler_never_returns_a_training_positive(small_split: Split) -> None:
    train = small_split.train
    rng = np.random.default_rng(0)
    negs = sample_negatives(train, train.users, 5, rng)
    assert negs.shape == (len(train), 5)
    assert not train.contains(np.repeat(train.users, 5), negs.ravel()).any()
    assert negs.min() >= 0 and negs.max() < train.n_items


def test_sampler_with_a_nearly_full_row() -> None:
    """A user who interacted with all items but two only ever gets those two."""
    n_items = 50
    users = np.zeros(n_items - 2, np.int32)
    items = np.arange(2, n_items, dtype=np.int32)
    train = TrainData(users, items, np.ones(len(users), np.float32), 1, n_items, (1.0,))
    negs = sample_negatives(train, np.zeros(200, np.int64), 3, np.random.default_rng(1))
    assert set(np.unique(negs)) == {0, 1}


def test_training_data_holds_no_held_out_pair(small_split: Split) -> None:
    """What ``fit`` receives (the split's train) contains no test or validation pair."""
    m = Toy(ToyConfig(epochs=1))
    m.fit(small_split.train, np.random.default_rng(0))
    assert m.fit_train is small_split.train
    assert small_split.validation is not None
    for held in (small_split.test, small_split.validation):
        assert not m.fit_train.contains(held.users, held.items).any()
    # and the loop never trains on them either: every positive instance is a training pair
    users, items, targets = _seen(m)
    assert m.fit_train.contains(users[targets > 0], items[targets > 0]).all()


# ----------------------------------------------------------------------------- instances


@pytest.mark.parametrize("n_neg", [1, 4])
def test_pointwise_epoch_instances_and_bce_targets(tiny_split: Split, n_neg: int) -> None:
    train = tiny_split.train
    m = Toy(ToyConfig(epochs=1, n_negatives=n_neg, batch_size=64))
    m.fit(train, np.random.default_rng(0))
    users, items, targets = _seen(m)
    n = len(train) * (1 + n_neg)
    assert len(users) in (n, n - 1)  # the loop drops one instance rather than a batch of one
    assert all(len(s[0]) <= 64 for s in m.seen)
    pos = targets == 1
    assert set(np.unique(targets)) == {0.0, 1.0}
    assert pos.sum() >= len(train) - 1
    assert train.contains(users[pos], items[pos]).all()
    assert not train.contains(users[~pos], items[~pos]).any()
    # every user's negatives: n_neg per positive
    counts = np.bincount(users[~pos], minlength=train.n_users)
    assert np.abs(counts - n_neg * train.user_counts).max() <= 1


def test_grouped_instances_put_each_positive_before_its_negatives(tiny_split: Split) -> None:
    train = tiny_split.train
    inst = pointwise_instances(train, np.random.default_rng(0), 3, grouped=True)
    assert len(inst.users) == 4 * len(train)
    users, items, targets = (a.reshape(-1, 4) for a in (inst.users, inst.items, inst.targets))
    assert (users == users[:, :1]).all()  # one user per group
    assert (targets[:, 0] == 1).all() and (targets[:, 1:] == 0).all()
    assert train.contains(users[:, 0], items[:, 0]).all()
    assert not train.contains(users[:, 1:].ravel(), items[:, 1:].ravel()).any()
    # every training pair appears once, in a shuffled order
    keys = np.sort(users[:, 0] * train.n_items + items[:, 0])
    np.testing.assert_array_equal(keys, train.pair_keys)
    assert not np.array_equal(users[:, 0], np.sort(users[:, 0]))


def test_nce_targets_are_rating_over_max(tiny_split: Split) -> None:
    train = tiny_split.train
    m = ToyNCE(ToyConfig(epochs=1, n_negatives=2))
    m.fit(train, np.random.default_rng(0))
    users, items, targets = _seen(m)
    pos = train.contains(users, items)
    assert (targets[~pos] == 0).all()
    rating = {(int(u), int(i)): float(r) for u, i, r in zip(train.users, train.items, train.ratings, strict=True)}
    expect = np.array(
        [rating[(int(u), int(i))] / train.max_rating for u, i in zip(users[pos], items[pos], strict=True)]
    )
    np.testing.assert_allclose(targets[pos], expect, rtol=1e-6)
    assert targets[pos].min() > 0 and targets[pos].max() == 1.0


def test_pairwise_batches_carry_negatives(tiny_split: Split) -> None:
    train = tiny_split.train
    m = ToyPairwise(ToyConfig(epochs=2, n_negatives=3, batch_size=50))
    m.fit(train, np.random.default_rng(0))
    per_epoch = sum(len(s[0]) for s in m.seen) / 2
    assert per_epoch in (len(train), len(train) - 1)
    for users, items, _, negs in m.seen:
        assert negs is not None and negs.shape == (len(users), 3)
        assert train.contains(users, items).all()
        assert not train.contains(np.repeat(users, 3), negs.ravel()).any()


# ----------------------------------------------------------------------------- guards


def test_nan_loss_raises_model_error(tiny_split: Split) -> None:
    m = Toy(ToyConfig(epochs=5, learning_rate=1e38))
    with pytest.raises(ModelError, match="loss is"):
        m.fit(tiny_split.train, np.random.default_rng(0))


def test_same_seed_same_scores_other_seed_differs(tiny_split: Split) -> None:
    users = np.repeat(tiny_split.test.users, 3)
    items = tiny_split.test.candidates[:, :3].ravel()
    out = []
    for seed in (3, 3, 4):
        m = Toy(ToyConfig(epochs=2))
        m.fit(tiny_split.train, np.random.default_rng(seed))
        out.append(m.score(users, items))
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], out[2])


def test_early_stopping_restores_best_validation_epoch(tiny_split: Split) -> None:
    """Validation decides (never test); the weights of the best validation epoch come back."""
    val_curve = [0.1, 0.5, 0.2, 0.3, 0.1, 0.9]
    test_curve = [0.9, 0.1, 0.95, 0.99, 0.99, 0.99]  # would pick other epochs if it were used
    calls: list[str] = []
    weights: list[dict[str, torch.Tensor]] = []  # what the evaluation saw, per epoch

    def evaluate(model: Any, role: str) -> dict[str, float]:
        calls.append(role)
        if role == "test":  # the loop records test first, then validation, every epoch
            weights.append({k: v.clone() for k, v in model.module.state_dict().items()})
        curve = val_curve if role == "validation" else test_curve
        return {"ndcg@10": curve[len(weights) - 1], "hr@10": 0.0}

    m = Toy(ToyConfig(epochs=6))
    ctx = FitContext(eval_every=1, early_stopping_patience=2, evaluate=evaluate)
    m.fit(tiny_split.train, np.random.default_rng(0), ctx)
    assert m.module is not None
    epochs = [h for h in ctx.history if "epoch" in h]
    assert [h["epoch"] for h in epochs] == [1, 2, 3, 4]  # 2 epochs without a better validation
    assert [h["test"]["ndcg@10"] for h in epochs] == test_curve[:4]  # recorded, not used
    assert ctx.history[-1] == {"best_epoch": 2, "best_validation": 0.5}
    assert calls == ["test", "validation"] * 4
    for k, v in m.module.state_dict().items():
        torch.testing.assert_close(v, weights[1][k], rtol=0, atol=0)
    assert any(not torch.equal(v, weights[3][k]) for k, v in m.module.state_dict().items())


def test_early_stopping_without_test_evaluation(tiny_split: Split) -> None:
    calls: list[str] = []

    def evaluate(model: Any, role: str) -> dict[str, float]:
        calls.append(role)
        return {"ndcg@10": 1.0 / len(calls)}  # only ever gets worse

    ctx = FitContext(early_stopping_patience=1, evaluate=evaluate)
    Toy(ToyConfig(epochs=5)).fit(tiny_split.train, np.random.default_rng(0), ctx)
    assert calls == ["validation", "validation"]
    assert ctx.history[-1]["best_epoch"] == 1


# ----------------------------------------------------------------------------- batches


@pytest.mark.parametrize(("cls", "per_sample"), [(Toy, 1), (ToyPairwise, 1 + 3)])
def test_batches_count_samples_and_progress(tiny_split: Split, cls: type[Toy], per_sample: int) -> None:
    """A pointwise sample is an instance; a pairwise one a positive or a negative."""
    train = tiny_split.train
    progress: list[tuple[int, int]] = []
    ctx = FitContext(on_batch=lambda done, total: progress.append((done, total)))
    m = cls(ToyConfig(epochs=1, n_negatives=3, batch_size=50))
    m.fit(train, np.random.default_rng(0), ctx)
    n = sum(len(s[0]) for s in m.seen) * per_sample
    assert ctx.history[0]["samples"] == n
    assert progress[-1] == (n, n) and len(progress) == len(m.seen)
    assert all(a[0] < b[0] for a, b in itertools.pairwise(progress))


def test_a_new_sampling_scheme_is_just_a_batches_method(tiny_split: Split) -> None:
    """No class variable, no change to the loop: ``batches`` yields what ``batch_loss`` takes."""

    class PositivesOnly(Toy):
        def batches(self, train: TrainData, rng: np.random.Generator) -> Batches:
            perm = torch.from_numpy(rng.permutation(len(train)))
            users = torch.from_numpy(train.users.astype(np.int64))[perm]
            items = torch.from_numpy(train.items.astype(np.int64))[perm]
            ones = torch.ones(len(train))
            parts = (
                ((users[s : s + 64], items[s : s + 64], ones[s : s + 64]), len(users[s : s + 64]))
                for s in range(0, len(train), 64)
            )
            return Batches(parts, len(train))

    train = tiny_split.train
    m = PositivesOnly(ToyConfig(epochs=1))
    ctx = FitContext()
    m.fit(train, np.random.default_rng(0), ctx)
    users, items, targets = _seen(m)
    assert len(users) == len(train) == ctx.history[0]["samples"]
    assert train.contains(users, items).all() and (targets == 1).all()


def test_trainer_step_guards_against_a_non_finite_loss(tiny_split: Split) -> None:
    m = Toy(ToyConfig(epochs=0))
    m.fit(tiny_split.train, np.random.default_rng(0))
    trainer = Trainer(m)
    trainer.opt = m.optimizer()
    with pytest.raises(ModelError, match="toy: loss is nan at epoch 2, batch 5"):
        trainer.step(torch.tensor(float("nan"), requires_grad=True), 2, 5)


def test_accelerator_nan_guard_reads_the_flag_only_every_sync_every_steps(tiny_split: Split) -> None:
    """On an accelerator the guard keeps a device-side flag and reads it every ``sync_every``
    batches (and at the end of an epoch), so a step does not synchronise with the host."""
    m = Toy(ToyConfig(epochs=0))
    m.fit(tiny_split.train, np.random.default_rng(0))
    trainer = Trainer(m)
    trainer.opt = m.optimizer()
    trainer.sync_every = 4
    trainer.checks_every_step = lambda loss: False  # type: ignore[method-assign]
    good = lambda: m.module.user.weight.sum() * 0 + 1.0  # noqa: E731
    trainer.step(torch.tensor(float("nan"), requires_grad=True), 1, 0)  # not read yet
    trainer.step(good(), 1, 1)
    trainer.step(good(), 1, 2)
    with pytest.raises(ModelError, match="toy: loss became non-finite at epoch 1, in batches 0–3"):
        trainer.step(good(), 1, 3)


def test_bench_counts_flops_on_the_first_batch_of_the_models_own_scheme(tiny_split: Split) -> None:
    """``bench`` needs no knowledge of sampling schemes: it draws ``next(model.batches(...))``."""
    from recbench.bench.flops import _one_batch

    for m, width in ((ToyNCE(ToyConfig(n_negatives=2, batch_size=64)), 3), (ToyPairwise(ToyConfig(batch_size=16)), 4)):
        m.init_module(tiny_split.train, np.random.default_rng(0))
        args, samples = _one_batch(m, tiny_split, np.random.default_rng(0))
        batches = m.batches(tiny_split.train, np.random.default_rng(0))
        ref = next(batches)
        assert len(args) == width and samples == batches.done > 0
        for a, b in zip(args, ref, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("name", "normalised"), [("ncf", False), ("cml", False), ("dmf", True), ("cadncf", True), ("opeci", True)]
)
def test_rating_targets_in_every_nce_model(tiny_split: Split, name: str, normalised: bool) -> None:
    """NCE models (DMF, CADNCF, OPECI) train towards ``rating / max(R)``, the others towards 1."""
    train = tiny_split.train
    users, items, targets = (t.numpy() for t in next(MODELS[name]().batches(train, np.random.default_rng(0)))[:3])
    pos = train.contains(users, items)
    assert pos.any() and (targets[~pos] == 0).all()
    ratings = dict(
        zip((train.users.astype(np.int64) * train.n_items + train.items).tolist(), train.ratings.tolist(), strict=True)
    )
    want = np.array([ratings[int(u) * train.n_items + int(i)] for u, i in zip(users[pos], items[pos], strict=True)])
    np.testing.assert_allclose(targets[pos], want / train.max_rating if normalised else 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["ncf", "dmf", "cml", "cadncf"])
def test_registered(name: str) -> None:
    assert name in MODELS and issubclass(MODELS[name], TorchModel)

"""Training batches of the PyTorch models: negative sampling and the two sampling schemes.

A :class:`~recbench.models.torch.TorchModel` draws one epoch's batches with ``batches(train,
rng)``, which returns a :class:`Batches` iterator yielding exactly the tuples its ``batch_loss``
takes. The two schemes here are plain functions a model calls from ``batches``; a new scheme is
one more function returning :class:`Batches` (no class variable, no change to the loop):

- :func:`pointwise_batches` (NCF, DMF, CADNCF, OPECI): every positive plus ``n_negatives``
  sampled negatives form the epoch's instances, shuffled and cut into batches of ``batch_size``
  instances (the NCF papers' convention: one epoch of ml-100k with ratio 6 is ~700K samples),
  yielding ``(users, items, targets)``. Targets are 1 for a positive (or the model's own, e.g.
  :func:`rating_targets` for a normalised cross-entropy) and 0 for a negative.
- :func:`pairwise_batches` (CML): batches of ``batch_size`` shuffled positives, each with its
  ``n_negatives`` negatives, yielding ``(users, items, targets, negatives)`` (targets all 1).

Negatives are drawn fresh each epoch, uniformly among the items the user has no training
interaction with. Every function draws all of its epoch's randomness from ``rng`` when it is
called, in a fixed order, so a seed fixes the batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from recbench.data.types import TrainData


def sample_negatives(train: TrainData, users: np.ndarray, n_per_user: int, rng: np.random.Generator) -> np.ndarray:
    """``len(users) × n_per_user`` items drawn uniformly from the items each user has no
    training interaction with (with replacement across draws, as in NCF). Vectorised rejection
    sampling: draw all, redraw only the rejected ones."""
    users = np.asarray(users, dtype=np.int64)
    out = rng.integers(0, train.n_items, size=(len(users), n_per_user), dtype=np.int64)
    uu = np.broadcast_to(users[:, None], out.shape)
    bad = train.contains(uu, out)
    while bad.any():
        out[bad] = rng.integers(0, train.n_items, size=int(bad.sum()), dtype=np.int64)
        bad[bad] = train.contains(uu[bad], out[bad])
    return out


def rating_targets(train: TrainData) -> np.ndarray:
    """Positive targets ``rating / max(R)`` (the normalised cross-entropy of DMF, CADNCF and
    OPECI), one per training pair."""
    return (train.ratings / train.max_rating).astype(np.float32)


class Batches(Iterator[tuple[torch.Tensor, ...]]):
    """One epoch's batches for ``batch_loss``, with the sample counts the loop reports.

    ``parts`` yields ``(batch, samples)`` pairs; ``total`` is the epoch's samples and ``done``
    the samples of the batches yielded so far (a sample is one scored (user, item) pair: an
    instance of a pointwise batch, a positive or a negative of a pairwise one)."""

    def __init__(self, parts: Iterable[tuple[tuple[torch.Tensor, ...], int]], total: int) -> None:
        self._parts = iter(parts)
        self.total = int(total)
        self.done = 0

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        batch, samples = next(self._parts)
        self.done += samples
        return batch


@dataclass
class EpochInstances:
    """One epoch's pointwise instances, in batch order."""

    users: np.ndarray
    items: np.ndarray
    targets: np.ndarray


def pointwise_instances(
    train: TrainData,
    rng: np.random.Generator,
    n_negatives: int,
    positive_targets: np.ndarray | None = None,
    grouped: bool = False,
) -> EpochInstances:
    """Every positive and ``n_negatives`` fresh negatives of its user, shuffled.

    ``positive_targets`` (one per training pair) default to 1. ``grouped`` is RecBole's layout:
    shuffled positives, each followed by its own negatives, so a batch holds ``batch_size / (1 +
    n_negatives)`` positives and their users (fewer distinct users per batch: DMF's user tower
    runs once per distinct user)."""
    n_neg = int(n_negatives)
    negs = sample_negatives(train, train.users, n_neg, rng)
    pos_t = np.ones(len(train), np.float32) if positive_targets is None else positive_targets
    if grouped:
        perm = rng.permutation(len(train))
        pu = train.users.astype(np.int64)[perm]
        negs = negs[perm]
        items = np.concatenate([train.items.astype(np.int64)[perm, None], negs], 1).ravel()
        targets = np.concatenate([pos_t[perm, None], np.zeros(negs.shape, np.float32)], 1).ravel()
        return EpochInstances(np.repeat(pu, 1 + n_neg), items, targets)
    users = np.concatenate([train.users.astype(np.int64), np.repeat(train.users.astype(np.int64), n_neg)])
    items = np.concatenate([train.items.astype(np.int64), negs.ravel()])
    targets = np.concatenate([pos_t, np.zeros(negs.size, np.float32)])
    perm = rng.permutation(len(users))
    return EpochInstances(users[perm], items[perm], targets[perm])


def _usable(n: int, batch_size: int) -> int:
    """``n`` less the last element when it would form a batch of one (which breaks batch
    normalisation)."""
    return n - 1 if n % batch_size == 1 else n


def pointwise_batches(
    train: TrainData,
    rng: np.random.Generator,
    *,
    batch_size: int,
    n_negatives: int,
    device: torch.device,
    positive_targets: np.ndarray | None = None,
    grouped: bool = False,
) -> Batches:
    """The pointwise scheme: :func:`pointwise_instances` cut into ``(users, items, targets)``
    batches of ``batch_size`` instances on ``device``."""
    inst = pointwise_instances(train, rng, n_negatives, positive_targets, grouped)
    bs = int(batch_size)
    users = torch.from_numpy(inst.users).to(device)
    items = torch.from_numpy(inst.items).to(device)
    targets = torch.from_numpy(inst.targets).to(device)
    n = _usable(len(inst.users), bs)
    parts = (((users[s : s + bs], items[s : s + bs], targets[s : s + bs]), min(bs, n - s)) for s in range(0, n, bs))
    return Batches(parts, n)


def pairwise_batches(
    train: TrainData,
    rng: np.random.Generator,
    *,
    batch_size: int,
    n_negatives: int,
    device: torch.device,
) -> Batches:
    """The pairwise scheme: shuffled positives in batches of ``batch_size``, each with
    ``n_negatives`` fresh negatives: ``(users, items, targets, negatives)`` with ``negatives``
    of shape ``batch × n_negatives`` and ``targets`` all 1."""
    n_neg = int(n_negatives)
    bs = int(batch_size)
    perm = rng.permutation(len(train))
    pu = train.users.astype(np.int64)[perm]
    pi = train.items.astype(np.int64)[perm]
    negs = sample_negatives(train, pu, n_neg, rng)
    users = torch.from_numpy(pu).to(device)
    items = torch.from_numpy(pi).to(device)
    negt = torch.from_numpy(negs).to(device)
    ones = torch.ones(len(pu), device=device)
    n = _usable(len(pu), bs)
    parts = (
        ((users[s : s + bs], items[s : s + bs], ones[s : s + bs], negt[s : s + bs]), min(bs, n - s) * (1 + n_neg))
        for s in range(0, n, bs)
    )
    return Batches(parts, n * (1 + n_neg))

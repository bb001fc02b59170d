"""NCF / NeuMF: shapes, learning, determinism, pretraining initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.itempop import ItemPop
from baselines.ncf import GMF, MLP, NCF, NCFConfig, NeuMFModule
from recbench.data.types import Split
from recbench.eval.evaluator import sampled_ranks
from recbench.eval.metrics import summarize
from recbench.models.base import FitContext
from recbench.models.sampling import pointwise_instances
from recbench.models.torch import TorchModel
from recbench.models.trainer import Trainer

FAST = NCFConfig(epochs=2, batch_size=256, n_negatives=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


def hr10(model, held) -> float:  # type: ignore[no-untyped-def]
    return summarize(sampled_ranks(model, held))["hr@10"]


def test_defaults_follow_the_paper() -> None:
    c = NCFConfig()
    assert (c.embedding_size, c.mlp_layers, c.n_negatives) == (8, (64, 32, 16, 8), 4)
    assert (c.learning_rate, c.batch_size, c.pretrain, c.alpha) == (1e-3, 256, False, 0.5)
    # pointwise batches with 0/1 targets, binary cross-entropy of logits
    assert NCF.batches is TorchModel.batches and NCF.loss is TorchModel.loss


@pytest.mark.parametrize("branches", ["gmf", "mlp", "neumf"])
def test_forward_shapes(branches: str) -> None:
    mod = NeuMFModule(10, 20, 8, (64, 32, 16, 8), branches)
    out = mod(torch.tensor([0, 3, 9]), torch.tensor([1, 19, 5]))
    assert out.shape == (3,)
    assert mod.user.weight.shape == (10, {"gmf": 8, "mlp": 32, "neumf": 40}[branches])


def test_branches_have_separate_embeddings() -> None:
    """Changing the MLP columns of a user's embedding leaves the GMF product untouched."""
    mod = NeuMFModule(4, 4, 8, (16, 8), "neumf")
    u, i = torch.tensor([1]), torch.tensor([2])
    gmf = lambda: mod.user(u)[:, :8] * mod.item(i)[:, :8]  # noqa: E731
    before = gmf().clone()
    with torch.no_grad():
        mod.user.weight[1, 8:] += 1.0
    torch.testing.assert_close(gmf(), before)


def test_few_steps_lower_the_loss(tiny_split: Split) -> None:
    m = NCF(NCFConfig(epochs=0))
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
    assert float(m.batch_loss(u, i, y).detach()) < first - 0.05


def test_deterministic_and_pairs_match_batch(tiny_split: Split) -> None:
    a, b = NCF(FAST), NCF(FAST)
    a.fit(tiny_split.train, np.random.default_rng(5))
    b.fit(tiny_split.train, np.random.default_rng(5))
    users = np.repeat(tiny_split.test.users, 4)
    items = tiny_split.test.candidates[:, :4].ravel()
    batch = a.score(users, items)
    np.testing.assert_array_equal(batch, b.score(users, items))
    single = np.array([a.score(users[k : k + 1], items[k : k + 1])[0] for k in range(0, len(users), 7)])
    np.testing.assert_allclose(batch[::7], single, rtol=1e-5, atol=1e-6)


def test_pretrained_neumf_starts_as_the_alpha_mix_of_gmf_and_mlp() -> None:
    """With h = [α h_GMF ; (1−α) h_MLP] the initial NeuMF logit is α·GMF + (1−α)·MLP."""
    torch.manual_seed(0)
    gmf = NeuMFModule(6, 9, 8, (16, 8), "gmf")
    mlp = NeuMFModule(6, 9, 8, (16, 8), "mlp")
    m = NCF(NCFConfig(mlp_layers=(16, 8), alpha=0.3))
    neumf = NeuMFModule(6, 9, 8, (16, 8), "neumf")
    m._load_pretrained(neumf, gmf, mlp)
    u, i = torch.arange(6).repeat(9), torch.arange(9).repeat_interleave(6)
    with torch.no_grad():
        torch.testing.assert_close(neumf(u, i), 0.3 * gmf(u, i) + 0.7 * mlp(u, i), rtol=1e-5, atol=1e-6)


def test_pretraining_runs_gmf_mlp_then_neumf_with_sgd(tiny_split: Split) -> None:
    m = NCF(NCFConfig(epochs=1, n_negatives=2, pretrain=True))
    opts: list[str] = []
    original = m.optimizer

    def spy() -> torch.optim.Optimizer:
        opt = original()
        opts.append(type(opt).__name__)
        return opt

    m.optimizer = spy  # type: ignore[method-assign]
    ctx = FitContext()
    m.fit(tiny_split.train, np.random.default_rng(0), ctx)
    assert opts == ["SGD"]
    assert [h.get("pretrain") for h in ctx.history] == ["gmf", "mlp", None]
    assert [len(h["history"]) for h in ctx.history[:2]] == [1, 1]
    assert [h.get("epoch") for h in ctx.history] == [None, None, 1]
    assert GMF.name == "gmf" and MLP.name == "mlp"
    s = m.score(np.array([0, 1]), np.array([2, 3]))
    assert np.isfinite(s).all()


def test_learns_beyond_itempop(small_split: Split) -> None:
    pop = ItemPop()
    pop.fit(small_split.train, np.random.default_rng(0))
    m = NCF(NCFConfig(epochs=8, learning_rate=0.005))
    m.fit(small_split.train, np.random.default_rng(0))
    hr_pop, hr = hr10(pop, small_split.test), hr10(m, small_split.test)
    assert hr > hr_pop + 0.15, (hr, hr_pop)

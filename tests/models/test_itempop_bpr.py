"""ItemPop on a handcrafted data set; BPR learns latent structure that ItemPop cannot."""

from __future__ import annotations

import numpy as np

from baselines.bpr import BPR, BPRConfig
from baselines.itempop import ItemPop
from recbench.data.types import Split, TrainData
from recbench.eval.evaluator import sampled_ranks
from recbench.eval.metrics import summarize


def test_itempop_counts_training_interactions(rng: np.random.Generator) -> None:
    train = TrainData(
        users=np.array([0, 0, 1, 1, 2, 2, 2], np.int32),
        items=np.array([0, 1, 1, 2, 1, 2, 3], np.int32),
        ratings=np.ones(7, np.float32),
        n_users=3,
        n_items=5,
        rating_values=(1.0,),
    )
    m = ItemPop()
    m.fit(train, rng)
    np.testing.assert_array_equal(m.score_matrix(np.array([0, 2])), [[1, 3, 2, 1, 0]] * 2)
    np.testing.assert_array_equal(m.score(np.array([1, 1]), np.array([4, 1])), [0, 3])


def test_bpr_beats_itempop(small_split: Split) -> None:
    pop, bpr = ItemPop(), BPR(BPRConfig(embedding_size=16, epochs=60))
    pop.fit(small_split.train, np.random.default_rng(0))
    bpr.fit(small_split.train, np.random.default_rng(0))
    hr_pop = summarize(sampled_ranks(pop, small_split.test))["hr@10"]
    hr_bpr = summarize(sampled_ranks(bpr, small_split.test))["hr@10"]
    assert hr_bpr > hr_pop + 0.1, (hr_bpr, hr_pop)


def test_bpr_adapter_matches_implicit_directly(small_split: Split) -> None:
    """The adapter adds nothing: same factors as calling implicit with the same seed."""
    import implicit

    cfg = BPRConfig(embedding_size=8, epochs=5)
    rng = np.random.default_rng(3)
    seed = int(np.random.default_rng(3).integers(0, 2**31 - 1))
    m = BPR(cfg)
    m.fit(small_split.train, rng)
    x = small_split.train.csr.copy()
    x.data[:] = 1.0
    ref = implicit.cpu.bpr.BayesianPersonalizedRanking(
        factors=8,
        learning_rate=cfg.learning_rate,
        regularization=cfg.reg,
        iterations=5,
        num_threads=1,
        random_state=seed,
    )
    ref.fit(x, show_progress=False)
    np.testing.assert_allclose(m.user_factors, ref.user_factors)
    np.testing.assert_allclose(m.item_factors, ref.item_factors)

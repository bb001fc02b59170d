"""Do two checkouts train every PyTorch model bit for bit alike? (CPU, one thread)

Fits NCF (plain, pretrained, early-stopped), DMF (plain, grouped negatives), CML, CADNCF,
cadncf-mhsa and OPECI variants for 1-2 epochs on a tiny synthetic split and saves their full score
matrices, per-epoch losses, sample counts, progress fractions and early-stopping history::

    git archive <old-commit> recbench baselines | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/bit_identity.py save /tmp/old.npz
    PYTHONPATH=. python benchmarks/bit_identity.py save /tmp/new.npz
    python benchmarks/bit_identity.py compare /tmp/old.npz /tmp/new.npz

``compare`` exits 1 unless every array is ``np.array_equal``. About 5 s per ``save``. Results are
only comparable on one machine (BLAS kernels and OPECI's ``precision = "auto"`` depend on the CPU).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.models.base import FitContext, apply_overrides
from recbench.registry import MODELS

_OPECI = {
    "embedding_size": 8,
    "n_heads": 2,
    "d_k": 4,
    "d_v": 4,
    "mlp_hidden": (16, 8),
    "attention_hidden": 8,
    "n_negatives": 2,
}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "ncf": ("ncf", {"embedding_size": 4, "mlp_layers": (8, 4), "epochs": 2, "batch_size": 128}),
    "ncf-pre": ("ncf", {"embedding_size": 4, "mlp_layers": (8, 4), "epochs": 1, "batch_size": 128, "pretrain": True}),
    "dmf": ("dmf", {"embedding_size": 8, "hidden": (16,), "epochs": 2, "batch_size": 128, "n_negatives": 3}),
    "dmf-group": (
        "dmf",
        {
            "embedding_size": 8,
            "hidden": (16,),
            "epochs": 2,
            "batch_size": 128,
            "n_negatives": 3,
            "group_negatives": True,
        },
    ),
    "cml": ("cml", {"embedding_size": 8, "epochs": 2, "batch_size": 64, "n_negatives": 5}),
    "cml-norank": (
        "cml",
        {"embedding_size": 8, "epochs": 1, "batch_size": 100, "n_negatives": 3, "rank_weight": False},
    ),
    "cadncf": ("cadncf", {"embedding_size": 8, "hidden": (16, 8), "epochs": 2, "batch_size": 128, "n_negatives": 2}),
    "cadncf-mhsa": (
        "cadncf-mhsa",
        {"embedding_size": 8, "d_k": 4, "d_v": 4, "hidden": (16, 8), "epochs": 1, "batch_size": 128, "n_negatives": 2},
    ),
    "opeci": ("opeci", {**_OPECI, "epochs": 2, "batch_size": 256, "precise_bn_batches": 3, "precision": "fp32"}),
    "opeci-iu-k": (
        "opeci-iu",
        {**_OPECI, "epochs": 1, "batch_size": 256, "precise_bn_batches": 2, "precision": "fp32", "max_neighbors": 5},
    ),
    "opeci-res-auto": ("opeci-res", {**_OPECI, "epochs": 1, "batch_size": 256, "precise_bn_batches": 2}),
}


def run() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    split = leave_one_out(
        make_synthetic(n_users=60, n_items=150, mean_interactions=20, seed=1, name="tiny"), seed=0, validation=True
    )
    users = np.arange(split.train.n_users)
    out: dict[str, np.ndarray] = {}
    for label, (name, over) in CASES.items():
        cls = MODELS[name]
        m = cls(apply_overrides(cls.Config(), over, name))
        progress: list[float] = []
        ctx = FitContext(on_batch=lambda done, total, p=progress: p.append(done / total))
        m.fit(split.train, np.random.default_rng(7), ctx)
        epochs = [h for h in ctx.history if "loss" in h]
        out[label] = m.score_matrix(users)
        out[f"{label}/loss"] = np.array([h["loss"] for h in epochs])
        out[f"{label}/samples"] = np.array([h["samples"] for h in epochs])
        out[f"{label}/progress"] = np.array(progress)

    def evaluate(model: Any, role: str) -> dict[str, float]:  # cheap, deterministic "metrics"
        held = split.validation if role == "validation" else split.test
        assert held is not None
        s = model.score(held.users, held.items)
        return {"ndcg@10": float(np.mean(s)), "hr@10": float(np.median(s))}

    cls = MODELS["ncf"]
    m = cls(
        apply_overrides(
            cls.Config(), {"embedding_size": 4, "mlp_layers": (8, 4), "epochs": 4, "batch_size": 128}, "ncf"
        )
    )
    ctx = FitContext(evaluate=evaluate, eval_every=1, early_stopping_patience=1)
    m.fit(split.train, np.random.default_rng(3), ctx)
    out["ncf-es"] = m.score_matrix(users)
    out["ncf-es/history"] = np.array(
        [
            [
                h.get("epoch", -1),
                h.get("loss", h.get("best_epoch", -1)),
                h.get("validation", {}).get("ndcg@10", h.get("best_validation", -1)),
            ]
            for h in ctx.history
        ]
    )
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "save":
        np.savez(argv[1], **run())
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        a, b = np.load(argv[1]), np.load(argv[2])
        differ = sorted(set(a.files) ^ set(b.files)) + [
            k for k in a.files if k in b.files and not np.array_equal(a[k], b[k])
        ]
        print(f"{len(a.files)} arrays compared; differing: {differ or 'none'}")
        return 1 if differ else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

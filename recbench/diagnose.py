"""Does the user reach the MLP? Measurements of a correlation-attention model (issue 13).

For a model whose module exposes ``pair_inputs(users, items) -> (h, z)``, ``attended(h, z)`` (the
MLP's input as a ``[B, d, d]`` matrix), ``head`` and optionally ``attention_weights(h, z)``
(OPECI and its readings, the CADNCF readings, ``outer-mlp``), on a fresh or trained model:

- **participation ratio** of the MLP's input across users, for each of a few fixed items: with
  λ the eigenvalues of the covariance over users of ``flatten(attended(h_u, z_j))``,
  ``PR = (Σλ)² / Σλ²`` — 1 when the input varies along a single direction, up to the rank when
  the variance is spread evenly. Reported as the median over the items, with the share of the
  variance on the first direction and the correlation (over users) of that direction's
  coordinate with ``mean(h_u)``;
- **attention entropy**: the mean entropy of the attention rows divided by its maximum, the log
  of the row length (1.000 = uniform attention), and the mean largest weight;
- **permutation sensitivity**: the mean |Δ logit| when each user's factor entries are shuffled,
  against the mean |Δ logit| when another user's factor is swapped in (a model that reads only the
  multiset of h's entries has a ratio of 0).

A trained model comes from a fit's per-epoch checkpoint (:func:`load_checkpoint`): the weights of
its best validation epoch, which are what the fit's record evaluates, or of its last epoch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Diagnosis:
    participation_ratio: float  # median over the sampled items
    top_direction_share: float  # median share of the variance on the first direction
    top_direction_corr_mean_h: float  # median |corr| of that coordinate with mean(h_u)
    attention_entropy: float | None  # mean row entropy / log(row length); None: no attention
    attention_max_weight: float | None
    permutation_sensitivity: float  # mean |Δ logit|, entries of h shuffled per user
    swap_sensitivity: float  # mean |Δ logit|, another user's h swapped in
    n_users: int
    n_items: int

    @property
    def permutation_ratio(self) -> float:
        return self.permutation_sensitivity / self.swap_sensitivity if self.swap_sensitivity > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "permutation_ratio": self.permutation_ratio}


def participation_ratio(x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(PR, share of the first direction, coordinates on it)`` of the rows of ``x`` (``[n, f]``)."""
    xc = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    lam = s**2
    total = lam.sum()
    if total <= 0:
        return 1.0, 1.0, np.zeros(len(x))
    return float(total**2 / (lam**2).sum()), float(lam[0] / total), u[:, 0] * s[0]


def _entropy(rows: torch.Tensor) -> tuple[float, float]:
    p = rows.reshape(-1, rows.shape[-1]).double().clamp_min(1e-30)
    ent = -(p * p.log()).sum(-1) / math.log(p.shape[-1])
    return float(ent.mean()), float(p.max(-1).values.mean())


def load_checkpoint(model: Any, path: Path, weights: str = "best") -> dict[str, Any]:
    """Load the weights of a fit's per-epoch checkpoint (``OUT/.checkpoints/...``) into ``model``,
    built with ``init_module`` on the split the fit trained on and with the fit's config.

    ``weights``: ``"best"`` (the best validation epoch's, what the record evaluates; the last
    epoch's when the fit had no validation) or ``"last"``. Returns what was loaded (file, weights,
    epoch, epochs run, whether the fit had finished: early-stopped or at its last epoch). A
    checkpoint of another model, or whose tensors do not fit the config, is a ``ValueError`` that
    says so.
    """
    from recbench import checkpoint

    if weights not in ("best", "last"):
        raise ValueError(f"weights {weights!r}: expected best or last")
    meta, groups = checkpoint.read(path)
    if meta.get("model") != model.name:
        raise ValueError(f"checkpoint {path} is of model {meta.get('model')!r}, not {model.name!r}")
    use_best = weights == "best" and meta.get("best") is not None and "best" in groups
    state = groups["best"] if use_best else groups["module"]
    try:
        model.module.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise ValueError(
            f"checkpoint {path} does not fit this {model.name} config ({first[0].strip()}); "
            "pass the fit's architecture with --set"
        ) from None
    model.invalidate_cache()
    model.module.eval()
    return {
        "checkpoint": str(path),
        "weights": "best" if use_best else "last",
        "epoch": int(meta["best"][1]) if use_best else int(meta["epoch"]),
        "epochs_run": int(meta["epoch"]),
        "fit_finished": bool(meta.get("stopped")) or int(meta["epoch"]) >= int(meta["epochs"]),
        "best_validation": None if meta.get("best") is None else float(meta["best"][0]),
    }


@torch.no_grad()
def diagnose(model: Any, n_items: int = 16, max_users: int = 1024, seed: int = 0) -> Diagnosis:
    """Measure the block of ``model`` (fitted, or built with ``init_module``)."""
    module = model.module
    if module is None or not hasattr(module, "pair_inputs") or not hasattr(module, "attended"):
        raise TypeError(
            f"{model.name}: diagnose needs a correlation-attention model (OPECI, CADNCF readings, outer-mlp)"
        )
    module.eval()
    gen = np.random.default_rng(seed)
    dev = model.device
    users = torch.from_numpy(np.sort(gen.choice(model.n_users, min(model.n_users, max_users), replace=False))).to(dev)
    items = torch.from_numpy(gen.choice(model.n_items, min(model.n_items, n_items), replace=False)).to(dev)
    n_u = len(users)
    prs, shares, corrs, ents, maxes, perm, swap = [], [], [], [], [], [], []
    other = torch.from_numpy((np.arange(n_u) + gen.integers(1, max(n_u, 2), n_u)) % n_u).to(dev)
    for j in items:
        h, z = module.pair_inputs(users, j.repeat(n_u))
        h, z = h.float(), z.float()
        x = module.attended(h, z).reshape(n_u, -1).float().cpu().numpy()
        pr, share, coord = participation_ratio(x)
        prs.append(pr)
        shares.append(share)
        mh = h.mean(1).cpu().numpy()
        corrs.append(abs(float(np.corrcoef(coord, mh)[0, 1])) if coord.std() > 0 and mh.std() > 0 else float("nan"))
        if hasattr(module, "attention_weights"):
            w = module.attention_weights(h, z)
            if w is not None:
                e, m = _entropy(w)
                ents.append(e)
                maxes.append(m)
        logits = module.head(module.attended(h, z)).float()
        perm_idx = torch.argsort(torch.from_numpy(gen.random(tuple(h.shape))).to(dev), dim=1)
        shuffled = torch.gather(h, 1, perm_idx)
        perm.append(float((module.head(module.attended(shuffled, z)).float() - logits).abs().mean()))
        swap.append(float((module.head(module.attended(h[other], z)).float() - logits).abs().mean()))
    return Diagnosis(
        participation_ratio=float(np.median(prs)),
        top_direction_share=float(np.median(shares)),
        top_direction_corr_mean_h=float(np.nanmedian(corrs)) if not all(np.isnan(corrs)) else float("nan"),
        attention_entropy=float(np.mean(ents)) if ents else None,
        attention_max_weight=float(np.mean(maxes)) if maxes else None,
        permutation_sensitivity=float(np.mean(perm)),
        swap_sensitivity=float(np.mean(swap)),
        n_users=n_u,
        n_items=len(items),
    )

"""NCF / NeuMF (He, Liao, Zhang, Nie, Hu and Chua, "Neural Collaborative Filtering", WWW 2017).

NeuMF fuses two branches with **separate** embeddings:

- GMF: ``φ_GMF = p^G_u ⊙ q^G_i`` (``embedding_size`` = the paper's "predictive factors", 8);
- MLP: ``z = [p^M_u ; q^M_i]`` through the tower ``mlp_layers`` = [64, 32, 16, 8] with ReLU,
  where the first entry is the width of the concatenated embeddings (32 per side) and the
  remaining ones are the hidden layers, exactly as in the authors' code;

concatenated into one output ``ŷ = σ(hᵀ [φ_GMF ; φ_MLP])``, trained with binary cross-entropy on
0/1 labels with 4 sampled negatives per positive (Adam, learning rate 1e-3, batch 256, no L2).

Optional pretraining (``pretrain=true``, the paper's best variant, Sec. 3.4.1): GMF and MLP are
first trained on their own by the same loop (Adam, ``epochs`` each), NeuMF is initialised from
them with ``h = [α·h_GMF ; (1−α)·h_MLP]`` (α = ``alpha`` = 0.5) and the output bias
``α·b_GMF + (1−α)·b_MLP``, and NeuMF is then trained with vanilla SGD (``sgd_learning_rate``
= 1e-3, the learning rate of the authors' run script).

Where we interpreted / implementation notes:

- Initialisation follows the authors' Keras code: embeddings N(0, 0.01²), dense layers LeCun
  uniform, zero biases.
- The GMF and MLP embeddings of a side live in one ``[n, embedding_size + mlp_layers[0]/2]``
  table whose column blocks are the two (still separate, never shared) embeddings: one lookup per
  side instead of two. This is the same function and the same gradients.
- Scores are the logits (monotone in ŷ, so rankings are identical).
- ``epochs`` = 20, the authors' run script; the paper reports the best iteration.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recbench.data.types import TrainData
from recbench.models.base import ConfigError, FitContext
from recbench.models.torch import TorchModel


@dataclass(frozen=True)
class NCFConfig:
    embedding_size: int = 8  # predictive factors: GMF embedding size
    mlp_layers: tuple[int, ...] = (64, 32, 16, 8)  # [concat width, hidden...]
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    reg: float = 0.0
    n_negatives: int = 4
    pretrain: bool = False
    alpha: float = 0.5
    sgd_learning_rate: float = 1e-3  # NeuMF's SGD learning rate after pretraining


def _lecun_uniform(layer: nn.Linear) -> None:
    bound = math.sqrt(3.0 / layer.in_features)
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.zeros_(layer.bias)


class NeuMFModule(nn.Module):
    """GMF and/or MLP branches. ``branches`` is ``"gmf"``, ``"mlp"`` or ``"neumf"``."""

    def __init__(self, n_users: int, n_items: int, factors: int, mlp_layers: tuple[int, ...], branches: str) -> None:
        super().__init__()
        if mlp_layers[0] % 2:
            raise ConfigError("ncf.mlp_layers[0] is the concatenated embedding width: must be even")
        self.branches = branches
        self.k = factors if branches in ("gmf", "neumf") else 0
        self.m = mlp_layers[0] // 2 if branches in ("mlp", "neumf") else 0
        width = self.k + self.m
        self.user = nn.Embedding(n_users, width)
        self.item = nn.Embedding(n_items, width)
        nn.init.normal_(self.user.weight, std=0.01)
        nn.init.normal_(self.item.weight, std=0.01)
        layers: list[nn.Module] = []
        if self.m:
            for a, b in itertools.pairwise(mlp_layers):
                lin = nn.Linear(a, b)
                _lecun_uniform(lin)
                layers += [lin, nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        out_in = self.k + (mlp_layers[-1] if self.m else 0)
        self.out = nn.Linear(out_in, 1)
        _lecun_uniform(self.out)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = self.user(users)
        i = self.item(items)
        k = self.k
        if self.branches == "gmf":
            h = u * i
        elif self.branches == "mlp":
            h = self.mlp(torch.cat((u, i), 1))
        else:
            h = torch.cat((u[:, :k] * i[:, :k], self.mlp(torch.cat((u[:, k:], i[:, k:]), 1))), 1)
        return self.out(h).squeeze(-1)


class NCF(TorchModel):
    """NeuMF (see the module docstring)."""

    summary: ClassVar[str] = "NeuMF: GMF and MLP branches on ID embeddings"
    paper: ClassVar[str] = "He et al., WWW 2017"

    name: ClassVar[str] = "ncf"
    Config: ClassVar[type] = NCFConfig
    branches: ClassVar[str] = "neumf"

    def __init__(self, config: Any | None = None) -> None:
        super().__init__(config)
        self._init_from: tuple[NeuMFModule, NeuMFModule] | None = None

    def build_module(self, train: TrainData) -> nn.Module:
        cfg = self.config
        mod = NeuMFModule(train.n_users, train.n_items, cfg.embedding_size, tuple(cfg.mlp_layers), self.branches)
        if self._init_from is not None:
            self._load_pretrained(mod, *self._init_from)
        return mod

    def _load_pretrained(self, mod: NeuMFModule, gmf: NeuMFModule, mlp: NeuMFModule) -> None:
        a = float(self.config.alpha)
        k = mod.k
        with torch.no_grad():
            mod.user.weight[:, :k] = gmf.user.weight.cpu()
            mod.item.weight[:, :k] = gmf.item.weight.cpu()
            mod.user.weight[:, k:] = mlp.user.weight.cpu()
            mod.item.weight[:, k:] = mlp.item.weight.cpu()
            mod.mlp.load_state_dict({n: t.cpu() for n, t in mlp.mlp.state_dict().items()})
            mod.out.weight[:, :k] = a * gmf.out.weight.cpu()
            mod.out.weight[:, k:] = (1 - a) * mlp.out.weight.cpu()
            mod.out.bias[:] = a * gmf.out.bias.cpu() + (1 - a) * mlp.out.bias.cpu()

    def optimizer(self) -> torch.optim.Optimizer:
        if self._init_from is None:
            return super().optimizer()
        assert self.module is not None
        return torch.optim.SGD(
            self.module.parameters(),
            lr=self.config.sgd_learning_rate,
            weight_decay=self.weight_decay(),
        )

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        self._init_from = None
        if self.branches == "neumf" and self.config.pretrain:
            ctx = ctx or FitContext()
            parts = []
            for cls in (GMF, MLP):
                sub_ctx = FitContext(device=ctx.device, on_batch=ctx.on_batch)
                sub = cls(dataclasses.replace(self.config, pretrain=False))
                sub.fit(train, rng, sub_ctx)
                # one summary entry per branch, so per-epoch consumers see NeuMF's epochs only
                ctx.history.append({"pretrain": cls.name, "history": sub_ctx.history})
                assert isinstance(sub.module, NeuMFModule)
                parts.append(sub.module)
            self._init_from = (parts[0], parts[1])
        try:
            super().fit(train, rng, ctx)
        finally:
            self._init_from = None


class GMF(NCF):
    """NCF's GMF branch alone (used to pretrain NeuMF; not registered)."""

    name: ClassVar[str] = "gmf"
    branches: ClassVar[str] = "gmf"


class MLP(NCF):
    """NCF's MLP branch alone (used to pretrain NeuMF; not registered)."""

    name: ClassVar[str] = "mlp"
    branches: ClassVar[str] = "mlp"

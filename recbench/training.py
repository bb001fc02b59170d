"""One training loop for every PyTorch model (NCF, DMF, CML, CADNCF, OPECI and variants).

A :class:`TorchModel` supplies its ``nn.Module`` and, when it needs more than a pointwise loss,
its own ``batch_loss``. The loop owns negative sampling (vectorised, fresh each epoch, never a
training positive of that user), Adam with L2, seeding, progress, per-epoch evaluation, early
stopping on the validation split and the NaN guard.

Two sampling modes:

- ``pointwise`` (NCF, DMF, CADNCF, OPECI): every positive plus ``n_negatives`` sampled negatives
  form the epoch's instances; they are shuffled and cut into batches of ``batch_size`` instances
  (the NCF papers' convention: one epoch of ml-100k with ratio 6 is ~700K samples). Targets are
  1 (``bce``) or ``rating / max(R)`` (``nce``) for a positive and 0 for a negative.
- ``pairwise`` (CML): batches of ``batch_size`` positives, each with its ``n_negatives``
  negatives, passed together to ``batch_loss``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbench import checkpoint
from recbench.checkpoint import CheckpointSpec
from recbench.data.types import TrainData
from recbench.models.base import BaseModel, FitContext, ModelError

EPS = 1e-7


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda requested but no CUDA device is available")
    return torch.device(device)


def sample_negatives(
    train: TrainData, users: np.ndarray, n_per_user: int, rng: np.random.Generator
) -> np.ndarray:
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


@dataclass
class _FitState:
    """The loop's state between epochs (saved in a checkpoint with the module and optimiser)."""

    epoch: int = 0  # last finished epoch
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (score, epoch, state)
    bad_epochs: int = 0
    stopped: bool = False  # early stopping triggered


@dataclass
class EpochInstances:
    users: np.ndarray
    items: np.ndarray
    targets: np.ndarray


class TorchModel(BaseModel):
    """Base class of the PyTorch models. Subclasses implement :meth:`build_module`, and may
    override :meth:`forward` (training predictions), :meth:`batch_loss` and
    :meth:`predict` (inference, e.g. with cached user/item factors).

    The config must carry ``epochs``, ``batch_size``, ``learning_rate``, ``reg`` and
    ``n_negatives``.

    ``reg`` is the papers' L2 penalty λ‖θ‖² on *all* parameters, added to the loss **summed**
    over a batch's instances (OPECI eq. 20; NCF, CML and DMF state theirs the same way). The loop
    minimises the batch *mean*, so the equivalent is a coupled decay of ``2λ / batch_size`` in
    the optimiser (:meth:`weight_decay`). Revision 1 of the models passed λ itself as Adam's
    weight decay: 2·256/2 = 256× the paper's strength at batch 256, which shrank OPECI's
    embeddings and projections every step (issue 13); records of that revision keep their label.
    """

    sampling: ClassVar[Literal["pointwise", "pairwise"]] = "pointwise"
    target: ClassVar[Literal["bce", "nce"]] = "bce"
    output: ClassVar[Literal["logit", "prob"]] = "logit"
    inference_batch: ClassVar[int] = 65_536
    # On CPU a 65,536-pair batch's activations leave the cache: NCF's full ranking took 2.90 s at
    # 65,536 and 1.41 s at 1,024-2,048 pairs (results/bench/README.md).
    cpu_inference_batch: ClassVar[int] = 2_048

    def __init__(self, config: Any | None = None) -> None:
        super().__init__(config)
        self.module: nn.Module | None = None
        self.device = torch.device("cpu")
        self.max_rating = 1.0

    # ------------------------------------------------------------------ to override
    def build_module(self, train: TrainData) -> nn.Module:
        raise NotImplementedError

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Training-time prediction for pairs (a logit or a probability, see ``output``)."""
        assert self.module is not None
        return self.module(users, items)

    def pointwise_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.output == "logit":
            return F.binary_cross_entropy_with_logits(pred, target)
        p = pred.clamp(EPS, 1.0 - EPS)
        return -(target * torch.log(p) + (1.0 - target) * torch.log1p(-p)).mean()

    def batch_loss(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of one batch. Pointwise: ``negatives`` is None and ``items``/``targets`` hold
        positives and negatives mixed. Pairwise: ``items`` are positives, ``negatives`` is
        ``batch × n_negatives``."""
        return self.pointwise_loss(self.forward(users, items), targets)

    def after_step(self) -> None:
        """Hook after each optimiser step (CML clips embeddings to the unit ball here)."""

    def after_epoch(self, train: TrainData, rng: np.random.Generator) -> None:
        """Hook after each epoch's last step, before any evaluation; counted in the epoch's
        seconds (OPECI re-estimates its batch-norm statistics here)."""

    def invalidate_cache(self) -> None:
        """Called whenever parameters are about to change (start of every epoch)."""

    @torch.no_grad()
    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Inference scores for pairs; higher is better. Default: the training forward."""
        return self.forward(users, items)

    @classmethod
    def revision_of(cls, config: Any) -> int:
        """Revision 2 changed what ``reg`` means (see the class docstring); a config with
        ``reg = 0`` trains exactly as in revision 1."""
        return max(cls.revision, 2 if float(getattr(config, "reg", 0.0) or 0.0) != 0.0 else 1)

    def weight_decay(self) -> float:
        """The optimiser's coupled L2 decay equivalent to λ‖θ‖² on the batch's summed loss."""
        return 2.0 * float(self.config.reg) / int(self.config.batch_size)

    # ------------------------------------------------------------------ the loop
    def optimizer(self) -> torch.optim.Optimizer:
        assert self.module is not None
        params = [p for p in self.module.parameters() if p.requires_grad]
        # The fused kernel (one pass over all parameters, CPU and CUDA) is ~5x cheaper per step
        # than the per-tensor loop for these small models, where the optimiser step otherwise
        # dominates a batch of 256 (NCF on ml-100k: 0.64 → 0.12 ms of a 1.2 → 0.7 ms step).
        fused = self.device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
        return torch.optim.Adam(
            params, lr=self.config.learning_rate, weight_decay=self.weight_decay(), fused=fused or None
        )

    def epoch_instances(self, train: TrainData, rng: np.random.Generator) -> EpochInstances:
        """Pointwise instances for one epoch: positives and fresh negatives, shuffled."""
        n_neg = int(self.config.n_negatives)
        negs = sample_negatives(train, train.users, n_neg, rng)
        pos_t = (
            np.ones(len(train), np.float32)
            if self.target == "bce"
            else (train.ratings / self.max_rating).astype(np.float32)
        )
        if getattr(self.config, "group_negatives", False):
            # RecBole's layout: shuffled positives, each followed by its own negatives, so a
            # batch holds batch_size / (1 + n_neg) positives and their users (fewer distinct
            # users per batch: DMF's user tower runs once per distinct user).
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

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        ctx = ctx or FitContext()
        cfg = self.config
        self.n_users, self.n_items = train.n_users, train.n_items
        self.max_rating = train.max_rating
        self.device = resolve_device(ctx.device)
        saved = self._read_checkpoint(ctx.checkpoint)
        rng_at_start = copy.deepcopy(rng.bit_generator.state)
        opt = self._setup(train, rng)
        state = _FitState()
        if saved is not None:
            assert ctx.checkpoint is not None
            try:
                state = self._restore(saved, opt, rng, ctx)
            except Exception as e:  # another architecture, a damaged state: start afresh
                ctx.checkpoint.notify(
                    f"warning: checkpoint {ctx.checkpoint.path} does not fit this model "
                    f"({type(e).__name__}: {e}); {ctx.checkpoint.label} starts at epoch 1"
                )
                rng.bit_generator.state = rng_at_start
                ctx.history.clear()
                opt = self._setup(train, rng)
                state = _FitState()
        epochs = int(cfg.epochs)
        for epoch in range(state.epoch + 1, epochs + 1):
            if state.stopped:
                break
            self.invalidate_cache()
            self.module.train()
            t0 = time.perf_counter()
            loss_sum, n_batches, n_samples = self._run_epoch(train, rng, opt, epoch, ctx)
            self.after_epoch(train, rng)
            seconds = time.perf_counter() - t0
            info: dict[str, Any] = {
                "epoch": epoch,
                "loss": loss_sum / max(n_batches, 1),
                "seconds": seconds,
                "samples": n_samples,
                "samples_per_s": n_samples / seconds if seconds > 0 else float("nan"),
            }
            self.invalidate_cache()
            want_eval = ctx.evaluate is not None and (
                (ctx.eval_every and epoch % ctx.eval_every == 0) or ctx.early_stopping_patience
            )
            if want_eval:
                assert ctx.evaluate is not None
                self.module.eval()
                if ctx.eval_every and epoch % ctx.eval_every == 0:
                    info["test"] = ctx.evaluate(self, "test")
                if ctx.early_stopping_patience:
                    val = ctx.evaluate(self, "validation")
                    info["validation"] = val
                    score = float(val[ctx.early_stopping_metric])
                    if state.best is None or score > state.best[0]:
                        snapshot = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
                        state.best, state.bad_epochs = (score, epoch, snapshot), 0
                    else:
                        state.bad_epochs += 1
            ctx.history.append(info)
            state.epoch = epoch
            state.stopped = bool(ctx.early_stopping_patience and state.bad_epochs >= ctx.early_stopping_patience)
            if ctx.checkpoint is not None and ctx.checkpoint.due(epoch, last=epoch == epochs or state.stopped):
                self._write_checkpoint(ctx, opt, rng, state)
            if ctx.on_epoch is not None:
                ctx.on_epoch(info)
        if state.best is not None:
            self.module.load_state_dict(state.best[2])
            ctx.history.append({"best_epoch": state.best[1], "best_validation": state.best[0]})
        self.invalidate_cache()
        self.module.eval()

    def init_module(self, train: TrainData, rng: np.random.Generator, device: str = "cpu") -> None:
        """Build the untrained module as ``fit`` would (for diagnostics of a fresh model)."""
        self.n_users, self.n_items = train.n_users, train.n_items
        self.max_rating = train.max_rating
        self.device = resolve_device(device)
        self._setup(train, rng)
        assert self.module is not None
        self.module.eval()

    def _setup(self, train: TrainData, rng: np.random.Generator) -> torch.optim.Optimizer:
        """Seed torch from ``rng``, build the module and its optimiser (the start of every fit)."""
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        self.module = self.build_module(train).to(self.device)
        return self.optimizer()

    # ------------------------------------------------------------------ checkpoints
    def _read_checkpoint(self, spec: CheckpointSpec | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The cell's checkpoint, or None (absent; or unusable, with a one-line warning)."""
        if spec is None or not spec.path.exists():
            return None
        try:
            meta, groups = checkpoint.read(spec.path)
            if meta.get("key") != spec.key or meta.get("model") != self.name:
                raise checkpoint.CheckpointError(f"belongs to another cell ({meta.get('model')}, key {meta.get('key')})")
        except checkpoint.CheckpointError as e:
            spec.notify(f"warning: ignoring checkpoint {spec.path}: {e}; {spec.label} starts at epoch 1")
            return None
        return meta, groups

    def _write_checkpoint(
        self, ctx: FitContext, opt: torch.optim.Optimizer, rng: np.random.Generator, state: _FitState
    ) -> None:
        assert ctx.checkpoint is not None and self.module is not None
        rng_meta, rng_tensors = checkpoint.rng_states(rng)
        opt_meta, opt_tensors = checkpoint.optimizer_state(opt)
        meta = {
            "key": ctx.checkpoint.key,
            "model": self.name,
            "epoch": state.epoch,
            "epochs": int(self.config.epochs),
            "stopped": state.stopped,
            "bad_epochs": state.bad_epochs,
            "best": None if state.best is None else [state.best[0], state.best[1]],
            "history": ctx.history,
            "rng": rng_meta,
            "optimizer": opt_meta,
        }
        groups = {"module": self.module.state_dict(), "optimizer": opt_tensors, "rng": rng_tensors}
        if state.best is not None:
            groups["best"] = state.best[2]
        checkpoint.write(ctx.checkpoint.path, meta, groups)

    def _restore(
        self,
        saved: tuple[dict[str, Any], dict[str, Any]],
        opt: torch.optim.Optimizer,
        rng: np.random.Generator,
        ctx: FitContext,
    ) -> _FitState:
        assert ctx.checkpoint is not None and self.module is not None
        meta, groups = saved
        self.module.load_state_dict(groups["module"])
        checkpoint.load_optimizer_state(opt, meta["optimizer"], groups["optimizer"])
        checkpoint.set_rng_states(rng, meta["rng"], groups["rng"])
        best = None if meta["best"] is None else (float(meta["best"][0]), int(meta["best"][1]), groups["best"])
        state = _FitState(int(meta["epoch"]), best, int(meta["bad_epochs"]), bool(meta["stopped"]))
        ctx.history[:] = meta["history"]
        self.invalidate_cache()
        epochs = int(self.config.epochs)
        where = (
            f"after epoch {state.epoch}/{epochs} (training finished)"
            if state.stopped or state.epoch >= epochs
            else f"at epoch {state.epoch + 1}/{epochs}"
        )
        ctx.checkpoint.notify(f"resuming {ctx.checkpoint.label} {where}")
        ctx.resumed_from_epoch = state.epoch
        return state

    def _run_epoch(
        self,
        train: TrainData,
        rng: np.random.Generator,
        opt: torch.optim.Optimizer,
        epoch: int,
        ctx: FitContext,
    ) -> tuple[float, int, int]:
        bs = int(self.config.batch_size)
        dev = self.device
        loss_sum = torch.zeros((), device=dev)
        n_batches = 0
        if self.sampling == "pointwise":
            inst = self.epoch_instances(train, rng)
            users = torch.from_numpy(inst.users).to(dev)
            items = torch.from_numpy(inst.items).to(dev)
            targets = torch.from_numpy(inst.targets).to(dev)
            n = len(inst.users)
            if n % bs == 1:  # a batch of one breaks batch normalisation: drop that instance
                n -= 1
            for s in range(0, n, bs):
                loss = self.batch_loss(users[s : s + bs], items[s : s + bs], targets[s : s + bs])
                self._step(opt, loss, epoch, n_batches)
                loss_sum += loss.detach()
                n_batches += 1
                if ctx.on_batch is not None:
                    ctx.on_batch(min(s + bs, n), n)
            return float(loss_sum), n_batches, n
        # pairwise: batches of positives with their negatives
        n_neg = int(self.config.n_negatives)
        perm = rng.permutation(len(train))
        pu = train.users.astype(np.int64)[perm]
        pi = train.items.astype(np.int64)[perm]
        negs = sample_negatives(train, pu, n_neg, rng)
        users = torch.from_numpy(pu).to(dev)
        items = torch.from_numpy(pi).to(dev)
        negt = torch.from_numpy(negs).to(dev)
        ones = torch.ones(len(pu), device=dev)
        n = len(pu) - (1 if len(pu) % bs == 1 else 0)
        for s in range(0, n, bs):
            loss = self.batch_loss(users[s : s + bs], items[s : s + bs], ones[s : s + bs], negt[s : s + bs])
            self._step(opt, loss, epoch, n_batches)
            loss_sum += loss.detach()
            n_batches += 1
            if ctx.on_batch is not None:
                ctx.on_batch(min(s + bs, n), n)
        return float(loss_sum), n_batches, n * (1 + n_neg)

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, epoch: int, batch: int) -> None:
        if not torch.isfinite(loss):
            raise ModelError(
                f"{self.name}: loss is {loss.item()} at epoch {epoch}, batch {batch} "
                f"(diverged; try a smaller learning_rate than {self.config.learning_rate})"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.after_step()

    # ------------------------------------------------------------------ scoring
    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        assert self.module is not None
        self.module.eval()
        out = np.empty(len(users), dtype=np.float32)
        step = self.cpu_inference_batch if self.device.type == "cpu" else self.inference_batch
        with torch.no_grad():
            for s in range(0, len(users), step):
                u = torch.from_numpy(users[s : s + step]).to(self.device)
                i = torch.from_numpy(items[s : s + step]).to(self.device)
                out[s : s + len(u)] = self.predict(u, i).float().cpu().numpy()
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        assert self.module is not None
        return copy.deepcopy(self.module.state_dict())

"""The one training loop of the PyTorch models: :class:`Trainer`.

It owns what every model shares: seeding and building the module (through the model), the
optimiser, the epoch loop over the model's own batches, the NaN guard, progress, per-epoch
evaluation, early stopping on the validation split (restoring the best epoch's weights) and
per-epoch checkpoints (:mod:`recbench.checkpoint`) from which a killed fit resumes bit for bit.
The model supplies its module, loss and batches (:class:`Trainable`, implemented by
:class:`recbench.models.torch.TorchModel`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from recbench import checkpoint
from recbench.checkpoint import CheckpointSpec
from recbench.data.types import TrainData
from recbench.models.base import FitContext, ModelError
from recbench.models.sampling import Batches


class Trainable(Protocol):
    """What :class:`Trainer` needs of a model (:class:`recbench.models.torch.TorchModel`)."""

    name: str
    config: Any
    module: nn.Module | None

    def prepare(self, train: TrainData, device: str) -> None: ...
    def reset(self, train: TrainData, rng: np.random.Generator) -> None: ...
    def optimizer(self) -> torch.optim.Optimizer: ...
    def batches(self, train: TrainData, rng: np.random.Generator) -> Batches: ...
    def batch_loss(self, *batch: torch.Tensor) -> torch.Tensor: ...
    def after_step(self) -> None: ...
    def after_epoch(self, train: TrainData, rng: np.random.Generator) -> None: ...
    def invalidate_cache(self) -> None: ...


@dataclass
class FitState:
    """The loop's state between epochs (saved in a checkpoint with the module and optimiser)."""

    epoch: int = 0  # last finished epoch
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (score, epoch, state)
    bad_epochs: int = 0
    stopped: bool = False  # early stopping triggered


class Trainer:
    """Fits one model: ``Trainer(model, ctx).fit(train, rng)``.

    Per epoch: ``invalidate_cache``, train mode, every batch of ``model.batches(train, rng)``
    through ``batch_loss`` and an optimiser step (:meth:`step`), ``after_epoch``, then the
    evaluations ``ctx`` asks for, the history entry, a checkpoint when due and ``on_epoch``.
    ``rng`` is the fit's only source of randomness (torch is seeded from it)."""

    def __init__(self, model: Trainable, ctx: FitContext | None = None) -> None:
        self.model = model
        self.ctx = ctx or FitContext()
        self.opt: torch.optim.Optimizer | None = None
        self._finite: torch.Tensor | None = None  # on an accelerator: all losses finite so far

    # the NaN guard's period on an accelerator (on the CPU every step is checked)
    sync_every: int = 64

    @property
    def module(self) -> nn.Module:
        assert self.model.module is not None
        return self.model.module

    def fit(self, train: TrainData, rng: np.random.Generator) -> None:
        """Train ``model`` on ``train`` (resuming from ``ctx.checkpoint`` when it holds a usable
        state); leaves the model in eval mode with the best validation epoch's weights when
        early stopping is on."""
        model, ctx = self.model, self.ctx
        model.prepare(train, ctx.device)
        saved = self._read_checkpoint(ctx.checkpoint)
        rng_at_start = copy.deepcopy(rng.bit_generator.state)
        self.setup(train, rng)
        state = FitState()
        if saved is not None:
            assert ctx.checkpoint is not None
            try:
                state = self._restore(saved, rng)
            except Exception as e:  # another architecture, a damaged state: start afresh
                ctx.checkpoint.notify(
                    f"warning: checkpoint {ctx.checkpoint.path} does not fit this model "
                    f"({type(e).__name__}: {e}); {ctx.checkpoint.label} starts at epoch 1"
                )
                rng.bit_generator.state = rng_at_start
                ctx.history.clear()
                self.setup(train, rng)
                state = FitState()
        epochs = int(model.config.epochs)
        for epoch in range(state.epoch + 1, epochs + 1):
            if state.stopped:
                break
            info = self.run_epoch(train, rng, epoch)
            self._evaluate(epoch, info, state)
            ctx.history.append(info)
            state.epoch = epoch
            state.stopped = bool(ctx.early_stopping_patience and state.bad_epochs >= ctx.early_stopping_patience)
            if ctx.checkpoint is not None and ctx.checkpoint.due(epoch, last=epoch == epochs or state.stopped):
                self._write_checkpoint(rng, state)
            if ctx.on_epoch is not None:
                ctx.on_epoch(info)
        if state.best is not None:
            self.module.load_state_dict(state.best[2])
            ctx.history.append({"best_epoch": state.best[1], "best_validation": state.best[0]})
        model.invalidate_cache()
        self.module.eval()

    def setup(self, train: TrainData, rng: np.random.Generator) -> None:
        """Seed torch from ``rng``, build the module and its optimiser (the start of every fit)."""
        self.model.reset(train, rng)
        self.opt = self.model.optimizer()

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self, train: TrainData, rng: np.random.Generator, epoch: int) -> dict[str, Any]:
        """Train one epoch (``after_epoch`` included); its history entry without evaluations."""
        model, ctx = self.model, self.ctx
        model.invalidate_cache()
        self.module.train()
        t0 = time.perf_counter()
        loss_sum: torch.Tensor | None = None
        n_batches = 0
        batches = model.batches(train, rng)
        for batch in batches:
            loss = model.batch_loss(*batch)
            self.step(loss, epoch, n_batches)
            if loss_sum is None:
                loss_sum = torch.zeros((), device=loss.device)
            loss_sum += loss.detach()
            n_batches += 1
            if ctx.on_batch is not None:
                ctx.on_batch(batches.done, batches.total)
        if self._finite is not None and not bool(self._finite):
            self._diverged(f"loss became non-finite at epoch {epoch}")
        self._finite = None
        model.after_epoch(train, rng)
        seconds = time.perf_counter() - t0
        samples = batches.done
        model.invalidate_cache()
        return {
            "epoch": epoch,
            "loss": (0.0 if loss_sum is None else float(loss_sum)) / max(n_batches, 1),
            "seconds": seconds,
            "samples": samples,
            "samples_per_s": samples / seconds if seconds > 0 else float("nan"),
        }

    def step(self, loss: torch.Tensor, epoch: int = 0, batch: int = 0) -> None:
        """One optimiser step on ``loss`` (then ``after_step``); a non-finite loss raises
        :class:`ModelError` naming the epoch and batch (the NaN guard)."""
        assert self.opt is not None, "setup() builds the optimiser"
        if self.checks_every_step(loss):
            if not torch.isfinite(loss):
                self._diverged(f"loss is {loss.item()} at epoch {epoch}, batch {batch}")
        else:  # an accelerator: no host synchronisation per step; read the flag now and then
            finite = torch.isfinite(loss.detach())
            self._finite = finite if self._finite is None else self._finite & finite
            if batch % self.sync_every == self.sync_every - 1 and not bool(self._finite):
                first = batch - self.sync_every + 1
                self._diverged(f"loss became non-finite at epoch {epoch}, in batches {first}–{batch}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.after_step()

    def checks_every_step(self, loss: torch.Tensor) -> bool:
        """Read the loss on the host after every step (the CPU, where it costs nothing)?"""
        return loss.device.type == "cpu"

    def _diverged(self, what: str) -> None:
        raise ModelError(
            f"{self.model.name}: {what} (diverged; try a smaller learning_rate than {self.model.config.learning_rate})"
        )

    def _evaluate(self, epoch: int, info: dict[str, Any], state: FitState) -> None:
        """Test metrics every ``eval_every`` epochs (recorded only) and, with early stopping,
        validation metrics, which decide the best epoch."""
        ctx = self.ctx
        if ctx.evaluate is None or not (
            (ctx.eval_every and epoch % ctx.eval_every == 0) or ctx.early_stopping_patience
        ):
            return
        self.module.eval()
        if ctx.eval_every and epoch % ctx.eval_every == 0:
            info["test"] = ctx.evaluate(self.model, "test")
        if ctx.early_stopping_patience:
            val = ctx.evaluate(self.model, "validation")
            info["validation"] = val
            score = float(val[ctx.early_stopping_metric])
            if state.best is None or score > state.best[0]:
                snapshot = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
                state.best, state.bad_epochs = (score, epoch, snapshot), 0
            else:
                state.bad_epochs += 1

    # ------------------------------------------------------------------ checkpoints
    def _read_checkpoint(self, spec: CheckpointSpec | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The cell's checkpoint, or None (absent; or unusable, with a one-line warning)."""
        if spec is None or not spec.path.exists():
            return None
        try:
            meta, groups = checkpoint.read(spec.path)
            if meta.get("key") != spec.key or meta.get("model") != self.model.name:
                raise checkpoint.CheckpointError(
                    f"belongs to another cell ({meta.get('model')}, key {meta.get('key')})"
                )
        except checkpoint.CheckpointError as e:
            spec.notify(f"warning: ignoring checkpoint {spec.path}: {e}; {spec.label} starts at epoch 1")
            return None
        return meta, groups

    def _write_checkpoint(self, rng: np.random.Generator, state: FitState) -> None:
        ctx = self.ctx
        assert ctx.checkpoint is not None and self.opt is not None
        rng_meta, rng_tensors = checkpoint.rng_states(rng)
        opt_meta, opt_tensors = checkpoint.optimizer_state(self.opt)
        meta = {
            "key": ctx.checkpoint.key,
            "model": self.model.name,
            "epoch": state.epoch,
            "epochs": int(self.model.config.epochs),
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

    def _restore(self, saved: tuple[dict[str, Any], dict[str, Any]], rng: np.random.Generator) -> FitState:
        ctx = self.ctx
        assert ctx.checkpoint is not None and self.opt is not None
        meta, groups = saved
        self.module.load_state_dict(groups["module"])
        checkpoint.load_optimizer_state(self.opt, meta["optimizer"], groups["optimizer"])
        checkpoint.set_rng_states(rng, meta["rng"], groups["rng"])
        best = None if meta["best"] is None else (float(meta["best"][0]), int(meta["best"][1]), groups["best"])
        state = FitState(int(meta["epoch"]), best, int(meta["bad_epochs"]), bool(meta["stopped"]))
        ctx.history[:] = meta["history"]
        self.model.invalidate_cache()
        epochs = int(self.model.config.epochs)
        where = (
            f"after epoch {state.epoch}/{epochs} (training finished)"
            if state.stopped or state.epoch >= epochs
            else f"at epoch {state.epoch + 1}/{epochs}"
        )
        ctx.checkpoint.notify(f"resuming {ctx.checkpoint.label} {where}")
        ctx.resumed_from_epoch = state.epoch
        return state

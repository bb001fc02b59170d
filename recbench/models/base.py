"""The one model interface every recommender implements (OPECI and all baselines).

A model is built from a frozen, typed config holding its paper's defaults, trained with
``fit(train, rng, ctx)`` and asked only for scores: ranking, filtering seen items and candidate
lists are the evaluator's job (written once, in :mod:`recbench.eval.evaluator`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from recbench.data.types import TrainData


class ModelError(RuntimeError):
    """A model failed in a way the run should record (e.g. a NaN loss) and move past."""


class ConfigError(ValueError):
    """A bad configuration value or an unknown parameter; the message names valid choices."""


@dataclass
class FitContext:
    """What the runner hands to ``fit`` besides the data: device, progress and evaluation hooks.

    ``evaluate(model, split_role)`` returns metrics on ``"validation"`` or ``"test"``; the
    training loop calls it every ``eval_every`` epochs (test metrics are only *recorded* for
    the per-epoch curves; early stopping looks at validation only). Epoch summaries are appended
    to ``history``.
    """

    device: str = "cpu"
    eval_every: int = 0
    early_stopping_patience: int = 0  # 0: off; needs a validation split
    early_stopping_metric: str = "ndcg@10"
    evaluate: Callable[[Any, str], dict[str, float]] | None = None
    on_epoch: Callable[[dict[str, Any]], None] | None = None
    on_batch: Callable[[int, int], None] | None = None  # (done, total) within an epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    # per-epoch checkpoints (a ``recbench.checkpoint.CheckpointSpec``; models without epochs ignore it)
    checkpoint: Any = None
    resumed_from_epoch: int | None = None  # set by a fit that resumed from a checkpoint


@runtime_checkable
class Model(Protocol):
    """Every recommender: fit on training interactions, then score user–item pairs."""

    name: ClassVar[str]
    config: Any

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        """Train on ``train`` (never contains a test or validation item)."""
        ...

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores for the pairs ``(users[k], items[k])``, a float array of the same length.
        Higher is better. Raises ``IndexError`` for out-of-range ids."""
        ...

    def score_matrix(self, users: np.ndarray) -> np.ndarray:
        """Scores of ``users`` against all items: a ``len(users) × n_items`` float array."""
        ...


def as_ids(ids: Any, what: str) -> np.ndarray:
    """``ids`` as int64, refusing values that are not whole numbers (a float id such as 3.7 would
    otherwise be truncated to item 3 and scored silently)."""
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b" or (arr.dtype.kind != "f" and arr.size):
        raise TypeError(f"{what}: ids must be integers, got dtype {arr.dtype}")
    whole = np.isfinite(arr) & (arr == np.round(arr))
    if not whole.all():
        raise ValueError(f"{what}: ids must be whole numbers, got {arr[~whole].ravel()[0]}")
    return arr.astype(np.int64)


class BaseModel:
    """Shared plumbing: id checks and a default ``score_matrix`` built from ``score``.

    Subclasses set ``name``, ``Config`` and implement ``fit`` and ``_score`` (pairs, ids already
    validated); they may override ``_score_matrix`` when a faster whole-row path exists.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type]
    pair_batch: ClassVar[int] = 262_144
    summary: ClassVar[str] = ""  # one line for `recbench models`
    paper: ClassVar[str] = ""  # where the model comes from
    revision: ClassVar[int] = 1
    """Bumped when a change alters how a model trains for the same config: from revision 2 on it
    is part of the record key (records of older code are never reused as this code's) and a
    record of another revision is labelled ``model[revision=N]`` in reports."""

    @classmethod
    def revision_of(cls, config: Any) -> int:
        """The revision that applies to ``config`` (models may tie it to what a change touched)."""
        return cls.revision

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.n_users = 0
        self.n_items = 0

    def fit(self, train: TrainData, rng: np.random.Generator, ctx: FitContext | None = None) -> None:
        raise NotImplementedError

    def _check_ids(self, users: np.ndarray, items: np.ndarray | None = None) -> None:
        if self.n_users == 0:
            raise ModelError(f"{self.name}: score() called before fit()")
        u = np.asarray(users)
        if u.size and (u.min() < 0 or u.max() >= self.n_users):
            raise IndexError(f"{self.name}: user id out of range 0..{self.n_users - 1}")
        if items is not None:
            i = np.asarray(items)
            if i.size and (i.min() < 0 or i.max() >= self.n_items):
                raise IndexError(f"{self.name}: item id out of range 0..{self.n_items - 1}")

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users = as_ids(users, "users")
        items = as_ids(items, "items")
        if users.shape != items.shape:
            raise ValueError("users and items must have the same shape")
        self._check_ids(users, items)
        out = np.empty(users.shape, dtype=np.float32)
        fu, fi, fo = users.ravel(), items.ravel(), out.reshape(-1)
        for s in range(0, len(fu), self.pair_batch):
            fo[s : s + self.pair_batch] = self._score(fu[s : s + self.pair_batch], fi[s : s + self.pair_batch])
        return out

    def score_matrix(self, users: np.ndarray) -> np.ndarray:
        users = as_ids(users, "users")
        self._check_ids(users)
        return self._score_matrix(users)

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _score_matrix(self, users: np.ndarray) -> np.ndarray:
        uu = np.repeat(users, self.n_items)
        ii = np.tile(np.arange(self.n_items, dtype=np.int64), len(users))
        return self.score(uu, ii).reshape(len(users), self.n_items)


# ----------------------------------------------------------------------------- configs


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


EXECUTION: Mapping[str, Any] = types.MappingProxyType({"execution": True})
"""Field metadata: how a result is computed (a fast path: the same function, other float
rounding), never part of a record's key."""


def added_later(default: Any) -> Mapping[str, Any]:
    """Field metadata for a semantic option added after records were made: ``default`` is what
    those records ran (and must stay the field's default; a test pins it). The field is part of
    a record's key only when it holds another value, so the earlier records keep their keys."""
    return types.MappingProxyType({"added_later": True, "original": default})


def identity_config(config: Any) -> dict[str, Any]:
    """The config as part of a record's key: every field except those marked
    :data:`EXECUTION`, and those marked :func:`added_later` while they hold their original
    value (what the records made before the field existed ran)."""
    out = config_to_dict(config)
    for f in dataclasses.fields(config):
        if f.metadata.get("execution") or (f.metadata.get("added_later") and out.get(f.name) == f.metadata["original"]):
            out.pop(f.name, None)
    return out


def config_diff(config: Any) -> dict[str, Any]:
    """The fields of ``config`` that differ from its class's defaults."""
    defaults = type(config)()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(defaults, f.name)
    }


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a ``--set`` string (or a JSON value) to the field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot parse {value!r}")
    if origin is typing.Literal:
        for a in args:
            if str(a) == str(value):
                return a
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
    if origin in (tuple, list):
        parts = [p for p in value.strip("()[] ").split(",") if p.strip()] if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        conv = [_coerce(p.strip() if isinstance(p, str) else p, inner, where) for p in parts]
        return tuple(conv) if origin is tuple else conv
    if annotation is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if annotation is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if annotation is str:
        return str(value)
    raise ConfigError(f"{where}: unsupported type {annotation!r}")


def apply_overrides(config: Any, overrides: dict[str, Any], model_name: str = "") -> Any:
    """A copy of the frozen ``config`` with ``overrides`` applied, each converted to the field's
    type. Unknown names or ill-typed values raise :class:`ConfigError` naming the valid ones."""
    hints = typing.get_type_hints(type(config))
    valid = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, value in overrides.items():
        if key not in valid:
            raise ConfigError(
                f"unknown parameter {model_name + '.' if model_name else ''}{key}; valid: {', '.join(valid)}"
            )
        changes[key] = _coerce(value, hints[key], f"{model_name}.{key}" if model_name else key)
    return dataclasses.replace(config, **changes)


RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    # field: (low, high, low exclusive); the shared names of every model's config
    "epochs": (1, None, False),
    "batch_size": (1, None, False),
    "n_negatives": (1, None, False),
    "embedding_size": (1, None, False),
    "learning_rate": (0, None, True),
    "sgd_learning_rate": (0, None, True),
    "reg": (0, None, False),
    "n_heads": (1, None, False),
    "d_k": (1, None, False),
    "d_v": (1, None, False),
    "attention_hidden": (1, None, False),
    "precise_bn_batches": (0, None, False),
    "max_neighbors": (1, None, False),
    "margin": (0, None, False),
    "cov_weight": (0, None, False),
    "clip_norm": (0, None, True),
    "alpha": (0, 1, False),
    "init_std": (0, None, True),
    "qkv_init_std": (0, None, True),
    "threads": (1, None, False),
}
"""Valid ranges of config values, by field name (checked wherever a user's value enters)."""


def check_ranges(config: Any, model_name: str = "") -> None:
    """Raise :class:`ConfigError` naming the first field outside :data:`RANGES` (and any
    non-positive width in a tuple of layer sizes)."""
    prefix = f"{model_name}." if model_name else ""
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, tuple | list):
            if any(isinstance(x, int | float) and not isinstance(x, bool) and x < 1 for x in v):
                raise ConfigError(f"{prefix}{f.name}={v}: every layer size must be ≥ 1")
            continue
        if f.name not in RANGES or v is None or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        lo, hi, exclusive = RANGES[f.name]
        if v != v:  # NaN
            raise ConfigError(f"{prefix}{f.name}={v}: not a number")
        if lo is not None and (v <= lo if exclusive else v < lo):
            raise ConfigError(f"{prefix}{f.name}={v}: {f.name} must be {'>' if exclusive else '≥'} {lo:g}")
        if hi is not None and v > hi:
            raise ConfigError(f"{prefix}{f.name}={v}: {f.name} must be ≤ {hi:g}")


def config_from_dict(cls: type, values: dict[str, Any], model_name: str = "") -> Any:
    """Rebuild a config from a record's JSON dict (types checked like ``--set``)."""
    return apply_overrides(cls(), values, model_name)

"""How a record is named in a report: its model, the configuration it ran with and its revision.

A record describes itself: ``overrides`` holds the fields of its configuration that differed from
the model's defaults when it ran (written by :mod:`recbench.runner`; added to older records by
``benchmarks/add_record_overrides.py``), so a label never depends on today's defaults. Only a
record without ``overrides`` falls back to diffing its config against the current code's
defaults, which imports the models (and torch) on first use.

The revision part (``[revision=N]``) compares the record's stored revision with the model's
current one, read from :data:`MODEL_REVISIONS` (a test checks it against the model classes) so
that labelling needs no model import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from recbench.results import Record

Label = Callable[[Record], str]
"""A function naming a record in a report (one configuration, one column)."""

MODEL_REVISIONS: dict[str, tuple[int, bool]] = {
    "itempop": (1, False),
    "bpr": (1, False),
    "ncf": (1, True),
    "dmf": (1, True),
    "cml": (1, True),
    "cadncf": (2, True),
    "cadncf-mhsa": (2, True),
    "outer-mlp": (2, True),
    "opeci": (2, True),
    "opeci-res": (2, True),
    "opeci-inner": (2, True),
    "opeci-i": (2, True),
    "opeci-u": (2, True),
    "opeci-iu": (2, True),
    "opeci-res-inner": (2, True),
    "opeci-res-i": (2, True),
    "opeci-res-u": (2, True),
    "opeci-res-iu": (2, True),
}
"""Every registered model in the registry's order: ``(revision, reg rule)``. With the reg rule
(:meth:`recbench.models.torch.TorchModel.revision_of`) a config with ``reg != 0`` is at least
revision 2. ``tests/test_report_labels.py`` checks this table against ``recbench.registry``."""

PAPER_ORDER = ["bpr", "dmf", "itempop", "ncf", "cml", "cadncf", "opeci"]


def current_revision(model: str, config: dict[str, Any]) -> int | None:
    """The revision today's code gives ``model`` at ``config``; None for a model it does not know."""
    if model not in MODEL_REVISIONS:
        return None
    revision, reg_rule = MODEL_REVISIONS[model]
    if not reg_rule:
        return revision
    try:
        reg = float(config.get("reg", 0.0) or 0.0)
    except (TypeError, ValueError):
        return revision
    return max(revision, 2 if reg != 0.0 else 1)


def _jsonable(value: Any) -> Any:
    """``value`` as a record stores it (a tuple reads back from JSON as a list)."""
    return json.loads(json.dumps(value, default=str))


def legacy_overrides(rec: Record) -> dict[str, Any]:
    """The overrides of a record that does not store them: its config diffed against the current
    code's defaults (imports the model registry, and torch, on first use). Fields the code no
    longer has are left out; a model the registry does not know has none."""
    from recbench.models.base import config_to_dict
    from recbench.registry import MODELS

    cls = MODELS.get(rec["model"])
    if cls is None:
        return {}
    defaults = _jsonable(config_to_dict(cls.Config()))
    return {k: v for k, v in rec["config"].items() if k in defaults and defaults[k] != _jsonable(v)}


def record_overrides(rec: Record) -> dict[str, Any]:
    """The configuration fields that differed from the model's defaults when ``rec`` ran: the
    stored ``overrides``, or (older records only) :func:`legacy_overrides`."""
    stored = rec.data.get("overrides")
    if isinstance(stored, dict):
        return stored
    return legacy_overrides(rec)


def format_value(v: Any) -> str:
    """A config value as labels show it (sequences as ``(a,b)``)."""
    if isinstance(v, list | tuple):
        return "(" + ",".join(map(str, v)) + ")"
    return str(v)


def model_label(rec: Record) -> str:
    """The model's name, plus the parameters that differed from its defaults when it ran, its
    revision when that is not today's and its float kernels when not native (e.g.
    ``opeci[epochs=2,revision=1]``, ``ncf[floats=portable]``)."""
    name = rec["model"]
    diff = dict(record_overrides(rec))
    revision = rec.data.get("revision", 1)
    current = current_revision(name, rec["config"])
    if current is not None and revision != current:
        diff["revision"] = revision
    if rec.data.get("floats", "native") != "native":  # other float kernels: other numbers (recbench.numerics)
        diff["floats"] = rec.data["floats"]
    if not diff:
        return name
    return name + "[" + ",".join(f"{k}={format_value(v)}" for k, v in sorted(diff.items())) + "]"


def record_label(rec: Record) -> str:
    """:func:`model_label`, with `` (tuned)`` for runs that used a stored tuned config."""
    tags = rec.data.get("tags") or {}
    return model_label(rec) + (" (tuned)" if tags.get("tuned") else "")


def base_label(rec: Record) -> str:
    """Just the model's registered name (for tables with one configuration per model and
    dataset, such as the ``table2`` experiment with per-dataset paper settings)."""
    return rec["model"]


def label_model(label: str) -> str:
    """The registered model name of a label (``"opeci[epochs=2] (tuned)"`` → ``"opeci"``)."""
    return label.split("[")[0].split(" (")[0]


def order_models(labels: Iterable[str]) -> list[str]:
    """Distinct labels in the paper's model order, then the registry's, then by name."""
    order = {m: i for i, m in enumerate([*PAPER_ORDER, *MODEL_REVISIONS])}
    return sorted(set(labels), key=lambda s: (order.get(label_model(s), 999), natural_key(s)))


def mark_defaults(labels: list[str]) -> list[str]:
    """``labels`` with a model's default configuration marked ``(defaults)`` where variants
    of that model stand beside it (``neg-ratio``: ``opeci (defaults)``, ``opeci[n_negatives=2]``)."""
    return [
        f"{c} (defaults)" if c == label_model(c) and any(o != c and label_model(o) == c for o in labels) else c
        for c in labels
    ]


def natural_key(label: str) -> list[Any]:
    """Sort key that orders the numbers inside a label as numbers (``n_negatives=2`` before
    ``=10``), not as text."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", label)]

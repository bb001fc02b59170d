"""Every model, registered by its short name in one explicit dict.

``recbench run --models opeci,ncf,bpr`` looks names up here; nothing is found by guessing
import paths. Add a model to recbench by importing its class and adding one line. A model of
your own needs no edit of the package: name it as ``module:Class`` (``--models
mypkg.models:MyModel``; the module must be importable) or install it as an entry point of the
group ``recbench.models`` (``[project.entry-points."recbench.models"] mymodel =
"mypkg.models:MyModel"``); either is checked against the :class:`~recbench.models.base.Model`
protocol and then known by its ``name`` for the rest of the process. ``recbench.testing.ModelContract``
is the contract test to run on it.
"""

from __future__ import annotations

import dataclasses
import importlib
from importlib import metadata

from baselines.bpr import BPR
from baselines.cadncf import CADNCF, CADNCFMHSA, OuterMLP
from baselines.cml import CML
from baselines.dmf import DMF
from baselines.itempop import ItemPop
from baselines.ncf import NCF
from recbench.models.base import ConfigError, Model
from recbench.models.opeci import (
    OPECI,
    OPECIInner,
    OPECIMeanBoth,
    OPECIMeanItem,
    OPECIMeanUser,
    OPECIResidual,
    OPECIResInner,
    OPECIResMeanBoth,
    OPECIResMeanItem,
    OPECIResMeanUser,
)

MODELS: dict[str, type[Model]] = {
    "itempop": ItemPop,
    "bpr": BPR,
    "ncf": NCF,
    "dmf": DMF,
    "cml": CML,
    "cadncf": CADNCF,
    "cadncf-mhsa": CADNCFMHSA,
    "outer-mlp": OuterMLP,
    "opeci": OPECI,
    "opeci-res": OPECIResidual,
    "opeci-inner": OPECIInner,
    "opeci-i": OPECIMeanItem,
    "opeci-u": OPECIMeanUser,
    "opeci-iu": OPECIMeanBoth,
    "opeci-res-inner": OPECIResInner,
    "opeci-res-i": OPECIResMeanItem,
    "opeci-res-u": OPECIResMeanUser,
    "opeci-res-iu": OPECIResMeanBoth,
}


def get_model_class(name: str) -> type[Model]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    if name in MODELS:
        return MODELS[name]
    if name in PLUGINS:
        return PLUGINS[name]
    if ":" in name:
        return register_plugin(_import_class(name), name)
    for ep in metadata.entry_points(group="recbench.models"):
        if ep.name == name:
            return register_plugin(_import_class(ep.value), ep.value)
    raise ConfigError(f"unknown model {name!r}; valid: {', '.join([*MODELS, *PLUGINS])}, or MODULE:CLASS") from None


PLUGINS: dict[str, type[Model]] = {}
"""Models from outside the package, by name, once loaded (``module:Class`` or an entry point)."""


def _import_class(ref: str) -> type:
    module, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"model {ref!r}: cannot import it ({type(e).__name__}: {e})") from None
    if not isinstance(obj, type):
        raise ConfigError(f"model {ref!r} is not a class")
    return obj


def register_plugin(cls: type, ref: str) -> type[Model]:
    """Check ``cls`` against the model protocol and know it by its ``name``."""
    missing = [a for a in ("name", "Config", "fit", "score", "score_matrix") if not hasattr(cls, a)]
    if missing:
        raise ConfigError(
            f"model {ref!r} is not a recbench model: it has no {', '.join(missing)} (see recbench.models.base.Model)"
        )
    if not dataclasses.is_dataclass(cls.Config) or not cls.Config.__dataclass_params__.frozen:
        raise ConfigError(f"model {ref!r}: its Config must be a frozen dataclass")
    name = str(cls.name)
    if name in MODELS and MODELS[name] is not cls:
        raise ConfigError(f"model {ref!r} is named {name!r}, the name of a built-in model")
    cls.ref = ref  # type: ignore[attr-defined] - how a record finds it again
    PLUGINS[name] = cls
    return cls


def parse_model_list(spec: str | None) -> list[str]:
    """``"opeci,ncf,bpr"`` → names, validated; ``None``/empty → every registered model."""
    if not spec:
        return list(MODELS)
    names = [n.strip() if ":" in n else n.strip().lower() for n in spec.split(",") if n.strip()]
    names = [get_model_class(n).name if ":" in n else n for n in names]  # a plugin by its name
    for n in names:
        get_model_class(n)
    return list(dict.fromkeys(names))

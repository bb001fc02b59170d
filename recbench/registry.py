"""Every model, registered by its short name in one explicit dict.

``recbench run --models opeci,ncf,bpr`` looks names up here; nothing is found by guessing
import paths. Add a model by importing its class and adding one line.
"""

from __future__ import annotations

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
}


def get_model_class(name: str) -> type[Model]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(MODELS)}") from None


def parse_model_list(spec: str | None) -> list[str]:
    """``"opeci,ncf,bpr"`` → names, validated; ``None``/empty → every registered model."""
    if not spec:
        return list(MODELS)
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    for n in names:
        get_model_class(n)
    return list(dict.fromkeys(names))

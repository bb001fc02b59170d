"""The data layer: dataset registry, fetch, parsing, preprocessing, cache and splits."""

from recbench.data.api import load_dataset, load_split
from recbench.data.cache import (
    data_home,
    dataset_info,
    fetched_datasets,
    is_fetched,
)
from recbench.data.fetch import fetch
from recbench.data.registry import (
    ChecksumError,
    DatasetError,
    DatasetMismatch,
    DatasetNotFetched,
    DatasetSpec,
    DatasetWarning,
    ParseError,
    RegistryError,
    UnknownDataset,
    get_spec,
    load_registry,
)
from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.data.types import HeldOut, Interactions, Split, TrainData

__all__ = [
    "ChecksumError",
    "DatasetError",
    "DatasetMismatch",
    "DatasetNotFetched",
    "DatasetSpec",
    "DatasetWarning",
    "HeldOut",
    "Interactions",
    "ParseError",
    "RegistryError",
    "Split",
    "TrainData",
    "UnknownDataset",
    "data_home",
    "dataset_info",
    "fetch",
    "fetched_datasets",
    "get_spec",
    "is_fetched",
    "leave_one_out",
    "load_dataset",
    "load_registry",
    "load_split",
    "make_synthetic",
]

"""The dataset registry (``datasets.toml``) and the data layer's exceptions.

The canonical registry is ``datasets.toml`` at the repository root; the package ships the same
file as ``recbench/data/datasets.toml`` (a symlink in the source tree, a copy in a wheel). The
environment variable ``RECBENCH_DATASETS`` may name an extra TOML file whose tables are added to
(or override) the built-in ones, so a data set can be added without editing the package.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMN_NAMES",
    "ChecksumError",
    "DatasetError",
    "DatasetNotFetched",
    "DatasetSpec",
    "DatasetWarning",
    "ExpectedStats",
    "FormatSpec",
    "ParseError",
    "RegistryError",
    "UnknownDataset",
    "dataset_label",
    "get_spec",
    "load_registry",
    "registry_path",
]

COLUMN_NAMES = ("user", "item", "rating", "timestamp", "skip")
ARCHIVE_KINDS = ("zip", "file")
PARSERS = ("delimited",)
GENERATORS = ("synthetic",)
DEFAULT_MAX_UNPACKED = 2 * 1024**3


# --------------------------------------------------------------------------- exceptions


class DatasetError(ValueError):
    """Base class of every data-layer error; messages are one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class UnknownDataset(DatasetError):
    """A name that is not in the registry."""


class DatasetNotFetched(DatasetError):
    """The data set has not been fetched into the cache yet."""


class ChecksumError(DatasetError):
    """A downloaded or local file does not match its recorded checksum or size."""


class RegistryError(DatasetError):
    """A bad ``datasets.toml`` entry."""


class DatasetMismatch(DatasetError):
    """The parsed statistics differ from the registry's expected ones (and were not accepted)."""


class ParseError(DatasetError):
    """A ratings file that cannot be parsed; the message names the file and line."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None) -> None:
        self.file = file
        self.line = line
        super().__init__(message)


class DatasetWarning(UserWarning):
    """Something a user should know but that does not stop the data layer (e.g. stats mismatch)."""


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class FormatSpec:
    """How to parse a ratings file."""

    separator: str
    columns: tuple[str, ...]
    header: bool = False
    encoding: str = "utf-8"
    parser: str = "delimited"

    @property
    def has_rating(self) -> bool:
        return "rating" in self.columns

    @property
    def has_timestamp(self) -> bool:
        return "timestamp" in self.columns


@dataclass(frozen=True)
class ExpectedStats:
    """The statistics a parsed file is checked against (``ratings`` = rows before dedup)."""

    users: int | None = None
    items: int | None = None
    ratings: int | None = None
    tolerance: float = 0.0

    def mismatches(self, users: int, items: int, ratings: int) -> list[tuple[str, int, int]]:
        """``(what, expected, got)`` for every statistic outside the tolerance."""
        out = []
        for what, exp, got in (
            ("users", self.users, users),
            ("items", self.items, items),
            ("ratings", self.ratings, ratings),
        ):
            if exp is not None and abs(got - exp) > self.tolerance * exp:
                out.append((what, exp, got))
        return out


@dataclass(frozen=True)
class DatasetSpec:
    """One registry table."""

    name: str
    title: str
    rating_values: tuple[float, ...]
    timestamps: bool
    urls: tuple[str, ...] = ()
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    archive: str | None = None  # "zip" | "file" | None (generated)
    member: str | None = None
    format: FormatSpec | None = None
    expected: ExpectedStats | None = None
    license: str = ""
    citation: str = ""
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED
    generator: str | None = None
    params: tuple[tuple[str, Any], ...] = field(default=())
    label: str = ""  # short name in reports and figures (e.g. "ML-100K"); the name when empty

    @property
    def is_generated(self) -> bool:
        return self.generator is not None

    @property
    def filename(self) -> str:
        """Name the downloaded file is stored under."""
        if self.urls:
            base = self.urls[0].rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
            if base:
                return base
        return f"{self.name}.{'zip' if self.archive == 'zip' else 'data'}"

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)


# --------------------------------------------------------------------------- loading

_TOP_KEYS = {
    "title",
    "label",
    "urls",
    "url",
    "md5",
    "sha256",
    "size",
    "archive",
    "member",
    "format",
    "expected",
    "rating_values",
    "rating_scale",
    "timestamps",
    "license",
    "citation",
    "max_unpacked_bytes",
    "generator",
    "params",
}
_FORMAT_KEYS = {"parser", "separator", "columns", "header", "encoding"}
_EXPECTED_KEYS = {"users", "items", "ratings", "tolerance"}


def registry_path() -> Path:
    """The built-in ``datasets.toml``: the repository root's when running from a checkout, else
    the copy shipped in the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "datasets.toml", here / "datasets.toml"):
        if candidate.is_file():
            return candidate
    raise RegistryError(f"datasets.toml not found (looked in {here.parents[1]} and {here})")


class _Entry:
    """Typed access to one TOML table; every error names the dataset and field."""

    def __init__(self, source: str, name: str, table: dict[str, Any], prefix: str = "") -> None:
        self.source, self.name, self.table, self.prefix = source, name, table, prefix

    def fail(self, key: str, msg: str) -> RegistryError:
        return RegistryError(f"{self.source}: [{self.name}] {self.prefix}{key}: {msg}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown field; valid fields: {', '.join(sorted(allowed))}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                raise self.fail(key, "missing (required)")
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"expected {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def choice(
        self, key: str, choices: tuple[str, ...], default: str | None = None, *, required: bool = False
    ) -> str | None:
        value = self.get(key, str, default, required=required)
        if value is not None and value not in choices:
            raise self.fail(key, f"{value!r} is not one of: {', '.join(choices)}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _hex(e: _Entry, key: str, length: int) -> str | None:
    value = e.get(key, str)
    if value is None:
        return None
    value = value.strip().lower()
    if len(value) != length or any(c not in "0123456789abcdef" for c in value):
        raise e.fail(key, f"expected {length} hexadecimal digits, got {e.table[key]!r}")
    return value


def _rating_values(e: _Entry) -> tuple[float, ...]:
    if "rating_values" in e.table and "rating_scale" in e.table:
        raise e.fail("rating_values", "give either rating_values or rating_scale, not both")
    if "rating_values" in e.table:
        values = e.get("rating_values", list)
        if not values or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise e.fail("rating_values", f"expected a non-empty list of numbers, got {values!r}")
        return tuple(sorted({float(v) for v in values}))
    if "rating_scale" in e.table:
        scale = _Entry(e.source, e.name, e.get("rating_scale", dict), "rating_scale.")
        scale.check_keys({"min", "max", "step"})
        lo = float(scale.get("min", (int, float), required=True))
        hi = float(scale.get("max", (int, float), required=True))
        step = float(scale.get("step", (int, float), 1.0))
        if step <= 0 or hi < lo or (hi - lo) / step > 10_000:
            raise scale.fail("step", f"need step > 0 and min <= max (got {lo}, {hi}, {step})")
        n = round((hi - lo) / step)
        return tuple(round(lo + k * step, 10) for k in range(n + 1))
    raise e.fail("rating_values", "missing (give rating_values = [...] or rating_scale = {min, max, step})")


def _format(e: _Entry) -> FormatSpec:
    f = _Entry(e.source, e.name, e.get("format", dict, required=True), "format.")
    f.check_keys(_FORMAT_KEYS)
    parser = f.choice("parser", PARSERS, "delimited")
    sep = f.get("separator", str, required=True)
    if not sep or "\n" in sep or "\r" in sep:
        raise f.fail("separator", f"must be one or more characters other than newlines, got {sep!r}")
    cols = f.get("columns", list, required=True)
    for c in cols:
        if c not in COLUMN_NAMES:
            raise f.fail("columns", f"{c!r} is not one of: {', '.join(COLUMN_NAMES)}")
    named = [c for c in cols if c != "skip"]
    if len(named) != len(set(named)):
        raise f.fail("columns", f"a column name appears twice in {cols!r}")
    if "user" not in cols or "item" not in cols:
        raise f.fail("columns", f"must contain 'user' and 'item', got {cols!r}")
    encoding = f.get("encoding", str, "utf-8")
    try:
        "".encode(encoding)
    except LookupError:
        raise f.fail("encoding", f"unknown codec {encoding!r} (e.g. utf-8, latin-1)") from None
    return FormatSpec(
        separator=sep,
        columns=tuple(cols),
        header=f.get("header", bool, False),
        encoding=encoding,
        parser=parser or "delimited",
    )


def _expected(e: _Entry) -> ExpectedStats | None:
    table = e.get("expected", dict)
    if table is None:
        return None
    x = _Entry(e.source, e.name, table, "expected.")
    x.check_keys(_EXPECTED_KEYS)
    vals = {}
    for key in ("users", "items", "ratings"):
        v = x.get(key, int)
        if v is not None and v < 0:
            raise x.fail(key, f"must be >= 0, got {v}")
        vals[key] = v
    tol = float(x.get("tolerance", (int, float), 0.0))
    if not 0 <= tol < 1:
        raise x.fail("tolerance", f"must be in [0, 1), got {tol}")
    return ExpectedStats(**vals, tolerance=tol)


def _check_generator_params(e: _Entry, params: dict[str, Any]) -> None:
    """``[NAME.params]`` against the generator's signature: known names, right types."""
    import inspect

    from recbench.data.synthetic import make_synthetic

    sig = {n: p for n, p in inspect.signature(make_synthetic).parameters.items() if n != "name"}
    for key, value in params.items():
        if key not in sig:
            raise e.fail(f"params.{key}", f"unknown generator parameter; valid: {', '.join(sig)}")
        default = sig[key].default
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(value, type(default))
        elif isinstance(default, int):
            ok = isinstance(value, int) and value >= (0 if key == "seed" else 1)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and value > 0
        else:
            ok = True
        if not ok:
            kind = (
                "a positive integer"
                if isinstance(default, int) and key != "seed"
                else ("a non-negative integer" if isinstance(default, int) else "a positive number")
            )
            raise e.fail(f"params.{key}", f"expected {kind}, got {value!r}")


def parse_entry(name: str, table: Any, source: str = "datasets.toml") -> DatasetSpec:
    """Validate one registry table into a :class:`DatasetSpec`."""
    if not isinstance(table, dict):
        raise RegistryError(f"{source}: [{name}] must be a table, got {table!r}")
    e = _Entry(source, name, table)
    e.check_keys(_TOP_KEYS)
    common = dict(
        name=name,
        title=e.get("title", str, name),
        label=e.get("label", str, name),
        rating_values=_rating_values(e),
        timestamps=e.get("timestamps", bool, required=True),
        license=e.get("license", str, ""),
        citation=e.get("citation", str, ""),
        expected=_expected(e),
    )
    generator = e.choice("generator", GENERATORS)
    if generator is not None:
        params = e.get("params", dict, {})
        _check_generator_params(e, params)
        return DatasetSpec(**common, generator=generator, params=tuple(sorted(params.items())))

    if "url" in e.table and "urls" in e.table:
        raise e.fail("urls", "give either url or urls, not both")
    urls = [e.get("url", str)] if "url" in e.table else e.get("urls", list, [])
    if not all(isinstance(u, str) and u for u in urls):
        raise e.fail("urls", f"expected a list of URL strings, got {urls!r}")
    archive = e.choice("archive", ARCHIVE_KINDS, required=True)
    member = e.get("member", str, required=True)
    if not member or member.startswith("/") or ".." in member.replace("\\", "/").split("/"):
        raise e.fail("member", f"must be a relative path inside the archive, got {member!r}")
    fmt = _format(e)
    if fmt.has_timestamp != common["timestamps"]:
        raise e.fail(
            "timestamps",
            f"is {str(common['timestamps']).lower()} but format.columns "
            f"{'has' if fmt.has_timestamp else 'has no'} 'timestamp' column",
        )
    size = e.get("size", int)
    if size is not None and size <= 0:
        raise e.fail("size", f"must be a positive number of bytes, got {size}")
    max_unpacked = e.get("max_unpacked_bytes", int, DEFAULT_MAX_UNPACKED)
    if max_unpacked <= 0:
        raise e.fail("max_unpacked_bytes", f"must be positive, got {max_unpacked}")
    return DatasetSpec(
        **common,
        urls=tuple(urls),
        md5=_hex(e, "md5", 32),
        sha256=_hex(e, "sha256", 64),
        size=size,
        archive=archive,
        member=member,
        format=fmt,
        max_unpacked_bytes=max_unpacked,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise RegistryError(f"registry file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: invalid TOML: {exc}") from None


def load_registry(path: Path | None = None) -> dict[str, DatasetSpec]:
    """All data sets of the registry, by name.

    ``path`` given: only that file. Otherwise the built-in ``datasets.toml`` plus, when the
    environment variable ``RECBENCH_DATASETS`` names a file, its tables (added or overriding).
    A bad entry raises :class:`RegistryError` naming the field and the valid choices.
    """
    files = [Path(path)] if path is not None else [registry_path()]
    if path is None and os.environ.get("RECBENCH_DATASETS"):
        files.append(Path(os.environ["RECBENCH_DATASETS"]))
    specs: dict[str, DatasetSpec] = {}
    for f in files:
        for name, table in _read_toml(f).items():
            specs[name] = parse_entry(name, table, source=f.name)
    return specs


def get_spec(name: str, registry: dict[str, DatasetSpec] | None = None) -> DatasetSpec:
    """The spec of ``name``, or :class:`UnknownDataset` listing the valid names."""
    registry = load_registry() if registry is None else registry
    if name not in registry:
        raise UnknownDataset(f"unknown dataset {name!r}; valid names: {', '.join(registry)}")
    return registry[name]


_LABELS: dict[str, dict[str, str]] = {}  # by RECBENCH_DATASETS (the built-in file does not move)


def dataset_label(name: str) -> str:
    """The short name reports and figures show for data set ``name`` (its registry ``label``,
    e.g. ``"ML-100K"``); ``name`` itself for a name the registry does not know (or a derived
    one such as ``"ml-100k · split 1"``) or when the registry cannot be read."""
    key = os.environ.get("RECBENCH_DATASETS", "")
    labels = _LABELS.get(key)
    if labels is None:
        try:
            labels = {n: spec.label or n for n, spec in load_registry().items()}
        except DatasetError:
            labels = {}
        _LABELS[key] = labels
    return labels.get(name, name)

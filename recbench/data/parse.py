"""Fast, strict parsing of delimited ratings files.

The fast path is pyarrow's multi-threaded C++ CSV reader (a multi-character separator such as
MovieLens-1M's ``::`` is first replaced by a single control byte; pandas' python engine is never
used). Anything the fast path rejects, and any value outside the declared rating scale, is then
located by a line-by-line scanner so that the :class:`ParseError` names the file and the line.

Documented handling: empty lines are skipped; ``\\n``, ``\\r\\n`` and ``\\r`` all end a line;
whitespace around values is ignored; no quoting. User and item ids are taken as the file gives
them: integers when every id of the column is an integer, otherwise strings. Ratings must be
numbers inside the declared scale; timestamps must be integers.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recbench.data.registry import FormatSpec, ParseError

__all__ = ["ParsedRatings", "parse_bytes", "parse_file"]

_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"-?\d{1,19}")
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")
_SEP_SUBSTITUTES = (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x01", b"\x02")
_SCALE_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class ParsedRatings:
    """The rows of a ratings file, in file order, with ids factorised.

    ``user_codes[k]`` indexes ``user_ids`` (the sorted distinct original ids, int64 or str).
    """

    file: str
    user_codes: np.ndarray  # int32
    item_codes: np.ndarray  # int32
    user_ids: np.ndarray  # int64 or unicode
    item_ids: np.ndarray
    ratings: np.ndarray  # float32
    timestamps: np.ndarray | None  # int64

    def __len__(self) -> int:
        return len(self.user_codes)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def parse_file(
    path: Path | str, fmt: FormatSpec, rating_values: tuple[float, ...], name: str | None = None
) -> ParsedRatings:
    """Parse the ratings file at ``path`` (see :func:`parse_bytes`)."""
    path = Path(path)
    return parse_bytes(path.read_bytes(), fmt, rating_values, file=name or str(path))


def parse_bytes(data: bytes, fmt: FormatSpec, rating_values: tuple[float, ...], file: str = "<data>") -> ParsedRatings:
    """Parse a ratings file's bytes; :class:`ParseError` (file and line) on anything malformed."""
    if fmt.parser != "delimited":  # pragma: no cover - the registry allows only this one
        raise ParseError(f"{file}: unsupported parser {fmt.parser!r}", file=file)
    scale = np.asarray(sorted(rating_values), dtype=np.float64)
    try:
        try:  # integer ids (MovieLens & co.): the fastest path
            table = _read_fast(data, fmt, id_type=pa.int64())
        except pa.ArrowInvalid:
            table = _read_fast(data, fmt, id_type=pa.string())
    except (pa.ArrowException, UnicodeError, _FastPathFailed) as exc:
        raise _locate(data, fmt, scale, file, reason=str(exc)) from None
    if table.num_rows == 0:
        raise ParseError(f"{file}: no rating rows (empty file)", file=file)
    try:
        return _convert(table, fmt, scale, file)
    except _FastPathFailed as exc:
        raise _locate(data, fmt, scale, file, reason=str(exc)) from None


class _FastPathFailed(Exception):
    pass


def _read_fast(data: bytes, fmt: FormatSpec, id_type: pa.DataType) -> pa.Table:
    if not data.isascii():
        text = data.decode(fmt.encoding)  # UnicodeError -> located by the scanner
        if fmt.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            data = text.encode("utf-8")
    sep = fmt.separator.encode("utf-8")
    if len(sep) == 1:
        delimiter = fmt.separator
    else:
        sub = next((s for s in _SEP_SUBSTITUTES if s not in data), None)
        if sub is None:
            raise _FastPathFailed("no free byte to stand in for the separator")
        data = data.replace(sep, sub)
        delimiter = sub.decode()
    if not data.strip(b"\r\n"):
        return pa.table({c: pa.array([], pa.string()) for c in ("user", "item")})
    names = [f"{c}#{k}" if c == "skip" else c for k, c in enumerate(fmt.columns)]
    types = {"user": id_type, "item": id_type, "rating": pa.float64(), "timestamp": pa.int64()}
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(
            column_names=names, skip_rows=int(fmt.header), use_threads=True, block_size=1 << 22
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char=False,
            escape_char=False,
            double_quote=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={c: types[c] for c in names if c in types},
            include_columns=[c for c in names if c in types],
            null_values=[],
            true_values=[],
            false_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _numpy(col: pa.ChunkedArray, dtype: type) -> np.ndarray:
    """A fixed-width column as a numpy array, straight from the Arrow buffers (``to_numpy``
    would import pandas, which costs more than the whole parse of ml-100k)."""
    size = np.dtype(dtype).itemsize
    parts = []
    for c in col.chunks:
        if c.null_count:
            raise _FastPathFailed("missing value")
        parts.append(np.frombuffer(c.buffers()[1], dtype=dtype, count=len(c), offset=c.offset * size))
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _factorize(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ids and each row's index into them; integers when all ids are."""
    if pa.types.is_integer(col.type):
        return _factorize_ints(_numpy(col, np.int64))
    col = pc.utf8_trim_whitespace(col)
    if pc.any(pc.equal(pc.utf8_length(col), 0)).as_py():
        raise _FastPathFailed("empty id")
    try:
        ints = pc.cast(col, pa.int64()).to_numpy()
    except pa.ArrowException:
        uniq = pc.unique(col)
        uniq = uniq.take(pc.sort_indices(uniq))
        codes = pc.index_in(col, value_set=uniq).to_numpy().astype(np.int32)
        return uniq.to_numpy(zero_copy_only=False).astype(str), codes
    return _factorize_ints(ints)


def _factorize_ints(ints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ints, return_inverse=True)``, in O(n) when the ids span a small range."""
    lo, hi = int(ints.min()), int(ints.max())
    if hi - lo <= 4 * len(ints) + 1_000_000:
        present = np.zeros(hi - lo + 1, dtype=bool)
        offset = ints - lo
        present[offset] = True
        uniq = np.flatnonzero(present) + lo
        lookup = np.cumsum(present, dtype=np.int64) - 1
        return uniq.astype(np.int64), lookup[offset].astype(np.int32)
    uniq, codes = np.unique(ints, return_inverse=True)
    return uniq.astype(np.int64), codes.astype(np.int32)


def _convert(table: pa.Table, fmt: FormatSpec, scale: np.ndarray, file: str) -> ParsedRatings:
    user_ids, user_codes = _factorize(table.column("user"))
    item_ids, item_codes = _factorize(table.column("item"))
    n = table.num_rows
    if fmt.has_rating:
        r = _numpy(table.column("rating"), np.float64)
        bad = _outside_scale(r, scale)
        if bad.any():
            raise _FastPathFailed(f"rating {r[np.argmax(bad)]!r} outside the scale")
        ratings = r.astype(np.float32)
    else:
        ratings = np.ones(n, dtype=np.float32)
    ts = _numpy(table.column("timestamp"), np.int64) if fmt.has_timestamp else None
    return ParsedRatings(
        file=file,
        user_codes=user_codes,
        item_codes=item_codes,
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=ratings,
        timestamps=ts,
    )


def _outside_scale(r: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Boolean mask of values that are not (within 1e-6) one of the declared rating values."""
    r = np.asarray(r, dtype=np.float64)
    pos = np.clip(np.searchsorted(scale, r), 1, len(scale) - 1) if len(scale) > 1 else np.zeros(r.shape, dtype=np.int64)
    near = np.minimum(np.abs(r - scale[pos]), np.abs(r - scale[np.maximum(pos - 1, 0)]))
    return ~(near <= _SCALE_TOL)  # NaN -> True


def _scale_text(scale: np.ndarray) -> str:
    vals = [f"{v:g}" for v in scale]
    return ", ".join(vals) if len(vals) <= 10 else f"{vals[0]} .. {vals[-1]}"


def _locate(data: bytes, fmt: FormatSpec, scale: np.ndarray, file: str, reason: str) -> ParseError:
    """Scan ``data`` line by line and describe the first bad line (only on the error path)."""

    def err(line: int, msg: str) -> ParseError:
        return ParseError(f"{file}, line {line}: {msg}", file=file, line=line)

    try:
        text = data.decode(fmt.encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return err(line, f"not valid {fmt.encoding} text (byte {exc.start})")
    ncols = len(fmt.columns)
    sep = fmt.separator
    seen_row = False
    for lineno, line in enumerate(_LINE_SPLIT.split(text), start=1):
        if fmt.header and lineno == 1:
            continue
        if line == "":
            continue
        seen_row = True
        fields = line.split(sep)
        if len(fields) != ncols:
            hint = " (wrong separator?)" if len(fields) == 1 else ""
            return err(
                lineno, f"expected {ncols} fields separated by {sep!r}, found {len(fields)}{hint}: {line[:80]!r}"
            )
        for col, raw in zip(fmt.columns, fields, strict=True):
            value = raw.strip()
            if col in ("user", "item") and not value:
                return err(lineno, f"empty {col} id")
            if col == "rating":
                if not _FLOAT_RE.fullmatch(value):
                    return err(lineno, f"rating {value[:40]!r} is not a number")
                if _outside_scale(np.array([float(value)]), scale)[0]:
                    return err(lineno, f"rating {value} is outside the declared scale ({_scale_text(scale)})")
            if col == "timestamp" and not (_INT_RE.fullmatch(value) and -(2**63) <= int(value) < 2**63):
                return err(lineno, f"timestamp {value[:40]!r} is not an integer")
    if not seen_row:
        return ParseError(f"{file}: no rating rows (empty file)", file=file)
    first = reason.strip().splitlines()[0][:200] if reason.strip() else "unknown error"
    return ParseError(f"{file}: cannot parse ({first})", file=file)

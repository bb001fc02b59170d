"""Bad input to the parsers: clear errors naming the line, or documented handling; fuzzed.

Documented handling (see recbench/data/parse.py and preprocess.py): empty lines are skipped;
non-numeric ids are accepted as string ids; duplicates keep the latest row and are counted; a
user with a single interaction stays in training and is counted as not evaluated.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recbench.data import DatasetError, ParseError, leave_one_out
from recbench.data.parse import ParsedRatings, parse_bytes
from recbench.data.preprocess import preprocess
from recbench.data.registry import FormatSpec

FIVE = (1.0, 2.0, 3.0, 4.0, 5.0)
HALVES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
FORMATS = {
    "tab": (FormatSpec("\t", ("user", "item", "rating", "timestamp")), FIVE),
    "colons": (FormatSpec("::", ("user", "item", "rating", "timestamp"), encoding="latin-1"), FIVE),
    "space": (FormatSpec(" ", ("user", "item", "rating")), HALVES),
    "csv-header": (FormatSpec(",", ("user", "item", "skip", "rating"), header=True), FIVE),
}
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def _check_result(p: ParsedRatings, scale: tuple[float, ...]) -> None:
    n = len(p)
    assert n > 0
    assert len(p.item_codes) == n and len(p.ratings) == n
    assert p.user_codes.min() >= 0 and p.user_codes.max() < p.n_users
    assert p.item_codes.min() >= 0 and p.item_codes.max() < p.n_items
    assert np.isin(p.ratings, np.asarray(scale, dtype=np.float32)).all()
    assert np.unique(p.user_codes).size == p.n_users  # every id is used
    if p.timestamps is not None:
        assert len(p.timestamps) == n and p.timestamps.dtype == np.int64
    data, rep = preprocess(p, "fuzz", scale)
    assert rep.duplicates_dropped + len(data) == n
    keys = data.users.astype(np.int64) * data.n_items + data.items
    assert np.unique(keys).size == len(data)


def _parse_or_clean_error(data: bytes, name: str) -> ParsedRatings | None:
    fmt, scale = FORMATS[name]
    try:
        p = parse_bytes(data, fmt, scale, file="fuzz.txt")
    except ParseError as exc:
        msg = str(exc)
        assert msg.startswith("fuzz.txt") and "\n" not in msg
        if exc.line is not None:
            assert f"line {exc.line}" in msg and exc.line >= 1
        return None
    _check_result(p, scale)
    return p


@FUZZ
@given(data=st.binary(max_size=400), name=st.sampled_from(sorted(FORMATS)))
def test_fuzz_random_bytes(data: bytes, name: str) -> None:
    _parse_or_clean_error(data, name)


_TOKENS = st.sampled_from(
    [
        "1",
        "2",
        "10",
        "3.5",
        "0.5",
        "5",
        "-1",
        "x",
        "",
        " ",
        "\t",
        "::",
        ":",
        ",",
        "\n",
        "\r\n",
        "\r",
        "1e0",
        "nan",
        "inf",
        "99999999999999999999",
        "é",
        "\x00",
        "\x1f",
        '"',
        "4.0",
        "7",
    ]
)


@FUZZ
@given(tokens=st.lists(_TOKENS, max_size=60), name=st.sampled_from(sorted(FORMATS)))
def test_fuzz_token_soup(tokens: list[str], name: str) -> None:
    _parse_or_clean_error("".join(tokens).encode("utf-8"), name)


_ROW = st.tuples(st.integers(1, 40), st.integers(1, 60), st.sampled_from(FIVE), st.integers(0, 2**40))


@FUZZ
@given(rows=st.lists(_ROW, min_size=1, max_size=80), crlf=st.booleans(), name=st.sampled_from(["tab", "colons"]))
def test_valid_files_round_trip(rows: list[tuple[int, int, float, int]], crlf: bool, name: str) -> None:
    fmt, scale = FORMATS[name]
    nl = "\r\n" if crlf else "\n"
    text = nl.join(fmt.separator.join([str(u), str(i), f"{r:g}", str(t)]) for u, i, r, t in rows)
    p = parse_bytes(text.encode(), fmt, scale)
    assert p.user_ids[p.user_codes].tolist() == [r[0] for r in rows]
    assert p.item_ids[p.item_codes].tolist() == [r[1] for r in rows]
    assert p.ratings.tolist() == [r[2] for r in rows]
    assert p.timestamps is not None and p.timestamps.tolist() == [r[3] for r in rows]
    _check_result(p, scale)


@FUZZ
@given(
    rows=st.lists(_ROW, min_size=2, max_size=40),
    bad_at=st.integers(0, 39),
    bad=st.sampled_from(["x", "6", "0", "", "2.5", "nan", "-3"]),
)
def test_one_bad_rating_is_found_at_its_line(rows: list[tuple[int, int, float, int]], bad_at: int, bad: str) -> None:
    assume(bad_at < len(rows))
    fmt, scale = FORMATS["tab"]
    lines = [f"{u}\t{i}\t{r:g}\t{t}" for u, i, r, t in rows]
    u, i, _, t = rows[bad_at]
    lines[bad_at] = f"{u}\t{i}\t{bad}\t{t}"
    with pytest.raises(ParseError) as exc:
        parse_bytes(("\n".join(lines) + "\n").encode(), fmt, scale, file="r.tsv")
    assert exc.value.line == bad_at + 1
    assert f"r.tsv, line {bad_at + 1}: rating" in str(exc.value)


@pytest.mark.parametrize(
    ("data", "line", "what"),
    [
        (b"1\t2\t3\t4\n1\t2\t3\t4\t5\n", 2, "expected 4 fields separated by '\\t', found 5"),
        (b"1\t2\t3\t4\n1,2,3,4\n", 2, "(wrong separator?)"),
        (b"1\t2\t3\t4\n1\t2\tthree\t4\n", 2, "rating 'three' is not a number"),
        (b"1\t2\t3\t4\n1\t2\t3.5\t4\n", 2, "rating 3.5 is outside the declared scale (1, 2, 3, 4, 5)"),
        (b"1\t2\t3\t4\n1\t2\t-1\t4\n", 2, "rating -1 is outside the declared scale"),
        (b"1\t2\t3\t4\n1\t2\t3\t4.5\n", 2, "timestamp '4.5' is not an integer"),
        (b"1\t2\t3\t4\n\n\n1\t\t3\t4\n", 4, "empty item id"),
    ],
)
def test_bad_lines_are_named(data: bytes, line: int, what: str) -> None:
    fmt, scale = FORMATS["tab"]
    with pytest.raises(ParseError) as exc:
        parse_bytes(data, fmt, scale, file="u.data")
    assert exc.value.line == line and f"u.data, line {line}: " in str(exc.value)
    assert what in str(exc.value)


def test_whole_file_with_wrong_separator() -> None:
    fmt, scale = FORMATS["colons"]
    with pytest.raises(
        ParseError,
        match=r"line 1: expected 4 fields separated by '::', found 1 "
        r"\(wrong separator\?\)",
    ):
        parse_bytes(b"196\t242\t3\t881250949\n", fmt, scale, file="ratings.dat")


def test_non_numeric_ids_are_string_ids() -> None:
    fmt, scale = FORMATS["tab"]
    p = parse_bytes(b"alice\tm1\t3\t1\nbob\t7\t4\t2\nalice\t7\t5\t3\n", fmt, scale)
    assert p.user_ids.tolist() == ["alice", "bob"] and p.item_ids.tolist() == ["7", "m1"]
    assert p.user_codes.tolist() == [0, 1, 0] and p.item_codes.tolist() == [1, 0, 0]


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("data", [b"", b"\n", b"\r\n\r\n"])
def test_empty_file_is_an_error(name: str, data: bytes) -> None:
    fmt, scale = FORMATS[name]
    with pytest.raises(ParseError, match="no rating rows"):
        parse_bytes(data, fmt, scale)


def test_only_duplicates_is_documented_not_silent() -> None:
    fmt, scale = FORMATS["tab"]
    p = parse_bytes(b"1\t1\t3\t1\n1\t1\t4\t2\n1\t1\t5\t3\n", fmt, scale)
    data, rep = preprocess(p, "dups", scale)
    assert rep.duplicates_dropped == 2 and len(data) == 1 and data.ratings.tolist() == [5.0]
    split = leave_one_out(data, n_negatives=0)
    assert len(split.test) == 0 and split.n_not_evaluated == 1  # reported, not evaluated


def test_user_with_one_interaction_is_training_only() -> None:
    fmt, scale = FORMATS["tab"]
    p = parse_bytes(b"1\t1\t3\t1\n1\t2\t4\t2\n2\t1\t5\t3\n", fmt, scale)
    data, _ = preprocess(p, "one", scale)
    split = leave_one_out(data, n_negatives=0)
    assert split.test.users.tolist() == [0] and split.n_not_evaluated == 1
    assert 1 in split.train.users.tolist()


def test_parse_error_is_a_dataset_error() -> None:
    assert issubclass(ParseError, DatasetError) and issubclass(DatasetError, ValueError)

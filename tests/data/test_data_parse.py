"""Each supported file format, and the errors that name the line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from recbench.data import ParseError
from recbench.data.parse import parse_bytes, parse_file
from recbench.data.registry import FormatSpec

TAB = FormatSpec(separator="\t", columns=("user", "item", "rating", "timestamp"))
COLONS = FormatSpec(separator="::", columns=("user", "item", "rating", "timestamp"), encoding="latin-1")
SPACE = FormatSpec(separator=" ", columns=("user", "item", "rating"))
FIVE = (1.0, 2.0, 3.0, 4.0, 5.0)
HALVES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)


def test_tab_separated_like_ml100k() -> None:
    p = parse_bytes(b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n", TAB, FIVE)
    assert len(p) == 3
    assert p.user_ids.tolist() == [22, 186, 196] and p.item_ids.tolist() == [242, 302, 377]
    assert p.user_codes.tolist() == [2, 1, 0] and p.item_codes.tolist() == [0, 1, 2]
    assert p.ratings.dtype == np.float32 and p.ratings.tolist() == [3, 3, 1]
    assert p.timestamps is not None and p.timestamps.tolist() == [881250949, 891717742, 878887116]


def test_double_colon_like_ml1m() -> None:
    p = parse_bytes(b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n", COLONS, FIVE)
    assert p.user_ids.tolist() == [1, 2] and p.item_ids.tolist() == [661, 1193]
    assert p.user_codes.tolist() == [0, 0, 1] and p.item_codes.tolist() == [1, 0, 1]
    assert p.ratings.tolist() == [5, 3, 4]


def test_space_separated_like_filmtrust_without_final_newline() -> None:
    p = parse_bytes(b"1 1 2\n1 2 4\n1 3 3.5\n2 1 0.5", SPACE, HALVES)
    assert len(p) == 4 and p.timestamps is None
    assert p.ratings.tolist() == [2.0, 4.0, 3.5, 0.5]


def test_header_skip_column_latin1_string_ids(tmp_path: Path) -> None:
    fmt = FormatSpec(separator=",", columns=("user", "skip", "item", "rating"), header=True, encoding="latin-1")
    f = tmp_path / "r.csv"
    f.write_bytes("who,note,what,stars\nb\xe9a,x,i1,5\nann,y,i2,4\nbéa,z,i2,1\n".encode("latin-1"))
    p = parse_file(f, fmt, FIVE)
    assert p.user_ids.tolist() == ["ann", "béa"] and p.item_ids.tolist() == ["i1", "i2"]
    assert p.user_codes.tolist() == [1, 0, 1] and p.file == str(f)


def test_crlf_blank_lines_and_whitespace() -> None:
    p = parse_bytes(b"1\t2\t3\t10\r\n\r\n 2\t3 \t4\t11\r\n\n", TAB, FIVE)
    assert len(p) == 2 and p.user_ids.tolist() == [1, 2] and p.item_ids.tolist() == [2, 3]


def test_implicit_file_without_rating_column() -> None:
    fmt = FormatSpec(separator="\t", columns=("user", "item"))
    p = parse_bytes(b"1\t2\n1\t3\n", fmt, (1.0,))
    assert p.ratings.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("fmt", "scale", "data", "line", "message"),
    [
        (TAB, FIVE, b"1\t2\t3\t4\n1\t2\t3\n", 2, "expected 4 fields"),
        (TAB, FIVE, b"1\t2\t3\t4\n\n5\t6\tx\t7\n", 3, "rating 'x' is not a number"),
        (TAB, FIVE, b"1\t2\t3\t4\n1\t3\t6\t5\n", 2, "outside the declared scale"),
        (TAB, FIVE, b"1\t2\t3\t4\n1\t3\t0\t5\n", 2, "outside the declared scale"),
        (TAB, FIVE, b"1\t2\t3\t4\n1\t3\tnan\t5\n", 2, "not a number"),
        (TAB, FIVE, b"1\t2\t3\t4\n1\t3\t3\tyesterday\n", 2, "timestamp 'yesterday' is not an integer"),
        (TAB, FIVE, b"1\t2\t3\t4\n\t3\t3\t5\n", 2, "empty user id"),
        (TAB, FIVE, b"1 2 3 4\n", 1, "wrong separator"),
        (SPACE, HALVES, b"1 1 2\n1 2 4.25\n", 2, "outside the declared scale (0.5, 1, 1.5"),
        (SPACE, HALVES, b"1 1 2\n1 2  4\n", 2, "expected 3 fields"),
        (COLONS, FIVE, b"1::2::3::4\n1:2:3:4\n", 2, "wrong separator"),
        (COLONS, FIVE, b"1::2::3::4\n1::2::3\n", 2, "expected 4 fields"),
        (TAB, FIVE, b"1\t2\t3\t4\n2\t\xff\t3\t5\n", 2, "not valid utf-8"),
    ],
)
def test_malformed_line_is_named(
    fmt: FormatSpec, scale: tuple[float, ...], data: bytes, line: int, message: str
) -> None:
    with pytest.raises(ParseError, match=re.escape(message)) as info:
        parse_bytes(data, fmt, scale, file="ratings.txt")
    err = info.value
    assert err.line == line and f"ratings.txt, line {line}:" in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\r\n"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(ParseError, match=r"ratings\.txt: no rating rows"):
        parse_bytes(data, TAB, FIVE, file="ratings.txt")


def test_header_only_is_empty() -> None:
    fmt = FormatSpec(separator="\t", columns=("user", "item", "rating", "timestamp"), header=True)
    with pytest.raises(ParseError, match="no rating rows"):
        parse_bytes(b"u\ti\tr\tt\n", fmt, FIVE)

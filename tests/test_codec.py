"""The CSV codec is lossless for every Xata type and reads back with both readers."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xata2convex import codec
from xata2convex.model import Column, ColumnType

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
JSON_SCALAR = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
FILE = st.fixed_dictionaries(
    {"name": TEXT, "mediaType": TEXT, "size": st.integers(0, 2**40), "version": st.integers(0, 9)},
    optional={"enablePublicUrl": st.booleans(), "url": TEXT},
)
VALUES: dict[ColumnType, st.SearchStrategy[Any]] = {
    "string": TEXT,
    "text": TEXT,
    "email": TEXT,
    "link": TEXT,
    "datetime": TEXT,
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
    "json": JSON_VALUE.map(lambda v: json.dumps(v, ensure_ascii=False)),
    "multiple": st.lists(TEXT, max_size=5),
    "vector": st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=2, max_size=8),
    "file": FILE,
    "file[]": st.lists(FILE.map(lambda f: {**f, "id": "file_1"}), max_size=3),
}
READERS = [codec.read_rows_portable]
if codec.read_rows is codec.read_rows_stdlib:
    READERS.append(codec.read_rows_stdlib)


def same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def roundtrip(rows: list[list[codec.Cell]], reader: Any) -> list[list[codec.Cell]]:
    text = "".join(codec.format_row(r) for r in rows)
    return list(reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_type_round_trips_through_csv(reader: Any, data: st.DataObject) -> None:
    columns = [Column(f"c_{t}", t) for t in VALUES]
    record = {c.name: data.draw(st.none() | VALUES[c.type]) for c in columns}
    cells = codec.encode_record(record, columns)
    [read_back] = roundtrip([cells], reader)
    decoded = codec.decode_row(read_back, columns)
    for column in columns:
        assert same(decoded[column.name], record[column.name]), column.type
    # Canonical: the decoded value encodes to the very same text.
    assert codec.encode_record(decoded, columns) == cells


@pytest.mark.parametrize("reader", READERS)
def test_null_and_empty_string_stay_distinct(reader: Any) -> None:
    rows = [["a", None, "", None], ["", "", None, " "]]
    assert roundtrip(rows, reader) == rows
    assert codec.format_row(["a", None, ""]) == 'a,,""\r\n'


@pytest.mark.parametrize("reader", READERS)
def test_hostile_text_survives(reader: Any) -> None:
    hostile = ['say "hi"', "a,b", "line1\r\nline2\nline3\r", "\ttab", "  padded  ", "😀 مرحبا", "x" * 250_000]
    assert roundtrip([hostile], reader) == [hostile]


@pytest.mark.parametrize("reader", READERS)
def test_reader_accepts_lf_line_endings(reader: Any) -> None:
    text = 'id,v\nr1,"a\nb"\nr2,\n'
    assert list(reader(io.StringIO(text, newline=""))) == [["id", "v"], ["r1", "a\nb"], ["r2", None]]


def test_numbers_keep_their_exact_value() -> None:
    assert codec.encode_value(2**53 + 1, "int") == "9007199254740993"
    assert codec.decode_value("9007199254740993", "int") == 2**53 + 1
    assert codec.encode_value(-0.0, "float") == "-0.0"
    assert math.copysign(1, codec.decode_value("-0.0", "float")) == -1
    assert codec.decode_value(codec.encode_value(1e308, "float"), "float") == 1e308
    assert codec.decode_value(codec.encode_value(5e-324, "float"), "float") == 5e-324


def test_wrong_python_type_is_refused() -> None:
    with pytest.raises(TypeError):
        codec.encode_value("1", "int")
    with pytest.raises(TypeError):
        codec.encode_value(1, "bool")
    with pytest.raises(ValueError):
        codec.decode_value("yes", "bool")


@settings(max_examples=500)
@given(st.text(alphabet='ab ,"\r\n\t\x00é', min_size=1, max_size=12))
def test_parse_record_reads_a_record_as_the_csv_reader_does(record: str) -> None:
    """parse_record splits quote-free records itself; each must read as the csv reader reads it."""

    def first_row(read: Callable[[], list[codec.Cell]]) -> Any:
        try:
            return read()
        except (csv.Error, StopIteration) as exc:
            return type(exc)

    by_reader = first_row(lambda: next(codec.read_rows(io.StringIO(record.rstrip("\r"), newline=""))))
    assert first_row(lambda: codec.parse_record(record)) == by_reader


@pytest.mark.parametrize("reader", READERS)
def test_unterminated_quote_is_an_error(reader: Any) -> None:
    with pytest.raises(Exception, match=r"(?i)quot|EOF|end of data"):
        list(reader(io.StringIO('a,"open\r\n', newline="")))


@given(
    st.lists(st.text(alphabet='a,"\n\r', max_size=8), max_size=6).map(lambda cells: cells or [""]),
    st.integers(1, 50),
    st.integers(1, 7),
)
def test_csv_row_counter_counts_records_however_the_bytes_are_cut(
    cells: list[str], rows: int, cut: int
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for _ in range(rows):
        writer.writerow(cells)
    data = out.getvalue().encode()
    counter = codec.CsvRowCounter()
    for start in range(0, len(data), cut):
        counter.passed(data[start : start + cut])
    assert (counter.rows, counter.open) == (rows, False)
    cut_short = codec.CsvRowCounter()
    cut_short.passed(data[:-1])  # the last line feed never arrived
    assert cut_short.rows == rows - 1 or cut_short.open

"""Lossless CSV codec for snapshot tables.

One cell per column, RFC 4180 quoting, UTF-8, rows ending in CRLF (readers accept LF too).
Null and the empty string stay distinct the way PostgreSQL's CSV format keeps them: null is an
empty *unquoted* field, the empty string is `""`. Every non-null value has one canonical text:

    string, text, email, link, datetime  the text itself (datetime as Xata sends it, ISO 8601)
    int                                  decimal digits, any size
    float                                shortest text that reads back to the same double (-0.0 kept)
    bool                                 true / false
    json                                 the JSON text as Xata sends it (json columns are strings)
    multiple, vector, file, file[]       compact JSON (UTF-8, not ASCII-escaped)

Same value, same bytes: the diff may compare cell text and only decode where the text differs.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from .model import Column, ColumnType, SnapshotError

_JSON_TYPES = frozenset({"multiple", "vector", "file", "file[]"})
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')

Cell = str | None


def _dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_value(value: Any, type_: ColumnType) -> Cell:
    """The canonical cell text of a decoded value (None for null)."""
    if value is None:
        return None
    if type_ in _JSON_TYPES:
        return _dump_json(value)
    if type_ == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"expected a bool, got {type(value).__name__}")
        return "true" if value else "false"
    if type_ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an int, got {type(value).__name__}")
        return str(value)
    if type_ == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        return repr(float(value))
    if type_ == "json":
        return value if isinstance(value, str) else _dump_json(value)
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def decode_value(cell: Cell, type_: ColumnType) -> Any:
    """The decoded value of a cell; inverse of encode_value."""
    if cell is None:
        return None
    if type_ in _JSON_TYPES:
        return json.loads(cell)
    if type_ == "int":
        return int(cell)
    if type_ == "float":
        return float(cell)
    if type_ == "bool":
        if cell in ("true", "t"):
            return True
        if cell in ("false", "f"):
            return False
        raise ValueError(f"not a bool: {cell!r}")
    return cell


def normalised(cell: Cell, type_: ColumnType) -> Cell:
    """One text per decoded value whichever writer produced the cell (the Postgres source writes `1`
    for 1.0, `t`, `…00.000Z`, and jsonb with its own spacing and key order)."""
    if cell is None:
        return None
    try:
        if type_ == "datetime":
            moment = datetime.fromisoformat(cell)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC).isoformat()
        if type_ == "vector":
            return _dump_json([float(v) for v in json.loads(cell)])
        if type_ in _JSON_TYPES or type_ == "json":
            return json.dumps(json.loads(cell), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return encode_value(decode_value(cell, type_), type_)
    except ValueError:  # e.g. Postgres' 'infinity': compare the text itself
        return cell


def _quote(cell: Cell) -> str:
    if cell is None:
        return ""
    if cell == "" or _NEEDS_QUOTES.search(cell):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def format_row(cells: Sequence[Cell]) -> str:
    """One CSV line, CRLF-terminated."""
    return ",".join([_quote(c) for c in cells]) + "\r\n"


def encode_record(record: dict[str, Any], columns: Sequence[Column]) -> list[Cell]:
    return [encode_value(record.get(col.name), col.type) for col in columns]


def decode_row(cells: Sequence[Cell], columns: Sequence[Column]) -> dict[str, Any]:
    return {col.name: decode_value(cell, col.type) for col, cell in zip(columns, cells, strict=True)}


# --- reading -------------------------------------------------------------------------------------
# Python 3.13's csv reader reports unquoted empty fields as None under QUOTE_NOTNULL (3.12 parses
# the flag but ignores it); older interpreters use the portable reader below.
_STDLIB_KEEPS_NULLS = sys.version_info >= (3, 13)
# Xata text values can be far larger than the csv module's default 128 KiB field limit.
csv.field_size_limit(2**31 - 1)


def read_rows_stdlib(text: Iterable[str]) -> Iterator[list[Cell]]:
    return csv.reader(text, strict=True, quoting=csv.QUOTE_NOTNULL)  # type: ignore[return-value]


_FIELD = re.compile(r'"((?:[^"]|"")*)"|([^,"\r\n]*)')


def record_batches(pieces: Iterable[str]) -> Iterator[list[str]]:
    """Lists of whole CSV records from text pieces of any size. A quoted field may hold line breaks;
    a piece without a quote character (the common case) is split at C speed. Records keep a CR that
    ended them, which is harmless: they are only compared with records of the same writer."""
    carry = ""
    for piece in pieces:
        text = carry + piece
        lines = text.split("\n")
        carry = lines.pop()
        if '"' in text:
            lines, pending = _join_quoted(lines)
            if pending is not None:
                carry = pending + "\n" + carry
        if lines:
            yield lines
    if carry:
        if carry.count('"') % 2:
            raise SnapshotError("CSV ends inside a quoted field")
        yield [carry]


def _join_quoted(lines: list[str]) -> tuple[list[str], str | None]:
    records: list[str] = []
    pending: str | None = None
    for line in lines:
        odd = line.count('"') % 2
        if pending is not None:
            pending += "\n" + line
            if odd:  # the quote opened on an earlier line closes here
                records.append(pending)
                pending = None
        elif odd:
            pending = line
        else:
            records.append(line)
    return records, pending


def read_rows_portable(text: Iterable[str]) -> Iterator[list[Cell]]:
    """A small RFC 4180 reader that keeps unquoted empty fields as None, on any Python."""
    for batch in record_batches(text):
        for record in batch:
            yield _split_record(record.removesuffix("\r"))


def _split_record(record: str) -> list[Cell]:
    cells: list[Cell] = []
    pos = 0
    while True:
        match = _FIELD.match(record, pos)
        if match is None:  # pragma: no cover - the pattern matches the empty string
            raise csv.Error(f"malformed CSV at column {pos}")
        quoted, plain = match.group(1), match.group(2)
        cells.append(quoted.replace('""', '"') if quoted is not None else (plain or None))
        pos = match.end()
        if pos == len(record):
            return cells
        if record[pos] != ",":
            raise csv.Error(f"malformed CSV at column {pos}: {record[pos]!r}")
        pos += 1
        if pos == len(record):
            cells.append(None)
            return cells


read_rows = read_rows_stdlib if _STDLIB_KEEPS_NULLS else read_rows_portable


class CsvRowCounter:
    """Counts the CSV records in bytes as they pass: line feeds outside quoted fields, at C speed
    (each chunk is split at its quotes once; the unquoted parts are joined and counted)."""

    def __init__(self) -> None:
        self.rows = 0
        self.open = False  # inside a quoted field at the end of what has passed

    def passed(self, data: bytes) -> bytes:
        """Count `data`, and hand it on."""
        if b'"' not in data:
            self.rows += 0 if self.open else data.count(b"\n")
            return data
        parts = data.split(b'"')
        self.rows += b"".join(parts[1 if self.open else 0 :: 2]).count(b"\n")
        self.open ^= len(parts) % 2 == 0  # an odd number of quotes flips the state
        return data


def parse_record(record: str) -> list[Cell]:
    """The cells of one whole CSV record (as `record_batches` yields them; a trailing CR is ignored)."""
    body = record.rstrip("\r")
    if body and '"' not in body and "\r" not in body and "\n" not in body:
        # No field is quoted (the common case): the cells are the texts between commas, an empty
        # one null, as the reader gives them; a reader per record costs more than the split.
        return [cell or None for cell in body.split(",")]
    return next(read_rows(io.StringIO(body, newline="")))


def read_table(stream: Iterable[str], columns_by_name: dict[str, Column]) -> Iterator[dict[str, Any]]:
    """Decoded records of one snapshot CSV (header row first); columns matched by name."""
    rows = read_rows(stream)
    header = next(rows, None)
    if header is None:
        return
    columns = [columns_by_name[str(name)] for name in header]
    for cells in rows:
        yield decode_row(cells, columns)

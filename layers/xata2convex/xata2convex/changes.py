"""Change files: one row per record a run added, changed or deleted (`runs/{run_id}/changes/{table}.csv`).

Columns `id,change,fields,before,after` (RFC 4180, UTF-8, like the snapshot tables): `fields` is a JSON
array of the Xata columns that differ, `before` and `after` JSON objects of those columns' decoded
values; an added record has only `after` and a deleted one only `before`, each the whole record.

The diff keeps only a hash of each old record, so `before` is kept aside while it reads:
- the old table's record texts are kept as the diff reads them (`keep_old`): the first
  OLD_IN_MEMORY bytes in memory, the rest in a temporary file;
- an added record's row is written as the diff finds it; a changed record's id and new text go to
  a second temporary file, and each deleted id is kept;
- `finish` reads the changed records back JOIN_ROWS at a time and, for each such group (and the
  deletes), goes over the old texts once, writing the rows of the changed and deleted records.
A changed record's fields are the cells whose texts differ, as the diff found them; only those are
decoded. Memory holds at most OLD_IN_MEMORY bytes of old texts, a batch, a group of changed
records, the deleted ids (fewer than the diff's own index of the old table) and the first rows kept
for the HTML page: a fixed budget, whatever the table's size.
"""

from __future__ import annotations

import csv
import itertools
import json
import marshal
import operator
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal, cast

from .codec import Cell, decode_row, decode_value, format_row, normalised, parse_record, read_rows
from .diff import Change, TableDiffer, positions_by_name, read_spilled
from .model import Column, Record, SnapshotError, TableSchema

CHANGE_COLUMNS = ("id", "change", "fields", "before", "after")
SAMPLE_ROWS = 50  # rows of each table kept for the run's HTML page
JOIN_ROWS = 50_000  # changed records matched with their old texts per pass over the old table
SPILL_ROWS = 1_000  # changed records marshalled together (one marshal call each is slow)
OLD_IN_MEMORY = 256 << 20  # bytes of old record texts kept in memory (a 1M-row table of short columns)

# A batch of the old side: its ids, and the record text at each of their positions.
OldBatch = tuple[list[str], Callable[[int], str]]
_EMPTY_STR = sys.getsizeof("")  # the size of a str object besides its characters

RowKind = Literal["added", "changed", "deleted"]


def _compact_json() -> Callable[[Any], str]:
    """Compact JSON, not ASCII-escaped, as json.dumps writes it. json.dumps (and JSONEncoder.encode)
    builds its C encoder on every call, most of a change row's cost; this builds it once. The
    values are decoded snapshot cells, never circular, so the circular-reference check is off."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return encoder.encode
    encode = make(None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_json = _compact_json()


@dataclass(frozen=True)
class ChangeRow:
    record_id: str
    change: RowKind
    fields: tuple[str, ...]
    before: Record | None  # None for an added record
    after: Record | None  # None for a deleted record

    def cells(self) -> list[Cell]:
        return [
            self.record_id,
            self.change,
            _json(list(self.fields)),
            None if self.before is None else _json(self.before),
            None if self.after is None else _json(self.after),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "change": self.change,
            "fields": list(self.fields),
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_cells(cls, cells: Sequence[Cell]) -> ChangeRow:
        if len(cells) != len(CHANGE_COLUMNS) or cells[1] not in ("added", "changed", "deleted"):
            raise SnapshotError(f"not a change file row: {list(cells)[:2]!r}")
        record_id, change, fields, before, after = cells
        return cls(
            str(record_id),
            cast(RowKind, change),
            tuple(json.loads(fields or "[]")),
            None if before is None else json.loads(before),
            None if after is None else json.loads(after),
        )


def read_change_file(text: Iterable[str]) -> Iterator[ChangeRow]:
    """The rows of a change file, streamed."""
    rows = read_rows(text)
    header = next(rows, None)
    if header is None or tuple(header) != CHANGE_COLUMNS:
        raise SnapshotError(f"not a change file: header {header!r}, expected {','.join(CHANGE_COLUMNS)}")
    for cells in rows:
        yield ChangeRow.from_cells(cells)


@dataclass
class ChangeSample:
    """What a run report and its HTML page say about one table's change file."""

    table: str
    total: int = 0
    rows: list[ChangeRow] = field(default_factory=list)  # the first SAMPLE_ROWS
    key: str | None = None  # the change file's key in the store; None when nothing changed


class ChangeFile:
    """One table's change file, written to a temporary file row by row, then handed to the store."""

    def __init__(self, table: str) -> None:
        self.sample = ChangeSample(table)
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="x2c-changes-")  # noqa: SIM115

    def write(self, row: ChangeRow) -> None:
        if self.sample.total == 0:
            self._file.write(format_row(CHANGE_COLUMNS).encode())
        self._file.write(format_row(row.cells()).encode())
        self.sample.total += 1
        if len(self.sample.rows) < SAMPLE_ROWS:
            self.sample.rows.append(row)

    def save(self, store: Callable[[IO[bytes]], str]) -> ChangeSample:
        """Give the finished file to `store` (which returns its key), unless nothing changed."""
        with self._file:
            if self.sample.total:
                self._file.seek(0)
                self.sample.key = store(self._file)
        return self.sample


class ChangeRecorder:
    """Turns the diff's changes of one table into change rows, each passed to `emit`."""

    def __init__(self, table: TableSchema, emit: Callable[[ChangeRow], None]) -> None:
        self._table = table.name
        self._columns = {c.name: c for c in table.snapshot_columns()}
        self._emit = emit
        self._old: IO[bytes] = tempfile.TemporaryFile(prefix="x2c-old-")  # noqa: SIM115
        self._new: IO[bytes] = tempfile.TemporaryFile(prefix="x2c-new-")  # noqa: SIM115
        self._deleted: set[str] = set()
        self._unspilled: list[tuple[str, str]] = []  # changed records' (id, new text), not yet spilled
        self._held: list[OldBatch] = []  # the old side's first batches, see keep_old
        self._held_bytes = 0

    def keep_old(self, ids: list[str], texts: list[str]) -> None:
        """TableDiffer's `keep_old` hook: the old table's record texts, a batch at a time.

        The first OLD_IN_MEMORY bytes are kept as the diff's own lists (no copy, and the ids'
        hashes are already computed). The rest go to disk as three flat objects: the ids joined
        by NUL (which no Postgres text or Xata id holds), the texts joined, and their end offsets;
        unmarshalling a million small strings cost more than the diff itself.
        """
        if self._held_bytes < OLD_IN_MEMORY:
            self._held.append((ids, texts.__getitem__))
            self._held_bytes += _size(ids) + _size(texts)
            return
        ends = array("q", itertools.accumulate(map(len, texts)))
        marshal.dump(("\0".join(ids), "".join(texts), ends.tobytes()), self._old)

    def _old_batches(self) -> Iterator[OldBatch]:
        """The old side's batches, those in memory first."""
        yield from self._held
        self._old.seek(0)
        for joined_ids, joined, end_bytes in read_spilled(self._old, close=False):
            ends = array("q")
            ends.frombytes(end_bytes)
            yield joined_ids.split("\0"), _slicer(joined, ends)

    def record(self, change: Change) -> None:
        """A change the run applied (retries of unchanged records are not changes)."""
        if change.kind == "added" and change.record is not None:
            self._emit(ChangeRow(change.record_id, "added", tuple(change.record), None, change.record))
        elif change.kind == "changed":
            if change.text is None:
                raise SnapshotError(f"table {self._table!r}: changed record {change.record_id!r} has no text")
            self._unspilled.append((change.record_id, change.text))
            if len(self._unspilled) >= SPILL_ROWS:
                marshal.dump(self._unspilled, self._new)
                self._unspilled = []
        elif change.kind == "deleted":
            self._deleted.add(change.record_id)

    def finish(self, differ: TableDiffer, *, deletes: bool = True) -> None:
        """Emit the changed records and (unless the deletes were withheld) the deleted ones, once
        `differ` (whose changes were recorded) has been read to its end."""
        try:
            marshal.dump(self._unspilled, self._new)
            self._new.seek(0)
            changed = itertools.chain.from_iterable(read_spilled(self._new, close=False))
            join = _Join(self._table, self._columns, differ, self._emit)
            gone = self._deleted if deletes else set()
            while True:
                after: dict[str, str] = dict(itertools.islice(changed, JOIN_ROWS))
                if not after and not gone:
                    return
                join.rows(self._old_batches(), after, gone)
                gone = set()
        finally:
            self._old.close()
            self._new.close()
            self._held = []


class _Join:
    """Matches changed and deleted records with their old texts and writes their change rows.

    A changed record's fields are found as the diff found the change: by cell text, cells matched
    by column name, and, when the two snapshots come from different writers, by normalised text
    (`1` and `1.0` are one value). Only the cells that differ are decoded.
    """

    def __init__(
        self, table: str, columns: dict[str, Column], differ: TableDiffer, emit: Callable[[ChangeRow], None]
    ) -> None:
        self._table, self._emit, self._normalise = table, emit, differ.normalises
        old_header, new_header = differ.old_header, differ.new_header
        # A column only the old side has keeps its text (its type is no longer in the schema).
        self._old_columns = [columns.get(name, Column(name, "text")) for name in old_header]
        self._names = list(dict.fromkeys([*new_header, *old_header]))
        self._types = [columns.get(name, Column(name, "text")).type for name in self._names]
        self._widths = len(old_header), len(new_header)
        # None when both sides have one header (the usual case): their cells pair up as they are.
        self._at = None if old_header == new_header else (
            positions_by_name(old_header, self._names), positions_by_name(new_header, self._names)
        )  # fmt: skip

    def rows(self, old: Iterable[OldBatch], after: dict[str, str], gone: set[str]) -> None:
        """One pass over the old texts: the rows of the records in `after` (changed) and `gone`."""
        for ids, text_at in old:
            wanted = map(after.__contains__, ids) if not gone else [i in after or i in gone for i in ids]
            for index in itertools.compress(range(len(ids)), wanted):
                record_id, text = ids[index], text_at(index)
                try:
                    if record_id in gone:
                        gone.discard(record_id)
                        before = decode_row(parse_record(text), self._old_columns)
                        change_row = ChangeRow(record_id, "deleted", tuple(before), before, None)
                    else:
                        change_row = self._changed(record_id, text, after.pop(record_id))
                except (csv.Error, ValueError) as exc:  # the diff only hashed this old record
                    why = f"table {self._table!r}: an old record cannot be read ({exc})"
                    raise SnapshotError(why) from exc
                self._emit(change_row)
        if after or gone:  # the diff said these changed, yet the old table does not hold them
            missing = ", ".join(itertools.islice(map(repr, [*after, *gone]), 3))
            raise SnapshotError(f"table {self._table!r}: old record(s) {missing} not found again")

    def _changed(self, record_id: str, old_text: str, new_text: str) -> ChangeRow:
        old_cells, new_cells = parse_record(old_text), parse_record(new_text)
        if (len(old_cells), len(new_cells)) != self._widths:
            raise ValueError(f"record {record_id!r} does not have one cell per column")
        if self._at is not None:
            old_cells.append(None)  # see positions_by_name
            new_cells.append(None)
            old_cells = [old_cells[i] for i in self._at[0]]
            new_cells = [new_cells[i] for i in self._at[1]]
        fields: list[str] = []
        before: Record = {}
        after: Record = {}
        for i in itertools.compress(range(len(self._names)), map(operator.ne, old_cells, new_cells)):
            old, new, type_ = old_cells[i], new_cells[i], self._types[i]
            if not self._normalise or normalised(old, type_) != normalised(new, type_):
                name = self._names[i]
                fields.append(name)
                before[name], after[name] = decode_value(old, type_), decode_value(new, type_)
        return ChangeRow(record_id, "changed", tuple(fields), before, after)


def _size(texts: list[str]) -> int:
    """The bytes a list of strings holds, at C speed (sys.getsizeof per string is slow): exact for
    ASCII, an upper bound otherwise (as if every character took 4 bytes)."""
    chars = sum(map(len, texts))
    width = 1 if all(map(str.isascii, texts)) else 4
    return sys.getsizeof(texts) + len(texts) * _EMPTY_STR + width * chars


def _slicer(joined: str, ends: array[int]) -> Callable[[int], str]:
    """The text at each position of texts joined into one string, given their end offsets."""
    return lambda index: joined[ends[index - 1] if index else 0 : ends[index]]

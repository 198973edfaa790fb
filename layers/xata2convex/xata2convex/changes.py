"""Change files: one row per record a run added, changed or deleted (`runs/{run_id}/changes/{table}.csv`).

Columns `id,change,fields,before,after` (RFC 4180, UTF-8, like the snapshot tables): `fields` is a JSON
array of the Xata columns that differ, `before` and `after` JSON objects of those columns' decoded
values; an added record has only `after` and a deleted one only `before`, each the whole record.

The diff keeps only a hash of each old record, so `before` is found on disk, not in memory:
- while the diff reads the old table, its record texts go to a temporary file (`keep_old`);
- an added record's row is written as the diff finds it; a changed record's id and new values go to
  a second temporary file, and each deleted id is kept;
- `finish` reads the changed records back JOIN_ROWS at a time and, for each such group (and the
  deletes), reads the old texts once, writing the rows of the changed and deleted records.
Memory holds a batch, a group of changed records, the deleted ids (fewer than the diff's own index
of the old table) and the first rows kept for the HTML page, never a table.
"""

from __future__ import annotations

import itertools
import json
import marshal
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal, cast

from .codec import Cell, decode_row, encode_value, format_row, normalised, parse_record, read_rows
from .diff import Change, read_spilled
from .model import Column, Record, SnapshotError, TableSchema

CHANGE_COLUMNS = ("id", "change", "fields", "before", "after")
SAMPLE_ROWS = 50  # rows of each table kept for the run's HTML page
JOIN_ROWS = 50_000  # changed records matched with their old texts per pass over the old table
SPILL_ROWS = 1_000  # changed records marshalled together (one marshal call each is slow)

RowKind = Literal["added", "changed", "deleted"]
# Decoded value types whose == agrees with their canonical text (floats do not: -0.0 == 0.0, and
# lists or objects may hold floats).
_EXACT_TYPES: frozenset[type] = frozenset({str, int, bool, type(None)})


def _nonzero_float(value: Any) -> bool:
    """Equal floats other than ±0.0 (and NaN, never equal) have one shortest text."""
    return type(value) is float and value != 0.0


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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
        self._unspilled: list[tuple[str, Record]] = []  # not yet spilled

    def keep_old(self, ids: list[str], texts: list[str]) -> None:
        """TableDiffer's `keep_old` hook: the old table's record texts, a batch at a time.

        Spilled as three flat objects (ids joined by NUL, which no Postgres text or Xata id holds;
        the texts joined; their end offsets), not as lists: unmarshalling a million small strings
        cost more than the diff itself, one large string costs a copy.
        """
        ends = array("q", itertools.accumulate(map(len, texts)))
        marshal.dump(("\0".join(ids), "".join(texts), ends.tobytes()), self._old)

    def record(self, change: Change) -> None:
        """A change the run applied (retries of unchanged records are not changes)."""
        if change.kind == "added" and change.record is not None:
            self._emit(ChangeRow(change.record_id, "added", tuple(change.record), None, change.record))
        elif change.kind == "changed" and change.record is not None:
            self._unspilled.append((change.record_id, change.record))
            if len(self._unspilled) >= SPILL_ROWS:
                marshal.dump(self._unspilled, self._new)
                self._unspilled = []
        elif change.kind == "deleted":
            self._deleted.add(change.record_id)

    def finish(self, old_header: Sequence[str], *, deletes: bool = True) -> None:
        """Emit the changed records and (unless the deletes were withheld) the deleted ones."""
        try:
            # A column only the old side has keeps its text (its type is no longer in the schema).
            columns = [self._columns.get(name, Column(name, "text")) for name in old_header]
            marshal.dump(self._unspilled, self._new)
            self._new.seek(0)
            changed = itertools.chain.from_iterable(read_spilled(self._new, close=False))
            gone = self._deleted if deletes else set()
            while True:
                after: dict[str, Record] = dict(itertools.islice(changed, JOIN_ROWS))
                if not after and not gone:
                    return
                self._join(columns, after, gone)
                gone = set()
        finally:
            self._old.close()
            self._new.close()

    def _join(self, columns: list[Column], after: dict[str, Record], gone: set[str]) -> None:
        """One pass over the old texts: the rows of the records in `after` (changed) and `gone`."""
        self._old.seek(0)
        for joined_ids, texts, end_bytes in read_spilled(self._old, close=False):
            ids = joined_ids.split("\0")
            ends = array("q")
            ends.frombytes(end_bytes)
            wanted = map(after.__contains__, ids) if not gone else [i in after or i in gone for i in ids]
            for index in itertools.compress(range(len(ids)), wanted):
                record_id, start = ids[index], ends[index - 1] if index else 0
                before = decode_row(parse_record(texts[start : ends[index]]), columns)
                if record_id in gone:
                    gone.discard(record_id)
                    self._emit(ChangeRow(record_id, "deleted", tuple(before), before, None))
                else:
                    self._emit(self._changed(record_id, before, after.pop(record_id)))
        if after or gone:  # the diff said these changed, yet the old table does not hold them
            missing = ", ".join(itertools.islice(map(repr, [*after, *gone]), 3))
            raise SnapshotError(f"table {self._table!r}: old record(s) {missing} not found again")

    def _changed(self, record_id: str, before: Record, after: Record) -> ChangeRow:
        names = list(dict.fromkeys([*after, *before]))
        fields = tuple(n for n in names if self._differs(n, before.get(n), after.get(n)))
        return ChangeRow(
            record_id,
            "changed",
            fields,
            {n: before.get(n) for n in fields},
            {n: after.get(n) for n in fields},
        )

    def _differs(self, name: str, old: Any, new: Any) -> bool:
        if type(old) is type(new) and old == new and (type(old) in _EXACT_TYPES or _nonzero_float(old)):
            return False  # equal values of these types have equal canonical texts: skip encoding
        # By normalised canonical text, as the diff compares values (-0.0 is not 0.0; `1` is 1.0).
        type_ = self._columns.get(name, Column(name, "text")).type
        old_text, new_text = encode_value(old, type_), encode_value(new, type_)
        return old_text != new_text and normalised(old_text, type_) != normalised(new_text, type_)

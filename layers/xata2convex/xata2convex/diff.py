"""Diff stage: the applied snapshot of a table against the new one, keyed by record id.

Rows are compared by their canonical cell text (the codec writes one text per value, so equal text
means equal decoded values), projected onto column *names*: column order never counts, a column that
only one side has reads as null there, and volatile columns are left out.

Memory: the old side is held as id -> 64-bit hash of its row, never as rows. Tables above
`partition_rows` are first spread over temporary partition files by a hash of the id, and each
partition pair is diffed on its own, so memory is bounded by a partition, not by the table.
"""

from __future__ import annotations

import marshal
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any, Literal

from .codec import Cell, decode_row
from .model import ID_COLUMN, Record, SnapshotError, TableSchema

PARTITION_ROWS = 500_000


@dataclass
class TableDiff:
    table: str
    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0

    def writes(self) -> int:
        return self.added + self.changed + self.deleted

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["table"]
        return data


@dataclass(frozen=True)
class Change:
    kind: Literal["added", "changed", "deleted"]
    record_id: str
    record: Record | None = None  # the new record (decoded); None for a delete


class TableDiffer:
    """Iterate to get the changes (upserts as they are found, deletes at the end); `result` then
    holds the counts."""

    def __init__(
        self,
        table: TableSchema,
        old: Iterable[Sequence[Cell]] | None,
        new: Iterable[Sequence[Cell]],
        *,
        old_rows: int = 0,
        volatile: frozenset[str] = frozenset(),
        retry_ids: frozenset[str] = frozenset(),
        partition_rows: int = PARTITION_ROWS,
    ) -> None:
        self.table = table
        self.result = TableDiff(table.name)
        self._old = iter(old) if old is not None else iter(())
        self._new = iter(new)
        self._old_header = [str(c) for c in next(self._old, [])]
        self._new_header = [str(c) for c in next(self._new, [])]
        if not self._new_header:
            raise SnapshotError(f"table {table.name!r}: the new snapshot's CSV has no header")
        names = dict.fromkeys([*self._new_header, *self._old_header])
        self._compare = [n for n in names if n not in volatile and n != ID_COLUMN]
        self._partitions = max(1, -(-old_rows // partition_rows))
        self._retry = retry_ids
        by_name = {c.name: c for c in table.snapshot_columns()}
        try:
            self._new_columns = [by_name[n] for n in self._new_header]
        except KeyError as exc:
            raise SnapshotError(
                f"table {table.name!r}: CSV column {exc.args[0]!r} is not in its schema"
            ) from exc

    def _projector(self, header: list[str]) -> tuple[int, list[int | None]]:
        if ID_COLUMN not in header:
            raise SnapshotError(f"table {self.table.name!r}: CSV has no {ID_COLUMN!r} column")
        index = {n: i for i, n in enumerate(header)}
        return index[ID_COLUMN], [index.get(n) for n in self._compare]

    def __iter__(self) -> Iterator[Change]:
        if self._partitions == 1:
            yield from self._diff(self._old, self._new)
            return
        with tempfile.TemporaryDirectory(prefix="x2c-diff-") as tmp:
            old_parts = _spill(self._old, self._old_header, self._partitions, tmp, "old")
            new_parts = _spill(self._new, self._new_header, self._partitions, tmp, "new")
            for old_file, new_file in zip(old_parts, new_parts, strict=True):
                yield from self._diff(_unspill(old_file), _unspill(new_file))

    def _diff(self, old: Iterable[Sequence[Cell]], new: Iterable[Sequence[Cell]]) -> Iterator[Change]:
        old_id, old_proj = self._projector(self._old_header) if self._old_header else (0, [])
        hashes: dict[str, int] = {}
        for row in old:
            hashes[row[old_id]] = hash(tuple([None if i is None else row[i] for i in old_proj]))  # type: ignore[index]
        new_id, new_proj = self._projector(self._new_header)
        result, retry = self.result, self._retry
        for row in new:
            record_id = row[new_id]
            if record_id is None:
                raise SnapshotError(f"table {self.table.name!r}: a record of the new snapshot has no id")
            digest = hash(tuple([None if i is None else row[i] for i in new_proj]))
            before = hashes.pop(record_id, None)
            if before is None:
                result.added += 1
                yield Change("added", record_id, decode_row(row, self._new_columns))
            elif before != digest or record_id in retry:
                result.changed += 1
                yield Change("changed", record_id, decode_row(row, self._new_columns))
            else:
                result.unchanged += 1
        for record_id in hashes:
            result.deleted += 1
            yield Change("deleted", record_id)


def _spill(
    rows: Iterator[Sequence[Cell]], header: list[str], parts: int, tmp: str, side: str
) -> list[IO[bytes]]:
    # Closed by _unspill once each partition has been read.
    files: list[IO[bytes]] = [tempfile.TemporaryFile(dir=tmp, prefix=f"{side}-") for _ in range(parts)]  # noqa: SIM115
    if ID_COLUMN in header:
        id_index = header.index(ID_COLUMN)
        for row in rows:
            key = row[id_index] or ""
            marshal.dump(list(row), files[zlib.crc32(key.encode()) % parts])
    for f in files:
        f.seek(0)
    return files


def _unspill(file: IO[bytes]) -> Iterator[list[Cell]]:
    with file:
        while True:
            try:
                yield marshal.load(file)
            except EOFError:
                return

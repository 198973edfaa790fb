"""Diff stage: the applied snapshot of a table against the new one, keyed by record id.

Each writer (the codec for the SDK source, SQL rendering for the Postgres source) gives one text per
value, so between snapshots of one source equal cell text means equal decoded values. Two ways to
compare a record, chosen per table pair:
- fast: both CSVs have the same header, so a record's whole CSV text stands for its values; records
  are never parsed unless they are added or changed;
- by name: otherwise cells are projected onto column *names* (column order never counts, a column
  only one side has reads as null there) and hashed; when the two snapshots come from different
  writers, each cell is first decoded and normalised (`codec.normalised`), so `1` and `1.0` or
  `…00Z` and `…00.000Z` do not count as changes.
Expiring fields (signed file URLs) never reach a snapshot, so they never count either.

Memory: the old side is held as id -> 64-bit hash of its record, never as records. Tables above
`partition_rows` are first spread over temporary partition files by a hash of the id, and each
partition pair is diffed on its own, so memory is bounded by a partition, not by the table.
"""

from __future__ import annotations

import csv
import itertools
import marshal
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from operator import itemgetter
from typing import IO, Any, Literal

from .codec import Cell, decode_row, normalised, parse_record, record_batches
from .model import ID_COLUMN, Record, SnapshotError, TableSchema

PARTITION_ROWS = 1_000_000
HELD_IN_MEMORY = 16 << 20  # bytes of held-back changes kept in memory before they go to disk

# A batch of records: their ids, the hashes of what is compared, and their CSV texts.
Batch = tuple[list[str], list[int], list[str]]


@dataclass
class TableDiff:
    table: str
    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["table"]
        return data


ChangeKind = Literal["added", "changed", "deleted", "retry"]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind  # retry: unchanged, but refused last time
    record_id: str
    record: Record | None = None  # the new record (decoded); None for a delete
    text: str | None = None  # the new record's CSV text, as read (change files compare its cells)


def _header_and_rest(batches: Iterator[list[str]]) -> tuple[str | None, Iterator[list[str]]]:
    for batch in batches:
        if batch:
            return batch[0], itertools.chain([batch[1:]], batches)
    return None, iter(())


class TableDiffer:
    """Iterate to get the changes (upserts as they are found, deletes at the end); `result` then
    holds the counts. `old` and `new` are the tables' CSV text (header first) in pieces of any size."""

    def __init__(
        self,
        table: TableSchema,
        old: Iterable[str] | None,
        new: Iterable[str],
        *,
        old_rows: int = 0,
        different_writers: bool = False,
        retry_ids: frozenset[str] = frozenset(),
        kept_ids: frozenset[str] = frozenset(),
        partition_rows: int = PARTITION_ROWS,
        keep_old: Callable[[list[str], list[str]], None] | None = None,
    ) -> None:
        """`keep_old`, if given, sees every batch of the old table's (ids, record texts) as it is read
        (the change files' `before` values, see changes.py)."""
        self.table = table
        self.result = TableDiff(table.name)
        old_header, self._old = _header_and_rest(record_batches(old if old is not None else ()))
        new_header, self._new = _header_and_rest(record_batches(new))
        if new_header is None:
            raise SnapshotError(f"table {table.name!r}: the new snapshot's CSV has no header")
        try:
            self._old_header = [str(c) for c in parse_record(old_header)] if old_header else []
            self._new_header = [str(c) for c in parse_record(new_header)]
        except (csv.Error, ValueError) as exc:  # read before the file's checksum can be known
            raise SnapshotError(
                f"table {table.name!r}: a snapshot's CSV header cannot be read ({exc})"
            ) from exc
        self._fast = self._old_header in ([], self._new_header) and not different_writers
        self._compare = list(dict.fromkeys([*self._new_header, *self._old_header]))
        self._normalise = different_writers
        self._partitions = max(1, -(-old_rows // partition_rows))
        self._retry = retry_ids
        self._kept = kept_ids  # left out of the new snapshot (unfit values): absent, yet not deleted
        self._keep_old = keep_old
        by_name = {c.name: c for c in table.snapshot_columns()}
        try:
            self._columns = [by_name[n] for n in self._new_header]
        except KeyError as exc:
            raise SnapshotError(
                f"table {table.name!r}: CSV column {exc.args[0]!r} is not in its schema"
            ) from exc

    @property
    def old_header(self) -> list[str]:
        """The old table's CSV header (empty when there is no old table)."""
        return self._old_header

    @property
    def new_header(self) -> list[str]:
        """The new table's CSV header."""
        return self._new_header

    @property
    def normalises(self) -> bool:
        """Whether cells are compared by normalised text (the snapshots come from different writers)."""
        return self._normalise

    def _entries(self, batches: Iterator[list[str]], header: list[str]) -> Iterator[Batch]:
        """Per batch of records: their ids, the hashes of what is compared, and their texts."""
        if ID_COLUMN not in header:
            raise SnapshotError(f"table {self.table.name!r}: CSV has no {ID_COLUMN!r} column")
        id_index = header.index(ID_COLUMN)
        if self._fast and id_index == 0:
            for records in batches:
                ids = [r[: r.find(",")] if r[:1] != '"' else str(parse_record(r)[0]) for r in records]
                yield ids, list(map(hash, records)), records
            return
        positions = positions_by_name(header, self._compare)
        cells_of: Callable[[list[Cell]], tuple[Cell, ...]] = itemgetter(*positions)  # >= 4 columns
        types = {c.name: c.type for c in self.table.snapshot_columns()}
        compared = [types.get(n, "text") for n in self._compare]
        width = len(header)
        for records in batches:
            ids, digests = [], []
            for record in records:
                row = parse_record(record)
                if len(row) != width:  # short, a missing cell would read as the null appended next
                    raise ValueError(f"a record has {len(row)} cells, its header {width}")
                row.append(None)
                cells = cells_of(row)
                if self._normalise:
                    cells = tuple(normalised(c, t) for c, t in zip(cells, compared, strict=True))
                ids.append(str(row[id_index]))
                digests.append(hash(cells))
            yield ids, digests, records

    def __iter__(self) -> Iterator[Change]:
        try:
            yield from self._changes()
        except (csv.Error, ValueError) as exc:  # a record that cannot be parsed or decoded
            raise SnapshotError(
                f"table {self.table.name!r}: a snapshot record cannot be read ({exc})"
            ) from exc

    def _changes(self) -> Iterator[Change]:
        old = self._entries(self._old, self._old_header) if self._old_header else iter(())
        if self._keep_old is not None:
            old = _tapped(old, self._keep_old)
        new = self._entries(self._new, self._new_header)
        if self._partitions == 1:
            yield from self._diff(old, new, hold=True)
            return
        with tempfile.TemporaryDirectory(prefix="x2c-diff-") as tmp:
            # Both sides are read to their ends (and checked) while they are spread over the files.
            old_parts = _spill(old, self._partitions, tmp, keep_text=False)
            new_parts = _spill(new, self._partitions, tmp, keep_text=True)
            for old_file, new_file in zip(old_parts, new_parts, strict=True):
                yield from self._diff(read_spilled(old_file), read_spilled(new_file), hold=False)

    def _diff(self, old: Iterable[Batch], new: Iterable[Batch], *, hold: bool) -> Iterator[Change]:
        """The changes between two sides. With `hold`, none is yielded before the new side has been
        read to its end: the store checks a file against its manifest at the end, and a change
        taken from a file that turns out cut or tampered must never reach Convex. Held changes wait
        in a spooled temporary file (memory up to HELD_IN_MEMORY bytes, then disk)."""
        # The hot loops do a few C-level operations per record and no per-cell Python code.
        hashes: dict[str, int] = {}
        for ids, digests, _ in old:
            hashes.update(zip(ids, digests, strict=True))
        retry = self._retry
        added = changed = unchanged = deleted = 0
        with tempfile.SpooledTemporaryFile(max_size=HELD_IN_MEMORY) as held:
            for ids, digests, texts in new:
                if "" in ids:
                    raise SnapshotError(f"table {self.table.name!r}: a record of the new snapshot has no id")
                # C-level per batch: take each id's old hash out; only differing records go on in Python.
                befores = list(map(hashes.pop, ids, itertools.repeat(None, len(ids))))
                differing = [
                    i for i, pair in enumerate(zip(befores, digests, strict=True)) if pair[0] != pair[1]
                ]
                kinds: list[ChangeKind] = ["added" if befores[i] is None else "changed" for i in differing]
                positions = differing
                if retry:  # unchanged, but refused last time: sent again
                    again = [i for i, rid in enumerate(ids) if rid in retry and befores[i] == digests[i]]
                    positions, kinds = differing + again, kinds + ["retry"] * len(again)
                added += befores.count(None)
                changed += len(differing)
                unchanged += len(ids) - len(differing)
                batch = (kinds, [ids[i] for i in positions], [texts[i] for i in positions])
                if hold:
                    marshal.dump(batch, held)
                else:
                    yield from self._decoded(*batch)
            held.seek(0)
            for batch in read_spilled(held, close=False):
                yield from self._decoded(*batch)
        changed -= added
        for gone in hashes:
            if gone not in self._kept:
                deleted += 1
                yield Change("deleted", gone)
        self.result.added += added
        self.result.changed += changed
        self.result.unchanged += unchanged
        self.result.deleted += deleted

    def _decoded(self, kinds: list[ChangeKind], ids: list[str], texts: list[str]) -> Iterator[Change]:
        for kind, record_id, text in zip(kinds, ids, texts, strict=True):
            yield Change(kind, record_id, decode_row(parse_record(text), self._columns), text)


def positions_by_name(header: Sequence[str], names: Sequence[str]) -> list[int]:
    """Where each of `names` is in `header`; -1 where it is not, the position of a None appended
    to each row, so a column only one side has reads as null there."""
    index = {name: i for i, name in enumerate(header)}
    return [index.get(name, -1) for name in names]


def _tapped(batches: Iterator[Batch], keep: Callable[[list[str], list[str]], None]) -> Iterator[Batch]:
    for batch in batches:
        keep(batch[0], batch[2])
        yield batch


def _spill(batches: Iterator[Batch], parts: int, tmp: str, *, keep_text: bool) -> list[IO[bytes]]:
    """Spread entries over `parts` temporary files by a hash of the id, in marshalled batches."""
    # Closed by read_spilled once each partition has been read.
    files: list[IO[bytes]] = [tempfile.TemporaryFile(dir=tmp) for _ in range(parts)]  # noqa: SIM115
    for ids, digests, texts in batches:
        split: list[Batch] = [([], [], []) for _ in range(parts)]
        for record_id, digest, text in zip(ids, digests, texts, strict=True):
            target = split[zlib.crc32(record_id.encode()) % parts]
            target[0].append(record_id)
            target[1].append(digest)
            target[2].append(text if keep_text else "")
        for file, batch in zip(files, split, strict=True):
            if batch[0]:
                marshal.dump(batch, file)
    for file in files:
        file.seek(0)
    return files


def read_spilled(file: IO[bytes], *, close: bool = True) -> Iterator[Any]:
    """The objects marshalled into a temporary file, in order; closes the file at the end."""
    try:
        while True:
            try:
                yield marshal.load(file)
            except EOFError:
                return
    finally:
        if close:
            file.close()

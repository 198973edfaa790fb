"""The snapshot store: the README's layout over a BlobStore.

{root}/{database}/{branch}/snapshots/{snapshot_id}/manifest.json   written last
{root}/{database}/{branch}/snapshots/{snapshot_id}/schema.json
{root}/{database}/{branch}/snapshots/{snapshot_id}/tables/{table}.csv
{root}/{database}/{branch}/state/applied.json
{root}/{database}/{branch}/runs/{run_id}.json
{root}/{database}/{branch}/runs/{run_id}.html                  the same report for people
{root}/{database}/{branch}/runs/{run_id}/changes/{table}.csv    see changes.py

Keys in run reports are relative to the root (SNAPSHOT_URI), e.g. `db/main/runs/{run_id}.html`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from . import codec
from .changes import ChangeRow, ChangeSample, read_change_file
from .model import (
    ID_COLUMN,
    Column,
    DatabaseSchema,
    Record,
    SnapshotError,
    SnapshotManifest,
    TableCsv,
    TableManifest,
    TableSchema,
    UnfitValue,
    schema_from_xata,
)
from .report_html import render_run_report
from .state import AppliedState, Progress
from .storage import Blob, BlobStore


def new_snapshot_id(now: datetime | None = None) -> str:
    """Sorts by time: `20261129T120000Z-3f9c` (UTC second, then 4 hex digits whose top 10 bits are the
    millisecond, so ids of one second still sort, and whose low 6 bits are random)."""
    now = now or datetime.now(UTC)
    suffix = (now.microsecond // 1000) << 6 | secrets.randbits(6)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{suffix:04x}"


def json_bytes(value: Any) -> bytes:
    """How every JSON object of the store is written: indented UTF-8, newline-terminated."""
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode()


class _HashingWriter:
    """Counts and hashes the bytes on their way to the store."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.bytes += len(data)
        self.sink.write(data)


class RecordsCsv:
    """A `model.TableCsv` rendered by the codec from pages of decoded records (the SDK source). A
    record with a value that does not fit its column is left out and listed in `unfit`."""

    def __init__(self, table: TableSchema, pages: Iterable[list[Record]]) -> None:
        self.columns = table.snapshot_columns()
        self.pages = pages
        self.rows = 0
        self.unfit: list[UnfitValue] = []

    def chunks(self) -> Iterator[bytes]:
        yield codec.format_row([c.name for c in self.columns]).encode()
        for page in self.pages:  # memory holds one page at a time
            try:
                text = "".join(
                    [codec.format_row(codec.encode_record(r, self.columns)) for r in page]
                ).encode()
                rows = len(page)
            except (TypeError, ValueError):  # some value does not fit: record by record, to name it
                text, rows = self._fitting(page)
            yield text
            self.rows += rows

    def _fitting(self, page: list[Record]) -> tuple[bytes, int]:
        rows: list[bytes] = []
        for record in page:
            try:
                rows.append(codec.format_row([self._cell(record, c) for c in self.columns]).encode())
            except _Unfit as unfit:
                self.unfit.append(UnfitValue(str(record.get(ID_COLUMN)), unfit.field, unfit.reason))
        return b"".join(rows), len(rows)

    @staticmethod
    def _cell(record: Record, column: Column) -> codec.Cell:
        value = record.get(column.name)
        try:
            cell = codec.encode_value(value, column.type)
            if cell is not None:
                cell.encode()  # a lone surrogate cannot be written as UTF-8
        except UnicodeEncodeError:
            raise _Unfit(column.name, "text with a lone surrogate, which is not valid Unicode") from None
        except (TypeError, ValueError) as exc:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise _Unfit(column.name, f"{exc}: {shown} (column type {column.type})") from None
        return cell


class _Unfit(Exception):
    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason


def write_csv(blobs: BlobStore, key: str, file: str, table: TableSchema, csv: TableCsv) -> TableManifest:
    """Stream one table's CSV into the store and describe it for the manifest."""
    with blobs.open_write(key) as sink:
        out = _HashingWriter(sink)
        for chunk in csv.chunks():
            out.write(chunk)
    return TableManifest(
        name=table.name,
        file=file,
        rows=csv.rows,  # known once the chunks are exhausted
        columns=tuple(c.name for c in table.snapshot_columns()),
        sha256=out.sha.hexdigest(),
        bytes=out.bytes,
        rejected=tuple(csv.unfit),
    )


class CheckedTableFile(io.RawIOBase):
    """A table file's bytes on their way to a reader, hashed and their CSV records counted as they
    pass; `check()`, once everything is read, compares them with the file's manifest entry."""

    def __init__(self, raw: IO[bytes], expected: TableManifest, where: str) -> None:
        self.raw, self.expected, self.where = raw, expected, where
        self.sha = hashlib.sha256()
        self.records = codec.CsvRowCounter()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.sha.update(data)
        self.records.passed(data)
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()

    def mismatch(self, problem: str) -> SnapshotError:
        return SnapshotError(
            f"{self.where} does not match its manifest: {problem}. It was changed or cut after the "
            "export, so nothing is applied from it; the next export writes a fresh one"
        )

    def unreadable(self, problem: str) -> SnapshotError:
        """The error for a file that could not be parsed: read to its end, it is a mismatch, or, if it
        matches its manifest after all, what was written is unreadable (`problem`)."""
        while self.read(1 << 20):
            pass
        try:
            self.check()
        except SnapshotError as mismatch:
            return mismatch
        return SnapshotError(f"{self.where}: {problem}")

    def check(self) -> None:
        rows = self.records.rows - 1  # the header
        if self.sha.hexdigest() != self.expected.sha256:
            raise self.mismatch(
                f"its SHA-256 is {self.sha.hexdigest()[:12]}…, not {self.expected.sha256[:12]}…, "
                f"and it holds {rows} rows where the manifest says {self.expected.rows}"
            )
        if rows != self.expected.rows:
            raise self.mismatch(f"it holds {rows} rows where the manifest says {self.expected.rows}")


class SnapshotStore:
    def __init__(self, blobs: BlobStore, database: str, branch: str) -> None:
        self.blobs = blobs
        self.database = database
        self.branch = branch
        self.base = f"{database}/{branch}/"
        # The run lock's checkpoint (lock.HeldLease.ensure_held), called before every state write so a
        # run that lost its lease stops before it writes; a no-op for readers.
        self.before_state_write: Callable[[], None] = lambda: None

    # --- keys ---
    def snapshot_key(self, snapshot_id: str, name: str) -> str:
        return f"{self.base}snapshots/{snapshot_id}/{name}"

    def manifest_key(self, snapshot_id: str) -> str:
        return self.snapshot_key(snapshot_id, "manifest.json")

    def table_key(self, snapshot_id: str, table: str) -> str:
        return self.snapshot_key(snapshot_id, f"tables/{table}.csv")

    def describe(self, key: str) -> str:
        return self.blobs.describe(key)

    # --- writing ---
    def write_schema(self, snapshot_id: str, raw_schema: Any) -> None:
        self.blobs.put(self.snapshot_key(snapshot_id, "schema.json"), json_bytes(raw_schema))

    def write_table(
        self, snapshot_id: str, table: TableSchema, pages: Iterable[list[Record]]
    ) -> TableManifest:
        """Stream a table's pages of decoded records into its CSV."""
        return self.write_table_csv(snapshot_id, table, RecordsCsv(table, pages))

    def write_table_csv(self, snapshot_id: str, table: TableSchema, csv: TableCsv) -> TableManifest:
        """Store a table's CSV as the source rendered it (e.g. Postgres COPY), byte for byte."""
        file = f"tables/{table.name}.csv"
        return write_csv(self.blobs, self.snapshot_key(snapshot_id, file), file, table, csv)

    def write_manifest(self, manifest: SnapshotManifest) -> None:
        """Written last: a snapshot without a manifest is incomplete and never read."""
        self.blobs.put(
            self.manifest_key(manifest.snapshot_id),
            json_bytes(manifest.to_json()),
            if_none_match=True,
        )

    # --- reading ---
    def list_snapshots(self) -> list[str]:
        """Complete snapshots (those with a manifest), oldest first."""
        ids = self.blobs.list_dirs(f"{self.base}snapshots/")
        return [i for i in ids if self.blobs.exists(self.manifest_key(i))]

    def latest_snapshot(self) -> str | None:
        """The newest complete snapshot; reads manifests newest first and stops at the first found."""
        for snapshot_id in reversed(self.blobs.list_dirs(f"{self.base}snapshots/")):
            if self.blobs.exists(self.manifest_key(snapshot_id)):
                return snapshot_id
        return None

    def read_manifest(self, snapshot_id: str) -> SnapshotManifest:
        blob = self.blobs.get(self.manifest_key(snapshot_id))
        if blob is None:
            where = self.describe(self.manifest_key(snapshot_id))
            raise SnapshotError(
                f"snapshot {snapshot_id!r} has no manifest at {where} (missing or incomplete)"
            )
        return SnapshotManifest.from_json(self._json(blob, self.manifest_key(snapshot_id)))

    def read_schema(self, snapshot_id: str) -> DatabaseSchema:
        blob = self.blobs.get(self.snapshot_key(snapshot_id, "schema.json"))
        if blob is None:
            raise SnapshotError(f"snapshot {snapshot_id!r} has no schema.json")
        return schema_from_xata(self._json(blob, self.snapshot_key(snapshot_id, "schema.json")))

    def _open_checked(
        self, snapshot_id: str, table: str, expected: TableManifest | None
    ) -> tuple[IO[str], CheckedTableFile]:
        if expected is None:
            try:
                expected = self.read_manifest(snapshot_id).table(table)
            except KeyError:
                raise SnapshotError(f"snapshot {snapshot_id!r} has no table {table!r}") from None
        key = self.table_key(snapshot_id, table)
        checked = CheckedTableFile(self.blobs.open_read(key), expected, self.describe(key))
        buffered = io.BufferedReader(checked, buffer_size=1 << 20)
        return io.TextIOWrapper(buffered, encoding="utf-8", newline=""), checked

    def iter_text(
        self,
        snapshot_id: str,
        table: str,
        piece_chars: int = 1 << 20,
        *,
        expected: TableManifest | None = None,
    ) -> Iterator[str]:
        """One table's CSV text in pieces (header first), streamed; the file closes at the end. The
        bytes are checked against the manifest's entry (`expected`, else read from the manifest) as
        they pass: at the end a mismatch raises SnapshotError naming the file, so a consumer must
        not act on what it read before the end (the diff holds its changes back until then)."""
        text, checked = self._open_checked(snapshot_id, table, expected)
        with text:
            try:
                yield from iter(lambda: text.read(piece_chars), "")
            except UnicodeDecodeError as exc:
                raise checked.unreadable(f"it is not UTF-8 text ({exc.reason})") from None
            checked.check()

    def iter_records(
        self, snapshot_id: str, table: TableSchema, *, expected: TableManifest | None = None
    ) -> Iterator[Record]:
        """Decoded records of one table, streamed; checked against the manifest like `iter_text`."""
        by_name = {c.name: c for c in table.snapshot_columns()}
        text, checked = self._open_checked(snapshot_id, table.name, expected)
        with text:
            try:
                yield from codec.read_table(text, by_name)
            except KeyError as exc:
                raise SnapshotError(
                    f"snapshot {snapshot_id!r} table {table.name!r}: "
                    f"CSV column {exc.args[0]!r} is not in its schema"
                ) from exc
            except (csv.Error, ValueError) as exc:  # e.g. a value cut in two, or not UTF-8
                raise checked.unreadable(f"a record cannot be read ({exc})") from None
            checked.check()

    def check_table(self, snapshot_id: str, expected: TableManifest) -> None:
        """Read one table file to its end and check it against its manifest entry (SnapshotError)."""
        key = self.table_key(snapshot_id, expected.name)
        with CheckedTableFile(self.blobs.open_read(key), expected, self.describe(key)) as checked:
            while checked.read(1 << 20):
                pass
            checked.check()

    def _json(self, blob: Blob, key: str, fix: str = "restore it or delete it") -> Any:
        """A stored JSON object; a corrupt file stops the command with its place and the fix."""
        try:
            return json.loads(blob.data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise SnapshotError(f"{self.describe(key)} is corrupt (not JSON: {exc}); {fix}") from None

    # --- state and runs ---
    def state_key(self) -> str:
        return f"{self.base}state/applied.json"

    def read_state(self) -> tuple[AppliedState | None, str | None]:
        """The applied state and its etag (for a replace-if-unchanged write); StateFileError if damaged."""
        blob: Blob | None = self.blobs.get(self.state_key())
        if blob is None:
            return None, None
        return AppliedState.parse(blob.data, self.describe(self.state_key()), blob.etag), blob.etag

    def write_state(self, state: AppliedState, *, expected_etag: str | None) -> str:
        key = self.state_key()
        self.before_state_write()
        if expected_etag is None:
            return self.blobs.put(key, json_bytes(state.to_json()), if_none_match=True)
        return self.blobs.put(key, json_bytes(state.to_json()), if_match=expected_etag)

    def progress_key(self) -> str:
        return f"{self.base}state/progress.json"

    def read_progress(self) -> Progress | None:
        """What a run in progress (or one that died) has written so far (see sync.py); StateFileError
        if damaged."""
        blob = self.blobs.get(self.progress_key())
        return None if blob is None else Progress.parse(blob.data, self.describe(self.progress_key()))

    def write_progress(self, progress: Progress) -> None:
        self.before_state_write()
        self.blobs.put(self.progress_key(), json_bytes(progress.to_json()))  # the run lock holder only

    def clear_progress(self) -> None:
        self.before_state_write()
        self.blobs.delete(self.progress_key())

    def run_key(self, run_id: str, extension: str = "json") -> str:
        return f"{self.base}runs/{run_id}.{extension}"

    def change_key(self, run_id: str, table: str) -> str:
        return f"{self.base}runs/{run_id}/changes/{table}.csv"

    def write_run_report(
        self, run_id: str, report: dict[str, Any], changes: dict[str, ChangeSample] | None = None
    ) -> dict[str, Any]:
        """The JSON report and its HTML page (with the first rows of each change file); returns the
        report as written, which names both keys."""
        report = {**report, "reportKey": self.run_key(run_id), "htmlReportKey": self.run_key(run_id, "html")}
        where = {"JSON report": self.describe(report["reportKey"])}
        if report.get("snapshotId"):
            where["snapshot manifest"] = self.describe(self.manifest_key(str(report["snapshotId"])))
        for name, sample in (changes or {}).items():
            if sample.key:
                where[f"change file of {name}"] = self.describe(sample.key)
        page = render_run_report(report, changes or {}, where)
        self.blobs.put(report["htmlReportKey"], page.encode())
        self.blobs.put(report["reportKey"], json_bytes(report))
        return report

    def read_run_report(self, run_id: str) -> dict[str, Any] | None:
        blob = self.blobs.get(self.run_key(run_id))
        return None if blob is None else self._json(blob, self.run_key(run_id))

    def list_runs(self) -> list[str]:
        """Ids of the runs with a report, newest first (run ids sort by time)."""
        names = self.blobs.list_files(f"{self.base}runs/")
        return sorted((n.removesuffix(".json") for n in names if n.endswith(".json")), reverse=True)

    def write_change_file(self, run_id: str, table: str, data: IO[bytes]) -> str:
        key = self.change_key(run_id, table)
        with self.blobs.open_write(key) as sink:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                sink.write(chunk)
        return key

    def read_change_file(self, key: str) -> Iterator[ChangeRow]:
        """The rows of a change file named by its key (as a run report gives it), streamed."""
        with io.TextIOWrapper(self.blobs.open_read(key), encoding="utf-8", newline="") as text:
            yield from read_change_file(text)

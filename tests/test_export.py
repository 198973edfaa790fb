"""Export through the real xata SDK against the local Xata stand-in, into the snapshot store."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.xata import XataStandInFactory
from xata2convex.export import ExportError, export_snapshot
from xata2convex.local.xata_server import XataStandIn
from xata2convex.model import EXPIRING_FILE_FIELDS, DatabaseSchema, Record, SourceError, TableSchema
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import open_blob_store
from xata2convex.xata_source import XataSdkSource, XataSettings


def source_for(standin: XataStandIn, **overrides: Any) -> XataSdkSource:
    settings = standin.settings()
    return XataSdkSource(
        XataSettings(
            api_key=overrides.pop("api_key", settings["XATA_API_KEY"]),
            database_url=settings["XATA_DATABASE_URL"],
            endpoint_url=settings["XATA_ENDPOINT_URL"],
            backoff_base_s=0.001,
            **overrides,
        )
    )


def expected_records(seed: Path, table: TableSchema) -> list[Record]:
    """What the stand-in serves, normalised independently of the source under test."""
    records = []
    for line in (seed / f"{table.name}.jsonl").read_text().splitlines():
        raw = json.loads(line)
        if "xata_id" in raw:
            record: Record = {
                "id": raw["xata_id"], "xata_version": raw.get("xata_version"),
                "xata_createdAt": raw.get("xata_createdat"), "xata_updatedAt": raw.get("xata_updatedat"),
            }  # fmt: skip
        else:
            meta = raw.get("xata", {})
            record = {
                "id": raw["id"], "xata_version": meta.get("version"),
                "xata_createdAt": meta.get("createdAt"), "xata_updatedAt": meta.get("updatedAt"),
            }  # fmt: skip
        for column in table.columns:
            value = raw.get(column.name)
            if column.type == "link" and isinstance(value, dict):
                value = value["id"]
            if column.type == "file" and value is not None:
                value = {k: v for k, v in value.items() if k not in EXPIRING_FILE_FIELDS}
            if column.type == "file[]" and value is not None:
                value = [{k: v for k, v in f.items() if k not in EXPIRING_FILE_FIELDS} for f in value]
            if column.type == "float" and isinstance(value, int):
                value = float(value)
            record[column.name] = value
        records.append(record)
    return sorted(records, key=lambda r: r["id"])


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(open_blob_store(str(tmp_path / "snapshots")), "sample", "main")


def snapshot_bytes(store: SnapshotStore, snapshot_id: str) -> dict[str, bytes]:
    manifest = store.read_manifest(snapshot_id)
    out = {}
    for table in manifest.tables:
        with store.blobs.open_read(store.table_key(snapshot_id, table.name)) as raw:
            out[table.name] = raw.read()
    return out


def test_export_equals_what_the_standin_served(
    xata_standin: XataStandInFactory, xata_seed_dir: Path, store: SnapshotStore
) -> None:
    standin = xata_standin()
    manifest = export_snapshot(source_for(standin), store)
    schema = store.read_schema(manifest.snapshot_id)
    assert {t.name for t in manifest.tables} == {t.name for t in schema.tables}
    assert "event-subject-matter-experts" in {t.name for t in manifest.tables}
    for table in schema.tables:
        got = sorted(store.iter_records(manifest.snapshot_id, table), key=lambda r: r["id"])
        assert got == expected_records(xata_seed_dir, table), table.name
        assert manifest.table(table.name).rows == len(got)
        assert manifest.table(table.name).columns[0] == "id"
    assert manifest.table("empty-table").rows == 0


def test_hostile_values_survive_exactly(xata_standin: XataStandInFactory, store: SnapshotStore) -> None:
    manifest = export_snapshot(source_for(xata_standin()), store)
    schema: DatabaseSchema = store.read_schema(manifest.snapshot_id)
    values: list[Any] = []
    for table in schema.tables:
        for record in store.iter_records(manifest.snapshot_id, table):
            values.extend(record.values())
    assert 2**53 + 1 in values and -(2**63) in values
    floats = [v for v in values if isinstance(v, float)]
    assert any(str(v) == "-0.0" for v in floats) and 1e308 in floats and 5e-324 in floats
    texts = [v for v in values if isinstance(v, str)]
    assert "" in texts and any("\r\n" in t for t in texts) and any(len(t) > 200_000 for t in texts)
    assert any('"' in t and "," in t for t in texts)


def test_csvkit_reads_every_snapshot_file(xata_standin: XataStandInFactory, store: SnapshotStore) -> None:
    manifest = export_snapshot(source_for(xata_standin()), store)
    csvstat = Path(sys.executable).parent / "csvstat"
    for table in manifest.tables:
        path = Path(store.describe(store.table_key(manifest.snapshot_id, table.name)))
        out = subprocess.run(
            [str(csvstat), "--count", "-z", "1000000", str(path)], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.strip().split()[-1]) == table.rows, table.name
        with path.open(newline="") as fh:  # and Python's own csv module agrees
            assert sum(1 for _ in csv.reader(fh)) == table.rows + 1


def test_rate_limits_and_server_errors_give_the_same_bytes(
    xata_standin: XataStandInFactory, store: SnapshotStore, tmp_path: Path
) -> None:
    clean = export_snapshot(source_for(xata_standin()), store)
    flaky_standin = xata_standin(fail_429_every=3, fail_5xx_every=7)
    flaky_store = SnapshotStore(open_blob_store(str(tmp_path / "flaky")), "sample", "main")
    flaky = export_snapshot(source_for(flaky_standin, page_size=2), flaky_store)
    statuses = [r.status for r in flaky_standin.requests]
    assert 429 in statuses and 503 in statuses
    assert snapshot_bytes(flaky_store, flaky.snapshot_id) == snapshot_bytes(store, clean.snapshot_id)
    assert [t.sha256 for t in flaky.tables] == [t.sha256 for t in clean.tables]


def test_wrong_key_fails_naming_the_cause_and_writes_no_manifest(
    xata_standin: XataStandInFactory, store: SnapshotStore
) -> None:
    standin = xata_standin()
    with pytest.raises(SourceError, match="401") as error:
        export_snapshot(source_for(standin, api_key="xau_wrong_key_123"), store)
    assert "xau_wrong_key_123" not in str(error.value)
    assert store.list_snapshots() == []


class WithMissingTable:
    """The real source, whose schema names a table Xata no longer has (dropped mid-export)."""

    def __init__(self, source: XataSdkSource) -> None:
        self.source = source

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def read_schema(self) -> DatabaseSchema:
        schema = self.source.read_schema()
        ghost = {"name": "dropped-table", "columns": [{"name": "x", "type": "string"}]}
        raw = {"tables": [*schema.raw["tables"], ghost]}
        return DatabaseSchema((*schema.tables, TableSchema("dropped-table", ())), raw)

    def read_table(self, table: TableSchema) -> Iterator[list[Record]]:
        return self.source.read_table(table)


def test_missing_table_fails_naming_it_and_writes_no_manifest(
    xata_standin: XataStandInFactory, store: SnapshotStore
) -> None:
    source = WithMissingTable(source_for(xata_standin()))
    with pytest.raises(ExportError, match="table 'dropped-table' page 1: Xata answered 404"):
        export_snapshot(source, store)  # type: ignore[arg-type]
    assert store.list_snapshots() == []


def test_gives_up_after_bounded_retries_naming_table_and_page(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin(fail_5xx_every=1)
    source = source_for(standin, max_attempts=3)
    with pytest.raises(SourceError, match=r"table 'users' page 1: gave up after 3 attempts"):
        next(source.read_table(TableSchema("users", ())))
    assert standin.request_count == 3


def test_retry_honours_ratelimit_reset(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin(fail_429_every=2, ratelimit_reset_s=7.5)
    delays: list[float] = []
    settings = standin.settings()
    source = XataSdkSource(
        XataSettings(settings["XATA_API_KEY"], settings["XATA_DATABASE_URL"], settings["XATA_ENDPOINT_URL"]),
        sleep=delays.append,
    )
    source.read_schema()
    list(source.read_table(TableSchema("teams", ())))  # the 2nd request is a 429
    assert delays and delays[0] >= 7.5


def test_request_timeout_is_set(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin(latency_ms=400)
    source = source_for(standin, timeout_s=0.05, max_attempts=2)
    with pytest.raises(SourceError, match="ReadTimeout"):
        source.read_schema()


def test_page_size_is_the_largest_xata_accepts(
    xata_standin: XataStandInFactory, store: SnapshotStore
) -> None:
    standin = xata_standin()
    export_snapshot(source_for(standin), store)
    bodies = [r for r in standin.requests if r.path.endswith("/query")]
    assert bodies and all(r.status == 200 for r in bodies)
    assert XataSettings("k", "https://w.r.xata.sh/db/d:main").page_size == 1000

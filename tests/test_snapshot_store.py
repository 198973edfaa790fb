"""The snapshot store on a local folder and on S3 (moto in server mode, over a real socket)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from xata2convex.model import Column, SnapshotError, SnapshotManifest, TableSchema
from xata2convex.snapshot import SnapshotStore, json_bytes, new_snapshot_id
from xata2convex.state import AppliedState, Progress, StateFileError, TableProgress, TableState
from xata2convex.storage import BlobStore, PreconditionFailed, S3BlobStore, open_blob_store

TABLE = TableSchema("people", (Column("name", "string"), Column("age", "int"), Column("tags", "multiple")))


def pages(count: int, size: int = 100, pad: str = "") -> Iterator[list[dict[str, object]]]:
    for page in range(count):
        yield [
            {
                "id": f"rec_{page}_{i}",
                "xata_version": 0,
                "name": f'n,"{i}"\n{pad}',
                "age": i,
                "tags": ["a", "b"],
            }
            for i in range(size)
        ]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotStore:
    if request.param == "local":
        blobs: BlobStore = open_blob_store(str(tmp_path / "snaps"))
    else:
        bucket = request.getfixturevalue("s3_bucket")
        blobs = open_blob_store(f"s3://{bucket}/some/prefix")
    return SnapshotStore(blobs, "db", "main")


def write_snapshot(store: SnapshotStore, rows_pages: int = 3, pad: str = "") -> SnapshotManifest:
    snapshot_id = new_snapshot_id()
    store.write_schema(snapshot_id, {"tables": [{"name": "people", "columns": []}]})
    table = store.write_table(snapshot_id, TABLE, pages(rows_pages, pad=pad))
    manifest = SnapshotManifest(snapshot_id, "db", "main", "test", "now", "hash", (table,))
    store.write_manifest(manifest)
    return manifest


def test_snapshot_round_trip_and_manifest(store: SnapshotStore) -> None:
    manifest = write_snapshot(store)
    assert store.list_snapshots() == [manifest.snapshot_id]
    read = store.read_manifest(manifest.snapshot_id)
    assert read == manifest
    [table] = read.tables
    assert table.rows == 300
    assert table.columns == ("id", "xata_version", "xata_createdAt", "xata_updatedAt", "name", "age", "tags")
    with store.blobs.open_read(store.table_key(manifest.snapshot_id, "people")) as raw:
        assert hashlib.sha256(raw.read()).hexdigest() == table.sha256
    records = list(store.iter_records(manifest.snapshot_id, TABLE))
    assert records[5] == {
        "id": "rec_0_5", "xata_version": 0, "xata_createdAt": None, "xata_updatedAt": None,
        "name": 'n,"5"\n', "age": 5, "tags": ["a", "b"],
    }  # fmt: skip


def test_snapshot_without_manifest_is_incomplete(store: SnapshotStore) -> None:
    snapshot_id = new_snapshot_id()
    store.write_table(snapshot_id, TABLE, pages(1))
    assert store.list_snapshots() == []
    with pytest.raises(SnapshotError, match="no manifest"):
        store.read_manifest(snapshot_id)


def test_state_writes_are_conditional(store: SnapshotStore) -> None:
    assert store.read_state() == (None, None)
    etag = store.write_state(AppliedState(snapshot_id="a"), expected_etag=None)
    with pytest.raises(PreconditionFailed):
        store.write_state(AppliedState(snapshot_id="b"), expected_etag=None)
    state, current = store.read_state()
    assert state == AppliedState(snapshot_id="a") and current == etag
    store.write_state(AppliedState(snapshot_id="c"), expected_etag=etag)
    with pytest.raises(PreconditionFailed):
        store.write_state(AppliedState(snapshot_id="d"), expected_etag=etag)
    assert store.read_state()[0] == AppliedState(snapshot_id="c")


# applied.json as the sync before typed state wrote it: still read, field for field.
OLD_APPLIED = b"""{"tables": {"users": {"snapshotId": "s1", "sha256": "ab", "rejected": ["rec_2", "rec_1"]},
  "teams": {"dirty": true}}, "runId": "r1", "updatedAt": "2026-11-29T12:00:00.000Z", "snapshotId": "s1"}"""


def test_state_files_written_before_typed_state_still_read(store: SnapshotStore) -> None:
    store.blobs.put(store.state_key(), OLD_APPLIED)
    state, _ = store.read_state()
    assert state == AppliedState(
        tables={
            "users": TableState("s1", "ab", frozenset({"rec_1", "rec_2"})),
            "teams": TableState(None, None, dirty=True),
        },
        snapshot_id="s1",
        run_id="r1",
        updated_at="2026-11-29T12:00:00.000Z",
    )
    assert AppliedState.parse(json_bytes(state.to_json()), "x") == state  # type: ignore[union-attr]
    store.blobs.put(store.progress_key(), b'{"runId": "r2", "snapshotId": "s2", "tables": {"users": '
                    b'{"status": "pushing"}, "teams": {"status": "applied", "snapshotId": "s2", '
                    b'"sha256": "cd", "rejected": []}}}')  # fmt: skip
    assert store.read_progress() == Progress(
        "r2",
        "s2",
        {"users": TableProgress("pushing"), "teams": TableProgress("applied", TableState("s2", "cd"))},
    )


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b"[]", b'{"tables": []}', b'{"tables": {"users": {"snapshotId": 5, "sha256": "x"}}}',
     b'{"tables": {"users": {"sha256": "x"}}}', b'{"tables": {"users": {"snapshotId": "s", "sha256": "x", '
     b'"rejected": [1]}}}', b'{"snapshotId": ["s"]}', b"\xff\xfe"],
)  # fmt: skip
def test_a_damaged_state_file_is_an_error_naming_it(store: SnapshotStore, damage: bytes) -> None:
    store.blobs.put(store.state_key(), damage)
    with pytest.raises(StateFileError, match=r"applied\.json is corrupt") as error:
        store.read_state()
    assert error.value.etag is not None  # so the run can replace it
    store.blobs.put(store.progress_key(), damage.replace(b"snapshotId", b"runId"))
    with pytest.raises(StateFileError, match=r"progress\.json is corrupt"):
        store.read_progress()


def test_snapshot_ids_sort_by_time() -> None:
    from datetime import UTC, datetime

    early = new_snapshot_id(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_snapshot_id(datetime(2026, 11, 29, 12, tzinfo=UTC))
    assert early < late and late.startswith("20261129T120000Z-")
    same_second = [
        new_snapshot_id(datetime(2026, 11, 29, 12, 0, 0, ms * 1000, tzinfo=UTC)) for ms in range(1000)
    ]
    assert same_second == sorted(same_second)


def test_s3_large_table_uses_multipart(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(S3BlobStore, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    store = SnapshotStore(open_blob_store(f"s3://{s3_bucket}"), "db", "main")
    manifest = write_snapshot(store, rows_pages=400, pad="p" * 260)  # ~12 MiB of CSV
    [table] = manifest.tables
    assert table.bytes > 10 * 1024 * 1024
    client = boto3.client("s3")
    head = client.head_object(
        Bucket=s3_bucket, Key=f"db/main/snapshots/{manifest.snapshot_id}/tables/people.csv"
    )
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert sum(1 for _ in store.iter_records(manifest.snapshot_id, TABLE)) == 40_000


def test_failed_write_leaves_no_object(store: SnapshotStore) -> None:
    def broken() -> Iterator[list[dict[str, object]]]:
        yield from pages(1)
        raise RuntimeError("source failed mid-table")

    snapshot_id = new_snapshot_id()
    with pytest.raises(RuntimeError):
        store.write_table(snapshot_id, TABLE, broken())
    assert store.blobs.get(store.table_key(snapshot_id, "people")) is None


def test_unknown_uri_scheme_is_refused() -> None:
    with pytest.raises(SnapshotError, match="expected s3://"):
        open_blob_store("gs://bucket/x")

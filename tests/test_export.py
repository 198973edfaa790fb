"""Export through the real xata SDK against the local Xata stand-in, into the snapshot store."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xata.api_request import ApiRequest

from tests.fixtures.xata import XataStandInFactory
from xata2convex.export import ExportError, export_snapshot
from xata2convex.model import EXPIRING_FILE_FIELDS, DatabaseSchema, Record, SourceError, TableSchema
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import open_blob_store
from xata2convex.xata_source import (
    XataSdkSource,
    XataSettings,
    _RateLimiter,
    data_plane_namespaces,
    sdk_client,
)
from xata2convex_local.xata_server import XataStandIn


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
    with pytest.raises(SourceError, match=r"timed out: http://127.0.0.1:\d+/db/sample:main"):
        source.read_schema()


def test_page_size_is_the_largest_xata_accepts(
    xata_standin: XataStandInFactory, store: SnapshotStore
) -> None:
    standin = xata_standin()
    export_snapshot(source_for(standin), store)
    bodies = [r for r in standin.requests if r.path.endswith("/query")]
    assert bodies and all(r.status == 200 for r in bodies)
    assert XataSettings("k", "https://w.r.xata.sh/db/d:main").page_size == 1000


# The SDK 1.3.5 accessors, by plane (api/*.py: scope "workspace" or "core").
DATA_PLANE = ("branch", "data", "files", "migrations", "records", "search_and_filter", "sql", "table")
CONTROL_PLANE = ("authentication", "databases", "invites", "users", "workspaces")


def test_endpoint_url_redirects_every_data_plane_namespace_and_no_control_plane_one() -> None:
    endpoint = "http://127.0.0.1:9"
    client = sdk_client("xau_k", "https://ws.eu-west-1.xata.sh/db/d:main", endpoint + "/")
    for name in DATA_PLANE:
        namespace = getattr(client, name)()
        assert namespace.get_base_url() == endpoint, name
        assert namespace.get_upload_base_url() == endpoint, name
    for name in CONTROL_PLANE:
        assert getattr(client, name)().get_base_url() == "https://api.xata.io", name
    every = [n for n in vars(client).values() if isinstance(n, ApiRequest)]
    assert {id(n) for n in data_plane_namespaces(client)} == {
        id(n) for n in every if not n.is_control_plane()
    }
    assert len(every) == len(DATA_PLANE) - 1 + len(CONTROL_PLANE)  # data() is search_and_filter()
    unpatched = sdk_client("xau_k", "https://ws.eu-west-1.xata.sh/db/d:main")
    assert unpatched.sql().get_base_url() == "https://ws.eu-west-1.xata.sh"


def test_sql_and_file_uploads_reach_the_endpoint(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin()
    settings = standin.settings()
    client = sdk_client(
        settings["XATA_API_KEY"], settings["XATA_DATABASE_URL"], settings["XATA_ENDPOINT_URL"]
    )
    client.sql().query("SELECT 1")
    client.files().put("users", "rec_1", "photo", b"bytes")  # the upload host, also replaced
    paths = [r.path for r in standin.requests]
    assert paths == ["/db/sample:main/sql", "/db/sample:main/tables/users/data/rec_1/column/photo/file"]


class FakeClock:
    """Shared virtual time: each reading is `step` after the previous one; sleeps are recorded, not slept."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0
        self.lock = threading.Lock()
        self.local = threading.local()  # the reading and the sleep of this thread's current acquire

    def clock(self) -> float:
        with self.lock:
            self.now += self.step
            self.local.now = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        self.local.slept += seconds


def acquire_from_threads(
    limiter: _RateLimiter, fake: FakeClock, threads: int, each: int
) -> tuple[list[float], list[float]]:
    """(waits, sorted wake-up times) of every acquire, made from several threads at once."""
    times: list[tuple[float, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait()
        for _ in range(each):
            fake.local.slept = 0.0
            limiter.acquire()
            with lock:
                times.append((fake.local.now, fake.local.now + fake.local.slept))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return [wake - arrival for arrival, wake in times], sorted(wake for _, wake in times)


def test_rate_limiter_spaces_acquires_from_many_threads() -> None:
    rate, n = 10.0, 24
    fake = FakeClock(step=0.001)  # requests arrive far faster than the budget allows
    limiter = _RateLimiter(rate, clock=fake.clock, sleep=fake.sleep)
    waits, wakeups = acquire_from_threads(limiter, fake, threads=4, each=n // 4)
    assert len(wakeups) == n
    assert all(later - earlier >= 1 / rate - 1e-9 for earlier, later in itertools.pairwise(wakeups))
    assert wakeups[-1] - wakeups[0] == pytest.approx((n - 1) / rate)
    assert wakeups == pytest.approx([0.001 + i / rate for i in range(n)])  # the first arrival opens
    arrivals = [0.001 * (i + 1) for i in range(n)]  # one clock reading per acquire
    assert sum(waits) == pytest.approx(sum(wakeups) - sum(arrivals))


def test_rate_limiter_never_waits_under_budget() -> None:
    fake = FakeClock(step=0.2)  # slower than one every 1/10 s
    limiter = _RateLimiter(10.0, clock=fake.clock, sleep=fake.sleep)
    waits, _ = acquire_from_threads(limiter, fake, threads=3, each=4)
    assert waits == [0.0] * 12


@pytest.mark.parametrize(("concurrency", "allowed"), [(2, range(1, 3)), (4, range(3, 5))])
def test_export_concurrency_bounds_requests_in_flight(
    xata_standin: XataStandInFactory, store: SnapshotStore, concurrency: int, allowed: range
) -> None:
    standin = xata_standin(latency_ms=60)  # each request stays in flight for the simulated latency
    source = source_for(standin, page_size=2, requests_per_second=0)  # the limit would serialise
    export_snapshot(source, store, concurrency=concurrency)
    assert standin.peak_in_flight in allowed

"""The run lock (lock.py) and the conditional writes under it, on a local folder and on S3 (moto over a
socket): leases, races between threads and between processes, renewal, takeover, damaged lock files."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.trigger import TEST_TRIGGER_SECRET, signed_headers, sync_run, trigger_body
from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import seed_schema
from xata2convex import jobs, trigger
from xata2convex.config import Config
from xata2convex.convex_sink import ConvexHttp, MirrorWriter
from xata2convex.lock import DEFAULT_LEASE_SECONDS, Lease, LeaseLost, LockBusy, LockUnreadable, RunLock
from xata2convex.snapshot import SnapshotStore, json_bytes
from xata2convex.storage import Blob, BlobStore, LocalBlobStore, PreconditionFailed, open_blob_store
from xata2convex.sync import SyncOptions
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed
from xata2convex_local.xata_server import XataStandIn

NOW = 1_764_417_600.0
KEY = "db/main/state/lock.json"
CLI = str(Path(sys.executable).parent / "xata2convex")


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lock_on(blobs: BlobStore, clock: Callable[[], float], lease: float = 100, key: str = KEY) -> RunLock:
    return RunLock(blobs, key, lease_seconds=lease, clock=clock)


# --- the lease file ------------------------------------------------------------------------------


def test_a_lease_round_trips_through_its_json() -> None:
    lease = Lease("run-1", NOW, NOW + 5, started_at=NOW, released_at=NOW + 1, took_over_from="run-0")
    assert Lease.parse(json_bytes(lease.to_json()), "lock.json") == lease
    # The lease files written before startedAt/tookOverFrom existed still read.
    assert Lease.parse(b'{"runId": "r", "acquiredAt": 1, "expiresAt": 2}', "x") == Lease("r", 1.0, 2.0)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b'{"runId": "r", "acquiredAt": 1, "expi', "not JSON"),
        (b"[" * 5000, "not JSON"),
        (b'["r"]', "not a JSON object"),
        (b'{"acquiredAt": 1, "expiresAt": 2}', "runId must be a non-empty string"),
        (b'{"runId": "", "acquiredAt": 1, "expiresAt": 2}', "runId must be a non-empty string"),
        (b'{"runId": "r", "acquiredAt": 1}', "expiresAt must be a number"),
        (b'{"runId": "r", "acquiredAt": 1, "expiresAt": "soon"}', "expiresAt must be a number"),
        (b'{"runId": "r", "acquiredAt": 1, "expiresAt": true}', "expiresAt must be a number"),
        (b'{"runId": "r", "acquiredAt": 1, "expiresAt": Infinity}', "expiresAt must be a number"),
        (b'{"runId": "r", "acquiredAt": 1, "expiresAt": 2, "releasedAt": "no"}', "releasedAt must be"),
        (b'{"runId": "r", "acquiredAt": 1, "expiresAt": 2, "owner": "me"}', "unknown field.*owner"),
    ],
)
def test_anything_but_a_lease_is_unreadable_naming_the_file(raw: bytes, reason: str) -> None:
    with pytest.raises(LockUnreadable, match=f"run lock /x/lock.json is unreadable: {reason}"):
        Lease.parse(raw, "/x/lock.json")


# --- holding, releasing, taking over ---------------------------------------------------------------


def test_one_run_holds_the_lock_until_it_releases_it(blobs: BlobStore) -> None:
    clock = Clock()
    lock = lock_on(blobs, clock)
    held = lock.acquire("run-a")
    assert lock.holder() == "run-a" and held.took_over_from is None
    busy_message = r"run run-a is in progress \(it holds the run lock until 2025-"
    with pytest.raises(LockBusy, match=busy_message) as busy:
        lock.acquire("run-b")
    assert busy.value.exit_code == 3
    assert lock.release("run-b") is False  # not the holder: nothing happens
    assert lock.holder() == "run-a"
    assert held.release() is True
    assert lock.holder() is None
    assert lock.acquire("run-b").took_over_from is None  # a released lease is not a dead run


def test_an_expired_lease_is_taken_over_naming_the_dead_run_which_can_no_longer_write(
    blobs: BlobStore,
) -> None:
    clock = Clock()
    lock = lock_on(blobs, clock, lease=100)
    crashed = lock.acquire("crashed-run")
    clock.now += 99
    with pytest.raises(LockBusy):
        lock.acquire("too-early")
    clock.now += 2
    assert lock.holder() is None
    taker = lock.acquire("next-run")
    assert taker.took_over_from == "crashed-run" and lock.holder() == "next-run"
    # The dead run, if it was only slow, finds out at its next checkpoint and writes nothing more.
    with pytest.raises(LeaseLost, match=r"run crashed-run lost the run lock .*another run took it over"):
        crashed.ensure_held()
    assert crashed.release() is False and lock.release("crashed-run") is False
    assert lock.holder() == "next-run"


def test_a_reservation_is_claimed_by_its_worker_exactly_once(blobs: BlobStore) -> None:
    clock = Clock()
    lock = lock_on(blobs, clock)
    lock.reserve("run-1")
    with pytest.raises(LockBusy, match=r"run run-2 does not hold the run lock \(holder: run-1\)"):
        lock.claim("run-2")
    claimed = lock.claim("run-1")
    assert claimed.lease.started_at == NOW
    with pytest.raises(LockBusy, match=r"run run-1 already started at .* repeated delivery"):
        lock.claim("run-1")
    claimed.release()
    with pytest.raises(LockBusy, match=r"holder: none"):
        lock.claim("run-1")


class _Racing:
    """A blob store on which a competitor writes the lock between our read and our conditional write."""

    def __init__(self, inner: BlobStore, competitor: Callable[[], None]) -> None:
        self.inner, self.competitor, self.raced = inner, competitor, False

    def get(self, key: str) -> Blob | None:
        blob = self.inner.get(key)
        if not self.raced:
            self.raced = True
            self.competitor()
        return blob

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


@pytest.mark.parametrize("first_use", [True, False], ids=["create", "replace"])
def test_a_competitor_between_read_and_write_wins_alone(blobs: BlobStore, first_use: bool) -> None:
    clock = Clock()
    if not first_use:
        lock_on(blobs, clock).acquire("earlier").release()
    racing = _Racing(blobs, lambda: lock_on(blobs, clock).acquire("winner") and None)
    loser = RunLock(racing, KEY, lease_seconds=100, clock=clock)  # type: ignore[arg-type]
    with pytest.raises(LockBusy, match="same moment"):
        loser.acquire("loser")
    assert lock_on(blobs, clock).holder() == "winner"


# --- true races: 300 rounds of two acquirers -------------------------------------------------------


def _prepare_rounds(blobs: BlobStore, rounds: int) -> None:
    """Even rounds race to create the lock; odd rounds race to replace one released lease."""
    for i in range(1, rounds, 2):
        lock_on(blobs, Clock(), key=f"round-{i}/lock.json").acquire("earlier").release()


def _acquire_rounds(blobs: BlobStore, name: str, rounds: int, barrier: Any) -> list[int]:
    won = []
    for i in range(rounds):
        barrier.wait()
        try:
            lock_on(blobs, Clock(), key=f"round-{i}/lock.json").acquire(f"{name}-{i}")
        except LockBusy:
            continue
        won.append(i)
    return won


def _check_rounds(blobs: BlobStore, rounds: int, a: list[int], b: list[int]) -> None:
    assert sorted(a + b) == list(range(rounds)), "each round has exactly one winner"
    for i in range(rounds):
        expected = f"a-{i}" if i in set(a) else f"b-{i}"
        assert lock_on(blobs, Clock(), key=f"round-{i}/lock.json").holder() == expected


def _race_in_threads(blobs: BlobStore, rounds: int) -> None:
    _prepare_rounds(blobs, rounds)
    barrier = threading.Barrier(2)
    results: dict[str, list[int]] = {}

    def acquirer(name: str) -> None:
        results[name] = _acquire_rounds(blobs, name, rounds, barrier)

    threads = [threading.Thread(target=acquirer, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _check_rounds(blobs, rounds, results["a"], results["b"])


def test_300_rounds_of_two_racing_threads_on_the_local_store_have_one_winner_each(tmp_path: Path) -> None:
    _race_in_threads(LocalBlobStore(tmp_path), 300)


def test_racing_threads_on_s3_have_one_winner_each_round(s3_bucket: str) -> None:
    _race_in_threads(open_blob_store(f"s3://{s3_bucket}/race"), 40)


def _process_acquirer(root: str, name: str, rounds: int, barrier: Any, results: Any) -> None:
    results.put((name, _acquire_rounds(LocalBlobStore(Path(root)), name, rounds, barrier)))


def test_300_rounds_of_two_racing_processes_on_the_local_store_have_one_winner_each(tmp_path: Path) -> None:
    rounds = 300
    blobs = LocalBlobStore(tmp_path)
    _prepare_rounds(blobs, rounds)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2, timeout=120), context.Queue()
    processes = [
        context.Process(target=_process_acquirer, args=(str(tmp_path), n, rounds, barrier, results))
        for n in "ab"
    ]
    for process in processes:
        process.start()
    won = dict(results.get(timeout=180) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    _check_rounds(blobs, rounds, won["a"], won["b"])


def test_the_local_store_refuses_a_replace_of_a_changed_object_even_of_the_same_size(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    first = blobs.put("k", b"1", if_none_match=True)
    second = blobs.put("k", b"2", if_match=first)  # same size, same clock tick: a new etag all the same
    assert second != first
    with pytest.raises(PreconditionFailed):
        blobs.put("k", b"3", if_match=first)
    with pytest.raises(PreconditionFailed, match="already exists"):
        blobs.put("k", b"4", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        blobs.put("missing", b"5", if_match=first)
    blob = blobs.get("k")
    assert blob is not None and blob.data == b"2" and blob.etag == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no lock or temporary files left


# --- renewal ---------------------------------------------------------------------------------------


def test_renewal_at_checkpoints_keeps_a_long_runs_lock(blobs: BlobStore) -> None:
    clock = Clock()
    lock = lock_on(blobs, clock, lease=100)
    held = lock.acquire("long-run")
    for _ in range(20):  # 20 checkpoints 30 s apart: six leases' worth of time
        clock.now += 30
        held.ensure_held()
        with pytest.raises(LockBusy, match="run long-run is in progress"):
            lock.acquire("impatient")
    assert clock.now > NOW + 5 * 100 and lock.holder() == "long-run"
    assert held.release() is True and lock.holder() is None


def test_without_checkpoints_the_lease_runs_out(blobs: BlobStore) -> None:
    clock = Clock()
    lock = lock_on(blobs, clock, lease=100)
    lock.acquire("silent-run")
    clock.now += 101
    assert lock.acquire("next").took_over_from == "silent-run"


class _Unreachable:
    """The store goes away for writes (S3 down): reads work, every put fails."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner

    def get(self, key: str) -> Blob | None:
        return self.inner.get(key)

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        raise ConnectionError("store unreachable")

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


def test_a_renewal_that_cannot_reach_the_store_stops_the_run_before_its_lease_ends(tmp_path: Path) -> None:
    clock = Clock()
    real = LocalBlobStore(tmp_path)
    held = lock_on(real, clock, lease=100).acquire("cut-off")
    held._lock.blobs = _Unreachable(real)  # type: ignore[assignment]
    clock.now += 30
    held.ensure_held()  # 70 s left: retried at the next checkpoint
    clock.now += 45
    with pytest.raises(LeaseLost, match=r"could not renew the run lock .* before its lease ends"):
        held.ensure_held()


# --- a damaged lock file -----------------------------------------------------------------------------


def test_a_damaged_lock_counts_as_held_for_one_lease_then_is_taken_over(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    blobs.put(KEY, b'{"runId": "r", "acquir')
    written = blobs.get(KEY)
    assert written is not None
    clock = Clock(written.modified + 50)
    lock = lock_on(blobs, clock, lease=100)
    with pytest.raises(LockUnreadable, match=f"run lock {tmp_path / KEY} is unreadable: not JSON"):
        lock.holder()
    with pytest.raises(LockBusy) as busy:
        lock.acquire("next")
    message = str(busy.value)
    assert f"run lock {tmp_path / KEY} is unreadable" in message
    assert "counts as held until" in message and f"rm {tmp_path / KEY}" in message
    with pytest.raises(LockBusy, match="does not hold the run lock"):
        lock.claim("next")
    clock.now += 51
    held = lock.acquire("next")
    assert held.took_over_from is None and lock.holder() == "next"
    assert json.loads((tmp_path / KEY).read_bytes())["runId"] == "next"


# --- through the real CLI, jobs and worker, with the stand-ins over sockets -------------------------


@dataclass
class Branch:
    """One database branch end to end: the Xata stand-in, a local Convex, a snapshot folder."""

    xata: XataStandIn
    convex: LocalConvex
    env: dict[str, str]

    @property
    def config(self) -> Config:
        return Config.from_env(self.env)

    def store(self) -> SnapshotStore:
        return jobs.open_store(self.config)

    def lock(self, clock: Callable[[], float] = time.time) -> RunLock:
        return RunLock.for_store(self.store(), clock=clock)

    def cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [CLI, *args], env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    def run_docs(self) -> list[dict[str, Any]]:
        page = ConvexHttp(self.convex.url, self.convex.deploy_key).query(
            "syncRuns:list", {"paginationOpts": {"numItems": 200, "cursor": None}}
        )
        return list(page["page"])

    def mirrored_ids(self, table: str) -> list[str]:
        writer = MirrorWriter(jobs.open_convex(self.config))
        return sorted(d["xata_id"] for d in writer.list_documents(table))

    def assert_convex_holds_exactly_the_source(self) -> None:
        verified = self.cli("verify").communicate(timeout=120)
        assert "Convex equals it" in verified[0], verified
        for table in ("bench_00", "bench_01"):
            assert self.mirrored_ids(table) == sorted(self.xata.table_ids(table))


@pytest.fixture(scope="module")
def bench_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    seed = tmp_path_factory.mktemp("seed")
    write_bench_seed(seed, records=1200, tables=2)  # 600 a table: two upsert batches each
    with project_for_schema(seed_schema(seed)) as project:
        yield seed, project


@pytest.fixture
def branch(
    bench_project: tuple[Path, Path], xata_standin: XataStandInFactory, tmp_path: Path
) -> Iterator[Branch]:
    seed, project = bench_project
    with LocalConvex(project) as convex:
        xata = xata_standin(seed)
        yield Branch(
            xata, convex, {**xata.settings(), **convex.settings(), "SNAPSHOT_URI": str(tmp_path / "s")}
        )


def _hold_xata_until(xata: XataStandIn, gate: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Xata request waits for `gate`: the run that reached Xata stays in its export."""
    respond = xata.respond

    def gated(*args: Any) -> tuple[int, Any, dict[str, str]]:
        gate.wait(timeout=120)
        return respond(*args)

    monkeypatch.setattr(xata, "respond", gated)


def test_two_runs_started_together_one_exits_3_and_convex_ends_equal_to_the_source(
    branch: Branch, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    _hold_xata_until(branch.xata, gate, monkeypatch)
    runs = [branch.cli("run", "--json") for _ in range(2)]
    ended: queue.Queue[subprocess.Popen[str]] = queue.Queue()
    for process in runs:
        threading.Thread(target=lambda p=process: (p.wait(), ended.put(p)), daemon=True).start()
    # The run holding the lock cannot finish before the gate opens, so the first to end is the refused one.
    refused = ended.get(timeout=120)
    out, err = refused.communicate()
    assert refused.returncode == 3, (out, err)
    gate.set()
    winner = next(p for p in runs if p is not refused)
    report_text, winner_err = winner.communicate(timeout=300)
    assert winner.returncode == 0, winner_err
    report = json.loads(report_text)
    until = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    message = rf"run {report['runId']} is in progress \(it holds the run lock until {until}\)"
    assert re.fullmatch(rf"error: {message}\n", err) and re.search(message, json.loads(out)["error"])
    assert branch.lock().holder() is None
    branch.assert_convex_holds_exactly_the_source()
    assert [d["status"] for d in branch.run_docs()] == ["succeeded"]  # the refused run wrote nothing


@pytest.mark.parametrize("next_run", ["cli", "trigger"])
def test_a_run_killed_mid_export_is_closed_by_the_run_that_takes_its_lock_over(
    branch: Branch, next_run: str
) -> None:
    """The dead run held the lock and said `running` in syncRuns, but left no progress.json."""
    dead_clock = Clock(time.time() - 2 * DEFAULT_LEASE_SECONDS)
    branch.lock(dead_clock).reserve("killed-run")
    branch.lock(dead_clock).claim("killed-run")
    jobs.record_run(jobs.open_convex(branch.config), {"runId": "killed-run", "status": "running"})
    assert branch.store().read_progress() is None
    if next_run == "cli":
        process = branch.cli("run", "--json")
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        taker = json.loads(out)["runId"]
    else:
        taker = "next-trigger-run"
        trigger.accept_trigger(
            signed_headers(trigger_body(taker)), trigger_body(taker), secret=TEST_TRIGGER_SECRET,
            store=branch.store(), start=lambda request: None,
        )  # fmt: skip
        assert trigger.run_worker(branch.config, trigger.TriggerRequest(taker))["status"] == "succeeded"
    dead = sync_run(branch.convex, "killed-run")
    assert dead["status"] == "failed" and f"run {taker} took the lock over" in dead["error"]
    report = branch.store().read_run_report("killed-run")
    assert report is not None and report["status"] == "failed" and taker in report["error"]
    assert [d["status"] for d in branch.run_docs() if d["status"] == "running"] == []
    assert branch.lock().holder() is None
    branch.assert_convex_holds_exactly_the_source()


class Ticking:
    """A clock that moves `step` seconds every time it is read: a run that takes hours, without sleeps."""

    def __init__(self, step: float) -> None:
        self.now, self.step = time.time(), step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_long_sync_renews_its_lease_at_each_write_and_keeps_the_lock(branch: Branch) -> None:
    jobs.run_export(branch.config)
    clock = Ticking(DEFAULT_LEASE_SECONDS / 3)  # every checkpoint is a third of a lease later
    held = branch.lock(clock).acquire("long-run")
    first_expiry = held.lease.expires_at
    report = jobs.run_sync(branch.config, SyncOptions(run_id="long-run"), lease=held)
    assert report["status"] == "succeeded" and report["batches"] >= 4
    assert held.lease.expires_at > first_expiry + 3 * DEFAULT_LEASE_SECONDS  # renewed along the way
    with pytest.raises(LockBusy, match="run long-run is in progress"):
        branch.lock(clock).acquire("impatient")
    assert held.release()


def test_a_run_whose_lease_was_taken_over_stops_before_its_first_write(branch: Branch) -> None:
    jobs.run_export(branch.config)
    clock = Clock(time.time())
    stalled = branch.lock(clock).acquire("stalled-run")
    clock.now += DEFAULT_LEASE_SECONDS + 1  # it stalled past its lease; another run took over
    branch.lock(clock).acquire("other-run")
    branch.convex.reset_log()
    with pytest.raises(LeaseLost, match="run stalled-run lost the run lock"):
        jobs.run_sync(branch.config, SyncOptions(run_id="stalled-run"), lease=stalled)
    calls = [e["path"] for e in branch.convex.request_log()]
    assert "mirror:upsertBatch" not in calls and "mirror:deleteBatch" not in calls
    assert branch.store().read_state() == (None, None)
    assert sync_run(branch.convex, "stalled-run")["status"] == "failed"
    assert branch.lock(clock).holder() == "other-run"

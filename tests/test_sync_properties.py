"""A stateful property test of the whole sync over the stand-ins (Xata stand-in, local Convex, a folder).

Random steps: records added, changed and deleted in Xata; runs; two runs started at once (one
may find the other holding the run lock: exit 3); runs that crash after a random
number of batches (the `stop_after_batches` fault hook, small batches so a crash lands mid-table);
the state lost, overwritten with garbage, or the applied snapshot's table file deleted or damaged.
After every example one clean run (the guard lifted: the user has checked) must leave Convex equal
to the source: `verify` finds nothing missing, extra or different (the seed's integers beyond 2^53
are refused by design and only reported).

Bounded to about a minute: 20 examples of up to 10 steps, each step a real export and sync.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import Setup
from xata2convex import jobs
from xata2convex.convex_sink import BatchLimitReached, MirrorWriter
from xata2convex.lock import LockBusy
from xata2convex.state import StateFileError
from xata2convex.sync import Sync, SyncOptions
from xata2convex_local.convex_server import LocalConvex

TABLES = ("users", "teams")


def run_machine(xata: XataStandInFactory, convex: LocalConvex, tmp_path: Path) -> None:
    standin = xata()
    folders = itertools.count()

    class SyncMachine(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            # A fresh snapshot folder, but the Convex of the examples before: the first run finds
            # documents and no state for them, and must reconcile rather than trust an empty state.
            self.setup = Setup(standin, convex, tmp_path / f"snapshots-{next(folders)}")
            self.setup.run()

        def ids(self, table: str) -> list[str]:
            return standin.table_ids(table)

        @rule(table=st.sampled_from(TABLES), count=st.integers(1, 12))
        def insert(self, table: str, count: int) -> None:
            for i in range(count):
                assert self.setup.sdk.records().insert(table, {"name": f"new {i}"}).is_success()

        @rule(table=st.sampled_from(TABLES), pick=st.integers(0, 10**6), name=st.text(max_size=8))
        def update(self, table: str, pick: int, name: str) -> None:
            ids = self.ids(table)
            if ids:
                record_id = ids[pick % len(ids)]
                assert self.setup.sdk.records().update(table, record_id, {"name": name}).is_success()

        @rule(table=st.sampled_from(TABLES), pick=st.integers(0, 10**6), count=st.integers(1, 14))
        def delete(self, table: str, pick: int, count: int) -> None:
            ids = self.ids(table)
            for record_id in (ids[(pick + i) % len(ids)] for i in range(min(count, len(ids)))):
                self.setup.sdk.records().delete(table, record_id)

        @rule()
        def run(self) -> None:
            report = self.setup.run()
            failed = {n: t for n, t in report["tables"].items() if t["status"] == "failed"}
            assert not failed, failed  # damage is healed by reconciling, never a lasting failure

        @rule()
        def two_runs_at_once(self) -> None:
            barrier = threading.Barrier(2, timeout=60)
            outcomes: list[object] = []

            def one_run() -> None:
                barrier.wait()
                try:
                    outcomes.append(jobs.run_export_and_sync(self.setup.config, SyncOptions()))
                except LockBusy as exc:  # exit 3 in the CLI
                    outcomes.append(exc)
                except Exception as exc:  # anything else fails the property below
                    outcomes.append(repr(exc))

            threads = [threading.Thread(target=one_run) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            reports = [o for o in outcomes if isinstance(o, dict)]
            busy = [o for o in outcomes if isinstance(o, LockBusy)]
            assert len(reports) + len(busy) == 2 and reports, outcomes  # both may finish, one after the other
            for report in reports:
                assert all(t["status"] != "failed" for t in report["tables"].values()), report

        @rule(batches=st.integers(0, 12))
        def crash(self, batches: int) -> None:
            manifest = jobs.run_export(self.setup.config)
            convex = jobs.open_convex(self.setup.config)
            writer = MirrorWriter(convex, max_documents=3, stop_after_batches=batches)
            # a run that dies, or one that finishes but never closes (no syncRuns, progress left)
            with contextlib.suppress(BatchLimitReached):
                Sync(self.setup.store(), writer, SyncOptions(snapshot_id=manifest.snapshot_id)).run()

        @rule()
        def lose_state(self) -> None:
            store = self.setup.store()
            store.blobs.delete(store.state_key())

        @rule(garbage=st.sampled_from([b"", b"{", b"[]", b'{"tables": {"users": 1}}', b"\xff"]))
        def damage_state(self, garbage: bytes) -> None:
            store = self.setup.store()
            key = store.state_key() if garbage != b"[]" else store.progress_key()
            store.blobs.put(key, garbage)

        @rule(table=st.sampled_from(TABLES), at=st.integers(0, 10**6), delete=st.booleans())
        def damage_applied_file(self, table: str, at: int, delete: bool) -> None:
            store = self.setup.store()
            try:
                state, _ = store.read_state()
            except StateFileError:
                return
            entry = state.tables.get(table) if state else None
            if entry is None or entry.snapshot_id is None:
                return
            key = store.table_key(entry.snapshot_id, table)
            blob = store.blobs.get(key)
            if blob is None:
                return
            if delete:
                store.blobs.delete(key)
            else:
                data = bytearray(blob.data)
                data[at % len(data)] ^= 0x20  # e.g. a letter's case, or a comma into a "\x0c"
                store.blobs.put(key, bytes(data))

        def teardown(self) -> None:
            report = self.setup.run(allow_mass_delete=True)
            assert all(t["status"] in ("applied", "unchanged") for t in report["tables"].values()), report
            verify = jobs.verify(self.setup.config)
            assert verify["snapshotId"] == report["snapshotId"]
            for name, table in verify["tables"].items():
                assert table["missing"] == table["extra"] == table["different"] == 0, (name, table)

    run_state_machine_as_test(
        SyncMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=10,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_random_changes_crashes_and_damage_end_with_convex_equal_to_the_source(
    xata_standin: XataStandInFactory, fresh_local_convex: LocalConvex, tmp_path: Path
) -> None:
    run_machine(xata_standin, fresh_local_convex, tmp_path)

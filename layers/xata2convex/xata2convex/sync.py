"""Sync: diff the newest snapshot against the applied one, push only the differences, advance state.

State (`state/applied.json`) records, per Xata table, the snapshot last applied to Convex and the
records Convex refused (retried every run until they are fixed in Xata); its top-level `snapshotId`
is the snapshot last applied to *every* table. It is written once, at the end of a run.

While a run writes, `state/progress.json` says which tables it has started writing and which it has
finished. A run that dies part-way (a crash, the Lambda timeout) leaves applied.json as it was and
progress.json behind, and the next run
- resumes: a table the dead run finished is diffed from the snapshot it reached, not redone;
- reconciles a table the dead run had started: Convex may hold records that were added and then
  deleted since, which no diff between two snapshots would show, so the table is compared with
  what Convex holds (every write is an idempotent upsert or delete by `xata_id`).
A table held back after writing part of its changes (mass-delete guard, an error) is marked `dirty`
in applied.json and reconciled the same way next time.

Per table the run first gathers the facts (state, progress, manifests, drift, whether Convex holds
documents), then decides (plan.py, pure), then acts: a diff or reconcile pushed into the sink. A dry
run is the same run with a sink that only reads and a recorder that writes nothing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .changes import ChangeFile, ChangeRecorder, ChangeRow, ChangeSample
from .convex_sink import BatchLimitReached, DryRunSink, MirrorSink, MirrorWriter, PushStats
from .diff import TableDiffer
from .drift import FIX_COMMAND, SchemaDrift, detect_drift
from .links import link_order, resolve_pending, upsert_cost
from .mirror import MirrorPlan, TablePlan, to_convex_document
from .mirror_config import MirrorConfig
from .model import (
    DatabaseSchema,
    RecordError,
    SnapshotError,
    SnapshotManifest,
    XataToConvexError,
    utc_now_iso,
)
from .plan import (
    RECONCILED,
    AppliedTable,
    GuardOptions,
    TableDecision,
    TableFacts,
    guard_deletes,
    next_state,
    plan_table,
)
from .progress import NoProgress, ProgressDisplay
from .snapshot import SnapshotStore, new_snapshot_id
from .state import (
    AppliedState,
    Progress,
    RunReport,
    StateFileError,
    TableProgress,
    TableReport,
    TableState,
    Trigger,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncOptions:
    snapshot_id: str | None = None  # default: the newest complete snapshot
    full: bool = False  # reload everything and delete mirrored documents not in the snapshot
    dry_run: bool = False  # diff only: nothing written to Convex or to the state
    max_delete_share: float = 0.5  # mass-delete guard: largest share of a table one run may delete
    min_guarded_deletes: int = 10  # ... once it deletes at least this many rows (small tables shrink)
    allow_mass_delete: bool = False
    run_id: str | None = None
    trigger: Trigger | None = None  # who started the run: a Convex cron, a person (Convex, Lambda), the CLI
    stop_after_batches: int | None = None  # fault hook: stop the push after this many batches

    @property
    def mode(self) -> Literal["incremental", "full"]:
        return "full" if self.full else "incremental"

    @property
    def guard(self) -> GuardOptions:
        return GuardOptions(self.max_delete_share, self.min_guarded_deletes, self.allow_mass_delete)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> SyncOptions:
        """From a direct-invoke event `{"snapshotId"?, "full"?, "dryRun"?, "runId"?}`, checked strictly."""
        fields: dict[str, type] = {"snapshotId": str, "full": bool, "dryRun": bool, "runId": str}
        for name, value in event.items():
            if name not in fields:
                raise ValueError(f"unknown event field {name!r}; expected {', '.join(fields)}")
            if not isinstance(value, fields[name]):
                raise ValueError(f"event field {name!r} must be a {fields[name].__name__}")
        return cls(
            snapshot_id=event.get("snapshotId"),
            full=event.get("full", False),
            dry_run=event.get("dryRun", False),
            run_id=event.get("runId"),
        )


def new_run_id() -> str:
    """Shaped like a snapshot id, whose suffix carries the millisecond: `runs ls` orders runs of one
    second by when they started, not by a random suffix."""
    return new_snapshot_id()


class RunRecorder:
    """Writes what a run has done to the store: progress while it writes, then report and state."""

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store
        self.changes: dict[str, ChangeSample] = {}  # what the HTML page shows of each change file

    def progress(self, progress: Progress) -> None:
        self.store.write_progress(progress)

    def change_file(self, table: str) -> ChangeFile | None:
        return ChangeFile(table)

    def save_changes(self, run_id: str, file: ChangeFile) -> str | None:
        """Store a table's change file (unless nothing changed); returns its key."""
        table = file.sample.table
        self.changes[table] = file.save(functools.partial(self.store.write_change_file, run_id, table))
        return self.changes[table].key

    def finish(self, report: RunReport, state: AppliedState, etag: str | None) -> None:
        # The report first: a run that dies after it is closed from it (jobs.close_dead_run), and
        # progress.json, cleared once syncRuns has the report too, says that run has not closed yet.
        report.report_key = self.store.run_key(report.run_id)
        report.html_report_key = self.store.run_key(report.run_id, "html")
        self.store.write_run_report(report.run_id, report.to_json(), self.changes)
        self.store.write_state(state, expected_etag=etag)


class DryRunRecorder(RunRecorder):
    """A dry run leaves no trace in the store."""

    def progress(self, progress: Progress) -> None:
        pass

    def change_file(self, table: str) -> ChangeFile | None:
        return None

    def finish(self, report: RunReport, state: AppliedState, etag: str | None) -> None:
        pass


class Sync:
    def __init__(
        self,
        store: SnapshotStore,
        writer: MirrorWriter | None,
        options: SyncOptions,
        display: ProgressDisplay | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.display = display or NoProgress()  # what the user sees of each table's push
        self.run_id = options.run_id or new_run_id()
        self.sink: MirrorSink
        self.recorder: RunRecorder
        if options.dry_run:  # reads Convex (drift, reconciling) through `writer` when there is one
            self.sink, self.recorder = DryRunSink(writer), DryRunRecorder(store)
        elif writer is None:
            raise ValueError("a Convex writer is needed unless dry_run")
        else:
            self.sink, self.recorder = writer, RunRecorder(store)
        self._manifests: dict[str, SnapshotManifest] = {}
        self._schemas: dict[str, DatabaseSchema] = {}
        self.progress = Progress(self.run_id, "")

    def run(self) -> RunReport:
        started = time.monotonic()
        started_at = utc_now_iso()
        snapshot_id = self.options.snapshot_id or self.store.latest_snapshot()
        if snapshot_id is None:
            raise SnapshotError("no complete snapshot to sync: run `xata2convex export` first")
        manifest = self._manifest(snapshot_id)
        deployed = self.sink.schema_info()
        # The deployed mirror says how to write it (table prefix, int64 columns, links): see mirror_config.
        config = MirrorConfig.from_schema_info(deployed) if deployed is not None else MirrorConfig()
        plan = MirrorPlan.from_schema(self._schema(snapshot_id), config)
        state, etag, state_problem = self._read_state()
        left_behind, progress_problem = self._read_progress()  # by a run that did not finish
        self.progress = Progress(self.run_id, snapshot_id, dict(left_behind.tables) if left_behind else {})
        drift = (
            detect_drift(plan, manifest.schema_sha256, deployed) if deployed is not None else SchemaDrift()
        )

        results: dict[str, TableReport] = {}
        for table in link_order(plan):  # a link's target first, so that most links resolve at once
            name = table.xata_name
            try:
                facts = self._facts(manifest, table, state, state_problem, progress_problem, drift)
                results[name] = self._apply(snapshot_id, table, plan_table(facts))
            except BatchLimitReached:
                raise  # the fault hook stands for a crash: nothing after it may run
            except XataToConvexError as exc:  # this table stays where it was; the others go on
                results[name] = TableReport(status="failed", message=str(exc))
            if name in drift.notices and results[name].message is None:
                fix = FIX_COMMAND.format(snapshot_id=snapshot_id)
                results[name].message = "; ".join(drift.notices[name]) + f". Regenerate the schema: {fix}"

        # What the tables' writes left unresolved; every link after a run that died part-way.
        deployed_tables = [t for t in plan.tables if t.xata_name not in drift.tables]
        died = left_behind is not None or progress_problem is not None
        links = resolve_pending(self.sink, deployed_tables, everything=died)
        report = RunReport(
            run_id=self.run_id,
            snapshot_id=snapshot_id,
            mode=self.options.mode,
            dry_run=self.options.dry_run,
            trigger=self.options.trigger,
            base_snapshot_id=state.snapshot_id,
            started_at=started_at,
            finished_at=utc_now_iso(),
            duration_ms=int((time.monotonic() - started) * 1000),
            tables={t.xata_name: results[t.xata_name] for t in plan.tables},  # in schema order
            drift=drift.messages(),
            drift_dropped=bool(drift.dropped),
            links=links,
        )
        outcomes = {n: self._entry(snapshot_id, n, r) if r.applied else None for n, r in results.items()}
        new_state = next_state(state, self.progress.tables, outcomes, snapshot_id, self.run_id, utc_now_iso())
        self.recorder.finish(report, new_state, etag)
        return report

    # --- facts ---
    def _read_state(self) -> tuple[AppliedState, str | None, str | None]:
        try:
            state, etag = self.store.read_state()
        except StateFileError as exc:  # replaced at the end of the run; every table reconciled
            log.warning("%s", exc)
            return AppliedState(), exc.etag, exc.summary
        return state or AppliedState(), etag, None

    def _read_progress(self) -> tuple[Progress | None, str | None]:
        try:
            return self.store.read_progress(), None
        except StateFileError as exc:
            log.warning("%s", exc)
            return None, exc.summary

    def _facts(
        self,
        manifest: SnapshotManifest,
        table: TablePlan,
        state: AppliedState,
        state_problem: str | None,
        progress_problem: str | None,
        drift: SchemaDrift,
    ) -> TableFacts:
        name = table.xata_name
        try:
            new = manifest.table(name)
        except KeyError:
            where = manifest.snapshot_id
            raise SnapshotError(f"snapshot {where}: its manifest lists no table {name!r}") from None
        entry = state.tables.get(name)
        carried = self.progress.tables.get(name)
        named = {e.snapshot_id for e in (entry, carried.applied if carried else None) if e and e.snapshot_id}
        unknown = not (entry or carried or state_problem or self.options.full or name in drift.tables)
        return TableFacts(
            name=name,
            snapshot_id=manifest.snapshot_id,
            new=new,
            column_types={c.name: c.type for c in table.schema.columns},
            source=manifest.source,
            entry=entry,
            carried=carried,
            applied={sid: self._applied_table(sid, name) for sid in sorted(named)},
            state_problem=state_problem,
            progress_problem=progress_problem,
            drift=drift.tables.get(name, ()),
            mirror_has_documents=self.sink.has_documents(table.convex_name) if unknown else None,
            full=self.options.full,
        )

    def _applied_table(self, snapshot_id: str, name: str) -> AppliedTable:
        """The table as snapshot `snapshot_id` holds it, if it is all still there."""
        try:
            manifest = self._manifest(snapshot_id)
            schema = self._schema(snapshot_id)
        except (SnapshotError, ValueError, KeyError, TypeError):
            return AppliedTable(snapshot_id, problem=f"snapshot {snapshot_id} last applied is gone")
        try:
            table_manifest, table_schema = manifest.table(name), schema.table(name)
        except KeyError:
            return AppliedTable(
                snapshot_id, problem=f"snapshot {snapshot_id} last applied has no table {name!r}"
            )
        key = self.store.table_key(snapshot_id, name)
        if not self.store.blobs.exists(key):
            where = self.store.describe(key)
            return AppliedTable(
                snapshot_id, problem=f"{where} of snapshot {snapshot_id} last applied is gone"
            )
        return AppliedTable(
            snapshot_id,
            table_manifest,
            {c.name: c.type for c in table_schema.columns},
            manifest.source,
        )

    def _schema(self, snapshot_id: str) -> DatabaseSchema:
        if snapshot_id not in self._schemas:
            self._schemas[snapshot_id] = self.store.read_schema(snapshot_id)
        return self._schemas[snapshot_id]

    def _manifest(self, snapshot_id: str) -> SnapshotManifest:
        if snapshot_id not in self._manifests:
            self._manifests[snapshot_id] = self.store.read_manifest(snapshot_id)
        return self._manifests[snapshot_id]

    # --- effects: one table ---
    def _apply(self, snapshot_id: str, table: TablePlan, decision: TableDecision) -> TableReport:
        new = self._manifest(snapshot_id).table(table.xata_name)
        if decision.action == "drift":
            return TableReport(status="drift", message=decision.message)
        if decision.action == "unchanged":
            self.store.check_table(snapshot_id, new)  # the file applied next time must be the one named
            base_id = decision.base.snapshot_id if decision.base else None
            result = TableReport(
                unchanged=new.rows, status="unchanged", not_exported=new.rejected, base_snapshot_id=base_id
            )
            self._mark_applied(snapshot_id, table.xata_name, result)  # a dead run's last table counts too
            return result
        try:
            return self._push(snapshot_id, table, decision)
        except SnapshotError as exc:
            if decision.action != "diff" or decision.base is None:
                raise
            # Either file may be damaged; a reconcile never reads the old one, and is right whatever
            # part of the diff was written. A damaged new file fails the reconcile too, naming it.
            why = f"the diff from snapshot {decision.base.snapshot_id} failed ({exc}); {RECONCILED}"
        log.warning("table %s: %s", table.xata_name, why)
        return self._push(snapshot_id, table, TableDecision("reconcile", why))

    def _push(self, snapshot_id: str, table: TablePlan, decision: TableDecision) -> TableReport:
        started = time.monotonic()
        name = table.xata_name
        result = TableReport(message=decision.message)
        reconcile = decision.action == "reconcile"
        base = decision.base.manifest if decision.base and not reconcile else None
        # Records the export left out (a value that does not fit): their documents stay as they are.
        result.not_exported = self._manifest(snapshot_id).table(name).rejected
        kept = frozenset(u.record_id for u in result.not_exported)
        result.base_snapshot_id = decision.base.snapshot_id if base and decision.base else None
        # Record-level changes, for the run's change file; not known when reconciling with Convex.
        change_file = None if reconcile else self.recorder.change_file(name)
        changes = ChangeRecorder(table.schema, change_file.write) if change_file else None
        differ = TableDiffer(
            table.schema,
            self.store.iter_text(decision.base.snapshot_id, name, expected=base)
            if base and decision.base
            else None,
            self.store.iter_text(snapshot_id, name, expected=self._manifest(snapshot_id).table(name)),
            old_rows=base.rows if base else 0,
            different_writers=decision.different_writers,
            retry_ids=decision.retry,
            kept_ids=kept,
            keep_old=changes.keep_old if changes else None,
        )
        deletes: list[str] = []
        seen: set[str] | None = set(kept) if reconcile else None
        stats = PushStats()
        meter = self.display.track(name, "sync")
        documents = self._documents(table, differ, deletes, seen, result, changes)
        documents = meter.items(documents, lambda: stats.batches)
        self._mark(name, TableProgress("pushing"))
        self.sink.upsert(table.convex_name, documents, stats, upsert_cost(table))
        rows_before = base.rows if base else 0
        if seen is not None:  # what Convex did, rather than what a diff against nothing says
            rows_before = 0
            for document in self.sink.list_documents(table.convex_name):
                rows_before += 1
                if document["xata_id"] not in seen:
                    deletes.append(document["xata_id"])
            result.added, result.changed, result.unchanged = stats.inserted, stats.updated, stats.unchanged
            result.deleted = len(deletes)
        withheld = guard_deletes(len(deletes), rows_before, self.options.guard, decision, snapshot_id)
        if withheld:
            result.status, result.message = "blocked", withheld
        else:
            self.sink.delete(table.convex_name, deletes, stats)
        meter.done(steps=stats.batches)
        if changes and change_file:
            changes.finish(differ, deletes=not withheld)
            result.changes_key = self.recorder.save_changes(self.run_id, change_file)
        if self.options.dry_run and result.status == "applied":
            result.status = "dry-run"
        if result.applied:
            self._mark_applied(snapshot_id, name, result)
        result.batches = stats.batches
        result.duplicates_removed = stats.duplicates_removed
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    def _documents(
        self,
        table: TablePlan,
        differ: TableDiffer,
        deletes: list[str],
        seen: set[str] | None,
        result: TableReport,
        changes: ChangeRecorder | None = None,
    ) -> Iterator[dict[str, Any]]:
        refused: dict[str, int] = {}
        for change in differ:
            if change.record is None:
                deletes.append(change.record_id)
                if changes:
                    changes.record(change)
                continue
            if seen is not None:
                seen.add(change.record_id)
            try:
                document = to_convex_document(table, change.record, result.warnings)
            except RecordError as exc:
                result.errors.append(str(exc))
                result.rejected.append(change.record_id)
                refused[change.kind] = refused.get(change.kind, 0) + 1
                continue
            if changes:  # only records Convex takes are changes of this run
                changes.record(change)
            yield document
        # refused records are reported as errors, not as added or changed
        counts = differ.result
        result.added = counts.added - refused.get("added", 0)
        result.changed = counts.changed - refused.get("changed", 0)
        result.deleted, result.unchanged = counts.deleted, counts.unchanged

    # --- state ---
    def _entry(self, snapshot_id: str, name: str, result: TableReport) -> TableState:
        """A table's entry in applied.json (and, while a run writes, in progress.json)."""
        sha256 = self._manifest(snapshot_id).table(name).sha256
        return TableState(snapshot_id, sha256, frozenset(result.rejected))

    def _mark(self, name: str, progress: TableProgress) -> None:
        self.progress.tables[name] = progress
        self.recorder.progress(self.progress)

    def _mark_applied(self, snapshot_id: str, name: str, result: TableReport) -> None:
        self._mark(name, TableProgress("applied", self._entry(snapshot_id, name, result)))


def diff_snapshots(
    store: SnapshotStore,
    old_id: str,
    new_id: str,
    on_change: Callable[[str, ChangeRow], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-table counts between two snapshots (`snapshots diff A B`), writing nothing; `on_change`,
    if given, gets every record that differs (`--records`) with the table's name."""
    old, new = store.read_manifest(old_id), store.read_manifest(new_id)
    old_tables = {t.name: t for t in old.tables}
    counts: dict[str, dict[str, Any]] = {}
    for table in store.read_schema(new_id).tables:
        before = old_tables.pop(table.name, None)
        changes = ChangeRecorder(table, functools.partial(on_change, table.name)) if on_change else None
        differ = TableDiffer(
            table,
            store.iter_text(old_id, table.name, expected=before) if before else None,
            store.iter_text(new_id, table.name, expected=new.table(table.name)),
            old_rows=before.rows if before else 0,
            different_writers=before is not None and old.source != new.source,
            keep_old=changes.keep_old if changes else None,
        )
        for change in differ:
            if changes:
                changes.record(change)
        if changes:
            changes.finish(differ)
        counts[table.name] = differ.result.to_json()
    old_schema = store.read_schema(old_id) if on_change and old_tables else None
    for name, gone in sorted(old_tables.items()):
        counts[name] = {"added": 0, "changed": 0, "deleted": gone.rows, "unchanged": 0, "status": "dropped"}
        if on_change and old_schema is not None:
            for record in store.iter_records(old_id, old_schema.table(name), expected=gone):
                on_change(name, ChangeRow(str(record["id"]), "deleted", tuple(record), record, None))
    return counts

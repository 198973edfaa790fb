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
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .convex_sink import BatchLimitReached, MirrorWriter, PushStats
from .diff import TableDiff, TableDiffer
from .drift import FIX_COMMAND, SchemaDrift, detect_drift
from .mirror import MirrorPlan, TablePlan, to_convex_document
from .model import (
    DatabaseSchema,
    RecordError,
    SnapshotError,
    SnapshotManifest,
    XataToConvexError,
    utc_now_iso,
)
from .snapshot import SnapshotStore

log = logging.getLogger(__name__)
MAX_ERRORS_REPORTED = 100


@dataclass(frozen=True)
class SyncOptions:
    snapshot_id: str | None = None  # default: the newest complete snapshot
    full: bool = False  # reload everything and delete mirrored documents not in the snapshot
    dry_run: bool = False  # diff only: nothing written to Convex or to the state
    max_delete_share: float = 0.5  # mass-delete guard: largest share of a table one run may delete
    min_guarded_deletes: int = 10  # ... once it deletes at least this many rows (small tables shrink)
    allow_mass_delete: bool = False
    run_id: str | None = None
    stop_after_batches: int | None = None  # fault hook: stop the push after this many batches

    @property
    def mode(self) -> str:
        return "full" if self.full else "incremental"

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


@dataclass
class TableResult:
    diff: TableDiff
    status: str = "applied"  # applied | unchanged | drift | blocked | failed | dry-run
    message: str | None = None
    batches: int = 0
    duration_ms: int = 0
    duplicates_removed: int = 0  # extra Convex documents sharing one xata_id, collapsed into one
    errors: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {**self.diff.to_json(), "status": self.status, "batches": self.batches}
        data["durationMs"] = self.duration_ms
        if self.duplicates_removed:
            data["duplicatesRemoved"] = self.duplicates_removed
        if self.message:
            data["message"] = self.message
        if self.errors:
            data["errors"] = self.errors[:MAX_ERRORS_REPORTED]
            data["rejected"] = len(self.rejected)
        if self.warnings:
            data["warnings"] = self.warnings[:MAX_ERRORS_REPORTED]
        return data

    @property
    def applied(self) -> bool:
        return self.status in ("applied", "unchanged")


def _without_status(progress: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in progress.items() if k != "status"}


def new_run_id() -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


class Sync:
    def __init__(self, store: SnapshotStore, writer: MirrorWriter | None, options: SyncOptions) -> None:
        if writer is None and not options.dry_run:
            raise ValueError("a Convex writer is needed unless dry_run")
        self.store = store
        self.writer = writer  # in a dry run, used only to read (schema drift, --full's listing)
        self.options = options
        self.run_id = options.run_id or new_run_id()
        self._writes = not options.dry_run
        self._manifests: dict[str, SnapshotManifest] = {}
        self._schemas: dict[str, DatabaseSchema] = {}
        self._progress: dict[str, Any] = {"tables": {}}

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        started_at = utc_now_iso()
        snapshot_id = self.options.snapshot_id or self.store.latest_snapshot()
        if snapshot_id is None:
            raise SnapshotError("no complete snapshot to sync: run `xata2convex export` first")
        manifest = self._manifest(snapshot_id)
        plan = MirrorPlan.from_schema(self._schema(snapshot_id))
        state, etag = self.store.read_state()
        state = state or {"tables": {}}
        left_behind = self.store.read_progress() or {"tables": {}}  # by a run that did not finish
        self._progress = {
            "runId": self.run_id,
            "snapshotId": snapshot_id,
            "tables": dict(left_behind["tables"]),
        }
        drift = SchemaDrift()
        if self.writer is not None:
            drift = detect_drift(
                plan, manifest.schema_sha256, self.writer.convex.query("mirror:schemaInfo", {})
            )

        fix = FIX_COMMAND.format(snapshot_id=snapshot_id)
        results: dict[str, TableResult] = {}
        for table in plan.tables:
            name = table.xata_name
            if name in drift.tables:
                message = "; ".join(drift.tables[name]) + f". Fix: {fix}"
                results[name] = TableResult(TableDiff(name), status="drift", message=message)
                continue
            try:
                results[name] = self._sync_table(snapshot_id, table, self._base_entry(name, state))
            except BatchLimitReached:
                raise  # the fault hook stands for a crash: nothing after it may run
            except XataToConvexError as exc:  # this table stays where it was; the others go on
                results[name] = TableResult(TableDiff(name), status="failed", message=str(exc))
            if name in drift.notices and results[name].message is None:
                results[name].message = "; ".join(drift.notices[name]) + f". Regenerate the schema: {fix}"

        report = self._report(snapshot_id, started_at, started, results, drift)
        if self._writes:
            self._advance_state(state, etag, snapshot_id, results)
            self.store.clear_progress()
            self.store.write_run_report(self.run_id, report)
        return report

    def _base_entry(self, name: str, state: dict[str, Any]) -> dict[str, Any] | None:
        """What Convex holds of a table: applied.json's entry, or what a run that died left behind."""
        entry: dict[str, Any] | None = state["tables"].get(name)
        carried = self._progress["tables"].get(name)
        if carried and carried["status"] == "applied":
            return _without_status(carried)
        if carried:  # the dead run had started writing this table
            return {**(entry or {}), "dirty": True}
        return entry

    def _entry(self, snapshot_id: str, name: str, rejected: list[str]) -> dict[str, Any]:
        """A table's entry in applied.json (and, while a run writes, in progress.json)."""
        return {
            "snapshotId": snapshot_id,
            "sha256": self._manifest(snapshot_id).table(name).sha256,
            "rejected": rejected,
        }

    def _mark(self, name: str, progress: dict[str, Any]) -> None:
        if self._writes:
            self._progress["tables"][name] = progress
            self.store.write_progress(self._progress)

    # --- one table ---
    def _sync_table(self, snapshot_id: str, table: TablePlan, applied: dict[str, Any] | None) -> TableResult:
        started = time.monotonic()
        name = table.xata_name
        new = self._manifest(snapshot_id)
        old = self._applied_manifest(applied, name)
        retry = frozenset(applied.get("rejected", [])) if applied else frozenset()
        result = TableResult(TableDiff(name))
        # Compare with what Convex holds, not with a snapshot, when a diff could not tell the truth.
        reason = self._reconcile_reason(name, applied, old, new)
        reconcile = self.options.full or reason is not None
        result.message = reason
        if not reconcile and old and old.table(name).sha256 == new.table(name).sha256 and not retry:
            result.diff.unchanged = new.table(name).rows
            result.status = "unchanged"
            return result

        base = None if reconcile else old
        differ = TableDiffer(
            table.schema,
            self.store.iter_text(base.snapshot_id, name) if base else None,
            self.store.iter_text(snapshot_id, name),
            old_rows=base.table(name).rows if base else 0,
            different_writers=base is not None and base.source != new.source,
            retry_ids=retry,
        )
        deletes: list[str] = []
        seen: set[str] | None = set() if reconcile else None
        documents = self._documents(table, differ, deletes, seen, result)
        stats = PushStats()
        self._mark(name, {"status": "pushing"})
        if self._writes and self.writer is not None:
            self.writer.upsert(table.convex_name, documents, stats)
        else:
            for _ in documents:
                pass
        base_rows = base.table(name).rows if base else 0
        if reconcile and self.writer is not None and seen is not None:
            base_rows = 0
            for document in self.writer.list_documents(table.convex_name):
                base_rows += 1
                if document["xata_id"] not in seen:
                    deletes.append(document["xata_id"])
            if self._writes:  # what Convex did, rather than what a diff against nothing says
                result.diff = TableDiff(name, stats.inserted, stats.updated, 0, stats.unchanged)
            result.diff.deleted = len(deletes)
        share = len(deletes) / base_rows if base_rows else 0.0
        guarded = len(deletes) >= self.options.min_guarded_deletes and share > self.options.max_delete_share
        if guarded and not self.options.allow_mass_delete:
            result.status = "blocked"
            result.message = (
                f"{len(deletes)} of {base_rows} rows ({share:.0%}) would be deleted, over the mass-delete "
                f"guard of {self.options.max_delete_share:.0%}; deletes withheld. "
                "Rerun with --allow-mass-delete if intended."
            )
        elif self._writes and self.writer is not None:
            self.writer.delete(table.convex_name, deletes, stats)
        if self.options.dry_run and result.status != "blocked":
            result.status = "dry-run"
        if result.applied:
            self._mark(name, {"status": "applied", **self._entry(snapshot_id, name, result.rejected)})
        result.batches = stats.batches
        result.duplicates_removed = stats.duplicates_removed
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    def _reconcile_reason(
        self, name: str, applied: dict[str, Any] | None, old: SnapshotManifest | None, new: SnapshotManifest
    ) -> str | None:
        if applied is None:
            return None  # never applied: everything is added, and upserts by xata_id make no duplicates
        if applied.get("dirty"):
            return "an earlier run stopped while writing this table; reconciled with Convex"
        if old is None:
            return f"snapshot {applied.get('snapshotId')} last applied is gone; reconciled with Convex"
        before = {c.name: c.type for c in self._schema(old.snapshot_id).table(name).columns}
        retyped = [
            c.name
            for c in self._schema(new.snapshot_id).table(name).columns
            if before.get(c.name, c.type) != c.type
        ]
        if retyped:  # the same text may now decode to other values (e.g. "5" -> 5)
            return f"column(s) {', '.join(map(repr, retyped))} changed type; every record rewritten"
        return None

    def _schema(self, snapshot_id: str) -> DatabaseSchema:
        if snapshot_id not in self._schemas:
            self._schemas[snapshot_id] = self.store.read_schema(snapshot_id)
        return self._schemas[snapshot_id]

    def _manifest(self, snapshot_id: str) -> SnapshotManifest:
        if snapshot_id not in self._manifests:
            self._manifests[snapshot_id] = self.store.read_manifest(snapshot_id)
        return self._manifests[snapshot_id]

    def _applied_manifest(self, applied: dict[str, Any] | None, name: str) -> SnapshotManifest | None:
        """The manifest of the snapshot this table was last applied from, if it is still readable."""
        if not applied or not applied.get("snapshotId"):
            return None
        try:
            manifest = self._manifest(applied["snapshotId"])
            manifest.table(name)
        except (SnapshotError, KeyError):
            log.warning("the snapshot table %s was last applied from is gone", name)
            return None
        return manifest

    def _documents(
        self,
        table: TablePlan,
        differ: TableDiffer,
        deletes: list[str],
        seen: set[str] | None,
        result: TableResult,
    ) -> Iterator[dict[str, Any]]:
        refused: dict[str, int] = {}
        for change in differ:
            if change.record is None:
                deletes.append(change.record_id)
                continue
            if seen is not None:
                seen.add(change.record_id)
            try:
                yield to_convex_document(table, change.record, result.warnings)
            except RecordError as exc:
                result.errors.append(str(exc))
                result.rejected.append(change.record_id)
                refused[change.kind] = refused.get(change.kind, 0) + 1
        result.diff = differ.result  # refused records are reported as errors, not as added or changed
        result.diff.added -= refused.get("added", 0)
        result.diff.changed -= refused.get("changed", 0)

    # --- state and report ---
    def _advance_state(
        self,
        state: dict[str, Any],
        etag: str | None,
        snapshot_id: str,
        results: dict[str, TableResult],
    ) -> None:
        tables = dict(state.get("tables", {}))
        for name, result in results.items():
            carried = self._progress["tables"].get(name)
            if result.applied:
                tables[name] = self._entry(snapshot_id, name, result.rejected)
            elif carried and carried["status"] == "applied":  # reached by a run that died; keep it
                tables[name] = _without_status(carried)
            elif carried:  # part of this table's changes were written, then it was held back
                tables[name] = {**tables.get(name, {}), "dirty": True}
        for name in list(tables):
            if name not in results:
                del tables[name]  # the table is gone from Xata
        new_state = {**state, "tables": tables, "runId": self.run_id, "updatedAt": utc_now_iso()}
        if all(r.applied for r in results.values()):
            new_state["snapshotId"] = snapshot_id
        self.store.write_state(new_state, expected_etag=etag)

    def _report(
        self,
        snapshot_id: str,
        started_at: str,
        started: float,
        results: dict[str, TableResult],
        drift: SchemaDrift,
    ) -> dict[str, Any]:
        clean = all(
            r.status in ("applied", "unchanged", "dry-run") and not r.errors for r in results.values()
        )
        status = "succeeded" if clean and not drift.dropped else "partial"
        return {
            "runId": self.run_id,
            "snapshotId": snapshot_id,
            "mode": self.options.mode,
            "dryRun": self.options.dry_run,
            "status": status,
            "startedAt": started_at,
            "finishedAt": utc_now_iso(),
            "durationMs": int((time.monotonic() - started) * 1000),
            "batches": sum(r.batches for r in results.values()),
            "tables": {name: r.to_json() for name, r in results.items()},
            "drift": drift.messages(),
        }


def diff_snapshots(store: SnapshotStore, old_id: str, new_id: str) -> dict[str, dict[str, Any]]:
    """Per-table counts between two snapshots (`snapshots diff A B`), writing nothing."""
    old, new = store.read_manifest(old_id), store.read_manifest(new_id)
    old_tables = {t.name: t for t in old.tables}
    counts: dict[str, dict[str, Any]] = {}
    for table in store.read_schema(new_id).tables:
        before = old_tables.pop(table.name, None)
        differ = TableDiffer(
            table,
            store.iter_text(old_id, table.name) if before else None,
            store.iter_text(new_id, table.name),
            old_rows=before.rows if before else 0,
            different_writers=before is not None and old.source != new.source,
        )
        for _ in differ:
            pass
        counts[table.name] = differ.result.to_json()
    for name, gone in sorted(old_tables.items()):
        counts[name] = {"added": 0, "changed": 0, "deleted": gone.rows, "unchanged": 0, "status": "dropped"}
    return counts

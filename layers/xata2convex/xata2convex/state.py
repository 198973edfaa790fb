"""The sync's own files, typed: `state/applied.json`, `state/progress.json` and the run report.

applied.json  {"snapshotId"?, "runId"?, "updatedAt"?, "tables": {name: {"snapshotId", "sha256",
              "rejected": [ids], "dirty"?: true}}}
progress.json {"runId", "snapshotId", "tables": {name: {"status": "pushing"} |
              {"status": "applied", "snapshotId", "sha256", "rejected"}}}

Parsing is strict: a file that is not this shape is a `StateFileError` naming it, never read as
"nothing applied" (which would hide what Convex holds); the sync then reconciles (see plan.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .model import SnapshotError, UnfitValue

MAX_ERRORS_REPORTED = 100
T = TypeVar("T")


class StateFileError(SnapshotError):
    """A state file exists but cannot be read as one; `etag` lets the run replace it all the same."""

    FIX = "the next `xata2convex sync` reconciles every table with Convex and rewrites it"

    def __init__(self, where: str, problem: str, etag: str | None = None) -> None:
        self.summary = f"{where} is corrupt ({problem})"  # what a sync reports while it reconciles
        super().__init__(f"{self.summary}; {self.FIX}")
        self.etag = etag


class _Malformed(ValueError):
    pass


def _get(data: Mapping[str, Any], key: str, kind: type, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Malformed(f"{key!r} must be a {kind.__name__}")
    return value


def _object(raw: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Malformed(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Malformed("not a JSON object")
    return data


@dataclass(frozen=True)
class TableState:
    """What Convex holds of one table: the snapshot it was applied from and the records it refused."""

    snapshot_id: str | None  # None only when dirty: a table first written by a run held back
    sha256: str | None
    rejected: frozenset[str] = frozenset()
    dirty: bool = False  # part of a later snapshot's changes were written: Convex is in between

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rejected": sorted(self.rejected)}
        if self.snapshot_id is not None and self.sha256 is not None:
            data = {"snapshotId": self.snapshot_id, "sha256": self.sha256, **data}
        if self.dirty:
            data["dirty"] = True
        return data

    @classmethod
    def from_json(cls, data: Any) -> TableState:
        if not isinstance(data, dict):
            raise _Malformed("a table entry is not an object")
        rejected = _get(data, "rejected", list, optional=True) or []
        if not all(isinstance(r, str) for r in rejected):
            raise _Malformed("'rejected' must list record ids")
        dirty = bool(_get(data, "dirty", bool, optional=True))
        return cls(
            snapshot_id=_get(data, "snapshotId", str, optional=dirty),
            sha256=_get(data, "sha256", str, optional=dirty),
            rejected=frozenset(rejected),
            dirty=dirty,
        )


def _tables(data: Mapping[str, Any], entry: Callable[[Any], T]) -> dict[str, T]:
    tables = _get(data, "tables", dict, optional=True) or {}
    try:
        return {str(name): entry(table) for name, table in tables.items()}
    except _Malformed as exc:
        raise _Malformed(f"tables: {exc}") from None


@dataclass(frozen=True)
class AppliedState:
    tables: Mapping[str, TableState] = field(default_factory=dict)
    snapshot_id: str | None = None  # the snapshot applied to *every* table
    run_id: str | None = None
    updated_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"tables": {n: t.to_json() for n, t in self.tables.items()}}
        for key, value in (("runId", self.run_id), ("updatedAt", self.updated_at)):
            if value is not None:
                data[key] = value
        if self.snapshot_id is not None:
            data["snapshotId"] = self.snapshot_id
        return data

    @classmethod
    def parse(cls, raw: bytes, where: str, etag: str | None = None) -> AppliedState:
        try:
            data = _object(raw)
            return cls(
                tables=_tables(data, TableState.from_json),
                snapshot_id=_get(data, "snapshotId", str, optional=True),
                run_id=_get(data, "runId", str, optional=True),
                updated_at=_get(data, "updatedAt", str, optional=True),
            )
        except _Malformed as exc:
            raise StateFileError(where, str(exc), etag) from None


@dataclass(frozen=True)
class TableProgress:
    """One table in progress.json: `pushing` (writes started) or `applied` (with its new state)."""

    status: Literal["pushing", "applied"]
    applied: TableState | None = None  # set when status is "applied"

    def to_json(self) -> dict[str, Any]:
        if self.applied is None:
            return {"status": self.status}
        return {"status": self.status, **self.applied.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> TableProgress:
        if not isinstance(data, dict):
            raise _Malformed("a table entry is not an object")
        status = data.get("status")
        if status == "pushing":
            return cls("pushing")
        if status == "applied":
            return cls("applied", TableState.from_json(data))
        raise _Malformed(f"unknown table status {status!r}")


@dataclass
class Progress:
    """What the run writing now (or one that died) has written so far; see sync.py."""

    run_id: str
    snapshot_id: str
    tables: dict[str, TableProgress] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "snapshotId": self.snapshot_id,
            "tables": {n: t.to_json() for n, t in self.tables.items()},
        }

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Progress:
        try:
            data = _object(raw)
            tables = _tables(data, TableProgress.from_json)
            return cls(_get(data, "runId", str), _get(data, "snapshotId", str), tables)
        except _Malformed as exc:
            raise StateFileError(where, str(exc)) from None


TableStatus = Literal["applied", "unchanged", "drift", "blocked", "failed", "dry-run"]
Trigger = Literal["cron", "manual", "cli"]


@dataclass
class TableReport:
    """One table's outcome in a run report; the counts are the diff's (or, reconciling, Convex's)."""

    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    status: TableStatus = "applied"
    message: str | None = None
    batches: int = 0
    duration_ms: int = 0
    duplicates_removed: int = 0  # extra Convex documents sharing one xata_id, collapsed into one
    base_snapshot_id: str | None = None  # what the diff compared with (None: nothing, or Convex itself)
    changes_key: str | None = None  # the run's change file of this table (changes.py)
    errors: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # records the snapshot left out (a value that does not fit): their Convex documents were kept
    not_exported: tuple[UnfitValue, ...] = ()

    @property
    def applied(self) -> bool:
        return self.status in ("applied", "unchanged")

    @property
    def clean(self) -> bool:
        return (
            self.status in ("applied", "unchanged", "dry-run") and not self.errors and not self.not_exported
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "status": self.status,
            "batches": self.batches,
            "durationMs": self.duration_ms,
            "baseSnapshotId": self.base_snapshot_id,
        }
        if self.changes_key:
            data["changesKey"] = self.changes_key
        if self.duplicates_removed:
            data["duplicatesRemoved"] = self.duplicates_removed
        if self.message:
            data["message"] = self.message
        if self.errors:
            data["errors"] = self.errors[:MAX_ERRORS_REPORTED]
            data["rejected"] = len(self.rejected)
        if self.warnings:
            data["warnings"] = self.warnings[:MAX_ERRORS_REPORTED]
        if self.not_exported:
            data["notExported"] = [u.to_json() for u in self.not_exported[:MAX_ERRORS_REPORTED]]
        return data


@dataclass
class LinkStats:
    """A run's end-of-run link pass (links.py): Convex calls it made, links it set, documents it read."""

    calls: int = 0
    linked: int = 0
    scanned: int = 0

    def to_json(self) -> dict[str, int]:
        return {"calls": self.calls, "linked": self.linked, "scanned": self.scanned}


@dataclass
class RunReport:
    """`runs/{run_id}.json`, what `sync --json` prints and what syncRuns mirrors."""

    run_id: str
    snapshot_id: str
    mode: Literal["incremental", "full"]
    dry_run: bool
    started_at: str
    finished_at: str
    duration_ms: int
    tables: dict[str, TableReport]
    drift: list[str]
    drift_dropped: bool = False  # Xata dropped a table the deployed mirror still has
    trigger: Trigger | None = None
    base_snapshot_id: str | None = None  # the snapshot applied in full before this run
    report_key: str | None = None  # keys in the store of this report and its HTML page, once written
    html_report_key: str | None = None
    links: LinkStats = field(default_factory=LinkStats)

    @property
    def status(self) -> Literal["succeeded", "partial"]:
        """`succeeded` only when every table applied cleanly and nothing drifted (exit 0)."""
        clean = all(t.clean for t in self.tables.values()) and not self.drift_dropped
        return "succeeded" if clean else "partial"

    @property
    def batches(self) -> int:
        return sum(t.batches for t in self.tables.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "snapshotId": self.snapshot_id,
            "mode": self.mode,
            "trigger": self.trigger,
            "baseSnapshotId": self.base_snapshot_id,
            "dryRun": self.dry_run,
            "status": self.status,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "durationMs": self.duration_ms,
            "batches": self.batches,
            "tables": {name: t.to_json() for name, t in self.tables.items()},
            "drift": self.drift,
            "links": self.links.to_json(),
        } | ({"reportKey": self.report_key, "htmlReportKey": self.html_report_key} if self.report_key else {})

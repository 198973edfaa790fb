"""The sync's decisions, as pure functions of what the run found (no store, no Convex, no clock).

Per table, `plan_table` decides one of
- `drift`: held back, the deployed Convex schema cannot store the new records;
- `unchanged`: Convex holds this very table file already (same SHA-256, nothing to retry);
- `diff`: push the differences from the snapshot Convex holds (`base`; None: nothing was ever
  applied and Convex has no documents, so every record is added);
- `reconcile`: compare with what Convex holds, document by document, because the state cannot say
  what that is (rule: never trust a guess; reconcile, under the mass-delete guard).
After the diff, `guard_deletes` decides whether its deletes may go; at the end of the run,
`next_state` what applied.json says Convex holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .drift import FIX_COMMAND
from .model import TableManifest
from .state import AppliedState, TableProgress, TableState

RECONCILED = "reconciled with Convex"


@dataclass(frozen=True)
class AppliedTable:
    """A table as the snapshot it was last applied from holds it, or why that cannot be read."""

    snapshot_id: str
    manifest: TableManifest | None = None
    column_types: Mapping[str, str] | None = None
    source: str = ""  # the snapshot's writer ("xata" or "postgres")
    problem: str | None = None  # e.g. the snapshot expired, or its table file is missing


@dataclass(frozen=True)
class TableFacts:
    """Everything the decision for one table depends on, gathered by the sync before it decides."""

    name: str
    snapshot_id: str  # the snapshot being applied
    new: TableManifest
    column_types: Mapping[str, str]
    source: str
    entry: TableState | None = None  # applied.json's entry for the table
    carried: TableProgress | None = None  # what a run that died left for the table in progress.json
    applied: Mapping[str, AppliedTable] | None = None  # by snapshot id: the ones entry/carried name
    state_problem: str | None = None  # applied.json unreadable
    progress_problem: str | None = None  # progress.json unreadable
    drift: Sequence[str] = ()  # what in the deployed schema blocks the table
    mirror_has_documents: bool | None = None  # asked only when there is no entry (None: not known)
    full: bool = False


Action = Literal["drift", "unchanged", "diff", "reconcile"]


@dataclass(frozen=True)
class TableDecision:
    action: Action
    reason: str
    base: AppliedTable | None = None  # for `diff`, and `unchanged`: what Convex holds
    retry: frozenset[str] = frozenset()  # refused last time, sent again even if unchanged
    different_writers: bool = False  # base and new snapshot come from different sources

    @property
    def message(self) -> str | None:
        """What the run report says about the decision (plain diffs and skips say nothing)."""
        return self.reason if self.action in ("drift", "reconcile") else None


def _reconcile(why: str) -> TableDecision:
    return TableDecision("reconcile", f"{why}; {RECONCILED}")


def plan_table(facts: TableFacts) -> TableDecision:
    if facts.drift:
        fix = FIX_COMMAND.format(snapshot_id=facts.snapshot_id)
        return TableDecision("drift", "; ".join(facts.drift) + f". Fix: {fix}")
    if facts.full:
        return TableDecision("reconcile", f"full sync: every record {RECONCILED}")
    if facts.progress_problem:
        return _reconcile(f"{facts.progress_problem}, so an earlier run may have stopped while writing")
    if facts.carried is not None:
        if facts.carried.applied is None:
            return _reconcile("an earlier run stopped while writing this table")
        entry: TableState | None = facts.carried.applied  # a run that died applied it: Convex holds that
    elif facts.state_problem:
        return _reconcile(facts.state_problem)
    else:
        entry = facts.entry
    if entry is None:
        if facts.mirror_has_documents:
            return _reconcile("no applied state for this table, but its Convex table has documents")
        return TableDecision("diff", "never applied: every record is added")
    if entry.dirty or entry.snapshot_id is None:
        return _reconcile("an earlier run stopped while writing this table")
    base = (facts.applied or {}).get(entry.snapshot_id or "")
    if base is None or base.problem or base.manifest is None or base.column_types is None:
        return _reconcile(
            base.problem if base and base.problem else f"snapshot {entry.snapshot_id} is unreadable"
        )
    retyped = [c for c, t in facts.column_types.items() if base.column_types.get(c, t) != t]
    if retyped:  # the same text may now decode to other values (e.g. "5" -> 5)
        return TableDecision(
            "reconcile", f"column(s) {', '.join(map(repr, retyped))} changed type; every record rewritten"
        )
    if base.manifest.sha256 == facts.new.sha256 and not entry.rejected:
        return TableDecision("unchanged", f"the same file as snapshot {entry.snapshot_id}", base)
    return TableDecision(
        "diff",
        f"the differences from snapshot {entry.snapshot_id}",
        base,
        retry=entry.rejected,
        different_writers=base.source != facts.source,
    )


@dataclass(frozen=True)
class GuardOptions:
    max_delete_share: float = 0.5  # the largest share of a table one run may delete
    min_guarded_deletes: int = 10  # ... once it deletes at least this many rows (small tables shrink)
    allow_mass_delete: bool = False


def guard_deletes(
    deletes: int, rows_before: int, options: GuardOptions, decision: TableDecision, snapshot_id: str
) -> str | None:
    """None when the deletes may go; else why they are withheld and what to check first."""
    share = deletes / rows_before if rows_before else 0.0
    if (
        options.allow_mass_delete
        or deletes < options.min_guarded_deletes
        or share <= options.max_delete_share
    ):
        return None
    why = (
        f"{deletes} of {rows_before} rows ({share:.0%}) would be deleted, over the mass-delete guard of "
        f"{options.max_delete_share:.0%}; deletes withheld."
    )
    if decision.base is None:  # compared with Convex: the snapshot, or the Convex table, may be wrong
        check = (
            f"First check that snapshot {snapshot_id} holds the whole table (`xata2convex snapshots show "
            f"{snapshot_id}`) and that CONVEX_URL and SNAPSHOT_URI name the deployment and folder this "
            "mirror was synced with"
        )
    else:
        check = (
            "First check in Xata that these records were really deleted (`xata2convex snapshots diff "
            f"{decision.base.snapshot_id} {snapshot_id}`)"
        )
    return f"{why} {check}; only then rerun with --allow-mass-delete."


def next_state(
    state: AppliedState,
    progress: Mapping[str, TableProgress],
    outcomes: Mapping[str, TableState | None],
    snapshot_id: str,
    run_id: str,
    updated_at: str,
) -> AppliedState:
    """applied.json after a run. `outcomes`: every table of the snapshot, with its new entry when the
    run applied it (None: held back or failed); `progress` holds this run's marks and a dead run's."""
    tables: dict[str, TableState] = {}
    for name, applied in outcomes.items():  # a table gone from Xata leaves the state
        carried, before = progress.get(name), state.tables.get(name)
        if applied is not None:
            tables[name] = applied
        elif carried is not None and carried.applied is not None:  # reached by a run that died
            tables[name] = carried.applied
        elif carried is not None:  # part of this table's changes were written, then it was held back
            tables[name] = replace(before, dirty=True) if before else TableState(None, None, dirty=True)
        elif before is not None:
            tables[name] = before
    in_full = all(applied is not None for applied in outcomes.values())
    return AppliedState(tables, snapshot_id if in_full else state.snapshot_id, run_id, updated_at)

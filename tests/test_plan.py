"""The sync's pure decisions, table-driven: every decision and every reason, no server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from xata2convex.model import TableManifest
from xata2convex.plan import (
    AppliedTable,
    GuardOptions,
    TableDecision,
    TableFacts,
    guard_deletes,
    next_state,
    plan_table,
)
from xata2convex.state import AppliedState, TableProgress, TableState


def manifest(sha256: str, rows: int = 40) -> TableManifest:
    return TableManifest("users", "tables/users.csv", rows, ("id", "name"), sha256, 100)


TYPES = {"name": "string", "age": "int"}
OLD = AppliedTable("s1", manifest("old"), TYPES, "xata")
SAME = AppliedTable("s1", manifest("new"), TYPES, "xata")
S0 = AppliedTable("s0", manifest("older"), TYPES, "xata")
APPLIED = TableState("s1", "old")


def facts(**changes: Any) -> TableFacts:
    base = TableFacts(
        name="users",
        snapshot_id="s2",
        new=manifest("new"),
        column_types=TYPES,
        source="xata",
        entry=APPLIED,
        applied={"s1": OLD, "s0": S0},
    )
    return replace(base, **changes)


# case -> (facts, action, words of the reason, base snapshot, retry ids)
CASES: dict[str, tuple[TableFacts, str, str, str | None, frozenset[str]]] = {
    "drift holds the table back": (
        facts(drift=["column 'x' (int) added in Xata"], full=True, progress_problem="p unreadable"),
        "drift", "column 'x' (int) added in Xata. Fix: xata2convex schema --snapshot s2", None, frozenset(),
    ),
    "--full reconciles": (
        facts(full=True), "reconcile", "full sync: every record reconciled", None, frozenset(),
    ),
    "progress.json unreadable": (
        facts(progress_problem="progress.json is corrupt (not JSON)"),
        "reconcile", "progress.json is corrupt (not JSON), so an earlier run may have stopped",
        None, frozenset(),
    ),
    "a dead run was writing the table": (
        facts(carried=TableProgress("pushing")),
        "reconcile", "an earlier run stopped while writing this table; reconciled with Convex",
        None, frozenset(),
    ),
    "a dead run applied the table: diffed from there": (
        facts(carried=TableProgress("applied", TableState("s0", "older", frozenset({"rec_9"})))),
        "diff", "differences from snapshot s0", "s0", frozenset({"rec_9"}),
    ),
    "a dead run applied it, even with applied.json unreadable": (
        facts(carried=TableProgress("applied", TableState("s1", "new")), applied={"s1": SAME},
              state_problem="applied.json is corrupt (not JSON)"),
        "unchanged", "the same file as snapshot s1", "s1", frozenset(),
    ),
    "applied.json unreadable": (
        facts(entry=None, state_problem="applied.json is corrupt (not JSON)"),
        "reconcile", "applied.json is corrupt (not JSON); reconciled with Convex", None, frozenset(),
    ),
    "never applied, Convex empty: every record added": (
        facts(entry=None, applied={}, mirror_has_documents=False),
        "diff", "never applied", None, frozenset(),
    ),
    "never applied, Convex not asked (dry run without Convex)": (
        facts(entry=None, applied={}), "diff", "never applied", None, frozenset(),
    ),
    "no entry but Convex has documents (state lost, SNAPSHOT_URI moved, table re-created)": (
        facts(entry=None, applied={}, mirror_has_documents=True),
        "reconcile", "no applied state for this table, but its Convex table has documents", None, frozenset(),
    ),
    "dirty: a held-back run wrote part of it": (
        facts(entry=TableState(None, None, dirty=True), applied={}),
        "reconcile", "an earlier run stopped while writing this table", None, frozenset(),
    ),
    "dirty with a snapshot": (
        facts(entry=TableState("s1", "old", dirty=True)),
        "reconcile", "stopped while writing", None, frozenset(),
    ),
    "the applied snapshot expired": (
        facts(applied={"s1": AppliedTable("s1", problem="snapshot s1 last applied is gone")}),
        "reconcile", "snapshot s1 last applied is gone; reconciled with Convex", None, frozenset(),
    ),
    "a file of the applied snapshot is missing": (
        facts(applied={"s1": AppliedTable("s1", problem="/x/users.csv of snapshot s1 last applied is gone")}),
        "reconcile", "/x/users.csv of snapshot s1 last applied is gone; reconciled", None, frozenset(),
    ),
    "the applied snapshot was never looked up": (
        facts(applied={}),
        "reconcile", "snapshot s1 is unreadable; reconciled with Convex", None, frozenset(),
    ),
    "a column changed type": (
        facts(column_types={"name": "text", "age": "int"}),
        "reconcile", "column(s) 'name' changed type; every record rewritten", None, frozenset(),
    ),
    "a column added is no retype": (
        facts(column_types={**TYPES, "new": "bool"}),
        "diff", "differences from snapshot s1", "s1", frozenset(),
    ),
    "the same file: unchanged": (
        facts(applied={"s1": SAME}), "unchanged", "the same file as snapshot s1", "s1", frozenset(),
    ),
    "the same file with refused records: diffed to retry them": (
        facts(entry=TableState("s1", "new", frozenset({"rec_1"})), applied={"s1": SAME}),
        "diff", "differences from snapshot s1", "s1", frozenset({"rec_1"}),
    ),
    "a new file: diffed": (facts(), "diff", "the differences from snapshot s1", "s1", frozenset()),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_plan_table(case: str) -> None:
    given, action, reason, base, retry = CASES[case]
    decision = plan_table(given)
    assert decision.action == action, decision
    assert reason in decision.reason
    assert (decision.base.snapshot_id if decision.base else None) == base
    assert decision.retry == retry
    assert decision.message == (decision.reason if action in ("drift", "reconcile") else None)


def test_every_action_is_covered() -> None:
    assert {c[1] for c in CASES.values()} == {"drift", "unchanged", "diff", "reconcile"}


def test_a_base_from_another_writer_is_compared_by_value() -> None:
    decision = plan_table(facts(applied={"s1": replace(OLD, source="postgres")}))
    assert decision.action == "diff" and decision.different_writers
    assert not plan_table(facts()).different_writers


DIFF = TableDecision("diff", "", OLD)
RECONCILE = TableDecision("reconcile", "")
GUARD = GuardOptions()

# case -> (deletes, rows before, options, decision, withheld?, words of the message)
GUARD_CASES: dict[str, tuple[int, int, GuardOptions, TableDecision, bool, str]] = {
    "no deletes": (0, 100, GUARD, DIFF, False, ""),
    "half may go": (50, 100, GUARD, DIFF, False, ""),
    "over half is withheld": (51, 100, GUARD, DIFF, True, "51 of 100 rows (51%) would be deleted"),
    "a diff says to check Xata first": (
        90, 100, GUARD, DIFF, True,
        "First check in Xata that these records were really deleted (`xata2convex snapshots diff s1 s2`)",
    ),
    "a reconcile says to check the snapshot and the settings first": (
        90, 100, GUARD, RECONCILE, True,
        "First check that snapshot s2 holds the whole table (`xata2convex snapshots show s2`) and that "
        "CONVEX_URL and SNAPSHOT_URI",
    ),
    "the rerun comes last": (90, 100, GUARD, DIFF, True, "; only then rerun with --allow-mass-delete."),
    "small tables may shrink": (9, 10, GUARD, DIFF, False, ""),
    "allowed": (100, 100, GuardOptions(allow_mass_delete=True), DIFF, False, ""),
    "a stricter share": (
        11, 100, GuardOptions(max_delete_share=0.1), DIFF, True, "over the mass-delete guard of 10%",
    ),
    "an empty base never divides by zero": (20, 0, GUARD, RECONCILE, False, ""),
}  # fmt: skip


@pytest.mark.parametrize("case", GUARD_CASES)
def test_guard_deletes(case: str) -> None:
    deletes, rows, options, decision, withheld, words = GUARD_CASES[case]
    message = guard_deletes(deletes, rows, options, decision, "s2")
    assert (message is not None) == withheld
    assert words in (message or "")


NEW = TableState("s2", "new")
OLDER = TableState("s0", "older")
BEFORE = AppliedState({"users": APPLIED, "gone": TableState("s1", "g")}, snapshot_id="s1")

# case -> (progress marks, outcome for users (None: held back or failed), users' entry after, in full?)
STATE_CASES: dict[str, tuple[dict[str, TableProgress], TableState | None, TableState | None, bool]] = {
    "applied: the new entry": ({"users": TableProgress("applied", NEW)}, NEW, NEW, True),
    "held back, never written: the entry stays": ({}, None, APPLIED, False),
    "held back after writing: dirty": (
        {"users": TableProgress("pushing")}, None, replace(APPLIED, dirty=True), False,
    ),
    "failed, but a dead run had applied it: kept": (
        {"users": TableProgress("applied", OLDER)}, None, OLDER, False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", STATE_CASES)
def test_next_state(case: str) -> None:
    progress, outcome, after, in_full = STATE_CASES[case]
    state = next_state(BEFORE, progress, {"users": outcome}, "s2", "r2", "now")
    assert state.tables.get("users") == after
    assert "gone" not in state.tables  # gone from Xata: gone from the state
    assert state.snapshot_id == ("s2" if in_full else "s1") and state.run_id == "r2"


def test_next_state_of_a_table_first_written_then_held_back() -> None:
    state = next_state(AppliedState(), {"users": TableProgress("pushing")}, {"users": None}, "s2", "r", "t")
    assert state.tables["users"] == TableState(None, None, dirty=True) and state.snapshot_id is None
    assert plan_table(facts(entry=state.tables["users"])).action == "reconcile"

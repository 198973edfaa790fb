"""Where the state cannot say what Convex holds, the next run reconciles with Convex (CLI, stand-ins)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures.convex import REPO_ROOT
from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import Setup, seed_schema
from xata2convex import jobs
from xata2convex.cli import main
from xata2convex_local.convex_server import LocalConvex, project_for_schema


@pytest.fixture
def setup(xata_standin: XataStandInFactory, fresh_local_convex: LocalConvex, tmp_path: Path) -> Setup:
    return Setup(xata_standin(), fresh_local_convex, tmp_path / "snapshots")


def cli_run(setup: Setup, *args: str) -> tuple[int, dict[str, Any]]:
    """`xata2convex run --json` as a user runs it: its exit code and report (no traceback allowed)."""
    result = CliRunner().invoke(main, ["run", "--json", *args], env=setup.env, catch_exceptions=False)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)


def delete_in_xata(setup: Setup, table: str, count: int) -> list[str]:
    ids = [r["id"] for r in setup.sdk.data().query(table, {"page": {"size": 50}})["records"]][:count]
    for record_id in ids:
        assert setup.sdk.records().delete(table, record_id).is_success()
    return ids


def assert_mirror_equals_source(setup: Setup) -> None:
    verify = jobs.verify(setup.config)
    assert all(t["missing"] == t["extra"] == t["different"] == 0 for t in verify["tables"].values()), verify


def assert_diffed_from_here_on(setup: Setup) -> None:
    """Healed: the next run diffs every table from the snapshot just applied (no reconcile message)."""
    for name, table in cli_run(setup)[1]["tables"].items():
        assert table["status"] in ("applied", "unchanged") and "message" not in table, (name, table)
        assert table["added"] == table["changed"] == table["deleted"] == 0, (name, table)


def test_lost_applied_state_still_deletes_what_xata_deleted(setup: Setup) -> None:
    assert cli_run(setup)[0] == 0  # the seed's ints beyond 2^53 are int64 (xata2convex.toml): all applied
    gone = delete_in_xata(setup, "users", 3)
    store = setup.store()
    store.blobs.delete(store.state_key())
    code, report = cli_run(setup)
    users = report["tables"]["users"]
    assert code == 0 and users["status"] == "applied" and users["deleted"] == 3, users
    assert "no applied state for this table, but its Convex table has documents" in users["message"]
    assert not set(gone) & set(setup.documents("users"))
    assert report["tables"]["teams"]["deleted"] == 0 and report["tables"]["teams"]["unchanged"] > 0
    assert_mirror_equals_source(setup)


def test_a_garbage_state_file_reconciles_every_table(setup: Setup) -> None:
    cli_run(setup)
    gone = delete_in_xata(setup, "teams", 1)
    store = setup.store()
    store.blobs.put(store.state_key(), b'{"tables": {"users": "\x00garbage')
    code, report = cli_run(setup)
    assert code == 0
    for name, table in report["tables"].items():
        assert "applied.json is corrupt (not JSON" in table["message"], name
        assert table["status"] == "applied", (name, table)
    assert report["tables"]["teams"]["deleted"] == 1 and gone[0] not in setup.documents("teams")
    state, _ = store.read_state()  # replaced by a readable one
    assert state is not None and state.snapshot_id == report["snapshotId"]
    assert_diffed_from_here_on(setup)
    assert_mirror_equals_source(setup)


def test_a_missing_file_of_the_applied_snapshot_is_reconciled_not_a_permanent_failure(setup: Setup) -> None:
    _, first = cli_run(setup)
    gone = delete_in_xata(setup, "teams", 1)
    store = setup.store()
    store.blobs.delete(store.table_key(first["snapshotId"], "teams"))
    _, report = cli_run(setup)
    teams = report["tables"]["teams"]
    assert teams["status"] == "applied" and teams["deleted"] == 1, teams
    assert "teams.csv of snapshot" in teams["message"] and "reconciled with Convex" in teams["message"]
    assert gone[0] not in setup.documents("teams")
    assert report["tables"]["users"]["status"] == "unchanged" and "message" not in report["tables"]["users"]
    assert_diffed_from_here_on(setup)
    assert_mirror_equals_source(setup)


def test_the_guard_says_what_to_check_before_allowing_a_mass_delete(setup: Setup) -> None:
    for i in range(20):
        assert setup.sdk.records().insert("users", {"name": f"bulk {i}"}).is_success()
    cli_run(setup)
    delete_in_xata(setup, "users", 25)
    store = setup.store()
    store.blobs.delete(store.state_key())
    _, report = cli_run(setup)
    users = report["tables"]["users"]
    assert users["status"] == "blocked", users
    assert "First check that snapshot" in users["message"] and "SNAPSHOT_URI" in users["message"]
    assert users["message"].endswith("only then rerun with --allow-mass-delete.")


def test_a_table_dropped_and_re_created_is_reconciled(
    xata_standin: XataStandInFactory, tmp_path: Path
) -> None:
    seed = tmp_path / "seed"
    shutil.copytree(REPO_ROOT / "seeds" / "sample", seed)
    table, convex_table = "event-subject-matter-experts", "event_subject_matter_experts"
    schema_file, records_file = seed / "schema.json", seed / f"{table}.jsonl"
    schema, records = schema_file.read_text(), records_file.read_text().splitlines()
    with project_for_schema(seed_schema(seed)) as project, LocalConvex(project) as convex:
        snapshots = tmp_path / "snapshots"
        cli_run(Setup(xata_standin(seed), convex, snapshots))
        dropped = json.loads(schema)
        dropped["tables"] = [t for t in dropped["tables"] if t["name"] != table]
        schema_file.write_text(json.dumps(dropped))
        _, report = cli_run(Setup(xata_standin(seed), convex, snapshots))
        assert table not in report["tables"] and any("dropped in Xata" in d for d in report["drift"])
        schema_file.write_text(schema)  # re-created, with one record of the four
        records_file.write_text(records[0] + "\n")
        setup = Setup(xata_standin(seed), convex, snapshots)
        _, report = cli_run(setup)
        recreated = report["tables"][table]
        assert "no applied state for this table, but its Convex table has documents" in recreated["message"]
        assert recreated["deleted"] == len(records) - 1 and recreated["status"] == "applied"
        assert len(setup.documents(convex_table)) == 1
        assert_mirror_equals_source(setup)

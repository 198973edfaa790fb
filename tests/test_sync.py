"""Sync end to end over sockets: Xata stand-in -> snapshots -> diff -> local Convex (convex-test)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.convex import REPO_ROOT
from tests.fixtures.xata import XataStandInFactory
from xata2convex import convex_json, jobs
from xata2convex.config import Config
from xata2convex.convex_json import Int64
from xata2convex.convex_sink import BatchLimitReached, MirrorWriter
from xata2convex.mirror import MirrorPlan, to_convex_document
from xata2convex.mirror_config import MirrorConfig
from xata2convex.model import DatabaseSchema, schema_from_xata
from xata2convex.schemagen import write_convex_module
from xata2convex.snapshot import SnapshotStore
from xata2convex.sync import SyncOptions
from xata2convex.xata_source import sdk_client
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed
from xata2convex_local.xata_server import XataStandIn


class Setup:
    def __init__(self, xata: XataStandIn, convex: LocalConvex, snapshots: Path) -> None:
        self.xata, self.convex = xata, convex
        self.env = {**xata.settings(), **convex.settings(), "SNAPSHOT_URI": str(snapshots)}
        self.config = Config.from_env(self.env)
        env = xata.settings()
        self.sdk = sdk_client(env["XATA_API_KEY"], env["XATA_DATABASE_URL"], env["XATA_ENDPOINT_URL"])
        self.writer = MirrorWriter(jobs.open_convex(self.config))

    def run(self, **options: Any) -> dict[str, Any]:
        self.convex.reset_log()
        return jobs.run_export_and_sync(self.config, SyncOptions(**options))

    def store(self) -> SnapshotStore:
        return jobs.open_store(self.config)

    def plan(self, schema: DatabaseSchema) -> MirrorPlan:
        """The plan the sync uses: shaped by the deployed mirror's settings (xata2convex.toml)."""
        return MirrorPlan.from_schema(schema, MirrorConfig.from_schema_info(self.writer.schema_info() or {}))

    def documents(self, convex_table: str) -> dict[str, dict[str, Any]]:
        return {d["xata_id"]: d for d in self.writer.list_documents(convex_table)}

    def writes(self) -> tuple[int, int]:
        """(documents upserted, ids deleted) in the local Convex's request log since the last run."""
        log = self.convex.request_log()
        upserts = sum(
            e["documents"] for e in log if e["path"] == "mirror:upsertBatch" and e["status"] == "success"
        )
        deletes = sum(e["ids"] for e in log if e["path"] == "mirror:deleteBatch" and e["status"] == "success")
        return upserts, deletes


@contextmanager
def bench_setup(xata_standin: XataStandInFactory, tmp_path: Path, records: int) -> Iterator[Setup]:
    """A bench seed of `records` records over two tables, served by a stand-in and a local Convex."""
    seed = tmp_path / "seed"
    write_bench_seed(seed, records=records, tables=2)
    with project_for_schema(seed_schema(seed)) as project, LocalConvex(project) as convex:
        yield Setup(xata_standin(seed), convex, tmp_path / "snapshots")


@pytest.fixture
def setup(xata_standin: XataStandInFactory, fresh_local_convex: LocalConvex, tmp_path: Path) -> Setup:
    return Setup(xata_standin(), fresh_local_convex, tmp_path / "snapshots")


def totals(report: dict[str, Any]) -> dict[str, int]:
    keys = ("added", "changed", "deleted")
    return {k: sum(t[k] for t in report["tables"].values()) for k in keys}


def test_seed_lands_in_convex_by_the_value_rules(setup: Setup) -> None:
    report = setup.run()
    store = setup.store()
    snapshot_id = report["snapshotId"]
    plan = setup.plan(store.read_schema(snapshot_id))
    for table in plan.tables:
        mirrored = setup.documents(table.convex_name)
        link_ids = {link.link_id for link in table.links}
        for record in store.iter_records(snapshot_id, table.schema):
            expected = to_convex_document(table, record)  # nothing refused: the big ints are int64
            doc = {k: v for k, v in mirrored[record["id"]].items() if not k.startswith("_")}
            assert {k: v for k, v in doc.items() if k not in link_ids} == expected, (
                table.xata_name,
                record["id"],
            )
    assert all(t.get("rejected", 0) == 0 and t["status"] == "applied" for t in report["tables"].values())
    # The seed's integers beyond 2^53 arrive exactly, as int64 (xata2convex.toml).
    budgets = {d["budget"] for d in setup.documents("teams").values() if "budget" in d}
    assert {Int64(2**53 + 1), Int64(2**63 - 1), Int64(-(2**63))} <= budgets
    # The README's value rules written out by hand for one seed record (an oracle independent of mirror.py).
    experts = setup.documents("event_subject_matter_experts")
    assert experts, "hyphenated table mapped to a Convex identifier"
    users = setup.documents("users")
    platform_id = setup.documents("teams")["rec_chs3e0bjclim8c00000g"]["_id"]
    ada = {k: v for k, v in users["rec_chs3e0bjclim8c80000g"].items() if not k.startswith("_")}
    file_fields = {"mediaType", "enablePublicUrl", "signedUrlTimeout", "size", "version", "url"}
    assert ada == {
        "xata_id": "rec_chs3e0bjclim8c80000g", "xata_version": 0,
        "xata_createdAt": 1685610000000, "xata_updatedAt": 1685610000000,
        "name": "Ada Lovelace", "email": "ada@example.com", "age": Int64(36), "score": 99.5, "active": True,
        "joined": -3992112000000, "bio": "Analyst and poet.", "tags": ["math", "poetry"],
        "settings": {"theme": "dark", "notifications": {"email": True, "sms": False}},
        "avatar": {
            "name": "avatar.png", "mediaType": "image/png", "enablePublicUrl": True, "signedUrlTimeout": 600,
            "size": 628570, "version": 1, "url": "https://us-east-1.storage.xata.sh/07fc3e4a8677519b00b68ad86",
            "attributes": {"width": 64, "height": 48},
        },
        "attachments": [
            {"id": "file_e63a63cddac06b719094", "name": "report_final(v2).pdf", "attributes": {}}
            | {k: ada["attachments"][0][k] for k in file_fields},
            {"id": "file_452ebf42a965f6768b37", "name": "it's-notes.txt", "attributes": {}}
            | {k: ada["attachments"][1][k] for k in file_fields},
        ],
        "team": "rec_chs3e0bjclim8c00000g", "team_id": platform_id,
    }  # fmt: skip
    assert ada["attachments"][0]["size"] == 2856686 and ada["attachments"][1]["mediaType"] == "text/plain"
    platform = setup.documents("teams")["rec_chs3e0bjclim8c00000g"]
    assert platform["founded"] == 1551398400000 and platform["tags"] == ["infra", "core"]
    assert platform["embedding"][:3] == [0, 1.5e-07, 0.572752] and len(platform["embedding"]) == 1536
    assert '"signedUrl"' not in convex_json.dumps(users) and '"uploadUrl"' not in convex_json.dumps(users)
    assert all(None not in d.values() for d in users.values())  # null -> field absent
    assert report["status"] == "succeeded"


def test_only_the_differences_are_written(setup: Setup) -> None:
    setup.run()
    records = setup.sdk.data().query("users", {"page": {"size": 20}})["records"]
    small = [r for r in records if not (isinstance(r.get("age"), int) and abs(r["age"]) > 2**53)]
    assert len(small) >= 6
    for i in range(3):
        assert setup.sdk.records().insert("users", {"name": f"new {i}", "age": i}).is_success()
    for record in small[:3]:
        assert setup.sdk.records().update("users", record["id"], {"name": "changed"}).is_success()
    gone = [r["id"] for r in small[3:6]]
    for record_id in gone:
        assert setup.sdk.records().delete("users", record_id).is_success()

    second = setup.run()
    assert totals(second) == {"added": 3, "changed": 3, "deleted": 3}
    assert {name: t["added"] + t["changed"] + t["deleted"] for name, t in second["tables"].items()} == {
        "teams": 0,
        "users": 9,
        "event-subject-matter-experts": 0,
        "documents": 0,
        "empty-table": 0,
    }
    assert setup.writes() == (6, 3)
    users = setup.documents("users")
    assert sum(1 for d in users.values() if d.get("name") == "changed") == 3
    assert not set(gone) & set(users)

    run_doc = setup.writer.convex.query("syncRuns:get", {"runId": second["runId"]})
    assert run_doc["status"] == second["status"] and run_doc["snapshotId"] == second["snapshotId"]
    users_run = next(t for t in run_doc["tables"] if t["table"] == "users")
    assert users_run["added"] == 3 and run_doc["finishedAt"] >= run_doc["startedAt"]

    third = setup.run()
    assert totals(third) == {"added": 0, "changed": 0, "deleted": 0}
    assert setup.writes() == (0, 0)
    state, _ = setup.store().read_state()
    assert state is not None and state.snapshot_id == third["snapshotId"]


def test_interrupted_push_leaves_state_and_converges(setup: Setup) -> None:
    first = setup.run()
    before = setup.store().read_state()[0]
    for i in range(40):
        setup.sdk.records().insert("users", {"name": f"bulk {i}"})
    with pytest.raises(BatchLimitReached):
        _run_with_fault(setup, stop_after=2)
    assert setup.store().read_state()[0] == before
    partial = setup.documents("users")
    assert 0 < sum(1 for d in partial.values() if str(d.get("name", "")).startswith("bulk")) < 40
    setup.run()
    users = setup.documents("users")
    assert sum(1 for d in users.values() if str(d.get("name", "")).startswith("bulk")) == 40
    verify = jobs.verify(setup.config)
    assert first["status"] == "succeeded"
    assert all(
        t["missing"] == t["extra"] == t["different"] == t["rejected"] == 0 for t in verify["tables"].values()
    )
    assert verify["equal"] is True


def _run_with_fault(setup: Setup, stop_after: int) -> None:
    from xata2convex.sync import Sync

    manifest = jobs.run_export(setup.config)
    # Small batches, so the fault lands in the middle of a table.
    writer = MirrorWriter(jobs.open_convex(setup.config), max_documents=5, stop_after_batches=stop_after)
    Sync(setup.store(), writer, SyncOptions(snapshot_id=manifest.snapshot_id)).run()


def test_mass_delete_guard_withholds_deletes(setup: Setup) -> None:
    setup.run()
    ids = [r["id"] for r in setup.sdk.data().query("users", {"page": {"size": 50}})["records"]]
    for record_id in ids[:-1]:
        setup.sdk.records().delete("users", record_id)
    guarded = setup.run()
    users = guarded["tables"]["users"]
    assert users["status"] == "blocked" and "mass-delete guard" in users["message"]
    assert users["deleted"] == len(ids) - 1 and setup.writes()[1] == 0
    state = setup.store().read_state()[0]
    assert state is not None and state.snapshot_id != guarded["snapshotId"]
    allowed = setup.run(allow_mass_delete=True)
    assert allowed["tables"]["users"]["status"] == "applied"
    assert set(setup.documents("users")) <= {ids[-1]}
    assert setup.writes()[1] == allowed["tables"]["users"]["deleted"] > 0


def test_small_tables_may_shrink_below_the_guard(setup: Setup) -> None:
    setup.run()
    ids = [r["id"] for r in setup.sdk.data().query("teams", {"page": {"size": 50}})["records"]]
    for record_id in ids[:-1]:  # 3 of 4 rows: over 50%, but fewer than 10 deletes
        setup.sdk.records().delete("teams", record_id)
    report = setup.run()
    assert report["tables"]["teams"]["status"] == "applied" and report["tables"]["teams"]["deleted"] == 3


def test_a_record_added_and_deleted_around_a_dead_run_leaves_convex(setup: Setup) -> None:
    setup.run()
    ghost = setup.sdk.records().insert("teams", {"name": "ghost"})["id"]
    for i in range(40):
        setup.sdk.records().insert("users", {"name": f"bulk {i}"})
    with pytest.raises(BatchLimitReached):
        _run_with_fault(setup, stop_after=3)  # teams (with the ghost) finished, users half-written
    assert ghost in setup.documents("teams")
    progress = setup.store().read_progress()
    assert progress is not None and progress.tables["teams"].status == "applied"
    assert progress.tables["users"].status == "pushing"
    setup.sdk.records().delete("teams", ghost)
    dead_run = progress.run_id
    report = setup.run()
    dead = setup.writer.convex.query("syncRuns:get", {"runId": dead_run})
    assert dead["status"] == "failed" and report["runId"] in dead["error"]
    assert setup.store().read_run_report(dead_run)["status"] == "failed"  # type: ignore[index]
    assert report["tables"]["teams"]["deleted"] == 1  # diffed from the snapshot the dead run reached
    assert "reconciled with Convex" in report["tables"]["users"]["message"]
    assert ghost not in setup.documents("teams") and setup.store().read_progress() is None
    verify = jobs.verify(setup.config)
    assert all(t["missing"] == t["extra"] == t["different"] == 0 for t in verify["tables"].values())


def test_a_run_that_applied_everything_but_died_before_its_report_is_recorded_as_applied(
    setup: Setup,
) -> None:
    from xata2convex.sync import Sync

    setup.run()
    setup.sdk.records().insert("teams", {"name": "late"})
    manifest = jobs.run_export(setup.config)
    sync = Sync(setup.store(), setup.writer, SyncOptions(snapshot_id=manifest.snapshot_id))

    def crash(*args: Any) -> None:
        raise RuntimeError("killed before the report")

    sync.recorder.finish = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        sync.run()
    assert setup.store().read_run_report(sync.run_id) is None
    report = setup.run()
    dead = setup.store().read_run_report(sync.run_id)
    assert dead is not None and dead["status"] == "succeeded"  # applied every table (big ints are int64)
    assert "applied every table" in dead["error"] and report["runId"] in dead["error"]
    assert setup.writer.convex.query("syncRuns:get", {"runId": sync.run_id})["status"] == "succeeded"
    assert report["tables"]["teams"]["added"] == 0  # diffed from the snapshot the dead run reached


def test_a_run_that_wrote_its_report_but_not_syncruns_is_recorded_from_it(setup: Setup) -> None:
    from xata2convex.sync import Sync

    setup.run()
    manifest = jobs.run_export(setup.config)
    own = Sync(setup.store(), setup.writer, SyncOptions(snapshot_id=manifest.snapshot_id)).run()
    assert setup.store().read_progress() is not None  # died before syncRuns: not closed yet
    setup.run()
    doc = setup.writer.convex.query("syncRuns:get", {"runId": own.run_id})
    assert doc["status"] == own.status and doc["snapshotId"] == manifest.snapshot_id
    assert setup.store().read_progress() is None


def test_a_retyped_column_rewrites_every_record(setup: Setup, tmp_path: Path) -> None:
    report = setup.run()
    store = setup.store()
    snapshot_id = report["snapshotId"]
    schema = json.loads(store.blobs.get(store.snapshot_key(snapshot_id, "schema.json")).data)  # type: ignore[union-attr]
    # Pretend `name` was `text` when it was applied: same CSV bytes, another type.
    next(c for t in schema["tables"] if t["name"] == "teams" for c in t["columns"] if c["name"] == "name")[
        "type"
    ] = "text"
    store.blobs.put(store.snapshot_key(snapshot_id, "schema.json"), json.dumps(schema).encode())
    again = setup.run()
    assert "changed type; every record rewritten" in again["tables"]["teams"]["message"]
    assert again["tables"]["teams"]["status"] == "applied"


def test_full_sync_reconciles_documents_xata_no_longer_has(setup: Setup) -> None:
    setup.run()
    setup.writer.convex.mutation(
        "mirror:upsertBatch", {"table": "teams", "documents": [{"xata_id": "rec_stray", "name": "stray"}]}
    )
    assert "rec_stray" in setup.documents("teams")
    incremental = setup.run()
    assert "rec_stray" in setup.documents("teams") and totals(incremental)["deleted"] == 0
    full = setup.run(full=True)
    assert "rec_stray" not in setup.documents("teams")
    # Full mode reports what Convex did: equal documents were sent again but not rewritten.
    assert totals(full) == {"added": 0, "changed": 0, "deleted": 1}
    assert full["tables"]["teams"]["unchanged"] > 0


def test_dry_run_and_snapshot_diff_write_nothing(setup: Setup) -> None:
    first = setup.run()
    setup.sdk.records().insert("teams", {"name": "dry"})
    manifest = jobs.run_export(setup.config)
    setup.convex.reset_log()
    dry = jobs.run_sync(setup.config, SyncOptions(dry_run=True))
    assert dry["tables"]["teams"]["added"] == 1 and dry["dryRun"]
    assert setup.writes() == (0, 0)
    assert {e["kind"] for e in setup.convex.request_log()} == {"query"}  # read the deployed schema only
    from xata2convex.sync import diff_snapshots

    counts = diff_snapshots(setup.store(), first["snapshotId"], manifest.snapshot_id)
    assert {k: counts["teams"][k] for k in ("added", "changed", "deleted")} == {
        "added": 1,
        "changed": 0,
        "deleted": 0,
    }


def test_expired_applied_snapshot_is_reconciled_with_convex(setup: Setup) -> None:
    first = setup.run()
    store = setup.store()
    gone = next(iter(setup.documents("users")))
    setup.sdk.records().delete("users", gone)
    # The lifecycle rule expired the snapshot applied.json names: its files are gone.
    for key in ("manifest.json", "schema.json"):
        store.blobs.delete(store.snapshot_key(first["snapshotId"], key))
    report = setup.run()
    users = report["tables"]["users"]
    assert users["deleted"] == 1 and "is gone; reconciled with Convex" in users["message"]
    assert gone not in setup.documents("users")


def test_first_sync_into_a_populated_convex_makes_no_duplicates(setup: Setup, tmp_path: Path) -> None:
    setup.run()
    count = len(setup.documents("users"))
    fresh = Setup(setup.xata, setup.convex, tmp_path / "other-snapshots")  # no applied state
    report = fresh.run()
    users = report["tables"]["users"]
    assert "its Convex table has documents; reconciled with Convex" in users["message"]
    assert users["unchanged"] > 0 and users["added"] == users["deleted"] == 0
    assert len(setup.documents("users")) == count


def test_twenty_thousand_records_sync_under_transaction_limits(
    xata_standin: XataStandInFactory, tmp_path: Path
) -> None:
    seed = tmp_path / "seed"
    write_bench_seed(seed, records=20_000, tables=1)
    with project_for_schema(seed_schema(seed)) as project, LocalConvex(project) as convex:
        setup = Setup(xata_standin(seed), convex, tmp_path / "snapshots")
        report = setup.run()
        [(name, table)] = report["tables"].items()
        assert table["added"] == 20_000 and table["status"] == "applied", table
        assert report["batches"] >= 20_000 // setup.writer.max_documents
        assert sum(1 for _ in setup.writer.list_documents(name.replace("-", "_"))) == 20_000


@pytest.fixture
def drift_project(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A seed copy whose schema we edit, and a Convex project deployed from the *original* schema."""
    seed = tmp_path / "seed"
    shutil.copytree(REPO_ROOT / "seeds" / "sample", seed)
    with project_for_schema(seed_schema(seed)) as project:
        yield seed, project


def seed_schema(seed: Path) -> DatabaseSchema:
    return schema_from_xata(json.loads((seed / "schema.json").read_text()))


def _edit_schema(seed: Path, table: str, edit: Any) -> None:
    schema = json.loads((seed / "schema.json").read_text())
    edit(next(t for t in schema["tables"] if t["name"] == table), schema)
    (seed / "schema.json").write_text(json.dumps(schema))


DRIFT_CASES = {
    "column added": ("teams", lambda t, s: t["columns"].append({"name": "m", "type": "int"}), "(int) added"),
    "column removed": ("teams", lambda t, s: t["columns"].pop(1), "column 'description' removed"),
    "column retyped": (
        "teams", lambda t, s: t["columns"][0].update(type="text"), "column 'name' retyped from string to text"
    ),
    "table added": (
        "teams", lambda t, s: s["tables"].append({"name": "new-table", "columns": []}), "new in Xata"
    ),
    "table dropped": ("empty-table", lambda t, s: s["tables"].remove(t), "dropped in Xata"),
}  # fmt: skip


@pytest.mark.parametrize("case", DRIFT_CASES)
def test_schema_drift_is_reported_and_other_tables_keep_syncing(
    case: str, drift_project: tuple[Path, Path], xata_standin: XataStandInFactory, tmp_path: Path
) -> None:
    seed, project = drift_project
    table, edit, expected = DRIFT_CASES[case]
    _edit_schema(seed, table, edit)
    with LocalConvex(project) as convex:
        setup = Setup(xata_standin(seed), convex, tmp_path / "snapshots")
        report = setup.run()
        assert any(expected in line for line in report["drift"]), report["drift"]
        drifted = [name for name, t in report["tables"].items() if t["status"] == "drift"]
        if case in ("table dropped", "column removed"):  # notices only: those tables keep syncing
            assert drifted == []
        else:
            drifted_table = "new-table" if case == "table added" else table
            assert drifted == [drifted_table]
            assert "xata2convex schema --snapshot" in report["tables"][drifted_table]["message"]
        assert report["tables"]["users"]["status"] in ("applied", "unchanged")
        assert setup.documents("users")


def test_removed_column_leaves_the_documents_and_the_regenerated_schema(
    drift_project: tuple[Path, Path], xata_standin: XataStandInFactory, tmp_path: Path
) -> None:
    seed, project = drift_project
    with LocalConvex(project) as convex:
        setup = Setup(xata_standin(seed), convex, tmp_path / "snapshots")
        setup.run()
        assert any("description" in d for d in setup.documents("teams").values())
        _edit_schema(seed, "teams", lambda t, s: t["columns"].pop(1))  # Xata drops `description`
        setup = Setup(xata_standin(seed), convex, tmp_path / "snapshots")  # same state, new source
        report = setup.run()
        teams = report["tables"]["teams"]
        assert teams["status"] == "applied" and "Regenerate the schema" in teams["message"]
        assert all("description" not in d for d in setup.documents("teams").values())
    module = project / "convex" / "xataTables.ts"
    write_convex_module(seed_schema(seed), module)
    teams_block = module.read_text().split("teams: defineTable(")[1].split(".index(")[0]
    assert "description" not in teams_block
    with LocalConvex(project) as convex:  # the regenerated schema deploys; no drift is left
        setup = Setup(xata_standin(seed), convex, tmp_path / "snapshots-2")
        assert setup.run()["drift"] == []

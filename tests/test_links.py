"""Links as Convex references end to end, over both sources: every `f_id` is the `_id` of the
document whose `xata_id` is `f` when that document is mirrored, and absent otherwise; deleting a
target unlinks the documents pointing at it, adding it back links them to its new `_id`; an idle run
writes nothing. Seeds with a link cycle (people <-> squads) and a self link (people.mentor)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.postgres import PgDatabase
from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import Setup, seed_schema
from xata2convex import jobs
from xata2convex.config import Config
from xata2convex.convex_sink import MirrorWriter
from xata2convex.links import link_order, links_to_resolve
from xata2convex.mirror import MirrorPlan
from xata2convex.mirror_config import MirrorConfig
from xata2convex.model import DatabaseSchema, schema_from_xata
from xata2convex.sync import SyncOptions
from xata2convex_local.convex_server import LocalConvex, project_for_schema

PEOPLE, SQUADS = 40, 6
CYCLE_SCHEMA = {
    "tables": [
        {
            "name": "people",
            "columns": [
                {"name": "name", "type": "string"},
                {"name": "mentor", "type": "link", "link": {"table": "people"}},
                {"name": "squad", "type": "link", "link": {"table": "squads"}},
            ],
        },
        {
            "name": "squads",
            "columns": [
                {"name": "name", "type": "string"},
                {"name": "lead", "type": "link", "link": {"table": "people"}},
            ],
        },
    ]
}


def person(i: int) -> str:
    return f"rec_p{i:03d}"


def squad(i: int) -> str:
    return f"rec_s{i}"


def cycle_records() -> dict[str, list[dict[str, Any]]]:
    """People written before the squads they point at and mentors after their mentees (ids sort that
    way); some links point at records that do not exist, some are null."""
    rng = random.Random(12)
    people = []
    for i in range(PEOPLE):
        mentor = person(rng.randrange(PEOPLE)) if i % 5 else None
        team = squad(i % SQUADS) if i % 7 else "rec_gone"  # a link to a record Xata does not have
        people.append({"id": person(i), "name": f"p{i}", "mentor": mentor, "squad": team})
    squads = [{"id": squad(i), "name": f"s{i}", "lead": person(PEOPLE - 1 - i)} for i in range(SQUADS)]
    return {"people": people, "squads": squads}


def write_seed(directory: Path) -> Path:
    directory.mkdir()
    (directory / "schema.json").write_text(json.dumps(CYCLE_SCHEMA))
    for table, records in cycle_records().items():
        lines = []
        for record in records:
            links = {
                k: ({"id": v} if v else None) for k, v in record.items() if k in ("mentor", "squad", "lead")
            }
            lines.append(json.dumps({**record, **links}))
        (directory / f"{table}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def assert_links_match(writer: MirrorWriter, plan: MirrorPlan) -> int:
    """The oracle: per link, `f_id` is exactly the `_id` of the target named by `f`; returns how many
    links are set."""
    set_links = 0
    for table in plan.tables:
        documents = list(writer.list_documents(table.convex_name))
        for link in table.links:
            assert link.link_table and link.link_id
            targets = {d["xata_id"]: d["_id"] for d in writer.list_documents(link.link_table)}
            for document in documents:
                want = targets.get(document.get(link.convex_name))
                assert document.get(link.link_id) == want, (
                    table.xata_name,
                    document["xata_id"],
                    link.xata_name,
                )
                set_links += want is not None
    return set_links


def upserted(convex: LocalConvex) -> int:
    return sum(
        e.get("documents", 0) + e.get("ids", 0)
        for e in convex.request_log()
        if e["status"] == "success" and e["path"] in ("mirror:upsertBatch", "mirror:deleteBatch")
    )


def test_link_order_puts_targets_first_and_survives_cycles() -> None:
    sample = seed_schema(Path(__file__).resolve().parents[1] / "seeds" / "sample")
    assert [t.xata_name for t in link_order(MirrorPlan.from_schema(sample))] == [
        "teams", "users", "event-subject-matter-experts", "documents", "empty-table",
    ]  # fmt: skip
    cycle = MirrorPlan.from_schema(schema_from_xata(CYCLE_SCHEMA))
    assert sorted(t.xata_name for t in link_order(cycle)) == ["people", "squads"]
    people = cycle.table("people")
    pairs = links_to_resolve(cycle.tables, inserted={"people"}, unresolved=set())
    assert [(t.xata_name, f.xata_name) for t, f in pairs] == [("people", "mentor"), ("squads", "lead")]
    assert links_to_resolve([people], inserted=set(), unresolved=set()) == []


@pytest.fixture
def cycle_project(tmp_path: Path) -> Iterator[tuple[Path, DatabaseSchema]]:
    seed = write_seed(tmp_path / "seed")
    schema = seed_schema(seed)
    with project_for_schema(schema, config=MirrorConfig("xata_")) as project:
        yield seed, project


def test_xata_links_with_a_cycle_and_self_links_follow_their_targets(
    xata_standin: XataStandInFactory, cycle_project: tuple[Path, Path], tmp_path: Path
) -> None:
    seed, project = cycle_project
    with LocalConvex(project) as convex:
        setup = Setup(xata_standin(seed), convex, tmp_path / "snapshots")
        first = setup.run()
        assert first["status"] == "succeeded", first
        plan = setup.plan(seed_schema(seed))
        assert [t.convex_name for t in plan.tables] == ["xata_people", "xata_squads"]
        linked = assert_links_match(setup.writer, plan)
        # Every link that names an existing record is set: mentors (8 of 40 null), squads (6 dangle), leads.
        assert linked == (PEOPLE - PEOPLE // 5) + (PEOPLE - len(range(0, PEOPLE, 7))) + SQUADS
        assert first["links"]["linked"] > 0  # people written before their squads: the end-of-run pass

        # An idle run sends nothing and resolves nothing.
        idle = setup.run()
        assert upserted(convex) == 0 and idle["links"] == {"calls": 0, "linked": 0, "scanned": 0}

        # A target deleted: the documents pointing at it lose f_id.
        gone = squad(1)
        assert setup.sdk.records().delete("squads", gone).is_success()
        setup.run()
        people = setup.documents("xata_people")
        pointing = [d for d in people.values() if d.get("squad") == gone]
        assert pointing and all("squad_id" not in d for d in pointing)
        assert_links_match(setup.writer, plan)

        # Added back under the same id: a new Convex _id, which they now point at.
        assert (
            setup.sdk.records()
            .insert_with_id("squads", gone, {"name": "back", "lead": person(0)})
            .is_success()
        )
        back = setup.run()
        new_id = setup.documents("xata_squads")[gone]["_id"]
        assert all(
            d["squad_id"] == new_id for d in setup.documents("xata_people").values() if d.get("squad") == gone
        )
        assert back["links"]["linked"] == len(pointing)
        assert_links_match(setup.writer, plan)
        assert jobs.verify(setup.config)["equal"] is True


def test_postgres_foreign_keys_become_links(pg_database: PgDatabase, tmp_path: Path) -> None:
    records = cycle_records()
    pg_database.execute(
        """
        CREATE TABLE people (xata_id text PRIMARY KEY, xata_version integer NOT NULL DEFAULT 0,
          xata_createdat timestamptz NOT NULL DEFAULT now(),
          xata_updatedat timestamptz NOT NULL DEFAULT now(),
          name text, mentor text REFERENCES people(xata_id), squad text);
        CREATE TABLE squads (xata_id text PRIMARY KEY, xata_version integer NOT NULL DEFAULT 0,
          xata_createdat timestamptz NOT NULL DEFAULT now(),
          xata_updatedat timestamptz NOT NULL DEFAULT now(),
          name text, lead text REFERENCES people(xata_id));
        """
    )
    for row in records["people"]:
        pg_database.execute(
            "INSERT INTO people (xata_id, name, squad) VALUES (%s, %s, %s)",
            [row["id"], row["name"], row["squad"]],
        )
    for row in records["people"]:
        pg_database.execute("UPDATE people SET mentor = %s WHERE xata_id = %s", [row["mentor"], row["id"]])
    for row in records["squads"]:
        pg_database.execute(
            "INSERT INTO squads VALUES (%s, 0, now(), now(), %s, %s)", [row["id"], row["name"], row["lead"]]
        )
    # The squad link dangles on purpose ('rec_gone'): a constraint that does not check existing rows.
    pg_database.execute("ALTER TABLE people ADD FOREIGN KEY (squad) REFERENCES squads(xata_id) NOT VALID")
    env = {"XATA_POSTGRES_URL": pg_database.url, "SNAPSHOT_URI": str(tmp_path / "snapshots")}
    schema = jobs.open_source(Config.from_env(env)).read_schema()
    assert {c.name: c.link_table for c in schema.table("people").columns if c.type == "link"} == {
        "mentor": "people", "squad": "squads",
    }  # fmt: skip
    with project_for_schema(schema) as project, LocalConvex(project) as convex:
        config = Config.from_env({**env, **convex.settings()})
        writer = MirrorWriter(jobs.open_convex(config))
        plan = MirrorPlan.from_schema(schema)
        assert jobs.run_export_and_sync(config, SyncOptions())["status"] == "succeeded"
        assert assert_links_match(writer, plan) > 0

        pg_database.execute("UPDATE people SET squad = NULL WHERE squad = 'rec_s2'")
        pg_database.execute("DELETE FROM squads WHERE xata_id = 'rec_s2'")
        pg_database.execute("INSERT INTO squads VALUES ('rec_gone', 0, now(), now(), 'late', NULL)")
        report = jobs.run_export_and_sync(config, SyncOptions())
        assert report["links"]["linked"] == len([r for r in records["people"] if r["squad"] == "rec_gone"])
        assert assert_links_match(writer, plan) > 0
        convex.reset_log()
        assert jobs.run_export_and_sync(config, SyncOptions())["links"]["calls"] == 0
        assert upserted(convex) == 0

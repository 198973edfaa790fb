"""Postgres -> snapshot -> Convex end to end: the schema generated from Postgres, every listed type in
Convex per the README's value rules, then adds, changes and deletes in Postgres checked after each sync."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures.convex import REPO_ROOT
from tests.fixtures.postgres import PgDatabase
from tests.test_pg_source import _setup_everything
from xata2convex import jobs
from xata2convex.cli import main
from xata2convex.config import Config
from xata2convex.convex_sink import MirrorWriter
from xata2convex.mirror import MirrorPlan, to_convex_document
from xata2convex.model import RecordError
from xata2convex.sync import SyncOptions
from xata2convex_local.convex_server import LocalConvex


@pytest.fixture
def project(pg_database: PgDatabase) -> Iterator[Path]:
    """A Convex project beside this one whose mirror schema `xata2convex schema --source` generated."""
    _setup_everything(pg_database)
    folder = REPO_ROOT / f".pytest-convex-pg-{pg_database.name}"
    shutil.copytree(REPO_ROOT / "convex", folder / "convex")
    out = folder / "convex" / "xataTables.ts"
    no_settings = folder / "empty.toml"  # not the repository's xata2convex.toml (the sample seed's)
    no_settings.write_text("")
    result = CliRunner().invoke(
        main, ["schema", "--source", pg_database.url, "--out", str(out), "--config", str(no_settings)]
    )
    assert result.exit_code == 0, result.output
    yield folder
    shutil.rmtree(folder)


def documents(writer: MirrorWriter, table: str) -> dict[str, dict[str, Any]]:
    return {
        d["xata_id"]: {k: v for k, v in d.items() if not k.startswith("_")}
        for d in writer.list_documents(table)
    }


def test_postgres_changes_reach_convex(pg_database: PgDatabase, project: Path, tmp_path: Path) -> None:
    with LocalConvex(project) as convex:
        config = Config.from_env(
            {**convex.settings(), "XATA_POSTGRES_URL": pg_database.url, "SNAPSHOT_URI": str(tmp_path)}
        )
        writer = MirrorWriter(jobs.open_convex(config))
        first = jobs.run_export_and_sync(config, SyncOptions())
        assert first["drift"] == []

        store = jobs.open_store(config)
        plan = MirrorPlan.from_schema(store.read_schema(first["snapshotId"]))
        everything = plan.table("everything")
        mirrored = documents(writer, everything.convex_name)
        for record in store.iter_records(first["snapshotId"], everything.schema):
            try:
                expected = to_convex_document(everything, record)
            except RecordError:
                assert record["id"] not in mirrored  # e.g. 'infinity' timestamps: reported, not stored
                continue
            # `author_id` (the link's Convex id) is the mirror's own: tests/test_links.py checks it
            assert {k: v for k, v in mirrored[record["id"]].items() if k != "author_id"} == expected
        full = mirrored["rec_full"]
        assert full["tstz"] == 1704067200000 and full["jb"] == {"a": [1, 2], "b": 1}
        assert full["tags"] == ["a", "b,c", 'd"e', "", "é"] and full["author"] == "rec_a1"
        authors_table = plan.table("authors").convex_name
        assert full["author_id"] == next(d["_id"] for d in writer.list_documents(authors_table))
        assert full["photo"] == {"name": "a.png", "mediaType": "image/png", "size": 10}
        assert "t" not in mirrored["rec_null"]  # null -> field absent

        pg_database.execute(
            """
            INSERT INTO authors (xata_id, name) VALUES ('rec_a2', 'Bo'), ('rec_a3', 'Cy'), ('rec_a4', 'Di');
            UPDATE everything SET s = 'changed', xata_version = xata_version + 1 WHERE xata_id = 'rec_full';
            UPDATE everything SET t = 'now text' WHERE xata_id = 'rec_null';
            UPDATE authors SET name = 'Ann B' WHERE xata_id = 'rec_a1';
            """
        )
        second = jobs.run_export_and_sync(config, SyncOptions())
        counts = {name: (t["added"], t["changed"], t["deleted"]) for name, t in second["tables"].items()}
        assert counts["authors"] == (3, 1, 0) and counts["everything"] == (0, 2, 0)
        authors = documents(writer, plan.table("authors").convex_name)
        assert authors["rec_a1"]["name"] == "Ann B" and {"rec_a2", "rec_a3", "rec_a4"} <= set(authors)
        assert documents(writer, everything.convex_name)["rec_full"]["s"] == "changed"

        pg_database.execute("DELETE FROM authors WHERE xata_id IN ('rec_a3', 'rec_a4')")
        third = jobs.run_export_and_sync(config, SyncOptions())
        assert third["tables"]["authors"]["deleted"] == 2
        assert set(documents(writer, plan.table("authors").convex_name)) == {"rec_a1", "rec_a2"}

"""`make demo`: the whole job offline, on embedded defaults, from both of Xata's sources.

Today's Xata is PostgreSQL; Xata Lite, the classic REST API that the xata SDK calls, was retired on
2026-02-28. The demo runs the job on the sample database (seeds/sample) from each:
  1. today's Xata: a throwaway PostgreSQL (the server `make setup` installs), loaded in a
     Postgres-enabled Xata branch's layout (xata_id, xata_version, xata_createdat, xata_updatedat),
     read over XATA_POSTGRES_URL;
  2. Xata Lite: the local REST stand-in, read through the xata SDK.
For each it generates the Convex tables from the source's schema, starts a local Convex serving
them, syncs, adds, changes and deletes records in the source, syncs again (only the differences
are written) and verifies Convex against the snapshot; it stops what it started. Each source's
snapshots and run reports stay in `.demo/<source>/` (emptied first) for browsing; the demo prints
where the second run's snapshot, HTML report and change files are.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from xata.client import XataClient

from xata2convex import jobs
from xata2convex.cli import render_report
from xata2convex.config import Config
from xata2convex.convex_sink import MirrorWriter
from xata2convex.mirror_config import load_mirror_config
from xata2convex.sync import SyncOptions
from xata2convex.xata_source import sdk_client

from .convex_server import LocalConvex, project_for_schema
from .postgres import PostgresCluster, load_seed, postgres_bin_dir
from .xata_server import XataStandIn

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "seeds" / "sample"
OUTPUT = REPO / ".demo"
DATABASE = "sample:main"  # Xata names the branch in the Postgres database: {database}:{branch}


def change_postgres(url: str) -> list[str]:
    """Three adds, three changes and three deletes in `users`, in SQL as an application would."""
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT xata_id FROM users ORDER BY xata_id LIMIT 6")]
        done = []
        for i in range(3):
            conn.execute(
                "INSERT INTO users (xata_id, name, age, active) VALUES (%s, %s, %s, true)",
                (f"rec_demo_pg_{i}", f"Demo user {i}", 30 + i),
            )
            done.append(f"added users/rec_demo_pg_{i}")
        conn.execute(
            "UPDATE users SET name = coalesce(name, '') || ' (renamed)', xata_version = xata_version + 1,"
            " xata_updatedat = now() WHERE xata_id = ANY(%s)",
            (ids[:3],),
        )
        done += [f"changed users/{i}" for i in ids[:3]]
        conn.execute("DELETE FROM users WHERE xata_id = ANY(%s)", (ids[3:6],))
        done += [f"deleted users/{i}" for i in ids[3:6]]
    return done


def change_through_the_sdk(client: XataClient) -> list[str]:
    """Three adds, three changes and three deletes in the `users` table, through the SDK."""
    records = client.data().query("users", {"page": {"size": 6}})["records"]
    done = []
    for i in range(3):
        response = client.records().insert("users", {"name": f"Demo user {i}", "age": 30 + i, "active": True})
        done.append(f"added users/{response['id']}")
    for record in records[:3]:
        client.records().update("users", record["id"], {"name": f"{record.get('name') or ''} (renamed)"})
        done.append(f"changed users/{record['id']}")
    for record in records[3:6]:
        client.records().delete("users", record["id"])
        done.append(f"deleted users/{record['id']}")
    return done


def show(title: str, value: Any) -> None:
    print(f"\n=== {title}")
    # An int64 shows as JavaScript writes a bigint (`36n`), as the Convex dashboard does.
    text = json.dumps(value, indent=2, ensure_ascii=False, default=lambda v: f"{v.value}n")
    print(value if isinstance(value, str) else text)


def sync_change_sync_verify(
    source: str, folder: str, settings: dict[str, str], change: Callable[[], list[str]]
) -> None:
    """The job on one source: its schema into Convex, a sync, a change, a sync, a verify."""
    config = Config.from_env(settings)
    snapshots = OUTPUT / folder
    shutil.rmtree(snapshots, ignore_errors=True)  # a fresh local Convex needs a fresh state
    config = config.with_overrides(snapshot_uri=str(snapshots))
    source_reader = jobs.open_source(config)
    try:
        schema = source_reader.read_schema()
    finally:
        source_reader.close()
    # The repository's xata2convex.toml: the sample's integers beyond 2^53 are int64 columns.
    mirror_config = load_mirror_config(REPO / "xata2convex.toml")
    with project_for_schema(schema, config=mirror_config) as project, LocalConvex(project) as convex:
        config = config.with_overrides(convex_url=convex.url, convex_deploy_key=convex.deploy_key)
        show(f"{source}: Convex tables generated from its schema", ", ".join(t.name for t in schema.tables))
        show(f"{source}: local Convex {convex.url}, snapshots {snapshots}", "first sync: the sample lands")
        print(render_report(jobs.run_export_and_sync(config, SyncOptions())))

        show(f"{source}: changing the source", "\n".join(change()))

        second = jobs.run_export_and_sync(config, SyncOptions())
        show(f"{source}: second sync: only the differences are written", render_report(second))
        store = jobs.open_store(config)
        where = [
            f"snapshot     {store.describe(store.snapshot_key(second['snapshotId'], 'manifest.json'))}",
            f"HTML report  {store.describe(second['htmlReportKey'])}",
        ]
        where += [f"changes      {store.describe(t['changesKey'])}"
                  for t in second["tables"].values() if "changesKey" in t]  # fmt: skip
        show(f"{source}: the second run, kept for browsing (open the HTML report)", "\n".join(where))

        writer = MirrorWriter(jobs.open_convex(config))
        show(f"{source}: a mirrored document of `users`", next(iter(writer.list_documents("users"))))
        result = jobs.verify(config)
        lines = [
            f"{name}: {t['actual']}/{t['expected']} documents, {t['missing']} missing, "
            f"{t['extra']} extra, {t['different']} different, {t['rejected']} not mirrorable"
            for name, t in result["tables"].items()
        ]
        show(f"{source}: verify, Convex against the applied snapshot", "\n".join(lines))


def main() -> None:
    print("xata2convex demo: the sample database from today's Xata (PostgreSQL), then from Xata Lite's")
    print("REST API through the xata SDK (Xata Lite was retired on 2026-02-28; a local stand-in serves it)")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise SystemExit("error: no PostgreSQL server under /usr/lib/postgresql: run `make setup`")
    cluster = PostgresCluster(bin_dir).start()
    try:
        load_seed(cluster, DATABASE, SEED)
        url = cluster.url(DATABASE)
        sync_change_sync_verify(
            "PostgreSQL (XATA_POSTGRES_URL)",
            "postgres",
            {"XATA_POSTGRES_URL": url},
            lambda: change_postgres(url),
        )
    finally:
        cluster.stop()

    with XataStandIn(SEED) as xata:
        settings = xata.settings()
        client = sdk_client(
            settings["XATA_API_KEY"], settings["XATA_DATABASE_URL"], settings["XATA_ENDPOINT_URL"]
        )
        sync_change_sync_verify(
            "xata SDK (XATA_DATABASE_URL)", "xata-sdk", settings, lambda: change_through_the_sdk(client)
        )


if __name__ == "__main__":
    main()

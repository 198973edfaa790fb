"""The jobs the CLI and the Lambda handlers both run: open the configured stages and drive them."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from .config import Config, ConfigError, scrub
from .convex_sink import ConvexHttp, ConvexSinkAction, ConvexTransport, MirrorWriter
from .export import export_snapshot
from .mirror import epoch_ms
from .model import SnapshotError, SnapshotManifest, Source, XataToConvexError
from .snapshot import SnapshotStore
from .state import Progress, StateFileError
from .storage import open_blob_store
from .sync import Sync, SyncOptions
from .verify import verify_snapshot
from .xata_source import XataSdkSource, XataSettings, parse_database_url

log = logging.getLogger(__name__)


def open_source(config: Config) -> Source:
    """The Postgres source when XATA_POSTGRES_URL is set, else the xata SDK source."""
    if config.xata_postgres_url:
        from .pg_source import PostgresSource

        return PostgresSource(config.xata_postgres_url)
    config.require("xata_api_key", "xata_database_url")
    assert config.xata_api_key and config.xata_database_url
    return XataSdkSource(
        XataSettings(
            api_key=config.xata_api_key,
            database_url=config.xata_database_url,
            endpoint_url=config.xata_endpoint_url,
            requests_per_second=config.requests_per_second,
        )
    )


def source_identity(config: Config) -> tuple[str, str]:
    """(database, branch) naming the snapshot folder, without contacting the source."""
    if config.xata_postgres_url:
        from .pg_source import database_and_branch

        return database_and_branch(config.xata_postgres_url)
    if not config.xata_database_url:
        raise ConfigError("missing setting(s): XATA_DATABASE_URL (or XATA_POSTGRES_URL)")
    return parse_database_url(config.xata_database_url)


def open_store(config: Config) -> SnapshotStore:
    database, branch = source_identity(config)
    return SnapshotStore(open_blob_store(config.snapshot_uri), database, branch)


def run_export(config: Config) -> SnapshotManifest:
    source = open_source(config)
    try:
        return export_snapshot(
            source,
            open_store(config),
            concurrency=config.concurrency,
            source_name="postgres" if config.xata_postgres_url else "xata",
        )
    finally:
        source.close()


def convex_configured(config: Config) -> bool:
    return bool(
        (config.convex_site_url and config.sink_secret) or (config.convex_url and config.convex_deploy_key)
    )


def open_convex(config: Config) -> ConvexTransport:
    """The signed sink HTTP action when CONVEX_SITE_URL and XATA2CONVEX_SINK_SECRET are set (no deploy
    key needed: the Lambdas' way), else Convex's HTTP API with CONVEX_URL and CONVEX_DEPLOY_KEY."""
    if config.convex_site_url and config.sink_secret:  # stripped and checked by config.load_secret
        return ConvexSinkAction(config.convex_site_url, config.sink_secret)
    if config.convex_url and config.convex_deploy_key:
        return ConvexHttp(config.convex_url, config.convex_deploy_key)
    raise ConfigError(
        "missing setting(s): CONVEX_SITE_URL and XATA2CONVEX_SINK_SECRET (the signed sink), "
        "or CONVEX_URL and CONVEX_DEPLOY_KEY (a deploy key)"
    )


def run_sync(config: Config, options: SyncOptions, *, trigger: str | None = None) -> dict[str, Any]:
    """Apply the newest (or a chosen) snapshot to Convex; the report goes to S3 runs/ and Convex syncRuns."""
    store = open_store(config)
    if options.dry_run:  # reads Convex (drift, --full's listing) when it is configured, writes nothing
        reader = MirrorWriter(open_convex(config)) if convex_configured(config) else None
        return Sync(store, reader, options).run().to_json()
    convex = open_convex(config)
    sync = Sync(store, MirrorWriter(convex, stop_after_batches=options.stop_after_batches), options)
    record_run(convex, {"runId": sync.run_id, "status": "running", "mode": options.mode}, trigger)
    close_dead_run(store, convex, sync.run_id)
    try:
        report = sync.run().to_json()
    except Exception as exc:
        failed = {"runId": sync.run_id, "status": "failed", "error": scrub(str(exc), config.secrets())}
        record_run(convex, failed)
        store.write_run_report(sync.run_id, failed)
        raise
    try:
        record_run(convex, report, trigger)
    except XataToConvexError as exc:  # the run itself is done and reported in S3 runs/: keep it so
        log.warning(  # progress.json stays, so the next run records this report in syncRuns
            "could not mirror run %s into syncRuns: %s", sync.run_id, scrub(str(exc), config.secrets())
        )
    else:
        store.clear_progress()  # last: until then the next run can close this one from its report
    return report


def run_export_and_sync(
    config: Config, options: SyncOptions, *, trigger: str | None = None
) -> dict[str, Any]:
    """`run`: a fresh snapshot, then the sync of exactly that snapshot."""
    manifest = run_export(config)
    return run_sync(config, replace(options, snapshot_id=manifest.snapshot_id), trigger=trigger)


def close_dead_run(store: SnapshotStore, convex: ConvexTransport, run_id: str) -> None:
    """A run that died (e.g. the Lambda timeout) left progress.json and a syncRuns document saying
    `running`: give both its final status (`dead_run_report`), naming the run that picks up its work."""
    try:
        left = store.read_progress()
    except StateFileError as exc:  # the dead run cannot be named; its tables are reconciled
        log.warning("%s", exc)
        return
    if left is None or left.run_id == run_id:
        return
    report = dead_run_report(store, left, run_id)
    record_run(convex, report)
    if store.read_run_report(left.run_id) is None:
        store.write_run_report(left.run_id, report)


def dead_run_report(store: SnapshotStore, left: Progress, by_run_id: str) -> dict[str, Any]:
    """The final report of the run that left `progress.json`: its own report when it wrote one (it
    died before closing), else `succeeded` (`partial` with refused records) when progress shows it
    applied every table of its snapshot and died before its report, else `failed`."""
    own = store.read_run_report(left.run_id)
    if own is not None and own.get("status") in ("succeeded", "partial", "failed"):
        return own
    try:
        tables = [t.name for t in store.read_manifest(left.snapshot_id).tables]
    except (SnapshotError, ValueError, KeyError):
        tables = []
    applied = [left.tables[t].applied for t in tables if t in left.tables]
    report: dict[str, Any] = {"runId": left.run_id, "snapshotId": left.snapshot_id}
    if tables and len(applied) == len(tables) and all(applied):
        refused = any(entry.rejected for entry in applied if entry)
        return report | {
            "status": "partial" if refused else "succeeded",
            "error": f"applied every table, then stopped before its report; recorded by run {by_run_id}",
        }
    error = f"stopped before finishing (crash or timeout); run {by_run_id} resumed its work"
    return report | {"status": "failed", "error": error}


def record_run(convex: ConvexTransport, report: dict[str, Any], trigger: str | None = None) -> None:
    """Mirror a run report into the Convex `syncRuns` table (`recordRun`: `syncRuns:record`)."""
    fields: dict[str, Any] = {"runId": report["runId"], "status": report["status"]}
    for key in ("mode", "snapshotId", "batches", "error"):
        if report.get(key) is not None:
            fields[key] = report[key]
    for key in ("startedAt", "finishedAt"):
        if report.get(key):
            fields[key] = epoch_ms(report[key])
    if "tables" in report:
        keys = ("added", "changed", "deleted", "unchanged", "status", "message")
        fields["tables"] = [
            {"table": name, **{k: t[k] for k in keys if k in t}} for name, t in report["tables"].items()
        ]
    if trigger:
        fields["trigger"] = trigger
    convex.call("recordRun", fields)


def verify(config: Config) -> dict[str, Any]:
    """Compare the Convex mirror with the last snapshot applied in full; `equal` only if every table is."""
    store = open_store(config)
    state, _ = store.read_state()
    if not state or not state.snapshot_id:
        raise SnapshotError("nothing has been applied in full yet: run `xata2convex sync` first")
    return verify_snapshot(store, MirrorWriter(open_convex(config)), state.snapshot_id)

"""The jobs the CLI and the Lambda handlers both run: open the configured stages and drive them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from .config import Config, ConfigError, scrub
from .convex_sink import ConvexHttp, ConvexSinkAction, ConvexTransport, MirrorWriter
from .export import export_snapshot
from .lock import HeldLease, holding
from .mirror import epoch_ms
from .model import SnapshotError, SnapshotManifest, Source, XataToConvexError
from .progress import LogProgress, ProgressDisplay
from .snapshot import SnapshotStore
from .state import Progress, StateFileError
from .storage import open_blob_store
from .sync import Sync, SyncOptions, new_run_id
from .verify import verify_snapshot
from .xata_source import XataSdkSource, XataSettings, parse_database_url

log = logging.getLogger(__name__)
FINAL_STATUSES = ("succeeded", "partial", "failed")


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


def run_export(
    config: Config, display: ProgressDisplay | None = None, *, run_id: str | None = None
) -> SnapshotManifest:
    """Export a snapshot whose manifest names `run_id` (a bare export is a run of its own); progress
    is logged per table unless the caller shows it otherwise."""
    source = open_source(config)
    try:
        return export_snapshot(
            source,
            open_store(config),
            concurrency=config.concurrency,
            source_name="postgres" if config.xata_postgres_url else "xata",
            display=display or LogProgress(),
            run_id=run_id or new_run_id(),
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


def run_sync(
    config: Config,
    options: SyncOptions,
    *,
    lease: HeldLease | None = None,
    display: ProgressDisplay | None = None,
) -> dict[str, Any]:
    """Apply the newest (or a chosen) snapshot to Convex; the report goes to S3 runs/ and Convex syncRuns.

    Writes only while holding the run lock: `lease` when the caller holds it (`run`, the worker), else
    taken here (LockBusy when another run holds it). A dry run writes nothing and takes no lock.
    The report's trigger is the options', else the one syncRuns recorded when Convex started the run
    (`cron` or `manual`), else `manual` (a direct invoke of the sync Lambda).
    """
    store = open_store(config)
    display = display or LogProgress()
    if options.dry_run:  # reads Convex (drift, --full's listing) when it is configured, writes nothing
        reader = MirrorWriter(open_convex(config)) if convex_configured(config) else None
        return Sync(store, reader, options, display).run().to_json()
    convex = open_convex(config)
    run_id = options.run_id or new_run_id()
    with run_lock(store, convex, run_id, lease) as held:
        store.before_state_write = held.ensure_held
        writer = MirrorWriter(
            convex, stop_after_batches=options.stop_after_batches, before_write=held.ensure_held
        )
        started = {"runId": run_id, "status": "running", "mode": options.mode}
        recorded = record_run(convex, started, options.trigger)
        trigger = options.trigger or (recorded or {}).get("trigger") or "manual"
        sync = Sync(store, writer, replace(options, run_id=run_id, trigger=trigger), display)
        close_dead_run(store, convex, sync.run_id, closed=held.took_over_from)
        try:
            report = sync.run().to_json()
        except Exception as exc:
            failed = {"runId": sync.run_id, "status": "failed", "error": scrub(str(exc), config.secrets())}
            record_run(convex, failed)
            store.write_run_report(sync.run_id, failed)
            raise
    try:
        record_run(convex, report)
    except XataToConvexError as exc:  # the run itself is done and reported in S3 runs/: keep it so
        log.warning(  # progress.json stays, so the next run records this report in syncRuns
            "could not mirror run %s into syncRuns: %s", sync.run_id, scrub(str(exc), config.secrets())
        )
    else:
        store.clear_progress()  # last: until then the next run can close this one from its report
    return report


def run_export_and_sync(
    config: Config,
    options: SyncOptions,
    *,
    lease: HeldLease | None = None,
    display: ProgressDisplay | None = None,
) -> dict[str, Any]:
    """`run`: a fresh snapshot, then the sync of exactly that snapshot, both under one hold of the lock
    and one run id (which the snapshot's manifest names)."""
    if options.dry_run:
        manifest = run_export(config, display, run_id=options.run_id)
        chosen = replace(options, snapshot_id=manifest.snapshot_id)
        return run_sync(config, chosen, display=display)
    run_id = options.run_id or new_run_id()
    with run_lock(open_store(config), open_convex(config), run_id, lease) as held:
        manifest = run_export(config, display, run_id=run_id)
        chosen = replace(options, run_id=run_id, snapshot_id=manifest.snapshot_id)
        return run_sync(config, chosen, lease=held, display=display)


@contextmanager
def run_lock(
    store: SnapshotStore, convex: ConvexTransport, run_id: str, held: HeldLease | None = None
) -> Iterator[HeldLease]:
    """`held` if the caller holds the lock already; else the lock taken here for run_id (closing the
    run whose expired lease it took over), renewed while the block runs, released after it."""
    if held is not None:
        yield held
        return
    with holding(store, run_id) as lease:
        close_taken_over(store, convex, lease)
        yield lease


def close_taken_over(store: SnapshotStore, convex: ConvexTransport, lease: HeldLease) -> None:
    """The run whose expired lease `lease` took over died holding it, maybe mid-export with no
    progress.json: give it its final status, naming the run that took over (from its progress.json
    when it left one, else its own report when it wrote one, else `failed`)."""
    dead = lease.took_over_from
    if not dead or dead == lease.run_id:
        return
    try:
        left = store.read_progress()
    except StateFileError:
        left = None  # close_dead_run says why; the dead run is still named by the lock
    if left is not None and left.run_id == dead:
        _close(store, convex, dead_run_report(store, left, lease.run_id))
        return
    own = store.read_run_report(dead)
    if own is None or own.get("status") not in FINAL_STATUSES:
        error = (
            f"stopped before finishing (crash or timeout): its run lock lease ran out and run "
            f"{lease.run_id} took the lock over"
        )
        own = {"runId": dead, "status": "failed", "error": error}
    _close(store, convex, own)


def close_dead_run(
    store: SnapshotStore, convex: ConvexTransport, run_id: str, *, closed: str | None = None
) -> None:
    """A run that died (e.g. the Lambda timeout) left progress.json and a syncRuns document saying
    `running`: give both its final status (`dead_run_report`), naming the run that picks up its work.
    `closed` is a dead run already closed when its lease was taken over (`close_taken_over`)."""
    try:
        left = store.read_progress()
    except StateFileError as exc:  # the dead run cannot be named; its tables are reconciled
        log.warning("%s", exc)
        return
    if left is None or left.run_id in (run_id, closed):
        return
    _close(store, convex, dead_run_report(store, left, run_id))


def _close(store: SnapshotStore, convex: ConvexTransport, report: dict[str, Any]) -> None:
    """Give a dead run its final status in syncRuns, and in runs/ unless it wrote its own report."""
    record_run(convex, report)
    if store.read_run_report(report["runId"]) is None:
        store.write_run_report(report["runId"], report)


def dead_run_report(store: SnapshotStore, left: Progress, by_run_id: str) -> dict[str, Any]:
    """The final report of the run that left `progress.json`: its own report when it wrote one (it
    died before closing), else `succeeded` (`partial` with refused records) when progress shows it
    applied every table of its snapshot and died before its report, else `failed`."""
    own = store.read_run_report(left.run_id)
    if own is not None and own.get("status") in FINAL_STATUSES:
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


def record_run(
    convex: ConvexTransport, report: dict[str, Any], trigger: str | None = None
) -> dict[str, Any] | None:
    """Mirror a run report into the Convex `syncRuns` table (`recordRun`: `syncRuns:record`); returns
    the document."""
    fields: dict[str, Any] = {"runId": report["runId"], "status": report["status"]}
    for key in ("mode", "snapshotId", "batches", "error", "trigger", "reportKey", "htmlReportKey"):
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
    document: dict[str, Any] | None = convex.call("recordRun", fields)
    return document


def verify(config: Config) -> dict[str, Any]:
    """Compare the Convex mirror with the last snapshot applied in full; `equal` only if every table is."""
    store = open_store(config)
    state, _ = store.read_state()
    if not state or not state.snapshot_id:
        raise SnapshotError("nothing has been applied in full yet: run `xata2convex sync` first")
    return verify_snapshot(store, MirrorWriter(open_convex(config)), state.snapshot_id)


TOTALS = ("added", "changed", "deleted")


def run_totals(report: dict[str, Any], keys: tuple[str, ...] = TOTALS) -> dict[str, int]:
    """A run report's counts, summed over its tables."""
    tables = report.get("tables", {}).values()
    return {key: sum(int(table.get(key, 0)) for table in tables) for key in keys}

"""Export stage: every table of a source into one snapshot, manifest last."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .model import (
    CsvSource,
    SnapshotManifest,
    Source,
    TableManifest,
    TableSchema,
    XataToConvexError,
    utc_now_iso,
)
from .progress import NoProgress, ProgressDisplay
from .snapshot import SnapshotStore, new_snapshot_id


class ExportError(XataToConvexError):
    """The export failed; no manifest was written, so the snapshot is never read."""


def export_snapshot(
    source: Source,
    store: SnapshotStore,
    *,
    concurrency: int = 4,
    source_name: str = "xata",
    display: ProgressDisplay | None = None,
    run_id: str | None = None,
) -> SnapshotManifest:
    """Write a complete snapshot of `source` to `store` and return its manifest (naming `run_id`).

    Tables are exported concurrently (bounded); if any table fails the manifest is not written.
    """
    schema = source.read_schema()
    snapshot_id = new_snapshot_id()
    store.write_schema(snapshot_id, schema.raw)
    warnings: list[str] = list(getattr(source, "warnings", []))

    shown = display or NoProgress()

    def export_one(table: TableSchema) -> TableManifest:
        meter = shown.track(table.name, "export")
        if isinstance(source, CsvSource):  # pre-rendered CSV: stored byte for byte
            manifest = store.write_table_csv(snapshot_id, table, source.copy_table_csv(table))
        else:
            manifest = store.write_table(snapshot_id, table, meter.pages(source.read_table(table)))
        meter.done(count=manifest.rows)
        return manifest

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="export") as pool:
        futures = [pool.submit(export_one, table) for table in schema.tables]
        errors = [f.exception() for f in futures]
    failures = [e for e in errors if e is not None]
    if failures:
        raise ExportError(
            f"export of snapshot {snapshot_id} failed, no manifest written: "
            + "; ".join(str(e) for e in failures)
        ) from failures[0]
    manifest = SnapshotManifest(
        snapshot_id=snapshot_id,
        database=source.database(),
        branch=source.branch(),
        source=source_name,
        created_at=utc_now_iso(),
        schema_sha256=schema.fingerprint(),
        tables=tuple(f.result() for f in futures),
        warnings=tuple(warnings),
        run_id=run_id,
    )
    store.write_manifest(manifest)
    return manifest

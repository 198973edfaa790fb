"""Benchmark: export 1M rows x 10 columns from PostgreSQL, ours vs psql's \\copy (the floor).

Starts a throwaway cluster (xata2convex_local.postgres), loads a Xata-shaped table with
generate_series, then times, best of a few runs, into the same local folder:
  floor   psql -c "\\copy (SELECT <the columns> FROM bench) to stdout with csv" > file
  ours    export_snapshot(PostgresSource) -> a snapshot (CSV + manifest) in a LocalBlobStore
and, for context, psql running our rendering SELECT (what the server spends on canonical text).
Prints figures only; the target is ours within 1.5x of the floor. Run:
    .venv/bin/python bench/postgres_export.py [--rows N] [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from xata2convex.export import export_snapshot
from xata2convex.pg_source import PostgresSource
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import LocalBlobStore
from xata2convex_local.postgres import PostgresCluster, postgres_bin_dir

COLUMNS = "xata_id, xata_version, xata_createdat, xata_updatedat, name, n, score, active, tags, doc"
LOAD = """
CREATE TABLE bench (
  xata_id text PRIMARY KEY, xata_version integer NOT NULL DEFAULT 0,
  xata_createdat timestamptz NOT NULL, xata_updatedat timestamptz NOT NULL,
  name text, n bigint, score double precision, active boolean, tags text[], doc jsonb);
INSERT INTO bench
SELECT 'rec_' || md5(i::text), i % 7,
       timestamptz '2024-01-01' + i * interval '1.001 second',
       timestamptz '2024-06-01' + i * interval '1 millisecond' + (i % 1000) * interval '1 microsecond',
       CASE WHEN i % 10 = 0 THEN NULL WHEN i % 10 = 1 THEN '' ELSE 'name, "' || i || '"' END,
       i::bigint * 1000003, i / 7.0, i % 2 = 0, ARRAY['tag' || i % 5, 'b'],
       jsonb_build_object('k', i, 'v', 'x y')
FROM generate_series(1, {rows}) i;
"""


def best_of(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def psql_copy(psql: Path, url: str, select: str, out: Path) -> None:
    with out.open("wb") as sink:
        subprocess.run(
            [psql, "-X", "-q", url, "-c", f"\\copy ({select}) to stdout with csv"], stdout=sink, check=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL server binaries not found under /usr/lib/postgresql: run `make setup`")
    psql = bin_dir / "psql"
    cluster = PostgresCluster(bin_dir).start()
    folder = Path(tempfile.mkdtemp(prefix="x2c-bench-pg-"))
    try:
        url = cluster.url()
        start = time.perf_counter()
        cluster.execute(LOAD.format(rows=args.rows))
        cluster.execute("VACUUM ANALYZE bench")  # hint bits set: every timed run reads alike
        print(f"loaded {args.rows:,} rows x 10 columns in {time.perf_counter() - start:.1f}s")

        floor_file = folder / "floor.csv"
        floor = best_of(args.runs, lambda: psql_copy(psql, url, f"SELECT {COLUMNS} FROM bench", floor_file))

        def ours_once() -> None:
            shutil.rmtree(folder / "snapshots", ignore_errors=True)
            source = PostgresSource(url)
            try:
                export_snapshot(source, SnapshotStore(LocalBlobStore(folder / "snapshots"), "bench", "main"))
            finally:
                source.close()

        ours = best_of(args.runs, ours_once)
        snapshot_csv = next((folder / "snapshots").rglob("bench.csv"))

        source = PostgresSource(url)
        try:
            table = source.read_schema().table("bench")
            rendering = source.select_sql(table)
        finally:
            source.close()
        rendered = best_of(args.runs, lambda: psql_copy(psql, url, rendering, folder / "rendered.csv"))

        mib = 1024 * 1024
        floor_mib = floor_file.stat().st_size / mib
        ours_mib = snapshot_csv.stat().st_size / mib
        print(f"floor  psql \\copy of the columns:        {floor:6.2f}s  ({floor_mib:,.0f} MiB)")
        print(f"ours   export_snapshot(PostgresSource):  {ours:6.2f}s  ({ours_mib:,.0f} MiB)")
        print(f"       psql \\copy of our rendering:      {rendered:6.2f}s  (server cost of the rendering)")
        print(f"ratio  ours / floor: {ours / floor:.2f}x  (target: within 1.5x)")
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

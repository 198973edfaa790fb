"""Push benchmark: documents written to Convex per document changed, incremental sync vs full reload.

A generated table (20k records by default) is synced into the local Convex; then 1% of its records
change in Xata (through the xata SDK). We count, from the local Convex's request log, the documents
sent to `mirror:upsertBatch` and ids sent to `mirror:deleteBatch` by
- an incremental sync (ours): the target is exactly 1.00 document per changed record;
- a full reload (the baseline, `sync --full`): every record of the table is sent again.
Run: .venv/bin/python bench/push.py [--records 20000] [--change-share 0.01]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from xata2convex import jobs
from xata2convex.config import Config
from xata2convex.model import schema_from_xata
from xata2convex.sync import SyncOptions
from xata2convex.xata_source import sdk_client
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed
from xata2convex_local.xata_server import XataStandIn


def sent(convex: LocalConvex) -> int:
    log = convex.request_log()
    return sum(
        int(entry.get("documents", 0)) + int(entry.get("ids", 0))
        for entry in log
        if entry["path"] in ("mirror:upsertBatch", "mirror:deleteBatch") and entry["status"] == "success"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--change-share", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="x2c-bench-push-") as tmp:
        seed = Path(tmp) / "seed"
        write_bench_seed(seed, records=args.records, tables=1)
        schema = schema_from_xata(json.loads((seed / "schema.json").read_text()))
        [table] = [t.name for t in schema.tables]
        with (
            XataStandIn(seed, database="bench") as xata,
            project_for_schema(schema) as project,
            LocalConvex(project) as convex,
        ):
            env = xata.settings()
            config = Config.from_env(
                {**env, **convex.settings(), "SNAPSHOT_URI": str(Path(tmp) / "snapshots")}
            )
            jobs.run_export_and_sync(config, SyncOptions())

            client = sdk_client(env["XATA_API_KEY"], env["XATA_DATABASE_URL"], env["XATA_ENDPOINT_URL"])
            ids = xata.table_ids(table)
            changed = random.Random(0).sample(ids, int(len(ids) * args.change_share))
            for record_id in changed:
                client.records().update(table, record_id, {"note": f"changed {record_id}"})

            convex.reset_log()
            started = time.perf_counter()
            report = jobs.run_export_and_sync(config, SyncOptions())
            incremental_s = time.perf_counter() - started
            incremental = sent(convex)
            assert report["tables"][table]["changed"] == len(changed), report["tables"][table]

            convex.reset_log()
            started = time.perf_counter()
            jobs.run_export_and_sync(config, SyncOptions(full=True))
            full_s = time.perf_counter() - started
            full = sent(convex)

    print(f"{args.records:,} records, {len(changed):,} changed ({args.change_share:.0%})")
    print(f"  incremental sync: {incremental:>7,} documents sent to Convex in {incremental_s:5.2f} s")
    print(f"  full reload:      {full:>7,} documents sent to Convex in {full_s:5.2f} s")
    print(
        f"  sent / changed: incremental {incremental / len(changed):.2f} (target 1.00), "
        f"full reload {full / len(changed):.2f}"
    )


if __name__ == "__main__":
    main()

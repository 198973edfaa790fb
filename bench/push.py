"""Push benchmark: documents written to Convex per document changed, incremental sync vs full reload,
and what links cost.

A generated table (20k records by default) is synced into the local Convex; then 1% of its records
change in Xata (through the xata SDK). We count, from the local Convex's request log, the documents
sent to `mirror:upsertBatch` and ids sent to `mirror:deleteBatch` by
- an incremental sync (ours): the target is exactly 1.00 document per changed record;
- a full reload (the baseline, `sync --full`): every record of the table is sent again.
The same run is made twice: links off (the table as generated), and links on (each record also
links to a random record of the same table, a self link, so that some targets come later and are
resolved at the end of the run). Links on must still send 1.00 document per changed record; the
script prints the Convex calls each variant made, and the extra calls link resolution costs.
Run: .venv/bin/python bench/push.py [--records 20000] [--change-share 0.01]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xata2convex import jobs
from xata2convex.config import Config
from xata2convex.model import schema_from_xata
from xata2convex.sync import SyncOptions
from xata2convex.xata_source import sdk_client
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed
from xata2convex_local.xata_server import XataStandIn

WRITES = ("mirror:upsertBatch", "mirror:deleteBatch")


@dataclass
class Run:
    seconds: float
    sent: int  # documents and ids sent to the write functions
    calls: int  # every Convex function call
    resolve_calls: int  # mirror:resolveLinks calls (the end-of-run link pass)


def measure(convex: LocalConvex, run: Callable[[], object]) -> Run:
    convex.reset_log()
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    log = [e for e in convex.request_log() if e["status"] == "success"]
    sent = sum(int(e.get("documents", 0)) + int(e.get("ids", 0)) for e in log if e["path"] in WRITES)
    resolve = sum(1 for e in log if e["path"] == "mirror:resolveLinks")
    return Run(seconds, sent, len(log), resolve)


def add_self_links(seed: Path, table: str) -> None:
    """Give every record of `table` a link `parent` to a random record of the same table."""
    schema = json.loads((seed / "schema.json").read_text())
    schema["tables"][0]["columns"].append({"name": "parent", "type": "link", "link": {"table": table}})
    (seed / "schema.json").write_text(json.dumps(schema))
    path = seed / f"{table}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    rng = random.Random(1)
    ids = [r["id"] for r in records]
    for record in records:
        record["parent"] = {"id": rng.choice(ids)}
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def variant(records: int, change_share: float, links: bool) -> tuple[int, Run, Run, Run]:
    """(changed, initial load, incremental sync, full reload) for one variant."""
    with tempfile.TemporaryDirectory(prefix="x2c-bench-push-") as tmp:
        seed = Path(tmp) / "seed"
        write_bench_seed(seed, records=records, tables=1)
        schema = schema_from_xata(json.loads((seed / "schema.json").read_text()))
        [table] = [t.name for t in schema.tables]
        if links:
            add_self_links(seed, table)
            schema = schema_from_xata(json.loads((seed / "schema.json").read_text()))
        with (
            XataStandIn(seed, database="bench") as xata,
            project_for_schema(schema) as project,
            LocalConvex(project) as convex,
        ):
            env = xata.settings()
            config = Config.from_env(
                {**env, **convex.settings(), "SNAPSHOT_URI": str(Path(tmp) / "snapshots")}
            )
            initial = measure(convex, lambda: jobs.run_export_and_sync(config, SyncOptions()))

            client = sdk_client(env["XATA_API_KEY"], env["XATA_DATABASE_URL"], env["XATA_ENDPOINT_URL"])
            ids = xata.table_ids(table)
            changed = random.Random(0).sample(ids, int(len(ids) * change_share))
            for record_id in changed:
                client.records().update(table, record_id, {"note": f"changed {record_id}"})

            reports = []
            incremental = measure(
                convex, lambda: reports.append(jobs.run_export_and_sync(config, SyncOptions()))
            )
            assert reports[0]["tables"][table]["changed"] == len(changed), reports[0]["tables"][table]
            full = measure(convex, lambda: jobs.run_export_and_sync(config, SyncOptions(full=True)))
    return len(changed), initial, incremental, full


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--change-share", type=float, default=0.01)
    args = parser.parse_args()
    results = {links: variant(args.records, args.change_share, links) for links in (False, True)}
    for links, (changed, initial, incremental, full) in results.items():
        print(
            f"links {'on' if links else 'off'}: {args.records:,} records, "
            f"{changed:,} changed ({args.change_share:.0%})"
        )
        print(
            f"  initial load:     {initial.sent:>7,} documents, {initial.calls:>5,} Convex calls "
            f"({initial.resolve_calls} resolveLinks) in {initial.seconds:6.2f} s"
        )
        print(
            f"  incremental sync: {incremental.sent:>7,} documents, {incremental.calls:>5,} Convex calls "
            f"({incremental.resolve_calls} resolveLinks) in {incremental.seconds:6.2f} s"
        )
        print(
            f"  full reload:      {full.sent:>7,} documents, {full.calls:>5,} Convex calls "
            f"({full.resolve_calls} resolveLinks) in {full.seconds:6.2f} s"
        )
        print(
            f"  sent / changed: incremental {incremental.sent / changed:.2f} (target 1.00), "
            f"full reload {full.sent / changed:.2f}"
        )
    (_, off_initial, off_incremental, _), (_, on_initial, on_incremental, _) = results[False], results[True]
    print(
        f"link resolution costs {on_initial.calls - off_initial.calls:+,} Convex calls on the initial "
        f"load and {on_incremental.calls - off_incremental.calls:+,} on the incremental sync "
        "(links on - links off)"
    )


if __name__ == "__main__":
    main()

"""Export benchmark: our export against an xreplay-style baseline, on the local Xata stand-in.

A generated seed (200k records in 10 tables by default) is served with 20 ms latency per request.
- ours: export_snapshot through the xata SDK: tables concurrently (10), pages of 1000, within the
  default budget of 75 requests/s, into a local snapshot folder;
- baseline: what xata_tools' xreplay does: tables one after another, pages of 200, one CSV file per
  table written with Python's csv module.
Prints records/s for both and the ratio (target: at least 4x).
Run: .venv/bin/python bench/export.py [--records 200000] [--tables 10] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from xata2convex.export import export_snapshot
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import LocalBlobStore
from xata2convex.xata_source import XataSdkSource, XataSettings, sdk_client
from xata2convex_local.seedgen import write_bench_seed
from xata2convex_local.xata_server import XataStandIn


def baseline(standin: XataStandIn, out: Path) -> int:
    settings = standin.settings()
    client = sdk_client(
        settings["XATA_API_KEY"], settings["XATA_DATABASE_URL"], settings["XATA_ENDPOINT_URL"]
    )
    tables = client.branch().get_details()["schema"]["tables"]
    total = 0
    for table in tables:
        columns = ["id", *[c["name"] for c in table["columns"]]]
        with (out / f"{table['name']}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            page: dict[str, object] = {"size": 200}
            while True:
                response = client.data().query(table["name"], {"page": page})
                for record in response["records"]:
                    writer.writerow([record.get(c) for c in columns])
                total += len(response["records"])
                if not response.has_more_results():
                    break
                page = {"size": 200, "after": response.get_cursor()}
    return total


def ours(standin: XataStandIn, out: Path, concurrency: int) -> int:
    settings = standin.settings()
    source = XataSdkSource(
        XataSettings(
            api_key=settings["XATA_API_KEY"],
            database_url=settings["XATA_DATABASE_URL"],
            endpoint_url=settings["XATA_ENDPOINT_URL"],
        )
    )
    manifest = export_snapshot(
        source, SnapshotStore(LocalBlobStore(out), "bench", "main"), concurrency=concurrency
    )
    return sum(t.rows for t in manifest.tables)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="x2c-bench-export-") as tmp:
        seed = Path(tmp) / "seed"
        write_bench_seed(seed, records=args.records, tables=args.tables)
        with XataStandIn(seed, database="bench", latency_ms=args.latency_ms) as standin:
            runs = {}
            contenders: dict[str, Callable[[XataStandIn, Path], int]] = {
                "baseline": baseline,
                "xata2convex": lambda standin, out: ours(standin, out, args.concurrency),
            }
            for name, run in contenders.items():
                out = Path(tmp) / name
                out.mkdir()
                started = time.perf_counter()
                count = run(standin, out)
                seconds = time.perf_counter() - started
                runs[name] = count / seconds
                print(
                    f"{name:<12} {count:>8,} records in {seconds:6.2f} s = {count / seconds:9,.0f} records/s"
                )
    ratio = runs["xata2convex"] / runs["baseline"]
    print(f"ratio (xata2convex / baseline): {ratio:.1f}x  (target >= 4x)")
    print(f"({args.records:,} records, {args.tables} tables, {args.latency_ms:g} ms latency per request)")


if __name__ == "__main__":
    main()

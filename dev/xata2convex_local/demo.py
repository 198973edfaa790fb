"""`make demo`: the whole job offline, on embedded defaults.

Starts the local Xata stand-in (seeded with seeds/sample) and the local Convex (serving ./convex),
keeps snapshots in a temporary folder, runs a sync, then adds, changes and deletes records in Xata
through the xata SDK, syncs again and prints what was added, changed and deleted; stops what it
started.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from xata.client import XataClient

from xata2convex import jobs
from xata2convex.cli import render_report
from xata2convex.config import Config
from xata2convex.convex_sink import MirrorWriter
from xata2convex.sync import SyncOptions
from xata2convex.xata_source import sdk_client

from .convex_server import LocalConvex
from .xata_server import XataStandIn

SEED = Path(__file__).resolve().parents[2] / "seeds" / "sample"


def change_the_source(client: XataClient) -> list[str]:
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
    print(value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False))


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="xata2convex-demo-") as snapshots,
        XataStandIn(SEED) as xata,
        LocalConvex() as convex,
    ):
        env = {**xata.settings(), **convex.settings(), "SNAPSHOT_URI": snapshots}
        config = Config.from_env(env)
        show("local stand-ins", f"Xata {xata.url}  Convex {convex.url}  snapshots {snapshots}")

        first = jobs.run_export_and_sync(config, SyncOptions())
        show("first sync: the sample database lands in Convex", render_report(first))

        xata_env = xata.settings()
        client = sdk_client(
            xata_env["XATA_API_KEY"], xata_env["XATA_DATABASE_URL"], xata_env["XATA_ENDPOINT_URL"]
        )
        show("changing the source through the xata SDK", "\n".join(change_the_source(client)))

        second = jobs.run_export_and_sync(config, SyncOptions())
        show("second sync: only the differences are written", render_report(second))

        third = jobs.run_export_and_sync(config, SyncOptions())
        show("third sync: nothing changed, nothing written", render_report(third))

        writer = MirrorWriter(jobs.open_convex(config))
        documents = [d for _, d in zip(range(2), writer.list_documents("users"), strict=False)]
        show("two mirrored documents of `users`", documents)
        result = jobs.verify(config)
        lines = [
            f"{name}: {'equal' if t['equal'] else t['examples']}" for name, t in result["tables"].items()
        ]
        show("verify: Convex against the applied snapshot", "\n".join(lines))


if __name__ == "__main__":
    main()

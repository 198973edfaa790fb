"""xata_tools' `xreplay --output file`: schema.json plus one file per table in a folder.

Same flags as xata_tools, but the CSV is the snapshot codec's (lossless, RFC 4180) and pages are
1000 records, not 200. `--output_format json` writes each table as a JSON array of records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .model import Source
from .snapshot import RecordsCsv, write_csv
from .storage import LocalBlobStore


def replay_to_files(source: Source, folder: Path, output_format: str) -> Iterator[str]:
    """Export every table into `folder`; yields one progress line per file written."""
    schema = source.read_schema()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schema.json").write_text(json.dumps(dict(schema.raw), ensure_ascii=False, indent=2) + "\n")
    yield f"wrote {folder / 'schema.json'}"
    blobs = LocalBlobStore(folder)
    for table in schema.tables:
        if output_format == "csv":
            csv = RecordsCsv(table, source.read_table(table))
            manifest = write_csv(blobs, f"{table.name}.csv", f"{table.name}.csv", table, csv)
            yield f"wrote {folder / manifest.file} ({manifest.rows} rows)"
            continue
        rows = 0
        with blobs.open_write(f"{table.name}.json") as out:
            out.write(b"[")
            for page in source.read_table(table):
                for record in page:
                    out.write((b",\n" if rows else b"\n") + json.dumps(record, ensure_ascii=False).encode())
                    rows += 1
            out.write(b"\n]\n")
        yield f"wrote {folder / (table.name + '.json')} ({rows} rows)"

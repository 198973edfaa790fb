"""`verify`: the Convex mirror against a snapshot, document by document.

Expected documents are built from the snapshot with the same mapping the sync uses, and both sides
are reduced to a hash of a canonical form (numbers compared by value, as Convex returns every number
as a float64; int64 values exactly; object keys sorted). Memory: one id -> hash per record of the
table being checked. Links' `f_id` fields are checked apart (`links.check_links`): every one must be
the `_id` of the document its link names, and absent when that document is not mirrored.

A table file that does not match its manifest (SHA-256, row count) is reported as the table's
`error`, never compared: it is not the snapshot that was applied.

A table is equal only when nothing is missing, extra or different *and* no record of the snapshot
was refused by the mapping (`rejected`: e.g. an integer beyond 2^53; the sync reports those too):
Convex then does not hold the snapshot, and verify says so.
"""

from __future__ import annotations

import json
from typing import Any

from .convex_json import Int64
from .convex_sink import MirrorWriter
from .links import check_links
from .mirror import MirrorPlan, to_convex_document
from .mirror_config import MirrorConfig
from .model import RecordError, SnapshotError
from .snapshot import SnapshotStore

MAX_EXAMPLES = 10


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Int64):  # exact, and never equal to a float64 of the same value
        return {"$integer": str(value.value)}
    if isinstance(value, int | float):
        return float(value) + 0.0  # one form per number; -0.0 + 0.0 is 0.0
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return {k: _canonical(v) for k, v in sorted(value.items()) if not k.startswith("_")}


def document_digest(document: dict[str, Any]) -> int:
    """Equal for two documents Convex holds as equal (system fields `_id`, `_creationTime` ignored)."""
    return hash(json.dumps(_canonical(document), ensure_ascii=False, separators=(",", ":")))


def verify_snapshot(store: SnapshotStore, writer: MirrorWriter, snapshot_id: str) -> dict[str, Any]:
    deployed = MirrorConfig.from_schema_info(writer.schema_info() or {})
    plan = MirrorPlan.from_schema(store.read_schema(snapshot_id), deployed)
    manifest = store.read_manifest(snapshot_id)
    tables: dict[str, Any] = {}
    for table in plan.tables:
        expected: dict[str, int] = {}
        examples: list[str] = []
        unmirrorable = 0
        try:
            for record in store.iter_records(
                snapshot_id, table.schema, expected=manifest.table(table.xata_name)
            ):
                try:
                    expected[record["id"]] = document_digest(to_convex_document(table, record))
                except RecordError as exc:
                    unmirrorable += 1
                    if len(examples) < MAX_EXAMPLES:
                        examples.append(f"cannot be mirrored: {exc}")
        except SnapshotError as exc:  # the snapshot file itself is not what was exported
            tables[table.xata_name] = {"equal": False, "error": str(exc), "examples": []}
            continue
        left_out = {u.record_id: u for u in manifest.table(table.xata_name).rejected}  # kept in Convex
        unmirrorable += len(left_out)
        examples += [
            f"not exported: record {i!r} field {u.field!r}: {u.reason}" for i, u in left_out.items()
        ][: max(0, MAX_EXAMPLES - len(examples))]
        count = len(expected) + unmirrorable
        actual = different = extra = 0
        link_ids = [link.link_id for link in table.links if link.link_id is not None]
        for document in writer.list_documents(table.convex_name):
            actual += 1
            for name in link_ids:
                document.pop(name, None)
            xata_id = document.get("xata_id")
            want = expected.pop(xata_id, None) if isinstance(xata_id, str) else None
            if want is None and xata_id in left_out:
                continue  # kept as it was while its value does not fit; counted as rejected
            if want is None:
                extra += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(f"record {xata_id!r} is in Convex but not in the snapshot")
            elif want != document_digest(document):
                different += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(f"record {xata_id!r} differs from the snapshot")
        examples += [
            f"record {i!r} is missing from Convex" for i in list(expected)[: MAX_EXAMPLES - len(examples)]
        ]
        missing = len(expected)
        tables[table.xata_name] = {
            "expected": count, "actual": actual, "missing": missing, "rejected": unmirrorable, "extra": extra,
            "different": different, "equal": missing == unmirrorable == extra == different == 0,
            "examples": examples,
        }  # fmt: skip
    for name, check in check_links(writer, plan, MAX_EXAMPLES).items():
        if check.checked:
            tables[name]["linksWrong"] = check.wrong
            tables[name]["equal"] = tables[name]["equal"] and check.wrong == 0
            tables[name]["examples"] += check.examples[: MAX_EXAMPLES - len(tables[name]["examples"])]
    return {"snapshotId": snapshot_id, "equal": all(t["equal"] for t in tables.values()), "tables": tables}

"""Schema drift: a snapshot's Xata schema against the one the deployed Convex mirror was generated from.

The deployed side is `mirror:schemaInfo` -> `{hash, tables: {convexTable: {xata, fields: {convexField:
{xata, type}}}}}`, which the generated `convex/xataTables.ts` exports.

A table is *blocked* (not synced until the schema is regenerated and deployed) when Convex could not
store its new records: the table is new, or a column was added or retyped. A removed column only
leaves a *notice*: the sync keeps going and its upserts (whole-document replaces) take the field out
of the documents, which is also what lets the regenerated schema, without the field, deploy. Tables
without drift keep syncing either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .mirror import MirrorPlan

FIX_COMMAND = "xata2convex schema --snapshot {snapshot_id} && npx convex deploy"


@dataclass
class SchemaDrift:
    """Per Xata table what blocks it (`tables`) and what is only noticed (`notices`); `dropped`: Xata
    tables the deployed mirror still has."""

    tables: dict[str, list[str]] = field(default_factory=dict)
    notices: dict[str, list[str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        changes = [*self.tables.items(), *self.notices.items()]
        lines = [f"table {t!r}: {change}" for t, table_changes in changes for change in table_changes]
        lines += [f"table {t!r}: dropped in Xata, still in the deployed Convex schema" for t in self.dropped]
        return lines


def detect_drift(plan: MirrorPlan, schema_hash: str, deployed: Mapping[str, Any]) -> SchemaDrift:
    drift = SchemaDrift()
    if deployed.get("hash") == schema_hash:
        return drift
    deployed_tables: Mapping[str, Any] = deployed.get("tables") or {}
    by_xata = {info["xata"]: (convex, info) for convex, info in deployed_tables.items()}
    for table in plan.tables:
        if table.xata_name not in by_xata:
            drift.tables[table.xata_name] = [
                f"new in Xata; the deployed Convex schema has no table {table.convex_name!r}"
            ]
            continue
        _, info = by_xata[table.xata_name]
        deployed_fields = {f["xata"]: f["type"] for f in (info.get("fields") or {}).values()}
        changes = []
        for plan_field in table.fields:
            column = plan_field.column
            if column.name not in deployed_fields:
                changes.append(f"column {column.name!r} ({column.type}) added in Xata")
            elif deployed_fields[column.name] != column.type:
                changes.append(
                    f"column {column.name!r} retyped from {deployed_fields[column.name]} to {column.type}"
                )
        if changes:
            drift.tables[table.xata_name] = changes
        present = {f.column.name for f in table.fields}
        removed = [f"column {name!r} removed in Xata" for name in deployed_fields if name not in present]
        if removed:
            drift.notices[table.xata_name] = removed
    drift.dropped = sorted(set(by_xata) - {t.xata_name for t in plan.tables})
    return drift

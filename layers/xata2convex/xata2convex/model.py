"""The data types that pass between the pipeline's stages: source -> snapshot -> diff -> sink.

Defined once here; every stage imports them from this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

# Xata column types (classic REST API). Postgres sources map their types onto these.
ColumnType = Literal[
    "string", "text", "email", "int", "float", "bool", "datetime",
    "link", "multiple", "json", "vector", "file", "file[]",
]  # fmt: skip
COLUMN_TYPES: frozenset[str] = frozenset(ColumnType.__args__)  # type: ignore[attr-defined]

# Snapshot columns that carry Xata's record metadata, in the order they follow `id`.
ID_COLUMN = "id"
META_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("xata_version", "int"),
    ("xata_createdAt", "datetime"),
    ("xata_updatedAt", "datetime"),
)

# File fields that expire (signed and upload URLs): never exported, never mirrored.
EXPIRING_FILE_FIELDS: frozenset[str] = frozenset({"signedUrl", "uploadUrl"})

# A record as it travels between stages: snapshot column name -> decoded value.
# Values: str for string/text/email/link/datetime (ISO 8601 as Xata sends it)/json (the JSON text),
# int, float, bool, list[str] for multiple, list[float] for vector, dict / list[dict] for file / file[].
# None is null; an absent key is read as null.
Record = dict[str, Any]


def utc_now_iso() -> str:
    """Now, as the reports and manifests write times: `2026-11-29T12:00:00.000Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class XataToConvexError(Exception):
    """Base of every error this package raises on purpose; messages never contain secrets."""


class SourceError(XataToConvexError):
    """Reading from Xata (or Postgres) failed; the message names the table and page where known."""


class SnapshotError(XataToConvexError):
    """A snapshot is missing, incomplete or does not match its manifest."""


class RecordError(XataToConvexError):
    """One value of one record cannot be carried; names table, record and field."""

    def __init__(self, table: str, record_id: str, column: str, reason: str) -> None:
        super().__init__(f"table {table!r} record {record_id!r} field {column!r}: {reason}")
        self.table = table
        self.record_id = record_id
        self.column = column
        self.reason = reason


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    link_table: str | None = None
    vector_dimension: int | None = None
    not_null: bool = False
    unique: bool = False
    # Where the column came from when it is not a Xata REST column (e.g. the Postgres type name).
    source_type: str | None = None


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]

    def snapshot_columns(self) -> tuple[Column, ...]:
        """The CSV header of this table: `id`, the metadata columns, then the user's columns."""
        meta = tuple(Column(name, type_) for name, type_ in META_COLUMNS)
        return (Column(ID_COLUMN, "string", not_null=True), *meta, *self.columns)


@dataclass(frozen=True)
class DatabaseSchema:
    """A Xata branch schema: the tables in the order the source lists them.

    `raw` is the schema object exactly as the source returned it (stored as schema.json).
    """

    tables: tuple[TableSchema, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def table(self, name: str) -> TableSchema:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def fingerprint(self) -> str:
        """SHA-256 over the parts of the schema the mirror depends on (names and types)."""
        canonical = [
            [t.name, [[c.name, c.type, c.link_table, c.vector_dimension, c.not_null] for c in t.columns]]
            for t in self.tables
        ]
        return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


class Source(Protocol):
    """Where records come from: the xata SDK (REST) or Postgres."""

    def database(self) -> str: ...

    def branch(self) -> str: ...

    def read_schema(self) -> DatabaseSchema: ...

    def read_table(self, table: TableSchema) -> Iterator[list[Record]]:
        """Yield the table's records a page at a time, normalised to snapshot column names."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class UnfitValue:
    """A record left out of a snapshot because one of its values does not fit its column's type
    (a string in a bool column, NaN in a vector, a lone surrogate). Never coerced: the manifest
    lists it, and the sync leaves its Convex document as it was until the value is fixed in Xata."""

    record_id: str
    field: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.record_id, "field": self.field, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnfitValue:
        return cls(str(data["id"]), str(data["field"]), str(data["reason"]))


class TableCsv(Protocol):
    """A table's snapshot CSV rendered by the source itself (header first, the codec's cell text)."""

    rows: int  # the record count, known once chunks() is exhausted
    unfit: list[UnfitValue]  # records left out, known once chunks() is exhausted

    def chunks(self) -> Iterator[bytes]: ...


@runtime_checkable
class CsvSource(Protocol):
    """A source that renders snapshot CSV itself (Postgres COPY): export stores the bytes as they come."""

    def copy_table_csv(self, table: TableSchema) -> TableCsv: ...


@dataclass(frozen=True)
class TableManifest:
    name: str
    file: str
    rows: int
    columns: tuple[str, ...]
    sha256: str
    bytes: int
    rejected: tuple[UnfitValue, ...] = ()  # records left out of the file (manifests before: none)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "rows": self.rows,
            "columns": list(self.columns),
            "sha256": self.sha256,
            "bytes": self.bytes,
            "rejected": [r.to_json() for r in self.rejected],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TableManifest:
        return cls(
            name=data["name"],
            file=data["file"],
            rows=int(data["rows"]),
            columns=tuple(data["columns"]),
            sha256=data["sha256"],
            bytes=int(data.get("bytes", 0)),
            rejected=tuple(UnfitValue.from_json(r) for r in data.get("rejected", ())),
        )


@dataclass(frozen=True)
class SnapshotManifest:
    snapshot_id: str
    database: str
    branch: str
    source: str
    created_at: str
    schema_sha256: str
    tables: tuple[TableManifest, ...]
    warnings: tuple[str, ...] = ()
    format_version: int = 1
    run_id: str | None = None  # the run that wrote the snapshot

    def table(self, name: str) -> TableManifest:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "formatVersion": self.format_version,
            "snapshotId": self.snapshot_id,
            "runId": self.run_id,
            "database": self.database,
            "branch": self.branch,
            "source": self.source,
            "createdAt": self.created_at,
            "schemaSha256": self.schema_sha256,
            "tables": [t.to_json() for t in self.tables],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotManifest:
        return cls(
            snapshot_id=data["snapshotId"],
            database=data["database"],
            branch=data["branch"],
            source=data["source"],
            created_at=data["createdAt"],
            schema_sha256=data["schemaSha256"],
            tables=tuple(TableManifest.from_json(t) for t in data["tables"]),
            warnings=tuple(data.get("warnings", ())),
            format_version=int(data.get("formatVersion", 1)),
            run_id=data.get("runId"),
        )


def schema_from_xata(raw: Mapping[str, Any]) -> DatabaseSchema:
    """Build a DatabaseSchema from the `schema` object of Xata's branch details.

    Postgres-enabled branches list `xata_id`, `xata_version`, `xata_createdat`, `xata_updatedat` as
    columns; they become the snapshot's `id` and metadata columns, so they are left out here.
    """
    tables = []
    for table in raw.get("tables", []):
        columns = []
        for col in table.get("columns", []):
            if col["name"] in POSTGRES_META_NAMES:
                continue
            if col["type"] not in COLUMN_TYPES:
                raise SourceError(
                    f"table {table['name']!r} column {col['name']!r}: unknown Xata type {col['type']!r}"
                )
            columns.append(
                Column(
                    name=col["name"],
                    type=col["type"],
                    link_table=(col.get("link") or {}).get("table"),
                    vector_dimension=(col.get("vector") or {}).get("dimension"),
                    not_null=bool(col.get("notNull", False)),
                    unique=bool(col.get("unique", False)),
                    source_type=col.get("pgType"),
                )
            )
        tables.append(TableSchema(name=table["name"], columns=tuple(columns)))
    return DatabaseSchema(tables=tuple(tables), raw=raw)


# Postgres-enabled Xata branches name the record metadata as columns; map them to snapshot names.
POSTGRES_META_NAMES: Mapping[str, str] = {
    "xata_id": ID_COLUMN,
    "xata_version": "xata_version",
    "xata_createdat": "xata_createdAt",
    "xata_updatedat": "xata_updatedAt",
}

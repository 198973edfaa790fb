"""Postgres catalog -> Xata schema: what each table holds, and the SQL that renders it for the snapshot.

Introspection reads pg_catalog for one schema: tables, columns, primary/unique keys, foreign keys,
Xata's `xata_*` columns and column comments. Per table it yields a `TablePlan`: the Xata-shaped raw
schema (model.schema_from_xata reads it) and the SELECT list that renders every value into the
codec's canonical cell text (codec.py), plus warnings for values without an exact Xata equivalent.
The SQL assumes the session settings pg_source.py fixes on every connection (UTC, ISO dates,
shortest exact floats, standard_conforming_strings).

Value rendering (type in Postgres -> Xata column type: cell text):
    text, varchar, char, uuid, citext, name, enums -> string/text: the text (a Xata column comment
        `{"xata.type": "string"|"text"|"email"}` picks the Xata type)
    int2, int4, int8 -> int;  float4, float8 -> float: Postgres' shortest exact text (float4 in
        float4 digits), which Python's float() reads back exactly; NaN/Infinity as Postgres spells them
    numeric(p, s): s <= 0 and p - s <= 18 -> int (exact in int64); s > 0 and p <= 15 -> float (every
        such decimal survives a double exactly); anything wider, or unconstrained -> string holding
        the exact decimal text, with a warning
    bool -> true/false
    timestamptz -> datetime `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (JavaScript's toISOString), with six
        fraction digits when the value has sub-millisecond precision; timestamp (no time zone) is read
        as UTC; date as midnight UTC; infinities and BC dates keep Postgres' text (the mirror rejects
        them, naming the record)
    json, jsonb -> json: the JSON text as Postgres prints it (json: as stored; jsonb: its normalised
        form). Compacting it would cost a JSON parse per value; the text is lossless either way.
    text[], varchar[], uuid[] … -> multiple: compact JSON array
    real[], float8[] (Xata's vectors; dimension from the `xata.search.dimension` comment), pgvector
        vector/halfvec (dimension from the type modifier) -> vector: compact JSON array
    xata.xata_file / xata.xata_file_array -> file / file[]: compact JSON without expiring URLs
    bytea -> string: base64 (RFC 4648, no line breaks)
    foreign key (one column, to the target's record id) -> link: the target's record id
    other arrays -> json (JSON array), anything else -> string (Postgres' text form); both warned about

Record id: `xata_id` when the table has it, else the primary key: one column -> its text; several ->
a compact JSON array of the key columns' texts (`["42","eu"]`, unambiguous). A key that is the id is
not repeated as a column; composite key columns stay columns. Tables with neither are refused: the
diff needs a key. `xata_version`, `xata_createdat`, `xata_updatedat` fill the metadata columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .model import (
    EXPIRING_FILE_FIELDS,
    ID_COLUMN,
    META_COLUMNS,
    POSTGRES_META_NAMES,
    ColumnType,
    SourceError,
)

XATA_FILE_TYPES: dict[str, ColumnType] = {"xata_file": "file", "xata_file_array": "file[]"}
_STRING_TYPES = frozenset({"text", "varchar", "bpchar", "name", "uuid", "citext", "char"})
_INT_TYPES = frozenset({"int2", "int4", "int8"})
_FLOAT_TYPES = frozenset({"float4", "float8"})
_PGVECTOR_TYPES = frozenset({"vector", "halfvec"})
_SNAPSHOT_NAMES = frozenset({ID_COLUMN, *(name for name, _ in META_COLUMNS)})
_MS = """'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'"""
_US = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""
# Compact JSON from Postgres' jsonb text: drop the space after each structural ',' and ':' while
# copying strings whole. Too slow for arbitrary json columns; file values are small.
_COMPACT = """'("(?:[^"\\\\]|\\\\.)*")|([,:]) ', '\\1\\2', 'g'"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class _PgType:
    oid: int
    name: str
    kind: str  # pg_type.typtype: b base, d domain, e enum, ...
    base: int  # domain's base type
    base_typmod: int
    element: int  # array's element type (0 if not an array)
    category: str
    not_null: bool  # a domain's NOT NULL


@dataclass(frozen=True)
class _PgColumn:
    name: str
    number: int
    not_null: bool
    typmod: int
    type_oid: int
    pg_type: str  # format_type(): what the schema reports as pgType
    comment: str | None


@dataclass
class TablePlan:
    """How one table is read: its SELECT list (snapshot header order) and heap size."""

    schema: str
    name: str
    select: str
    splittable: bool
    blocks: int
    raw: dict[str, Any] = field(default_factory=dict)

    def query(self, where: str = "") -> str:
        source = f"{quote_ident(self.schema)}.{quote_ident(self.name)}"
        return f"SELECT {self.select} FROM {source}{where}"


def table_plans(
    conn: psycopg.Connection[Any], schema: str, server_version: int
) -> tuple[list[TablePlan], list[str]]:
    """Every table of `schema` (ordinary and partitioned, by name) as read in `conn`'s transaction,
    with the warnings about columns exported without an exact Xata equivalent."""
    return _Introspection(conn, schema, server_version).plans()


class _Introspection:
    """pg_catalog -> per table: the Xata-shaped raw schema, the SELECT that renders it, warnings."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, server_version: int) -> None:
        self.conn = conn
        self.schema = schema
        self.server_version = server_version
        self.types: dict[int, _PgType] = {}
        self.warnings: list[str] = []

    def plans(self) -> tuple[list[TablePlan], list[str]]:
        tables = self.conn.execute(
            """SELECT c.oid, c.relname, c.relkind,
                      pg_relation_size(c.oid) / current_setting('block_size')::int
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               ORDER BY c.relname""",
            (self.schema,),
        ).fetchall()
        columns: dict[int, list[_PgColumn]] = {}
        for row in self.conn.execute(
            """SELECT a.attrelid, a.attname, a.attnum, a.attnotnull, a.atttypmod, a.atttypid,
                      format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum)
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped
               ORDER BY a.attrelid, a.attnum""",
            (self.schema,),
        ):
            columns.setdefault(row[0], []).append(_PgColumn(*row[1:]))
        self._load_types({c.type_oid for cols in columns.values() for c in cols})
        constraints: dict[int, list[tuple[str, list[int], int, list[int]]]] = {}
        for oid, kind, keys, target, target_keys in self.conn.execute(
            """SELECT con.conrelid, con.contype, con.conkey, con.confrelid, con.confkey
               FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND con.contype IN ('p', 'u', 'f')
               ORDER BY con.conrelid, con.conname""",
            (self.schema,),
        ):
            constraints.setdefault(oid, []).append((kind, list(keys), target, list(target_keys or [])))
        names = {oid: name for oid, name, _, _ in tables}
        # Each table's record id column(s), for deciding which foreign keys are links.
        id_numbers = {oid: self._id_numbers(columns.get(oid, []), constraints.get(oid, [])) for oid in names}
        keyless = [names[oid] for oid, ids in id_numbers.items() if not ids]
        if keyless:
            raise SourceError(
                f"schema {self.schema!r}: table(s) {', '.join(repr(t) for t in keyless)} have neither a "
                "primary key nor an xata_id column; a sync needs a record id to diff by. Add a primary "
                "key, or export another schema."
            )
        plans = [
            self._plan(
                oid, name, kind, blocks, columns.get(oid, []), constraints.get(oid, []), names, id_numbers
            )
            for oid, name, kind, blocks in tables
        ]
        return plans, self.warnings

    def _load_types(self, oids: set[int]) -> None:
        """pg_type rows for the given types and everything they are built on (domains, elements)."""
        wanted = oids - set(self.types)
        while wanted:
            for row in self.conn.execute(
                """SELECT oid, typname, typtype, typbasetype, typtypmod, typelem, typcategory, typnotnull
                   FROM pg_type WHERE oid = ANY(%s::oid[])""",
                (list(wanted),),
            ):
                self.types[row[0]] = _PgType(*row)
            more = {t.base for t in self.types.values()} | {t.element for t in self.types.values()}
            wanted = {o for o in more if o and o not in self.types}

    @staticmethod
    def _id_numbers(
        columns: list[_PgColumn], constraints: list[tuple[str, list[int], int, list[int]]]
    ) -> list[int]:
        for column in columns:
            if column.name == "xata_id":
                return [column.number]
        for kind, keys, _, _ in constraints:
            if kind == "p":
                return keys
        return []

    def _plan(
        self,
        oid: int,
        name: str,
        relkind: str,
        blocks: int,
        columns: list[_PgColumn],
        constraints: list[tuple[str, list[int], int, list[int]]],
        names: dict[int, str],
        id_numbers: dict[int, list[int]],
    ) -> TablePlan:
        by_number = {c.number: c for c in columns}
        ids = id_numbers[oid]
        id_columns = [by_number[n] for n in ids]
        if len(ids) == 1:
            id_sql = quote_ident(id_columns[0].name)
        else:
            id_sql = (
                "array_to_json(ARRAY[" + ", ".join(f"{quote_ident(c.name)}::text" for c in id_columns) + "])"
            )
        primary = next((keys for kind, keys, _, _ in constraints if kind == "p"), [])
        unique = {keys[0] for kind, keys, _, _ in constraints if kind in ("p", "u") and len(keys) == 1}
        links: dict[int, str] = {}
        for kind, keys, target, target_keys in constraints:
            # A link carries the target's record id: one column pointing at that id, same schema.
            if kind == "f" and len(keys) == 1 and target in names and target_keys == id_numbers[target]:
                links[keys[0]] = names[target]

        select = [f"{id_sql} AS {quote_ident(ID_COLUMN)}"]
        raw_columns: list[dict[str, Any]] = []
        present = {c.name: c for c in columns}
        for pg_name, snap_name in POSTGRES_META_NAMES.items():
            if snap_name == ID_COLUMN:
                continue
            meta = present.get(pg_name)
            cell = "NULL" if meta is None else self._render(quote_ident(meta.name), meta, name)[1]
            select.append(f"{cell} AS {quote_ident(snap_name)}")
        for column in columns:
            if column.name in POSTGRES_META_NAMES:
                type_, _ = self._render("", column, name)
                raw_columns.append({"name": column.name, "type": type_, "pgType": column.pg_type})
                continue
            if len(ids) == 1 and column.number == ids[0]:
                continue  # carried as the record id
            if column.name in _SNAPSHOT_NAMES:
                raise SourceError(
                    f"table {name!r} column {column.name!r}: the name is taken by the snapshot's record "
                    "id/metadata columns; rename the column or make it the primary key"
                )
            entry: dict[str, Any] = {"name": column.name}
            if column.number in links:
                entry["type"] = "link"
                entry["link"] = {"table": links[column.number]}
                cell = quote_ident(column.name)
            else:
                type_, cell = self._render(quote_ident(column.name), column, name)
                entry["type"] = type_
                if type_ == "vector":
                    dimension = self._vector_dimension(column)
                    if dimension is not None:
                        entry["vector"] = {"dimension": dimension}
            if column.not_null or self._domain_not_null(column.type_oid):
                entry["notNull"] = True
            if column.number in unique:
                entry["unique"] = True
            entry["pgType"] = column.pg_type
            raw_columns.append(entry)
            select.append(f"{cell} AS {quote_ident(column.name)}")
        raw: dict[str, Any] = {"name": name, "columns": raw_columns}
        if primary:
            raw["primaryKey"] = [by_number[n].name for n in primary]
        return TablePlan(
            schema=self.schema,
            name=name,
            select=", ".join(select),
            splittable=relkind == "r" and self.server_version >= 140000,
            blocks=int(blocks or 0),
            raw=raw,
        )

    def _resolve(self, oid: int, typmod: int) -> tuple[_PgType, int]:
        """Through domains to the base type (Xata's file domains are types of their own)."""
        pg_type = self.types[oid]
        while pg_type.kind == "d" and pg_type.name not in XATA_FILE_TYPES:
            typmod = pg_type.base_typmod if pg_type.base_typmod != -1 else typmod
            pg_type = self.types[pg_type.base]
        return pg_type, typmod

    def _domain_not_null(self, oid: int) -> bool:
        pg_type = self.types[oid]
        while pg_type.kind == "d":
            if pg_type.not_null:
                return True
            pg_type = self.types[pg_type.base]
        return False

    def _xata_comment(self, column: _PgColumn) -> dict[str, Any]:
        try:
            value = json.loads(column.comment or "")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _vector_dimension(self, column: _PgColumn) -> int | None:
        pg_type, typmod = self._resolve(column.type_oid, column.typmod)
        if pg_type.name in _PGVECTOR_TYPES:
            return typmod if typmod > 0 else None
        dimension = self._xata_comment(column).get("xata.search.dimension")
        return dimension if isinstance(dimension, int) and not isinstance(dimension, bool) else None

    def _warn(self, table: str, column: _PgColumn, what: str) -> None:
        self.warnings.append(f"table {table!r} column {column.name!r} ({column.pg_type}): {what}")

    def _render(self, q: str, column: _PgColumn, table: str) -> tuple[ColumnType, str]:
        """The column's Xata type and the SQL that renders it as the codec's cell text."""
        pg_type, typmod = self._resolve(column.type_oid, column.typmod)
        name = pg_type.name
        if name in XATA_FILE_TYPES:
            return _render_file(q, XATA_FILE_TYPES[name])
        if pg_type.category == "A" and pg_type.element:
            element, _ = self._resolve(pg_type.element, -1)
            if element.name in _STRING_TYPES or element.kind == "e":
                return "multiple", f"array_to_json({q})"
            if element.name in _FLOAT_TYPES:
                return "vector", f"array_to_json({q})"
            self._warn(table, column, "no Xata equivalent; exported as json (a JSON array)")
            return "json", f"array_to_json({q})"
        if name in _STRING_TYPES or pg_type.kind == "e":
            narrowed = self._xata_comment(column).get("xata.type")
            if narrowed in ("string", "text", "email"):
                return narrowed, q
            return (
                "text"
                if name in ("text", "citext") or (name == "varchar" and typmod - 4 > 2048)
                else "string"
            ), q
        if name in _INT_TYPES:
            return "int", q
        if name in _FLOAT_TYPES:
            return "float", q
        if name == "numeric":
            return self._render_numeric(q, column, typmod, table)
        if name == "bool":
            return "bool", f"{q}::text"
        if name in ("timestamptz", "timestamp"):
            return "datetime", (
                f"CASE WHEN {q} < '0001-01-01' OR {q} = 'infinity' THEN {q}::text"
                f" WHEN {q} = date_trunc('milliseconds', {q}) THEN to_char({q}, {_MS})"
                f" ELSE to_char({q}, {_US}) END"
            )
        if name == "date":
            return "datetime", (
                f"""CASE WHEN {q} < '0001-01-01' OR {q} = 'infinity' THEN {q}::text"""
                f""" ELSE to_char({q}, 'YYYY-MM-DD"T00:00:00.000Z"') END"""
            )
        if name in ("json", "jsonb"):
            return "json", q
        if name in _PGVECTOR_TYPES:
            return "vector", q  # pgvector prints `[1,2.5,3]`: compact JSON already
        if name == "bytea":
            return "string", f"translate(encode({q}, 'base64'), E'\\n', '')"
        self._warn(table, column, "no Xata equivalent; exported as its Postgres text (string)")
        return "string", f"{q}::text"

    def _render_numeric(self, q: str, column: _PgColumn, typmod: int, table: str) -> tuple[ColumnType, str]:
        if typmod >= 4:
            precision = ((typmod - 4) >> 16) & 0xFFFF
            scale = (typmod - 4) & 0x7FF
            scale = scale - 0x800 if scale & 0x400 else scale  # 11-bit signed (negative since PG 15)
            if scale <= 0 and precision - scale <= 18:
                return "int", f"{q}::int8"
            if scale > 0 and precision <= 15:
                return "float", f"{q}::float8"
        self._warn(
            table, column, "wider than a double holds exactly; exported as its exact decimal text (string)"
        )
        return "string", f"{q}::text"


def _render_file(q: str, type_: ColumnType) -> tuple[ColumnType, str]:
    strip = "".join(f" - '{name}'" for name in sorted(EXPIRING_FILE_FIELDS))
    if type_ == "file":
        value = f"CASE WHEN jsonb_typeof({q}) = 'object' THEN {q}{strip} ELSE {q} END"
    else:
        value = (
            f"CASE WHEN jsonb_typeof({q}) = 'array' THEN coalesce((SELECT jsonb_agg(CASE WHEN"
            f" jsonb_typeof(e) = 'object' THEN e{strip} ELSE e END ORDER BY i) FROM"
            f" jsonb_array_elements({q}) WITH ORDINALITY AS f(e, i)), '[]'::jsonb) ELSE {q} END"
        )
    return type_, f"regexp_replace(({value})::text, {_COMPACT})"

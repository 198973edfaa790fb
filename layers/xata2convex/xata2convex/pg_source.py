"""Read a Xata (or any PostgreSQL) database over the Postgres protocol: one consistent snapshot.

Consistency: `read_schema` opens one REPEATABLE READ, READ ONLY transaction and exports its snapshot
(`pg_export_snapshot()`); every worker connection imports it (`SET TRANSACTION SNAPSHOT`), as
pg_dump does, so all tables, and all parts of a table, are read as of one instant. Where the server
cannot export a snapshot (e.g. behind a transaction pooler) everything runs, one table at a time, in
the first transaction.

Speed: each table streams through `COPY (SELECT …) TO STDOUT WITH (FORMAT csv, HEADER)`; the SELECT
renders every value into the codec's canonical cell text (see codec.py), so the bytes go into the
snapshot untouched (`copy_table_csv`). Large tables are read in ctid ranges (TID range scans,
PostgreSQL 14+) by several connections at once; each range is spooled to a temporary file and the
ranges are written in heap order, so the file's bytes do not depend on timing. Rows come from the heap
in physical order (synchronized scans and parallel query off), so an unchanged table gives the same
bytes and the same SHA-256.

The CSV differs from codec.format_row in one way: Postgres ends rows with LF, not CRLF (the codec's
reader accepts both). Quoting is the codec's: null is an unquoted empty field, '' is `""`.

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

import codecs
import json
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from . import codec
from .model import (
    EXPIRING_FILE_FIELDS,
    ID_COLUMN,
    META_COLUMNS,
    POSTGRES_META_NAMES,
    ColumnType,
    DatabaseSchema,
    Record,
    SourceError,
    TableSchema,
    schema_from_xata,
)

PAGE_SIZE = 1000  # records per page of read_table
CHUNK_BYTES = 1 << 20  # CSV bytes handed on at a time
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


def database_and_branch(url: str) -> tuple[str, str]:
    """(database, branch) from a Postgres URL or conninfo, without connecting.

    Xata names the branch in the database: `postgresql://ws:key@region.sql.xata.sh:5432/db:branch`.
    A plain Postgres database is branch "main".
    """
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise SourceError("XATA_POSTGRES_URL is not a valid Postgres URL or connection string") from None
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user")
    if not dbname:
        raise SourceError("XATA_POSTGRES_URL names no database")
    database, _, branch = str(dbname).partition(":")
    return database, branch or "main"


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
class _TablePlan:
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


class CsvCopy:
    """A table's snapshot CSV as Postgres renders it; `rows` is known once `chunks()` is exhausted."""

    def __init__(self, produce: Callable[[CsvCopy], Generator[bytes, None, None]]) -> None:
        self.rows = 0
        self._produce = produce

    def chunks(self) -> Generator[bytes, None, None]:
        return self._produce(self)


class _ConnectionPool:
    """Worker connections that share the exported snapshot; at most `size` exist at once."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], size: int, *, owned: bool = True
    ) -> None:
        self._connect = connect
        self._owned = owned  # False: lends out a connection someone else closes
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._all: list[psycopg.Connection[Any]] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    def acquire(self) -> psycopg.Connection[Any]:
        self._slots.acquire()
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            conn = self._connect()
        except BaseException:
            self._slots.release()
            raise
        if self._owned:
            with self._lock:
                self._all.append(conn)
        return conn

    def release(self, conn: psycopg.Connection[Any]) -> None:
        """Back to the pool; one whose snapshot transaction broke (e.g. an abandoned COPY was
        cancelled) is closed, and the next acquire opens a fresh one."""
        if self._owned and conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            with self._lock:
                self._all.remove(conn)
            conn.close()
        else:
            self._idle.put(conn)
        self._slots.release()

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


class PostgresSource:
    """A `model.Source` (and `model.CsvSource`) over PostgreSQL; thread-safe.

    `connections`: worker connections at most (each holds the snapshot); `split_blocks`: heap blocks
    (8 KiB) per range of a large table; tables below `min_split_blocks` are read in one COPY.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "public",
        connections: int = 4,
        split_blocks: int = 4096,
        min_split_blocks: int = 2048,
    ) -> None:
        self._url = url
        self._database, self._branch = database_and_branch(url)
        self.schema_name = schema
        self.connections = max(1, connections)
        self.split_blocks = max(1, split_blocks)
        self.min_split_blocks = min_split_blocks
        self.warnings: list[str] = []
        self._main: psycopg.Connection[Any] | None = None
        self._snapshot: str | None = None
        self._pool: _ConnectionPool | None = None
        self._plans: dict[str, _TablePlan] = {}
        self._server_version = 0
        self._lock = threading.Lock()

    def database(self) -> str:
        return self._database

    def branch(self) -> str:
        return self._branch

    def describe(self) -> str:
        return f"postgres:{self._database}:{self._branch}"

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            if self._main is not None:
                self._main.close()
                self._main = None

    # --- connections ---
    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._url, autocommit=True, application_name="xata2convex")
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to Postgres database {self._database!r}: {exc}") from None
        # Fixed renderings, whatever the server's or role's defaults.
        extra_float_digits = 1 if conn.info.server_version >= 120000 else 3  # 12+: shortest exact
        for setting in (
            "client_encoding = 'UTF8'",
            "standard_conforming_strings = on",  # the literals below use plain backslashes
            "TimeZone = 'UTC'",
            "DateStyle = 'ISO, YMD'",
            "IntervalStyle = 'iso_8601'",
            f"extra_float_digits = {extra_float_digits}",
            "bytea_output = 'hex'",
            "synchronize_seqscans = off",  # a scan that joins another starts mid-table: bytes differ
            "max_parallel_workers_per_gather = 0",
            # The snapshot's transaction idles while workers copy; a long COPY is the job, not a stall.
            "idle_in_transaction_session_timeout = 0",
            "statement_timeout = 0",
        ):
            conn.execute(f"SET {setting}".encode())
        return conn

    def _worker(self) -> psycopg.Connection[Any]:
        conn = self._connect()
        try:
            conn.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(b"SET TRANSACTION SNAPSHOT " + _literal(self._snapshot or ""))
        except BaseException:
            conn.close()
            raise
        return conn

    def _begin(self) -> psycopg.Connection[Any]:
        """(Re)start the snapshot transaction; export it if the server lets us."""
        if self._pool is not None:
            self._pool.close()
        if self._main is None:
            self._main = self._connect()
            self._server_version = self._main.info.server_version
        main = self._main
        if main.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            main.execute(b"ROLLBACK")
        main.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            row = main.execute(b"SELECT pg_export_snapshot()").fetchone()
            self._snapshot = str(row[0]) if row else None
        except psycopg.Error:
            main.execute(b"ROLLBACK")
            main.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._snapshot = None
        if self._snapshot is None:  # one transaction for everything, one table at a time
            self._pool = _ConnectionPool(lambda: main, 1, owned=False)
        else:
            self._pool = _ConnectionPool(self._worker, self.connections)
        return main

    # --- schema ---
    def read_schema(self) -> DatabaseSchema:
        with self._lock:
            try:
                conn = self._begin()
                plans, warnings = _Introspection(conn, self.schema_name, self._server_version).plans()
            except psycopg.Error as exc:
                raise SourceError(f"schema {self.schema_name!r}: reading the catalog failed: {exc}") from exc
            self._plans = {p.name: p for p in plans}
            self.warnings = warnings
            return schema_from_xata({"tables": [p.raw for p in plans]})

    def _plan(self, table: TableSchema) -> _TablePlan:
        if not self._plans:
            self.read_schema()
        try:
            return self._plans[table.name]
        except KeyError:
            raise SourceError(f"table {table.name!r} is not in schema {self.schema_name!r}") from None

    def select_sql(self, table: TableSchema) -> str:
        """The SELECT whose rows are the table's snapshot CSV (for inspection and benchmarks)."""
        return self._plan(table).query()

    # --- data ---
    def copy_table_csv(self, table: TableSchema) -> CsvCopy:
        """The table's snapshot CSV (header first, codec cell text, LF rows), streamed."""
        plan = self._plan(table)
        ranges = self._ranges(plan)
        if len(ranges) == 1:
            return CsvCopy(lambda copy: self._stream(plan, copy))
        return CsvCopy(lambda copy: self._stream_ranges(plan, ranges, copy))

    def read_table(self, table: TableSchema) -> Iterator[list[Record]]:
        """Decoded records, PAGE_SIZE at a time: the CSV path decoded by the codec."""
        by_name = {c.name: c for c in table.snapshot_columns()}
        page: list[Record] = []
        for record in codec.read_table(_lines(self.copy_table_csv(table).chunks()), by_name):
            page.append(record)
            if len(page) == PAGE_SIZE:
                yield page
                page = []
        if page:
            yield page

    def _ranges(self, plan: _TablePlan) -> list[tuple[int, int | None]]:
        if not plan.splittable or self._snapshot is None or plan.blocks < self.min_split_blocks:
            return [(0, None)]
        count = max(self.connections, -(-plan.blocks // self.split_blocks))
        step = -(-plan.blocks // count)
        starts = list(range(0, plan.blocks, step))
        return [(lo, hi) for lo, hi in zip(starts, [*starts[1:], None], strict=True)]

    def _copy_chunks(self, plan: _TablePlan, where: str, header: bool) -> Generator[bytes, None, int]:
        """One COPY on a pooled connection, CHUNK_BYTES at a time; returns its row count."""
        assert self._pool is not None
        options = "FORMAT csv, HEADER" if header else "FORMAT csv"
        statement = f"COPY ({plan.query(where)}) TO STDOUT WITH ({options})".encode()
        try:
            conn = self._pool.acquire()
        except psycopg.Error as exc:
            raise SourceError(f"table {plan.name!r}: joining the export's snapshot failed: {exc}") from exc
        try:
            with conn.cursor() as cur:
                with cur.copy(statement) as copy:
                    buffer = bytearray()
                    for data in copy:
                        buffer += data
                        if len(buffer) >= CHUNK_BYTES:
                            yield bytes(buffer)
                            buffer.clear()
                    if buffer:
                        yield bytes(buffer)
                return max(cur.rowcount, 0)
        except psycopg.Error as exc:
            raise SourceError(f"table {plan.name!r}: reading from Postgres failed: {exc}") from exc
        finally:
            self._pool.release(conn)

    def _stream(self, plan: _TablePlan, copy: CsvCopy) -> Generator[bytes, None, None]:
        copy.rows = yield from self._copy_chunks(plan, "", True)

    def _stream_ranges(
        self, plan: _TablePlan, ranges: list[tuple[int, int | None]], copy: CsvCopy
    ) -> Generator[bytes, None, None]:
        """Ranges read in parallel, each spooled to a temporary file, yielded in heap order; at most
        `connections` ranges are read ahead of the consumer."""

        def read(index: int) -> tuple[IO[bytes], int]:
            lo, hi = ranges[index]
            where = f" WHERE ctid >= '({lo},0)'::tid"
            if hi is not None:
                where += f" AND ctid < '({hi},0)'::tid"
            spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the consumer
            try:
                chunks = self._copy_chunks(plan, where, index == 0)
                while True:
                    try:
                        spool.write(next(chunks))
                    except StopIteration as done:
                        rows: int = done.value
                        break
            except BaseException:
                spool.close()
                raise
            spool.seek(0)
            return spool, rows

        ahead = self.connections
        total = 0
        pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix=f"copy-{plan.name}")
        pending = [pool.submit(read, i) for i in range(min(ahead, len(ranges)))]
        try:
            for index in range(len(ranges)):
                spool, rows = pending[index].result()
                if index + ahead < len(ranges):
                    pending.append(pool.submit(read, index + ahead))
                with spool:
                    while chunk := spool.read(CHUNK_BYTES):
                        yield chunk
                total += rows
            copy.rows = total
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)
            for future in pending:
                if future.done() and not future.cancelled() and future.exception() is None:
                    future.result()[0].close()


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """UTF-8 text lines (LF kept) for the csv reader; a quoted field may span lines."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    for chunk in chunks:
        text = pending + decoder.decode(chunk)
        lines = text.split("\n")
        pending = lines.pop()
        for line in lines:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _literal(text: str) -> bytes:
    return ("'" + text.replace("'", "''") + "'").encode()


class _Introspection:
    """pg_catalog -> per table: the Xata-shaped raw schema, the SELECT that renders it, warnings."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, server_version: int) -> None:
        self.conn = conn
        self.schema = schema
        self.server_version = server_version
        self.types: dict[int, _PgType] = {}
        self.warnings: list[str] = []

    def plans(self) -> tuple[list[_TablePlan], list[str]]:
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
    ) -> _TablePlan:
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
        return _TablePlan(
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

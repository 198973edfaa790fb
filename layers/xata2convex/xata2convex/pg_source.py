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

pg_catalog.py reads each table's Xata schema from the catalog and builds the SELECT that renders
each Postgres type as the codec's cell text (the type mapping and its warnings are documented there).
"""

from __future__ import annotations

import codecs
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import codec
from .model import DatabaseSchema, Record, SourceError, TableSchema, UnfitValue, schema_from_xata
from .pg_catalog import TablePlan, table_plans

PAGE_SIZE = 1000  # records per page of read_table
CHUNK_BYTES = 1 << 20  # CSV bytes handed on at a time


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


class CsvCopy:
    """A table's snapshot CSV as Postgres renders it; `rows` is known once `chunks()` is exhausted."""

    def __init__(self, produce: Callable[[CsvCopy], Generator[bytes, None, None]]) -> None:
        self.rows = 0
        self.unfit: list[
            UnfitValue
        ] = []  # Postgres renders every value in SQL; one that fails fails the COPY
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
        self._plans: dict[str, TablePlan] = {}
        self._server_version = 0
        self._lock = threading.Lock()

    def database(self) -> str:
        return self._database

    def branch(self) -> str:
        return self._branch

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
            # A host that never answers fails in 10 s (unless the URL sets its own connect_timeout).
            url = (
                self._url
                if "connect_timeout" in conninfo_to_dict(self._url)
                else make_conninfo(self._url, connect_timeout=10)
            )
            conn = psycopg.connect(url, autocommit=True, application_name="xata2convex")
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to Postgres database {self._database!r}: {exc}") from None
        # Fixed renderings, whatever the server's or role's defaults.
        extra_float_digits = 1 if conn.info.server_version >= 120000 else 3  # 12+: shortest exact
        for setting in (
            "client_encoding = 'UTF8'",
            "standard_conforming_strings = on",  # pg_catalog's literals use plain backslashes
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
                plans, warnings = table_plans(conn, self.schema_name, self._server_version)
            except psycopg.Error as exc:
                raise SourceError(f"schema {self.schema_name!r}: reading the catalog failed: {exc}") from exc
            self._plans = {p.name: p for p in plans}
            self.warnings = warnings
            return schema_from_xata({"tables": [p.raw for p in plans]})

    def _plan(self, table: TableSchema) -> TablePlan:
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

    def _ranges(self, plan: TablePlan) -> list[tuple[int, int | None]]:
        if not plan.splittable or self._snapshot is None or plan.blocks < self.min_split_blocks:
            return [(0, None)]
        count = max(self.connections, -(-plan.blocks // self.split_blocks))
        step = -(-plan.blocks // count)
        starts = list(range(0, plan.blocks, step))
        return [(lo, hi) for lo, hi in zip(starts, [*starts[1:], None], strict=True)]

    def _copy_chunks(self, plan: TablePlan, where: str, header: bool) -> Generator[bytes, None, int]:
        """One COPY on a pooled connection, CHUNK_BYTES at a time; returns its row count, checked
        against the rows that actually arrived (a short or interrupted COPY fails the table)."""
        assert self._pool is not None
        options = "FORMAT csv, HEADER" if header else "FORMAT csv"
        statement = f"COPY ({plan.query(where)}) TO STDOUT WITH ({options})".encode()
        try:
            conn = self._pool.acquire()
        except psycopg.Error as exc:
            raise SourceError(f"table {plan.name!r}: joining the export's snapshot failed: {exc}") from exc
        arrived = codec.CsvRowCounter()
        try:
            with conn.cursor() as cur:
                with cur.copy(statement) as copy:
                    buffer = bytearray()
                    for data in copy:
                        buffer += data
                        if len(buffer) >= CHUNK_BYTES:
                            yield arrived.passed(bytes(buffer))
                            buffer.clear()
                    if buffer:
                        yield arrived.passed(bytes(buffer))
                reported = cur.rowcount
        except psycopg.Error as exc:
            raise SourceError(f"table {plan.name!r}: reading from Postgres failed: {exc}") from exc
        finally:
            self._pool.release(conn)
        rows = arrived.rows - (1 if header else 0)
        if reported < 0 or rows != reported or arrived.open:
            raise SourceError(
                f"table {plan.name!r}: short COPY: Postgres reported {reported} rows, {rows} arrived"
                + (" and the last one was cut inside a quoted field" if arrived.open else "")
            )
        return rows

    def _stream(self, plan: TablePlan, copy: CsvCopy) -> Generator[bytes, None, None]:
        copy.rows = yield from self._copy_chunks(plan, "", True)

    def _stream_ranges(
        self, plan: TablePlan, ranges: list[tuple[int, int | None]], copy: CsvCopy
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

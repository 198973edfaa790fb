"""A real PostgreSQL server in a throwaway folder: initdb + pg_ctl, stopped at the end.

Postgres refuses to run as root; when run as root (CI here is) the server runs as the `postgres` OS
user that Debian's package creates. It listens on 127.0.0.1 on a free port and on a unix socket
inside its folder, trusts local connections, and trades durability for speed (fsync off): it only
ever holds throwaway data. Used by the tests, bench/postgres_export.py and `make demo`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from xata2convex.pg_catalog import quote_ident

from .xata_store import PG_META

SERVER_USER = "postgres"  # the OS user Debian's postgresql package creates


def postgres_bin_dir() -> Path | None:
    """The newest installed server's bin folder (Debian layout), or None when there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One throwaway server. `start()` then `url(db)` / `execute(sql, db=...)`; `stop()` removes it."""

    def __init__(self, bin_dir: Path, *, settings: Sequence[str] = ()) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="x2c-pg-"))
        self.data_dir = self.folder / "data"
        self.settings = (
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={self.folder}",
            *settings,
        )
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam(SERVER_USER)  # KeyError: install Debian's postgresql package (make setup)
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]
            shutil.chown(self.folder, SERVER_USER, SERVER_USER)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as_user, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr or done.stdout}"
            )

    def start(self) -> PostgresCluster:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )  # fmt: skip
        options = " ".join(f"-c {s}" for s in self.settings) + f" -p {self.port}"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D", str(self.data_dir),
            "-l", str(self.folder / "server.log"),
            "-o", options,
            "-w", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"
                )
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, params: Sequence[Any] | None = None, *, database: str = "postgres") -> None:
        """Run SQL (several statements allowed when there are no params) in autocommit."""
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql.encode() if params is None else sql, params)

    def fetch(
        self, sql: str, params: Sequence[Any] | None = None, *, database: str = "postgres"
    ) -> list[Any]:
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def create_database(self, name: str | None = None) -> str:
        name = name or f"db_{uuid.uuid4().hex[:10]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name


# --- a seed in a Postgres-enabled Xata branch's layout ---------------------------------------------
# What Xata creates for a branch with Postgres enabled: the four xata_* columns, file columns as the
# `xata` schema's jsonb domains, links as foreign keys to xata_id, vectors as real[] with their
# dimension in a comment, and comments that tell string and email from text.
XATA_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS xata;
CREATE DOMAIN xata.xata_file AS jsonb;
CREATE DOMAIN xata.xata_file_array AS jsonb NOT NULL DEFAULT '[]'::jsonb;
"""
SQL_TYPES = {
    "string": "text", "text": "text", "email": "text", "int": "bigint", "float": "double precision",
    "bool": "boolean", "datetime": "timestamptz", "link": "text", "multiple": "text[]", "json": "jsonb",
    "vector": "real[]", "file": "xata.xata_file", "file[]": "xata.xata_file_array",
}  # fmt: skip


def load_seed(cluster: PostgresCluster, database: str, seed_dir: Path) -> None:
    """Create `database` and load a seed (schema.json + <table>.jsonl, as the stand-in reads them)."""
    import json

    cluster.execute(f"CREATE DATABASE {quote_ident(database)}")
    tables = json.loads((seed_dir / "schema.json").read_text())["tables"]
    statements = [XATA_SCHEMA]
    links = []
    for table in tables:
        name = quote_ident(table["name"])
        columns = [
            "xata_id text PRIMARY KEY DEFAULT 'rec_' || md5(random()::text)",
            "xata_version integer NOT NULL DEFAULT 0",
            "xata_createdat timestamptz NOT NULL DEFAULT now()",
            "xata_updatedat timestamptz NOT NULL DEFAULT now()",
        ]
        for column in _columns(table):
            unique = " UNIQUE" if column.get("unique") else ""
            columns.append(f"{quote_ident(column['name'])} {SQL_TYPES[column['type']]}{unique}")
            comment = _comment(column)
            if comment:
                text = json.dumps(comment).replace("'", "''")
                statements.append(f"COMMENT ON COLUMN {name}.{quote_ident(column['name'])} IS '{text}';")
            if column["type"] == "link":  # after the data: a seed may hold links to records it lacks
                links.append(
                    f"ALTER TABLE {name} ADD FOREIGN KEY ({quote_ident(column['name'])}) "
                    f"REFERENCES {quote_ident(column['link']['table'])} (xata_id) "
                    "ON DELETE SET NULL NOT VALID;"
                )
        statements.insert(1, f"CREATE TABLE {name} ({', '.join(columns)});")
    cluster.execute("\n".join(statements), database=database)
    with psycopg.connect(cluster.url(database), autocommit=True) as conn:
        for table in tables:
            path = seed_dir / f"{table['name']}.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            for line in lines:
                _insert(conn, table, json.loads(line))
        if links:
            conn.execute("\n".join(links).encode())


def _columns(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in table["columns"] if c["name"] not in PG_META]


def _comment(column: dict[str, Any]) -> dict[str, Any]:
    if column["type"] in ("string", "email"):
        return {"xata.type": column["type"]}
    if column["type"] == "vector":
        return {"xata.search.dimension": column["vector"]["dimension"]}
    return {}


def _insert(conn: psycopg.Connection[Any], table: dict[str, Any], record: dict[str, Any]) -> None:
    """One seed record (classic `{id, xata: {...}}` or Postgres-shaped `{xata_id, ...}`) as a row."""
    import json

    meta = record.get("xata") or {}
    values: dict[str, Any] = {
        "xata_id": record.get("xata_id") or record["id"],
        "xata_version": record.get("xata_version", meta.get("version", 0)),
        "xata_createdat": record.get("xata_createdat") or meta.get("createdAt"),
        "xata_updatedat": record.get("xata_updatedat") or meta.get("updatedAt"),
    }
    casts = {"xata_createdat": "::timestamptz", "xata_updatedat": "::timestamptz"}
    for column in _columns(table):
        if column["name"] not in record:
            continue
        value = record[column["name"]]
        kind = column["type"]
        if value is not None and kind == "link":
            value = value["id"] if isinstance(value, dict) else value
        elif kind == "file[]":  # Xata's domain holds no null: an absent list is empty
            value = json.dumps(value if value is not None else [])
        elif value is not None and (kind == "file" or (kind == "json" and not isinstance(value, str))):
            value = json.dumps(value)  # a seed's json column is JSON text already
        values[column["name"]] = value
        casts[column["name"]] = "::jsonb" if kind in ("json", "file", "file[]") else f"::{SQL_TYPES[kind]}"
    names = ", ".join(quote_ident(n) for n in values)
    placeholders = ", ".join(f"%s{casts.get(n, '')}" for n in values)
    query = f"INSERT INTO {quote_ident(table['name'])} ({names}) VALUES ({placeholders})"
    conn.execute(query.encode(), list(values.values()))

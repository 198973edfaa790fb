"""The Postgres source against a real PostgreSQL server (tests/fixtures/postgres.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.postgres import PgDatabase
from xata2convex.cli import main
from xata2convex.export import export_snapshot
from xata2convex.mirror import MirrorPlan, to_convex_document
from xata2convex.model import CsvSource, Record, SourceError, TableSchema
from xata2convex.pg_source import PostgresSource, database_and_branch
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import LocalBlobStore

# A stand-in for pgvector's `vector` (Debian 12 does not package pgvector): a base type of that name
# with text I/O and pgvector's type modifier, the dimension. Its text form is pgvector's: `[1,2.5,-3]`.
FAKE_PGVECTOR = """
CREATE TYPE vector;
CREATE FUNCTION vector_in(cstring, oid, integer) RETURNS vector LANGUAGE internal IMMUTABLE STRICT
  AS 'textin';
CREATE FUNCTION vector_out(vector) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
CREATE FUNCTION vector_typmod_in(cstring[]) RETURNS integer LANGUAGE sql IMMUTABLE STRICT
  AS $$ SELECT ($1)[1]::text::integer $$;
CREATE TYPE vector (INPUT = vector_in, OUTPUT = vector_out, TYPMOD_IN = vector_typmod_in,
  INTERNALLENGTH = VARIABLE, STORAGE = extended);
"""

# Xata's own layout: metadata columns, file domains in schema `xata`, comments that narrow types.
XATA_LAYOUT = """
CREATE SCHEMA xata;
CREATE DOMAIN xata.xata_file AS jsonb;
CREATE DOMAIN xata.xata_file_array AS jsonb NOT NULL DEFAULT '[]'::jsonb;
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE authors (
  xata_id text PRIMARY KEY, xata_version integer NOT NULL DEFAULT 0,
  xata_createdat timestamptz NOT NULL DEFAULT now(), xata_updatedat timestamptz NOT NULL DEFAULT now(),
  name text);
CREATE TABLE everything (
  xata_id text PRIMARY KEY, xata_version integer NOT NULL DEFAULT 0,
  xata_createdat timestamptz NOT NULL DEFAULT now(), xata_updatedat timestamptz NOT NULL DEFAULT now(),
  s varchar(255), t text, mail text, c char(3), u uuid, i2 smallint, i4 integer, i8 bigint,
  n_int numeric(12, 0), n_float numeric(10, 2), n_wide numeric, f4 real, f8 double precision, b boolean,
  tstz timestamptz, ts timestamp, d date, j json, jb jsonb, tags text[], vec real[], pgv vector(3),
  bin bytea, photo xata.xata_file, files xata.xata_file_array, author text REFERENCES authors(xata_id),
  m mood, iv interval, ints integer[]);
COMMENT ON COLUMN everything.mail IS '{"xata.type": "email"}';
COMMENT ON COLUMN everything.vec IS '{"xata.search.dimension": 3}';
INSERT INTO authors (xata_id, xata_version, xata_createdat, xata_updatedat, name)
  VALUES ('rec_a1', 2, '2024-01-01 00:00:00+00', '2024-01-02 03:04:05.006+00', 'Ann');
"""

TRICKY = 'line1\nline2\r\nquote " comma , é 🎉'
BLOB = bytes(range(100))  # long enough for Postgres' base64 to break lines
PHOTO = {"name": "a.png", "mediaType": "image/png", "size": 10, "signedUrl": "https://x/s", "uploadUrl": "u"}
FILES = [{"id": "f1", "name": "a", "signedUrl": "https://x"}, {"id": "f2", "name": "b, c: d"}]

INSERTS = """
INSERT INTO everything VALUES (
  'rec_full', 3, '2024-02-29 12:34:56.789+02', '2024-03-01 00:00:00.123456+00',
  'short', %(tricky)s, 'a@b.c', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', -32768, 2147483647,
  9007199254740991, 123456789012, 12345678.91, 12345678901234567890.123456789, 0.1, 0.30000000000000004,
  true, '2024-01-01 00:00:00+00', '2024-01-01 08:00:00', '2024-03-01', '{"b": 1,  "a": [1, 2]}',
  '{"b": 1, "a": [1, 2]}', ARRAY['a', 'b,c', 'd"e', '', 'é'], ARRAY[0.5, 1.25, -2]::real[], '[1,2.5,-3]',
  %(blob)s, %(photo)s, %(files)s, 'rec_a1', 'happy', '1 day 2 hours', ARRAY[1, 2])
"""
MORE_INSERTS = """
INSERT INTO everything (xata_id, xata_createdat, xata_updatedat, files)
  VALUES ('rec_null', '2024-01-01 00:00:00+00', '2024-01-01 00:00:00+00', '[]');
INSERT INTO everything (xata_id, xata_createdat, xata_updatedat, s, t, f8, tstz, d, tags, files)
  VALUES ('rec_edge', '2024-01-01 00:00:00+00', '2024-01-01 00:00:00+00', '', '', '-0', 'infinity',
          '-infinity', ARRAY[]::text[], '[]');
"""

EXPECTED: dict[str, Record] = {
    "rec_full": {
        "id": "rec_full",
        "xata_version": 3,
        "xata_createdAt": "2024-02-29T10:34:56.789Z",
        "xata_updatedAt": "2024-03-01T00:00:00.123456Z",
        "s": "short",
        "t": TRICKY,
        "mail": "a@b.c",
        "c": "ab ",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "i2": -32768,
        "i4": 2147483647,
        "i8": 9007199254740991,
        "n_int": 123456789012,
        "n_float": 12345678.91,
        "n_wide": "12345678901234567890.123456789",
        "f4": 0.1,
        "f8": 0.30000000000000004,
        "b": True,
        "tstz": "2024-01-01T00:00:00.000Z",
        "ts": "2024-01-01T08:00:00.000Z",
        "d": "2024-03-01T00:00:00.000Z",
        "j": '{"b": 1,  "a": [1, 2]}',
        "jb": '{"a": [1, 2], "b": 1}',
        "tags": ["a", "b,c", 'd"e', "", "é"],
        "vec": [0.5, 1.25, -2],
        "pgv": [1, 2.5, -3],
        "bin": base64.b64encode(BLOB).decode(),
        "photo": {"name": "a.png", "mediaType": "image/png", "size": 10},
        "files": [{"id": "f1", "name": "a"}, {"id": "f2", "name": "b, c: d"}],
        "author": "rec_a1",
        "m": "happy",
        "iv": "P1DT2H",
        "ints": "[1,2]",
    },
    "rec_edge": {"s": "", "t": "", "f8": -0.0, "tstz": "infinity", "d": "-infinity", "tags": [], "files": []},
}


def _setup_everything(db: PgDatabase) -> None:
    db.execute(FAKE_PGVECTOR + XATA_LAYOUT)
    db.execute(
        INSERTS,
        {"tricky": TRICKY, "blob": BLOB, "photo": json.dumps(PHOTO), "files": json.dumps(FILES)},  # type: ignore[arg-type]
    )
    db.execute(MORE_INSERTS)


def _records(source: PostgresSource, table: TableSchema) -> dict[str, Record]:
    return {r["id"]: r for page in source.read_table(table) for r in page}


def _export(source: PostgresSource, root: Path) -> tuple[SnapshotStore, str]:
    store = SnapshotStore(LocalBlobStore(root), source.database(), source.branch())
    manifest = export_snapshot(source, store, source_name="postgres")
    return store, manifest.snapshot_id


# --- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://ws:key@eu-central-1.sql.xata.sh:5432/mydb:dev?sslmode=require", ("mydb", "dev")),
        ("postgresql://user@localhost/shop", ("shop", "main")),
        ("host=localhost dbname=shop:feature-1 user=me", ("shop", "feature-1")),
        ("postgres://u:p@h/db%3Abr", ("db", "br")),
    ],
)
def test_database_and_branch(url: str, expected: tuple[str, str]) -> None:
    assert database_and_branch(url) == expected


def test_connection_errors_name_the_database_and_hide_the_password() -> None:
    source = PostgresSource("postgresql://ws:SECRET-KEY@127.0.0.1:1/mydb:dev?connect_timeout=2")
    with pytest.raises(SourceError, match="mydb") as err:
        source.read_schema()
    assert "SECRET-KEY" not in str(err.value)
    with pytest.raises(SourceError) as bad:
        database_and_branch("postgresql://ws:SECRET-KEY@host/db?no_such_option=1")
    assert "SECRET-KEY" not in str(bad.value)


# --- values --------------------------------------------------------------------------------------
def test_every_type_round_trips_to_decoded_records(pg_database: PgDatabase) -> None:
    _setup_everything(pg_database)
    source = PostgresSource(pg_database.url)
    try:
        schema = source.read_schema()
        records = _records(source, schema.table("everything"))
    finally:
        source.close()
    full = records["rec_full"]
    assert full == EXPECTED["rec_full"]
    assert all(
        v is None
        for k, v in records["rec_null"].items()
        if k not in ("id", "files") and not k.startswith("xata_")
    )
    assert records["rec_null"]["xata_version"] == 0
    edge = records["rec_edge"]
    assert {k: edge[k] for k in EXPECTED["rec_edge"]} == EXPECTED["rec_edge"]
    assert math.copysign(1.0, edge["f8"]) == -1.0  # -0.0 survives
    assert edge["t"] == "" and records["rec_null"]["t"] is None  # '' and null stay distinct


def test_values_reach_convex_per_the_design_rules(pg_database: PgDatabase) -> None:
    _setup_everything(pg_database)
    source = PostgresSource(pg_database.url)
    try:
        schema = source.read_schema()
        record = _records(source, schema.table("everything"))["rec_full"]
    finally:
        source.close()
    document = to_convex_document(MirrorPlan.from_schema(schema).table("everything"), record)
    assert document["xata_id"] == "rec_full"
    assert document["xata_createdAt"] == 1709202896789  # 2024-02-29T10:34:56.789Z in ms
    assert document["xata_updatedAt"] == 1709251200123.456
    assert document["tstz"] == 1704067200000 and document["ts"] == 1704096000000
    assert document["d"] == 1709251200000
    assert document["b"] is True and document["i8"] == 9007199254740991
    assert document["f8"] == 0.30000000000000004 and document["n_float"] == 12345678.91
    assert document["jb"] == {"a": [1, 2], "b": 1} and document["j"] == {"b": 1, "a": [1, 2]}
    assert document["tags"] == ["a", "b,c", 'd"e', "", "é"]
    assert document["vec"] == [0.5, 1.25, -2] and document["pgv"] == [1, 2.5, -3]
    assert document["photo"] == {"name": "a.png", "mediaType": "image/png", "size": 10}
    assert document["files"] == [{"id": "f1", "name": "a"}, {"id": "f2", "name": "b, c: d"}]
    assert document["author"] == "rec_a1"


def test_csv_cells_are_the_codec_text(pg_database: PgDatabase, tmp_path: Path) -> None:
    _setup_everything(pg_database)
    source = PostgresSource(pg_database.url)
    try:
        store, snapshot_id = _export(source, tmp_path)
    finally:
        source.close()
    raw = (tmp_path / store.table_key(snapshot_id, "everything")).read_bytes()
    assert raw.startswith(b"id,xata_version,xata_createdAt,xata_updatedAt,s,t,mail,")
    assert b"\r\n" not in raw.replace(b"line2\r\n", b"")  # rows end in LF; only the value has CRLF
    text = raw.decode()
    assert ',"",""' in text  # the empty strings of rec_edge are quoted
    assert "rec_null,0,2024-01-01T00:00:00.000Z,2024-01-01T00:00:00.000Z,,," in text  # nulls are bare
    assert '"[{""id"":""f1"",""name"":""a""},{""id"":""f2"",""name"":""b, c: d""}]"' in text  # compact
    assert ",true," in text and ",0.30000000000000004," in text


# --- schema --------------------------------------------------------------------------------------
def test_introspection_maps_types_keys_and_links(pg_database: PgDatabase, tmp_path: Path) -> None:
    _setup_everything(pg_database)
    source = PostgresSource(pg_database.url)
    try:
        schema = source.read_schema()
        store, snapshot_id = _export(source, tmp_path)
    finally:
        source.close()
    assert [t.name for t in schema.tables] == ["authors", "everything"]
    columns = {c.name: c for c in schema.table("everything").columns}
    assert "xata_id" not in columns and "xata_version" not in columns  # they are id / metadata
    types = {name: c.type for name, c in columns.items()}
    assert types == {
        "s": "string", "t": "text", "mail": "email", "c": "string", "u": "string", "i2": "int",
        "i4": "int", "i8": "int", "n_int": "int", "n_float": "float", "n_wide": "string", "f4": "float",
        "f8": "float", "b": "bool", "tstz": "datetime", "ts": "datetime", "d": "datetime", "j": "json",
        "jb": "json", "tags": "multiple", "vec": "vector", "pgv": "vector", "bin": "string",
        "photo": "file", "files": "file[]", "author": "link", "m": "string", "iv": "string", "ints": "json",
    }  # fmt: skip
    assert columns["author"].link_table == "authors"
    assert columns["vec"].vector_dimension == 3 and columns["pgv"].vector_dimension == 3
    assert columns["files"].not_null and not columns["s"].not_null
    assert columns["n_wide"].source_type == "numeric" and columns["pgv"].source_type == "vector(3)"
    assert any("'iv'" in w and "interval" in w for w in source.warnings)
    assert any("'ints'" in w and "json" in w for w in source.warnings)
    assert any("'n_wide'" in w for w in source.warnings)
    assert len(source.warnings) == 3
    # schema.json is Xata-shaped and reads back as the same schema
    assert store.read_schema(snapshot_id) == schema
    manifest = store.read_manifest(snapshot_id)
    assert manifest.source == "postgres" and list(manifest.warnings) == source.warnings


def test_plain_postgres_keys_links_and_refusals(pg_database: PgDatabase) -> None:
    pg_database.execute(
        """
        CREATE TABLE people (id serial PRIMARY KEY, name text UNIQUE);
        CREATE TABLE memberships (org int, person int REFERENCES people(id), role text,
                                  PRIMARY KEY (org, person));
        CREATE TABLE badges (code text PRIMARY KEY, owner_name text REFERENCES people(name),
                             holder int REFERENCES people(id));
        INSERT INTO people (name) VALUES ('ann'), ('bob');
        INSERT INTO memberships VALUES (7, 1, 'admin'), (7, 2, NULL);
        INSERT INTO badges VALUES ('b1', 'ann', 2);
        """
    )
    source = PostgresSource(pg_database.url)
    try:
        schema = source.read_schema()
        assert [c.name for c in schema.table("people").columns] == ["name"]  # the key is the id
        people = _records(source, schema.table("people"))
        assert people["1"] == {
            "id": "1", "xata_version": None, "xata_createdAt": None, "xata_updatedAt": None, "name": "ann",
        }  # fmt: skip
        memberships = _records(source, schema.table("memberships"))
        assert memberships['["7","1"]']["role"] == "admin"  # composite key: JSON array of the parts
        assert memberships['["7","2"]']["person"] == "2" and memberships['["7","2"]']["role"] is None
        badges = {c.name: c for c in schema.table("badges").columns}
        assert badges["holder"].type == "link" and badges["holder"].link_table == "people"
        assert badges["owner_name"].type == "text"  # points at a non-key column: not a link
        assert schema.table("memberships").columns[1].type == "link"  # its own key column may link
        assert _records(source, schema.table("badges"))["b1"]["holder"] == "2"
    finally:
        source.close()

    pg_database.execute("CREATE TABLE logs (msg text); CREATE TABLE events (at timestamptz)")
    source = PostgresSource(pg_database.url)
    with pytest.raises(SourceError, match=r"'events', 'logs'.*neither a primary key nor an xata_id"):
        source.read_schema()
    source.close()
    pg_database.execute("DROP TABLE logs, events; CREATE TABLE clash (xata_id text PRIMARY KEY, id int)")
    source = PostgresSource(pg_database.url)
    with pytest.raises(SourceError, match="table 'clash' column 'id'"):
        source.read_schema()
    source.close()


def test_other_schema(pg_database: PgDatabase) -> None:
    pg_database.execute("CREATE SCHEMA shop; CREATE TABLE shop.items (sku text PRIMARY KEY, qty int)")
    pg_database.execute("INSERT INTO shop.items VALUES ('x', 1)")
    source = PostgresSource(pg_database.url, schema="shop")
    try:
        schema = source.read_schema()
        assert [t.name for t in schema.tables] == ["items"]
        assert _records(source, schema.table("items"))["x"]["qty"] == 1
    finally:
        source.close()


# --- consistency and the CSV fast path -----------------------------------------------------------
BIG_ROWS = 20_000


def _setup_big(db: PgDatabase) -> None:
    db.execute(
        f"""
        CREATE TABLE big (id int PRIMARY KEY, label text, at timestamptz);
        INSERT INTO big SELECT i, 'label ' || i, timestamptz '2024-01-01' + i * interval '1.5 ms'
          FROM generate_series(1, {BIG_ROWS}) i;
        CREATE TABLE small (id int PRIMARY KEY, n int);
        INSERT INTO small VALUES (1, 10), (2, 20);
        """
    )


def _csv_bytes(source: PostgresSource, table: TableSchema) -> tuple[bytes, int]:
    copy = source.copy_table_csv(table)
    data = b"".join(copy.chunks())
    return data, copy.rows


def test_a_write_committed_during_the_export_is_not_seen(pg_database: PgDatabase) -> None:
    _setup_big(pg_database)
    # Ranges of 8 blocks over 3 connections: the big table is read by workers that import the snapshot.
    source = PostgresSource(pg_database.url, connections=3, split_blocks=8, min_split_blocks=8)
    try:
        schema = source.read_schema()
        pg_database.execute(
            """
            INSERT INTO big VALUES (0, 'new', now()); UPDATE big SET label = 'changed' WHERE id = 5;
            DELETE FROM big WHERE id = 19999;
            INSERT INTO small VALUES (3, 30); DELETE FROM small WHERE id = 1;
            """
        )
        big = _records(source, schema.table("big"))
        small = _records(source, schema.table("small"))
    finally:
        source.close()
    assert len(big) == BIG_ROWS and "0" not in big and "19999" in big
    assert big["5"]["label"] == "label 5"
    assert set(small) == {"1", "2"}


def test_parallel_ranges_give_the_same_bytes_as_one_copy(pg_database: PgDatabase) -> None:
    _setup_big(pg_database)
    single = PostgresSource(pg_database.url, connections=1, min_split_blocks=1 << 30)
    split = PostgresSource(pg_database.url, connections=3, split_blocks=8, min_split_blocks=8)
    try:
        table = single.read_schema().table("big")
        one, one_rows = _csv_bytes(single, table)
        split.read_schema()
        assert len(split._ranges(split._plans["big"])) > 3  # really split, more ranges than workers
        many, many_rows = _csv_bytes(split, table)
    finally:
        single.close()
        split.close()
    assert one_rows == many_rows == BIG_ROWS
    assert one == many
    assert one.count(b"\n") == BIG_ROWS + 1 and one.startswith(b"id,xata_version,")


def test_export_snapshot_manifest_matches_files_and_csvkit_reads_them(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    _setup_big(pg_database)
    _setup_everything(pg_database)
    source = PostgresSource(pg_database.url, connections=2, split_blocks=16, min_split_blocks=16)
    assert isinstance(source, CsvSource)
    try:
        store, snapshot_id = _export(source, tmp_path)
        schema = source.read_schema()
        expected = {t.name: sum(len(p) for p in source.read_table(t)) for t in schema.tables}
    finally:
        source.close()
    manifest = store.read_manifest(snapshot_id)
    assert {t.name: t.rows for t in manifest.tables} == expected == {
        "authors": 1, "big": BIG_ROWS, "everything": 3, "small": 2,
    }  # fmt: skip
    csvkit = Path(sys.executable).parent
    for entry in manifest.tables:
        path = tmp_path / store.snapshot_key(snapshot_id, entry.file)
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.bytes
        names = subprocess.run(
            [csvkit / "csvcut", "-n", path], capture_output=True, text=True, check=True
        ).stdout.split()
        assert names[1::2] == list(entry.columns)
        count = subprocess.run(
            [csvkit / "csvstat", "--count", path], capture_output=True, text=True, check=True
        ).stdout
        assert count.strip().endswith(str(entry.rows))
        # the stored snapshot decodes to the same records the source's record path gives
        stored = {
            r["id"]: r
            for r in store.iter_records(snapshot_id, store.read_schema(snapshot_id).table(entry.name))
        }
        assert len(stored) == entry.rows
    everything = store.read_schema(snapshot_id).table("everything")
    assert {r["id"]: r for r in store.iter_records(snapshot_id, everything)}["rec_full"] == EXPECTED[
        "rec_full"
    ]


def test_a_failing_table_names_itself(pg_database: PgDatabase) -> None:
    # numeric(18, 0) is exported as int; NaN has no int text, so the COPY fails, naming the table
    pg_database.execute(
        "CREATE TABLE money (id int PRIMARY KEY, n numeric(18, 0)); INSERT INTO money VALUES (1, 'NaN')"
    )
    source = PostgresSource(pg_database.url)
    try:
        schema = source.read_schema()
        with pytest.raises(SourceError, match="table 'money'"):
            _csv_bytes(source, schema.table("money"))
    finally:
        source.close()


@pytest.mark.parametrize("split", [False, True])
def test_an_abandoned_stream_leaves_the_connections_usable(pg_database: PgDatabase, split: bool) -> None:
    pg_database.execute(
        "CREATE TABLE wide (id int PRIMARY KEY, pad text); "
        "INSERT INTO wide SELECT i, repeat('x', 500) FROM generate_series(1, 20000) i"
    )
    source = PostgresSource(
        pg_database.url, connections=1, split_blocks=64, min_split_blocks=64 if split else 1 << 30
    )
    try:
        table = source.read_schema().table("wide")
        chunks = source.copy_table_csv(table).chunks()
        assert next(chunks).startswith(b"id,xata_version,")
        chunks.close()  # e.g. the store failed mid-table
        data, rows = _csv_bytes(source, table)  # the one pooled connection works again
    finally:
        source.close()
    assert rows == 20000 and data.count(b"\n") == 20001


def test_reading_the_schema_again_takes_a_new_snapshot(pg_database: PgDatabase) -> None:
    _setup_big(pg_database)
    source = PostgresSource(pg_database.url, connections=2, split_blocks=8, min_split_blocks=8)
    try:
        table = source.read_schema().table("small")
        assert set(_records(source, table)) == {"1", "2"}
        pg_database.execute("INSERT INTO small VALUES (3, 30)")
        assert set(_records(source, table)) == {"1", "2"}  # still the first snapshot
        table = source.read_schema().table("small")
        assert set(_records(source, table)) == {"1", "2", "3"}
        assert sum(len(page) for page in source.read_table(source.read_schema().table("big"))) == BIG_ROWS
    finally:
        source.close()


def test_cli_export_reads_xata_postgres_url(pg_database: PgDatabase, tmp_path: Path) -> None:
    _setup_big(pg_database)
    result = CliRunner().invoke(
        main,
        ["export", "--json"],
        env={"XATA_POSTGRES_URL": pg_database.url, "SNAPSHOT_URI": str(tmp_path), "XATA_API_KEY": ""},
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    assert manifest["source"] == "postgres" and manifest["database"] == pg_database.name
    assert manifest["branch"] == "main"
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {"big": BIG_ROWS, "small": 2}
    assert (
        tmp_path / pg_database.name / "main" / "snapshots" / manifest["snapshotId"] / "manifest.json"
    ).exists()


def test_without_snapshot_export_one_transaction_reads_everything(pg_database: PgDatabase) -> None:
    # A role that may not call pg_export_snapshot() (as behind some poolers): all reads share the
    # first transaction, one table at a time, and stay consistent.
    _setup_big(pg_database)
    role = f"reader_{pg_database.name}"
    pg_database.execute(
        f"CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        "REVOKE EXECUTE ON FUNCTION pg_export_snapshot() FROM PUBLIC"
    )
    url = pg_database.url.replace("postgres@", f"{role}@")
    source = PostgresSource(url, connections=3, split_blocks=8, min_split_blocks=8)
    try:
        schema = source.read_schema()
        pg_database.execute("INSERT INTO big VALUES (0, 'new', now()); DELETE FROM small WHERE id = 1")
        assert len(source._ranges(source._plans["big"])) == 1  # no workers, no ranges
        assert len(_records(source, schema.table("big"))) == BIG_ROWS
        assert set(_records(source, schema.table("small"))) == {"1", "2"}
    finally:
        source.close()


@pytest.mark.parametrize("split", [False, True])
def test_a_copy_cut_off_by_the_server_fails_naming_the_table(pg_database: PgDatabase, split: bool) -> None:
    pg_database.execute(
        "CREATE TABLE wide (id int PRIMARY KEY, pad text); "
        "INSERT INTO wide SELECT i, repeat('x', 500) FROM generate_series(1, 100000) i"
    )  # 50 MB: far more than the socket buffers hold, so the COPY is still running when it is cut
    source = PostgresSource(
        pg_database.url, connections=1, split_blocks=4096, min_split_blocks=64 if split else 1 << 30
    )
    try:
        chunks = source.copy_table_csv(source.read_schema().table("wide")).chunks()
        next(chunks)
        pg_database.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'xata2convex' AND query LIKE 'COPY%'"
        )
        with pytest.raises(SourceError, match="table 'wide': reading from Postgres failed"):
            for _ in chunks:
                pass
    finally:
        source.close()

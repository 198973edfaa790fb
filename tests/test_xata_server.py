"""The local Xata stand-in, exercised through the real xata SDK (1.3.5) over a real socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from xata.client import XataClient
from xata.errors import RateLimitError, UnauthorizedError, XataServerError

from tests.fixtures.xata import XataStandInFactory
from xata2convex.model import COLUMN_TYPES
from xata2convex_local.seedgen import write_bench_seed, write_sample_seed
from xata2convex_local.xata_server import XataStandIn


def sdk(standin: XataStandIn, *, api_key: str | None = None, db_url: str | None = None) -> XataClient:
    settings = standin.settings()
    url = settings["XATA_ENDPOINT_URL"]
    client = XataClient(
        api_key=api_key or settings["XATA_API_KEY"], db_url=db_url or settings["XATA_DATABASE_URL"]
    )
    for namespace in (client.data(), client.branch(), client.table(), client.records()):
        namespace.get_base_url = lambda: url
    return client


def seed_records(seed_dir: Path, table: str) -> list[dict[str, Any]]:
    lines = (seed_dir / f"{table}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def seed_tables(seed_dir: Path) -> list[str]:
    return [t["name"] for t in json.loads((seed_dir / "schema.json").read_text())["tables"]]


def record_id(record: dict[str, Any]) -> str:
    return str(record.get("xata_id") or record["id"])


def scroll(client: XataClient, table: str, size: int, between_pages: Any = None) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    response = client.data().query(table, {"page": {"size": size}})
    while True:
        assert response.status_code == 200, response
        records.extend(response["records"])
        if not response.has_more_results():
            return records
        if between_pages is not None:
            between_pages()
        response = client.data().query(table, {"page": {"size": size, "after": response.get_cursor()}})


def test_branch_details_and_table_schema_match_the_seed(
    xata_standin: XataStandInFactory, xata_seed_dir: Path
) -> None:
    client = sdk(xata_standin())
    schema = json.loads((xata_seed_dir / "schema.json").read_text())

    details = client.branch().get_details()
    assert details.status_code == 200
    assert (details["databaseName"], details["branchName"]) == ("sample", "main")
    assert details["schema"] == schema
    users = next(t for t in schema["tables"] if t["name"] == "users")
    assert client.table().get_schema("users")["columns"] == users["columns"]
    assert client.table().get_columns("users")["columns"] == users["columns"]


@pytest.mark.parametrize("size", [1000, 1, 3, 7])
def test_paging_returns_every_record_exactly_once_and_as_seeded(
    xata_standin: XataStandInFactory, xata_seed_dir: Path, size: int
) -> None:
    client = sdk(xata_standin())
    for table in seed_tables(xata_seed_dir):
        served = scroll(client, table, size)
        expected = seed_records(xata_seed_dir, table)
        assert len({record_id(r) for r in served}) == len(served) == len(expected)
        assert sorted(served, key=record_id) == sorted(expected, key=record_id), table


def test_default_page_size_is_20(xata_standin: XataStandInFactory, tmp_path: Path) -> None:
    write_bench_seed(tmp_path, records=45, tables=1)
    response = sdk(xata_standin(tmp_path)).data().query("bench_00", {})
    assert len(response["records"]) == 20
    assert response["meta"]["page"]["more"] is True
    assert response["meta"]["page"]["size"] == 20


@pytest.mark.parametrize("size", [0, 1001, -1, "10", True, 2.5])
def test_page_size_outside_1_to_1000_is_400(xata_standin: XataStandInFactory, size: Any) -> None:
    response = sdk(xata_standin()).data().query("users", {"page": {"size": size}})
    assert response.status_code == 400
    assert "page.size" in response["message"]


@pytest.mark.parametrize("extra", [{"sort": {"name": "asc"}}, {"filter": {"active": True}}])
def test_cursor_with_sort_or_filter_is_400(xata_standin: XataStandInFactory, extra: dict[str, Any]) -> None:
    client = sdk(xata_standin())
    first = client.data().query("users", {"page": {"size": 2}})
    response = client.data().query("users", {"page": {"size": 2, "after": first.get_cursor()}, **extra})
    assert response.status_code == 400
    assert set(response) == {"id", "message"}


def test_cursor_from_another_table_or_garbage_is_400(xata_standin: XataStandInFactory) -> None:
    client = sdk(xata_standin())
    cursor = client.data().query("teams", {"page": {"size": 1}}).get_cursor()
    assert client.data().query("users", {"page": {"after": cursor}}).status_code == 400
    assert client.data().query("users", {"page": {"after": "not-a-cursor"}}).status_code == 400


def test_cursor_carries_filter_and_sort(xata_standin: XataStandInFactory, xata_seed_dir: Path) -> None:
    client = sdk(xata_standin())
    request = {"filter": {"$exists": "email"}, "sort": [{"name": "desc"}], "page": {"size": 2}}
    names: list[str] = []
    response = client.data().query("users", request)
    while True:
        names.extend(r["name"] for r in response["records"])
        if not response.has_more_results():
            break
        response = client.data().query("users", {"page": {"after": response.get_cursor()}})
    with_email = [r["name"] for r in seed_records(xata_seed_dir, "users") if r.get("email") is not None]
    assert names == sorted(with_email, reverse=True)


def test_columns_select_fields_and_signed_urls_only_when_asked(xata_standin: XataStandInFactory) -> None:
    client = sdk(xata_standin())
    ada = {"filter": {"name": "Ada Lovelace"}}
    plain = client.data().query("users", {**ada, "columns": ["name"]})["records"][0]
    assert set(plain) == {"id", "name", "xata"}
    full = client.data().query("users", ada)["records"][0]
    assert "signedUrl" not in full["avatar"]
    signed = client.data().query("users", {**ada, "columns": ["*", "avatar.signedUrl"]})["records"][0]
    assert signed["avatar"]["signedUrl"].startswith("https://")
    assert {k: v for k, v in signed["avatar"].items() if k != "signedUrl"} == full["avatar"]
    assert client.data().query("users", {"columns": ["nope"]}).status_code == 400


def test_wrong_or_missing_key_is_401(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin()
    with pytest.raises(UnauthorizedError):
        sdk(standin, api_key="wrong").data().query("users", {})
    response = requests.post(f"{standin.url}/db/sample:main/tables/users/query", json={}, timeout=5)
    assert response.status_code == 401
    assert set(response.json()) == {"id", "message"}
    assert standin.api_key not in response.text


def test_unknown_table_branch_database_and_record_are_404(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin()
    client = sdk(standin)
    missing_table = client.data().query("no-such-table", {})
    assert missing_table.status_code == 404
    assert "no-such-table" in missing_table["message"]
    other_branch = sdk(standin, db_url="https://local.us-east-1.xata.sh/db/sample:dev")
    assert other_branch.branch().get_details().status_code == 404
    other_db = sdk(standin, db_url="https://local.us-east-1.xata.sh/db/other:main")
    assert other_db.data().query("users", {}).status_code == 404
    assert client.records().get("users", "rec_missing").status_code == 404


def test_429_and_503_fire_on_the_configured_requests(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin(fail_429_every=3, fail_5xx_every=7, ratelimit_reset_s=0.25)
    client = sdk(standin)
    outcomes: list[str] = []
    for _ in range(21):
        try:
            client.data().query("teams", {"page": {"size": 1}})
            outcomes.append("ok")
        except RateLimitError:
            outcomes.append("429")
        except XataServerError:
            outcomes.append("503")
    expected = ["429" if n % 3 == 0 else "503" if n % 7 == 0 else "ok" for n in range(1, 22)]
    assert outcomes == expected
    assert [r.status for r in standin.requests] == [{"ok": 200, "429": 429, "503": 503}[o] for o in outcomes]
    # Request 24 is the next 429: its reset header is in seconds.
    for _ in range(2):
        requests.get(standin.url, timeout=5)
    limited = requests.get(f"{standin.url}/db/sample:main", timeout=5)
    assert limited.status_code == 429
    assert float(limited.headers["x-ratelimit-reset"]) == 0.25


def test_latency_is_added_to_every_request(xata_standin: XataStandInFactory) -> None:
    client = sdk(xata_standin(latency_ms=60))
    started = time.monotonic()
    client.branch().get_details()
    client.data().query("teams", {})
    assert time.monotonic() - started >= 0.12


def test_insert_update_delete_classic_record(xata_standin: XataStandInFactory) -> None:
    client = sdk(xata_standin())
    team_id = client.data().query("teams", {"page": {"size": 1}})["records"][0]["id"]
    created = client.records().insert("users", {"name": "New", "settings": {"a": [1]}, "team": team_id})
    assert created.status_code == 201
    rid = created["id"]
    assert rid.startswith("rec_") and created["xata"]["version"] == 0

    fetched = client.records().get("users", rid)
    assert fetched["settings"] == '{"a":[1]}' and fetched["team"] == {"id": team_id}

    updated = client.records().update("users", rid, {"name": "Renamed", "settings": None})
    assert updated.status_code == 200 and updated["xata"]["version"] == 1
    assert updated["xata"]["createdAt"] == created["xata"]["createdAt"]
    assert updated["xata"]["updatedAt"] >= created["xata"]["updatedAt"]
    fetched = client.records().get("users", rid)
    assert fetched["name"] == "Renamed" and "settings" not in fetched and fetched["team"] == {"id": team_id}
    assert rid in {r["id"] for r in scroll(client, "users", 1000)}

    assert client.records().delete("users", rid).status_code == 204
    assert client.records().get("users", rid).status_code == 404
    assert rid not in {r["id"] for r in scroll(client, "users", 1000)}
    assert client.records().update("users", rid, {"name": "x"}).status_code == 404


def test_insert_with_id_upsert_and_version_checks(xata_standin: XataStandInFactory) -> None:
    client = sdk(xata_standin())
    put = client.records().insert_with_id("users", "my-id", {"name": "A", "age": 1})
    assert put.status_code == 201 and put["id"] == "my-id"
    replaced = client.records().insert_with_id("users", "my-id", {"name": "B"})
    assert replaced.status_code == 200 and replaced["xata"]["version"] == 1
    assert "age" not in client.records().get("users", "my-id")  # PUT replaces the whole record
    assert (
        client.records().insert_with_id("users", "my-id", {"name": "C"}, create_only=True).status_code == 422
    )
    merged = client.records().upsert("users", "my-id", {"age": 5})
    assert merged["xata"]["version"] == 2
    assert client.records().get("users", "my-id")["name"] == "B"
    assert client.records().update("users", "my-id", {"age": 6}, if_version=1).status_code == 422


def test_writes_are_validated_with_the_field_named(xata_standin: XataStandInFactory) -> None:
    client = sdk(xata_standin())
    bad_link = client.records().insert("users", {"team": "rec_nope"})
    assert bad_link.status_code == 400 and "[team]" in bad_link["message"]
    assert client.records().insert("users", {"age": 2**63})["message"].endswith("expected a 64-bit integer")
    assert client.records().insert("users", {"nope": 1}).status_code == 400
    assert client.records().insert("teams", {"embedding": [0.1, 0.2]}).status_code == 400
    bad_file = client.records().insert("users", {"avatar": {"name": "a.png", "base64Content": "%%%"}})
    assert bad_file.status_code == 400 and "[avatar]" in bad_file["message"]
    stored = client.records().insert("users", {"attachments": [{"name": "a.txt", "base64Content": "aGk="}]})
    attachment = client.records().get("users", stored["id"])["attachments"][0]
    assert attachment["size"] == 2 and attachment["id"] and "base64Content" not in attachment


def test_postgres_enabled_table_shape(xata_standin: XataStandInFactory) -> None:
    client = sdk(xata_standin())
    records = scroll(client, "documents", 1000)
    assert records and all(
        {"xata_id", "xata_version", "xata_createdat", "xata_updatedat"} <= set(r) for r in records
    )
    assert not any("xata" in r or "id" in r for r in records)

    created = client.records().insert("documents", {"title": "pg", "word-count": 3})
    assert set(created) == {"xata_id", "xata_version", "xata_createdat", "xata_updatedat"}
    rid = created["xata_id"]
    updated = client.records().update("documents", rid, {"title": "pg2"})
    assert updated["xata_version"] == created["xata_version"] + 1
    assert client.records().get("documents", rid)["title"] == "pg2"


def test_cursor_is_stable_while_records_change_between_pages(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin()
    client = sdk(standin)
    before = standin.table_ids("users")
    inserted: list[str] = []
    deleted: list[str] = []

    def mutate() -> None:
        inserted.append(client.records().insert("users", {"name": "inserted between pages"})["id"])
        remaining = [i for i in before if i not in deleted]
        victim = remaining[len(remaining) // 2]
        assert client.records().delete("users", victim).status_code == 204
        deleted.append(victim)

    seen = [r["id"] for r in scroll(client, "users", 3, between_pages=mutate)]
    assert deleted and len(seen) == len(set(seen))
    assert set(before) - set(deleted) <= set(seen)
    assert set(inserted) <= set(seen)  # new ids sort after every seeded id


def test_summarize_counts(xata_standin: XataStandInFactory, xata_seed_dir: Path) -> None:
    client = sdk(xata_standin())
    total = len(seed_records(xata_seed_dir, "users"))
    response = client.data().summarize("users", {"summaries": {"total": {"count": "*"}}})
    assert response["summaries"] == [{"total": total}]
    client.records().insert("users", {"name": "one more", "active": True})
    grouped = client.data().summarize("users", {"columns": ["active"], "summaries": {"n": {"count": "*"}}})
    assert sum(row["n"] for row in grouped["summaries"]) == total + 1
    empty = client.data().summarize("empty-table", {"summaries": {"total": {"count": "*"}}})
    assert empty["summaries"] == [{"total": 0}]


def test_stop_closes_kept_alive_connections(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin()
    client = sdk(standin)
    assert client.branch().get_details().status_code == 200
    standin.stop()
    with pytest.raises(requests.ConnectionError):
        client.branch().get_details()


def test_committed_sample_seed_is_current_and_covers_every_type(tmp_path: Path, xata_seed_dir: Path) -> None:
    write_sample_seed(tmp_path)
    committed = sorted(p.name for p in xata_seed_dir.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (xata_seed_dir / name).read_bytes(), name

    schema = json.loads((xata_seed_dir / "schema.json").read_text())
    types = {c["type"] for t in schema["tables"] for c in t["columns"]}
    assert types == set(COLUMN_TYPES)
    shapes = {any(c["name"] == "xata_id" for c in t["columns"]) for t in schema["tables"]}
    assert shapes == {True, False}
    assert any("-" in t["name"] for t in schema["tables"])
    assert any(not seed_records(xata_seed_dir, t) for t in seed_tables(xata_seed_dir))
    texts = [r.get("body") or "" for r in seed_records(xata_seed_dir, "documents")]
    assert max(len(t.encode()) for t in texts) > 200 * 1024
    assert sum(p.stat().st_size for p in xata_seed_dir.iterdir()) < 2 * 1024 * 1024


def test_bench_seed_splits_records_over_tables(tmp_path: Path, xata_standin: XataStandInFactory) -> None:
    write_bench_seed(tmp_path, records=25, tables=3)
    client = sdk(xata_standin(tmp_path))
    assert [len(scroll(client, f"bench_0{i}", 1000)) for i in range(3)] == [9, 8, 8]


def test_cli_prints_settings_and_serves_until_sigterm(xata_seed_dir: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "xata2convex_local.xata_server",
        "--seed",
        str(xata_seed_dir),
        "--port",
        "0",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [*command, "--api-key", "k-123"], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        settings = dict(line.split("=", 1) for line in lines)
        assert lines[0].startswith("XATA_ENDPOINT_URL=http://127.0.0.1:")
        assert settings["XATA_API_KEY"] == "k-123"
        assert settings["XATA_DATABASE_URL"] == "https://local.us-east-1.xata.sh/db/sample:main"
        client = XataClient(api_key="k-123", db_url=settings["XATA_DATABASE_URL"])
        client.branch().get_base_url = lambda: settings["XATA_ENDPOINT_URL"]
        assert client.branch().get_details()["databaseName"] == "sample"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0

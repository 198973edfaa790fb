"""The local Convex stand-in over a real socket: Convex's HTTP API, admin-only internal functions,
transaction limits, the request log, and the `convex` package's HTTP client."""

from __future__ import annotations

import base64
import math
import os
import queue
import shlex
import shutil
import struct
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.convex import REPO_ROOT
from xata2convex_local.convex_server import LocalConvex, LocalConvexError

NOT_FOUND = (
    "Could not find public function for '{}'. Did you forget to run `npx convex dev` or `npx convex deploy`?"
)
INTERNAL_FUNCTIONS = [
    ("mutation", "mirror:upsertBatch"),
    ("mutation", "mirror:deleteBatch"),
    ("query", "mirror:listPage"),
    ("query", "mirror:schemaInfo"),
    ("mutation", "syncRuns:record"),
    ("query", "syncRuns:get"),
    ("query", "syncRuns:list"),
]


ADMIN = "admin"


def post(
    convex: LocalConvex,
    kind: str,
    path: str,
    args: Any,
    *,
    authorization: str | None = ADMIN,
    fmt: str | None = "json",
) -> requests.Response:
    """A raw Convex HTTP API call; `authorization` is the header (ADMIN: the deploy key, None: none)."""
    headers = {}
    if authorization == ADMIN:
        headers["Authorization"] = f"Convex {convex.deploy_key}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    body: dict[str, Any] = {"path": path, "args": args}
    if fmt is not None:
        body["format"] = fmt
    return requests.post(f"{convex.url}/api/{kind}", json=body, headers=headers, timeout=60)


def value(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    assert body["logLines"] == []
    return body["value"]


def error(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "error", body
    return body


SAMPLES: dict[str, Any] = {
    "int": 7,
    "float": 1.5,
    "datetime": 1_700_000_000_000,
    "bool": True,
    "multiple": ["a", "b"],
    "json": {"k": [1, "v", None]},
    "vector": [0.1, 0.2, 0.3],
    "file": {"name": "a.txt", "mediaType": "text/plain", "size": 3, "version": 1},
    "file[]": [{"id": "file_1", "name": "a.txt", "mediaType": "text/plain", "size": 3, "version": 1}],
}


def mirror_table(convex: LocalConvex) -> tuple[str, dict[str, Any]]:
    """The first mirrored table without links or int64 columns (one index read per document, plain
    JSON numbers) and its fields, as mirror:schemaInfo reports them."""
    tables = value(post(convex, "query", "mirror:schemaInfo", {}))["tables"]
    name = next(
        name
        for name in sorted(tables)
        if not any("link" in f or f.get("int64") for f in tables[name]["fields"].values())
    )
    return name, tables[name]["fields"]


def document(fields: dict[str, Any], xata_id: str, version: int = 1) -> dict[str, Any]:
    """A document with every column set (so that notNull columns are satisfied)."""
    doc: dict[str, Any] = {"xata_id": xata_id, "xata_version": version, "xata_createdAt": 1_600_000_000_000}
    for field, info in fields.items():
        doc[field] = SAMPLES.get(info["type"], f"{info['type']}-{version}")
    return doc


def stored(convex: LocalConvex, table: str, xata_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Mirrored documents with the given ids, without system fields."""
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = value(
            post(
                convex,
                "query",
                "mirror:listPage",
                {"table": table, "paginationOpts": {"numItems": 5000, "cursor": cursor}},
            )
        )
        for doc in page["page"]:
            if doc["xata_id"] in xata_ids:
                found[doc["xata_id"]] = {k: v for k, v in doc.items() if not k.startswith("_")}
        if page["isDone"]:
            return found
        cursor = page["continueCursor"]


def unique_ids(n: int) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    return [f"rec_{prefix}_{i:05d}" for i in range(n)]


def test_public_callers_cannot_reach_internal_functions(local_convex: LocalConvex) -> None:
    table, fields = mirror_table(local_convex)
    local_convex.reset_log()
    [xata_id] = unique_ids(1)
    args = {"table": table, "documents": [document(fields, xata_id)]}
    for kind, path in INTERNAL_FUNCTIONS:
        call_args = args if path == "mirror:upsertBatch" else {}
        for authorization in (None, "Bearer some-user-token"):
            response = post(local_convex, kind, path, call_args, authorization=authorization)
            assert error(response) == {
                "status": "error",
                "errorMessage": NOT_FOUND.format(path),
                "logLines": [],
            }
    assert stored(local_convex, table, {xata_id}) == {}
    log = local_convex.request_log()
    assert [(e["path"], e["admin"], e["status"]) for e in log[: 2 * len(INTERNAL_FUNCTIONS)]] == [
        (path, False, "error") for _, path in INTERNAL_FUNCTIONS for _ in range(2)
    ]


def test_a_wrong_deploy_key_is_refused_like_convex(local_convex: LocalConvex) -> None:
    wrong = f"Convex {local_convex.deploy_key}x"
    response = post(local_convex, "query", "mirror:schemaInfo", {}, authorization=wrong)
    assert response.status_code == 401
    assert response.json() == {
        "code": "BadAdminKey",
        "message": "The provided admin key was invalid for this instance",
    }
    assert local_convex.request_log() == []


def test_admin_upserts_idempotently_and_deletes(local_convex: LocalConvex) -> None:
    table, fields = mirror_table(local_convex)
    ids = unique_ids(3)
    docs = [document(fields, xata_id) for xata_id in ids]
    upsert = {"table": table, "documents": docs}
    assert value(post(local_convex, "mutation", "mirror:upsertBatch", upsert)) == {
        "processed": 3,
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "duplicatesRemoved": 0,
        "unresolved": 0,
    }
    assert value(post(local_convex, "mutation", "mirror:upsertBatch", upsert, fmt="convex_encoded_json")) == {
        "processed": 3,
        "inserted": 0,
        "updated": 0,
        "unchanged": 3,
        "duplicatesRemoved": 0,
        "unresolved": 0,
    }
    changed = dict(docs[0], xata_version=2)
    assert value(
        post(local_convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": [changed]})
    ) == {
        "processed": 1,
        "inserted": 0,
        "updated": 1,
        "unchanged": 0,
        "duplicatesRemoved": 0,
        "unresolved": 0,
    }
    deleted = value(
        post(local_convex, "mutation", "mirror:deleteBatch", {"table": table, "xataIds": [*ids[1:], "nope"]})
    )
    assert deleted == {"processed": 3, "deleted": 2, "missing": 1, "duplicatesRemoved": 0, "unlinked": 0}
    assert stored(local_convex, table, set(ids)) == {ids[0]: changed}

    log = local_convex.request_log()
    writes = [e for e in log if e["path"] in ("mirror:upsertBatch", "mirror:deleteBatch")]
    assert [(e["path"], e["kind"], e["admin"], e["status"], e["table"]) for e in writes] == [
        ("mirror:upsertBatch", "mutation", True, "success", table),
        ("mirror:upsertBatch", "mutation", True, "success", table),
        ("mirror:upsertBatch", "mutation", True, "success", table),
        ("mirror:deleteBatch", "mutation", True, "success", table),
    ]
    assert [e.get("documents") for e in writes] == [3, 3, 1, None]
    assert [e.get("ids") for e in writes] == [None, None, None, 3]
    assert writes[2]["result"] == {
        "processed": 1,
        "inserted": 0,
        "updated": 1,
        "unchanged": 0,
        "duplicatesRemoved": 0,
        "unresolved": 0,
    }


def test_both_value_formats(local_convex: LocalConvex) -> None:
    """`json` answers plain JSON, `convex_encoded_json` Convex's encoding; arguments are always encoded."""
    table, fields = mirror_table(local_convex)
    [xata_id] = unique_ids(1)
    infinity = {"$float": base64.b64encode(struct.pack("<d", math.inf)).decode()}
    doc = dict(document(fields, xata_id), xata_createdAt=infinity)
    assert (
        value(post(local_convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": [doc]}))[
            "inserted"
        ]
        == 1
    )
    args = {"table": table, "paginationOpts": {"numItems": 5000, "cursor": None}}
    for fmt, expected in (("json", "Infinity"), ("convex_encoded_json", infinity), (None, "Infinity")):
        page = value(post(local_convex, "query", "mirror:listPage", args, fmt=fmt))["page"]
        [mine] = [d for d in page if d["xata_id"] == xata_id]
        assert mine["xata_createdAt"] == expected
    response = post(local_convex, "query", "mirror:schemaInfo", {}, fmt="yaml")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidFormat"


def test_function_paths_and_malformed_requests(local_convex: LocalConvex) -> None:
    info = value(post(local_convex, "query", "mirror:schemaInfo", {}))
    assert value(post(local_convex, "query", "mirror.js:schemaInfo", {})) == info
    assert len(info["hash"]) == 64
    assert error(post(local_convex, "query", "mirror", {}))["errorMessage"] == NOT_FOUND.format("mirror")
    assert error(post(local_convex, "query", "mirror:nothing", {}))["errorMessage"] == NOT_FOUND.format(
        "mirror:nothing"
    )
    wrong_kind = error(post(local_convex, "query", "mirror:upsertBatch", {"table": "t", "documents": []}))
    assert (
        wrong_kind["errorMessage"]
        == "Trying to execute mirror:upsertBatch as Query, but it is defined as Mutation."
    )
    bad_json = requests.post(f"{local_convex.url}/api/query", data=b"{nope", timeout=10)
    assert bad_json.status_code == 400
    assert bad_json.json()["code"] == "BadJsonBody"
    bad_path = post(local_convex, "query", "mirror:a:b", {})
    assert (bad_path.status_code, bad_path.json()["code"]) == (400, "InvalidConvexFunction")


def test_errors_name_the_table_and_carry_convex_error_data(local_convex: LocalConvex) -> None:
    table, fields = mirror_table(local_convex)
    unknown = error(post(local_convex, "mutation", "mirror:upsertBatch", {"table": "nope", "documents": []}))
    assert unknown["errorData"]["code"] == "UnknownTable"
    assert unknown["errorData"]["table"] == "nope"
    assert "Table 'nope' is not a mirrored Xata table" in unknown["errorMessage"]

    [xata_id] = unique_ids(1)
    bad = dict(document(fields, xata_id), xata_version="three")
    invalid = error(
        post(local_convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": [bad]})
    )
    assert invalid["errorMessage"].startswith(f"Table '{table}', record '{xata_id}': ")
    assert "errorData" not in invalid

    missing_arg = error(post(local_convex, "mutation", "mirror:deleteBatch", {"table": table}))
    assert "xataIds" in missing_arg["errorMessage"]


def test_a_batch_over_the_transaction_limits_fails_and_writes_nothing(
    fresh_local_convex: LocalConvex,
) -> None:
    """Each document costs one index range; Convex allows 4,096 per transaction."""
    convex = fresh_local_convex
    table, fields = mirror_table(convex)
    ids = unique_ids(4097)
    docs = [document(fields, xata_id) for xata_id in ids]
    too_big = error(post(convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": docs}))
    assert too_big["errorMessage"].startswith(
        "Too many index ranges read in a single function execution (limit: 4096)."
    )
    assert stored(convex, table, set(ids)) == {}
    fits = value(post(convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": docs[:4096]}))
    assert fits == {
        "processed": 4096,
        "inserted": 4096,
        "updated": 0,
        "unchanged": 0,
        "duplicatesRemoved": 0,
        "unresolved": 0,
    }
    assert len(stored(convex, table, set(ids))) == 4096
    log = convex.request_log()
    assert [(e["status"], e["documents"]) for e in log if e["path"] == "mirror:upsertBatch"] == [
        ("error", 4097),
        ("success", 4096),
    ]


def test_lookups_see_the_batch_own_writes_and_rollbacks(fresh_local_convex: LocalConvex) -> None:
    """The stand-in's index for `by_xata_id` gives the same answers as a table scan would."""
    convex = fresh_local_convex
    table, fields = mirror_table(convex)
    a, b = unique_ids(2)
    twice = [document(fields, a), document(fields, a), document(fields, a, version=2)]
    assert value(post(convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": twice})) == {
        "processed": 3,
        "inserted": 1,
        "unchanged": 1,
        "updated": 1,
        "duplicatesRemoved": 0,
        "unresolved": 0,
    }
    failing = [document(fields, b), dict(document(fields, "rec_bad"), xata_version="x")]
    error(post(convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": failing}))
    assert (
        value(
            post(
                convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": [document(fields, b)]}
            )
        )["inserted"]
        == 1
    )
    assert value(post(convex, "mutation", "mirror:deleteBatch", {"table": table, "xataIds": [a, a]})) == {
        "processed": 2,
        "deleted": 1,
        "missing": 1,
        "duplicatesRemoved": 0,
        "unlinked": 0,
    }
    assert (
        value(
            post(
                convex, "mutation", "mirror:upsertBatch", {"table": table, "documents": [document(fields, a)]}
            )
        )["inserted"]
        == 1
    )
    assert set(stored(convex, table, {a, b, "rec_bad"})) == {a, b}


def test_sync_runs_are_recorded_by_run_id(local_convex: LocalConvex) -> None:
    [run_id] = unique_ids(1)
    # A list, so that table names Convex refuses as field names (hyphens, non-ASCII) can be recorded.
    tables = [
        {"table": "event-subject-matter-experts", "added": 1, "changed": 0, "deleted": 0, "unchanged": 5,
         "status": "ok"},
        {"table": "名前", "added": 0, "changed": 2, "deleted": 1, "unchanged": 0, "status": "ok"},
    ]  # fmt: skip
    value(
        post(
            local_convex,
            "mutation",
            "syncRuns:record",
            {"runId": run_id, "status": "running", "mode": "full"},
        )
    )
    value(
        post(
            local_convex,
            "mutation",
            "syncRuns:record",
            {"runId": run_id, "status": "succeeded", "tables": tables},
        )
    )
    run = value(post(local_convex, "query", "syncRuns:get", {"runId": run_id}))
    assert (run["status"], run["mode"], run["tables"]) == ("succeeded", "full", tables)


def test_the_convex_python_http_client_works_with_the_stand_in(local_convex: LocalConvex) -> None:
    http_client = pytest.importorskip("convex.http_client")
    from convex import ConvexError

    table, fields = mirror_table(local_convex)
    [xata_id] = unique_ids(1)
    client = http_client.ConvexHttpClient(local_convex.url)
    with pytest.raises(http_client.ConvexExecutionError, match="Could not find public function"):
        client.query("mirror:schemaInfo")
    client.set_admin_auth(local_convex.deploy_key)
    result = client.mutation("mirror:upsertBatch", {"table": table, "documents": [document(fields, xata_id)]})
    assert result == {
        "processed": 1,
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "duplicatesRemoved": 0,
        "unresolved": 0,
    }
    page = client.query(
        "mirror:listPage", {"table": table, "paginationOpts": {"numItems": 5000, "cursor": None}}
    )
    assert xata_id in {doc["xata_id"] for doc in page["page"]}
    with pytest.raises(ConvexError) as raised:
        client.mutation("mirror:deleteBatch", {"table": "nope", "xataIds": [xata_id]})
    assert raised.value.data["code"] == "UnknownTable"


def test_lifecycle_settings_and_stop(tmp_path: Path) -> None:
    with pytest.raises(LocalConvexError, match="no convex/ folder"):
        LocalConvex(tmp_path).start()
    convex = LocalConvex(REPO_ROOT, deploy_key="local:test|secret-value")
    with convex:
        assert convex.settings() == {"CONVEX_URL": convex.url, "CONVEX_DEPLOY_KEY": "local:test|secret-value"}
        assert convex.url.startswith("http://127.0.0.1:")
        assert "secret-value" not in repr(convex)
        url = convex.url
        assert value(post(convex, "query", "mirror:schemaInfo", {}))["hash"]
    assert not convex.is_running()
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/api/query", json={"path": "mirror:schemaInfo", "args": {}}, timeout=5)


def _start_command(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    command = Path(sys.executable).parent / "xata2convex"
    return subprocess.Popen(
        [str(command), "local", "convex", "--port", "0", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _schema_info_answer(url: str, deploy_key: str) -> tuple[int, Any]:
    """An admin call with `deploy_key`: (HTTP status, the answer's `status` or refusal `code`)."""
    response = requests.post(
        f"{url}/api/query",
        json={"path": "mirror:schemaInfo", "args": {}, "format": "json"},
        headers={"Authorization": f"Convex {deploy_key}"},
        timeout=30,
    )
    body = response.json()
    return response.status_code, body.get("status", body.get("code"))


def test_the_local_convex_command_prints_the_settings_with_the_given_key() -> None:
    process = _start_command("--deploy-key", "local:cli|key", env=dict(os.environ))
    try:
        lines = _read_lines(process, 2)
        assert lines[0].startswith("CONVEX_URL=http://127.0.0.1:")
        assert lines[1] == "CONVEX_DEPLOY_KEY='local:cli|key'"  # shell-safe
        url = lines[0].removeprefix("CONVEX_URL=")
        assert _schema_info_answer(url, "local:cli|key") == (200, "success")
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/api/query", json={"path": "mirror:schemaInfo", "args": {}}, timeout=5)


def test_the_local_convex_command_never_prints_the_deploy_key_from_the_environment() -> None:
    """$CONVEX_DEPLOY_KEY may be a real deployment's key: the command generates its own instead."""
    real_key = "prod:FAKE-real-deployment|7c1d9e0f2a3b4c5d6e7f"
    process = _start_command(env={**os.environ, "CONVEX_DEPLOY_KEY": real_key})
    try:
        lines = _read_lines(process, 2)
        url = lines[0].removeprefix("CONVEX_URL=")
        assert lines[1].startswith("CONVEX_DEPLOY_KEY='local:")
        generated = shlex.split(lines[1])[0].removeprefix("CONVEX_DEPLOY_KEY=")
        assert len(generated) > len("local:") + 16
        assert _schema_info_answer(url, generated) == (200, "success")
        assert _schema_info_answer(url, real_key) == (401, "BadAdminKey")
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert real_key not in "\n".join([*lines, out, err])


def _read_lines(process: subprocess.Popen[str], count: int, timeout: float = 60) -> list[str]:
    """The first `count` stdout lines of `process`, or fail after `timeout` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for _ in range(count):
            lines.put(stdout.readline().rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return [lines.get(timeout=timeout) for _ in range(count)]


CRON_CHECK = """
import { Crons } from "@convex-dev/crons";
import { components, internal } from "./_generated/api";
import { internalMutation } from "./_generated/server";

const crons = new Crons(components.crons);

export const registerHourly = internalMutation({
  args: {},
  handler: async (ctx) => {
    const schedule = { kind: "interval", ms: 3_600_000 } as const;
    await crons.register(ctx, schedule, internal.syncRuns.record, { runId: "c" }, "hourly");
    return (await crons.list(ctx)).map((cron) => cron.name);
  },
});
"""


def test_the_crons_component_is_installed_and_stop_ends_its_timers(tmp_path: Path) -> None:
    """A project function registers an hourly cron (a pending timer in Node); stop() still ends the server."""
    shutil.copytree(REPO_ROOT / "convex", tmp_path / "convex")
    (tmp_path / "node_modules").symlink_to(REPO_ROOT / "node_modules")
    (tmp_path / "convex" / "cronCheck.ts").write_text(CRON_CHECK)
    convex = LocalConvex(tmp_path)
    with convex:
        assert value(post(convex, "mutation", "cronCheck:registerHourly", {})) == ["hourly"]
        duplicate = error(post(convex, "mutation", "cronCheck:registerHourly", {}))
        assert "hourly" in duplicate["errorMessage"]
        process = convex._process
        assert process is not None
    assert process.poll() is not None

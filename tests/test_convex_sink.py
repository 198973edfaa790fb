"""The two Convex transports: error handling against a scripted HTTP server on a local socket, and the
signed sink HTTP action on the local Convex."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from xata2convex import convex_json, jobs, trigger
from xata2convex.convex_json import Int64
from xata2convex.convex_sink import (
    SINK_PATH,
    BatchLimitReached,
    ConvexError,
    ConvexHttp,
    ConvexSinkAction,
    ConvexUnavailable,
    MirrorWriter,
    PushStats,
)
from xata2convex.signing import signed_headers
from xata2convex_local.convex_server import LocalConvex


class Scripted:
    """Answers each request with the next (status, body) of a script and records what it got."""

    def __init__(self, answers: list[tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append(
                    {"path": self.path, "auth": self.headers["Authorization"], "headers": dict(self.headers),
                     "raw": raw, **json.loads(raw)}
                )  # fmt: skip
                status, answer = owner.answers.pop(0)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[Scripted] = []

    def make(answers: list[tuple[int, Any]]) -> Scripted:
        servers.append(Scripted(answers))
        return servers[-1]

    yield make
    for server in servers:
        server.server.shutdown()


def client(url: str) -> ConvexHttp:
    return ConvexHttp(url, "prod:secret-deploy-key", max_attempts=3, sleep=lambda _: None)


def test_transient_errors_are_retried_then_succeed(scripted: Any) -> None:
    server = scripted([(503, {}), (429, {}), (200, {"status": "success", "value": 7})])
    assert client(server.url).mutation("mirror:deleteBatch", {"table": "t", "xataIds": []}) == 7
    assert len(server.requests) == 3
    assert {k: v for k, v in server.requests[0].items() if k not in ("headers", "raw")} == {
        "path": "mirror:deleteBatch", "auth": "Convex prod:secret-deploy-key",
        "args": {"table": "t", "xataIds": []}, "format": "convex_encoded_json",
    }  # fmt: skip


def test_retries_are_bounded(scripted: Any) -> None:
    server = scripted([(502, {})] * 3)
    with pytest.raises(ConvexUnavailable, match="gave up after 3 attempts") as error:
        client(server.url).query("mirror:listPage", {})
    assert "secret-deploy-key" not in str(error.value)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, {"status": "error", "errorMessage": "Unknown table 'x'"}, "Unknown table 'x'"),
        (560, {"status": "error", "errorMessage": "function failed"}, "function failed"),
        (401, {"code": "BadAdminKey", "message": "The provided admin key was invalid"}, "BadAdminKey"),
    ],
)
def test_function_and_request_errors_are_not_retried(
    scripted: Any, status: int, body: Any, message: str
) -> None:
    server = scripted([(status, body)])
    with pytest.raises(ConvexError, match=message):
        client(server.url).mutation("mirror:upsertBatch", {})
    assert len(server.requests) == 1


def test_batches_are_bounded_by_count_and_bytes(scripted: Any) -> None:
    ok = (200, {"status": "success", "value": {"inserted": 0, "updated": 0, "unchanged": 0}})
    server = scripted([ok] * 10)
    writer = MirrorWriter(client(server.url), max_documents=3, max_bytes=200)

    documents = [{"xata_id": f"r{i}", "pad": "x" * (190 if i == 4 else 1)} for i in range(7)]
    writer.upsert("t", documents, PushStats())
    sizes = [len(r["args"]["documents"]) for r in server.requests]
    assert sizes == [3, 1, 1, 2]  # 3 at most by count; the ~220-byte document goes alone by bytes
    writer.stop_after_batches = writer.total_batches
    with pytest.raises(BatchLimitReached):
        writer.delete("t", ["a"], PushStats())


def success(**counts: int) -> tuple[int, Any]:
    return 200, {"status": "success", "value": counts}


def test_an_unprocessed_remainder_is_sent_again_as_a_batch_of_its_own(scripted: Any) -> None:
    """Convex stops a batch at its read budget and says how much it did; the writer sends the rest."""
    server = scripted(
        [
            success(processed=2, inserted=1, updated=1, unchanged=0, duplicatesRemoved=1),
            success(processed=3, inserted=0, updated=3, unchanged=0, duplicatesRemoved=0),
            success(processed=1, deleted=1, missing=0, duplicatesRemoved=2),
            success(processed=1, deleted=0, missing=1, duplicatesRemoved=0),
        ]
    )
    writer = MirrorWriter(client(server.url))
    stats = PushStats()
    documents = [{"xata_id": f"r{i}"} for i in range(5)]
    writer.upsert("t", documents, stats)
    writer.delete("t", ["r0", "r9"], stats)
    sent = [r["args"].get("documents") or r["args"]["xataIds"] for r in server.requests]
    assert sent == [documents, documents[2:], ["r0", "r9"], ["r9"]]
    assert stats == PushStats(
        batches=4, inserted=1, updated=4, unchanged=0, deleted=1, missing=1, duplicates_removed=3
    )
    assert writer.total_batches == 4


def test_each_resent_remainder_counts_for_the_fault_hook(scripted: Any) -> None:
    server = scripted([success(processed=1, deleted=1, missing=0, duplicatesRemoved=0)])
    writer = MirrorWriter(client(server.url), stop_after_batches=1)
    stats = PushStats()
    with pytest.raises(BatchLimitReached, match="after 1 batches"):
        writer.delete("t", ["a", "b", "c"], stats)
    assert (stats.batches, stats.deleted, len(server.requests)) == (1, 1, 1)


def test_a_mirror_without_processed_did_the_whole_batch(scripted: Any) -> None:
    """A mirror deployed before `processed` existed fails or does everything."""
    server = scripted([success(deleted=2, missing=1)])
    stats = PushStats()
    MirrorWriter(client(server.url)).delete("t", ["a", "b", "c"], stats)
    assert (stats.batches, stats.deleted, stats.missing, len(server.requests)) == (1, 2, 1, 1)


@pytest.mark.parametrize("processed", [0, 4])
def test_an_impossible_processed_count_is_an_error_naming_the_table(scripted: Any, processed: int) -> None:
    server = scripted([success(processed=processed, deleted=0, missing=0, duplicatesRemoved=0)])
    with pytest.raises(ConvexError, match=f"table 'teams': processed {processed} of 3 items"):
        MirrorWriter(client(server.url)).delete("teams", ["a", "b", "c"], PushStats())
    assert len(server.requests) == 1


def test_listing_bounds_each_page_by_bytes(scripted: Any) -> None:
    page = {"page": [{"xata_id": "a"}], "isDone": False, "continueCursor": "c1"}
    last = {"page": [{"xata_id": "b"}], "isDone": True, "continueCursor": "c2"}
    server = scripted([(200, {"status": "success", "value": v}) for v in (page, last)])
    writer = MirrorWriter(client(server.url), max_read_bytes=1234)
    assert [d["xata_id"] for d in writer.list_documents("t", page_size=50)] == ["a", "b"]
    assert [r["args"]["paginationOpts"] for r in server.requests] == [
        {"numItems": 50, "cursor": None, "maximumBytesRead": 1234},
        {"numItems": 50, "cursor": "c1", "maximumBytesRead": 1234},
    ]


# --- the signed sink HTTP action, on the local Convex ------------------------------------------------


def sink_post(convex: LocalConvex, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{convex.site_url}{SINK_PATH}",
        data=body,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )


def sink_body(op: str, args: dict[str, Any]) -> bytes:
    return json.dumps({"op": op, "args": args}).encode()


@pytest.mark.parametrize("case", ["unsigned", "wrong secret", "stale", "future", "tampered"])
def test_badly_signed_sink_requests_get_401_and_write_nothing(local_convex: LocalConvex, case: str) -> None:
    body = sink_body("recordRun", {"runId": f"sink-401-{case}", "status": "running"})
    secret = local_convex.sink_secret
    now = time.time()
    headers = {
        "unsigned": {},
        "wrong secret": signed_headers("another-secret-of-some-length", body),
        "stale": signed_headers(secret, body, now - 301),
        "future": signed_headers(secret, body, now + 301),
        "tampered": signed_headers(secret, body.replace(b"running", b"failed")),
    }[case]
    answer = sink_post(local_convex, body, headers)
    assert answer.status_code == 401 and answer.json()["code"] == "Unauthorized"
    assert secret not in answer.text
    deploy_key = ConvexHttp(local_convex.url, local_convex.deploy_key)
    assert deploy_key.query("syncRuns:get", {"runId": f"sink-401-{case}"}) is None


def test_signed_requests_for_an_unknown_op_or_a_table_outside_the_mirror_get_4xx(
    local_convex: LocalConvex,
) -> None:
    secret = local_convex.sink_secret
    for body in (sink_body("syncRuns:create", {}), sink_body("create", {"runId": "x"}), b"{"):
        answer = sink_post(local_convex, body, signed_headers(secret, body))
        assert answer.status_code == 400 and answer.json()["code"] == "BadRequest", body
    sink = ConvexSinkAction(local_convex.site_url, secret, max_attempts=3, sleep=lambda _: None)
    local_convex.reset_log()
    for op, args in [
        ("deleteBatch", {"table": "syncRuns", "xataIds": ["x"]}),
        ("upsertBatch", {"table": "syncSchedule", "documents": [{"xata_id": "x"}]}),
    ]:
        with pytest.raises(
            ConvexError, match=f"Table '{args['table']}' is not a mirrored Xata table"
        ) as error:
            sink.call(op, args)  # type: ignore[arg-type]
        assert secret not in str(error.value)
    assert len(local_convex.request_log()) == 2  # refusals are not retried


def test_both_transports_answer_the_same(local_convex: LocalConvex) -> None:
    """The deploy key's HTTP API and the signed sink run the same functions and answer the same values."""
    deploy_key = ConvexHttp(local_convex.url, local_convex.deploy_key)
    sink = ConvexSinkAction(local_convex.site_url, local_convex.sink_secret)
    info = deploy_key.call("schemaInfo", {})
    assert sink.call("schemaInfo", {}) == info
    table = sorted(info["tables"])[0]
    gone = {"table": table, "xataIds": ["sink-parity-never-there"]}
    assert sink.call("deleteBatch", gone) == deploy_key.call("deleteBatch", gone)
    options = {"numItems": 5, "cursor": None}
    pages = [t.call("listPage", {"table": table, "paginationOpts": options}) for t in (deploy_key, sink)]
    assert pages[0]["page"] == pages[1]["page"] and pages[0]["isDone"] == pages[1]["isDone"]
    jobs.record_run(sink, {"runId": "sink-parity-1", "status": "running", "mode": "full"}, "cli")
    jobs.record_run(sink, {"runId": "sink-parity-1", "status": "succeeded"})
    jobs.record_run(sink, {"runId": "sink-parity-1", "status": "running"})  # late: ignored
    run = deploy_key.query("syncRuns:get", {"runId": "sink-parity-1"})
    assert (run["status"], run["mode"], run["trigger"]) == ("succeeded", "full", "cli")


def test_the_sink_transport_retries_like_the_api_and_signs_each_attempt_afresh(scripted: Any) -> None:
    secret = "sink-secret-for-the-scripted-server"
    server = scripted([(503, {"code": "Overloaded", "message": "busy"}), success(processed=1, deleted=1)])
    sink = ConvexSinkAction(server.url, secret, max_attempts=3, sleep=lambda _: None)
    assert sink.call("deleteBatch", {"table": "t", "xataIds": ["a"]}) == {"processed": 1, "deleted": 1}
    assert [r["path"] for r in server.requests] == [SINK_PATH, SINK_PATH]
    for request in server.requests:
        assert request["auth"] is None  # no deploy key
        assert (request["op"], request["args"]) == ("deleteBatch", {"table": "t", "xataIds": ["a"]})
        trigger.verify_signature(secret, request["headers"], request["raw"])
    gave_up = ConvexSinkAction(scripted([(502, {"message": "bad gateway"})] * 2).url, secret, max_attempts=2,
                               sleep=lambda _: None)  # fmt: skip
    with pytest.raises(
        ConvexUnavailable,
        match=r"gave up after 2 attempts \(HTTP 502 from http://127\.0\.0\.1:\d+/xata2convex/sink: "
        r"bad gateway\)",
    ) as error:
        gave_up.call("schemaInfo", {})
    assert secret not in str(error.value) and secret not in repr(gave_up)


def test_int64_values_travel_in_convex_encoding_both_ways(scripted: Any) -> None:
    """Convex's JSON encoding: `{"$integer": base64 of 8 little-endian bytes}`, exact at ±(2^63-1)."""
    values = [2**63 - 1, -(2**63 - 1), -(2**63), 2**53 + 1, 0]
    encoded = [{"$integer": base64.b64encode(struct.pack("<q", n)).decode()} for n in values]
    server = scripted(
        [(200, {"status": "success", "value": {"echo": encoded, "f": {"$float": "AAAAAAAAAIA="}}})]
    )
    answer = client(server.url).mutation("m:f", {"ints": [Int64(n) for n in values], "plain": 5})
    [request] = server.requests
    assert request["format"] == "convex_encoded_json"
    assert request["args"] == {"ints": encoded, "plain": 5}
    assert answer["echo"] == [Int64(n) for n in values] and str(answer["f"]) == "-0.0"
    assert Int64(5) != 5 and convex_json.loads(convex_json.dumps(Int64(2**63 - 1))) == Int64(2**63 - 1)
    with pytest.raises(ValueError):
        Int64(2**63)


def test_batches_are_bounded_by_index_reads(scripted: Any) -> None:
    """A document with k links costs 1 + k index reads in Convex; a batch stays within max_lookups."""
    ok = success(inserted=0, updated=0, unchanged=0)
    server = scripted([ok] * 10)
    writer = MirrorWriter(client(server.url), max_lookups=10)
    documents = [{"xata_id": f"r{i}", "links": i % 3} for i in range(8)]  # costs 1, 2, 3, 1, 2, 3, 1, 2
    writer.upsert("t", documents, PushStats(), cost=lambda d: 1 + int(d["links"]))
    sizes = [len(r["args"]["documents"]) for r in server.requests]
    assert sizes == [5, 3]  # 1+2+3+1+2 = 9, then 3+1+2 = 6


def test_a_delete_that_only_unlinked_referrers_is_sent_again(scripted: Any) -> None:
    """Convex ends a delete before a target whose referrers take more than one call to unlink."""
    server = scripted(
        [
            success(processed=0, deleted=0, missing=0, duplicatesRemoved=0, unlinked=3500),
            success(processed=2, deleted=2, missing=0, duplicatesRemoved=0, unlinked=10),
        ]
    )
    stats = PushStats()
    MirrorWriter(client(server.url)).delete("teams", ["a", "b"], stats)
    assert [r["args"]["xataIds"] for r in server.requests] == [["a", "b"], ["a", "b"]]
    assert (stats.deleted, stats.unlinked, stats.batches) == (2, 3510, 2)

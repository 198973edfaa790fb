"""The Lambda handlers, called with real Function URL (payload 2.0) events and the events/ samples."""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests

from tests.fixtures.postgres import PgDatabase
from tests.fixtures.trigger import (
    TEST_TRIGGER_SECRET,
    FakeLambdaApi,
    signed_headers,
    sync_run,
    trigger_body,
    url_event,
    worker_invocation,
)
from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import seed_schema
from xata2convex import jobs, trigger
from xata2convex.config import Config
from xata2convex.lock import RunLock
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import LocalBlobStore, open_blob_store
from xata2convex.xata_source import parse_database_url
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed
from xata2convex_local.trigger_server import LocalLambdaContext, TriggerServer, load_handler_module

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"
FAKE_XATA_KEY = "xau_FAKE-xata-key-1a2b3c4d5e6f"
FAKE_CONVEX_KEY = "prod:FAKE-convex-deploy-key|0f1e2d3c4b5a"
FAKE_PG_PASSWORD = "FAKE-pg-password-5e6f7a8b9c"


@functools.cache
def handler(name: str) -> ModuleType:
    return load_handler_module(REPO / "functions" / name / "app.py")


def invoke(name: str, event: dict[str, Any]) -> Any:
    return handler(name).lambda_handler(event, LocalLambdaContext(function_name=name))


def event_file(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def post(body: bytes, headers: dict[str, str], *, base64_body: bool = False) -> tuple[int, dict[str, Any]]:
    response = invoke("trigger_url", url_event(body, headers, base64_body=base64_body))
    return response["statusCode"], json.loads(response["body"] or "null")


@pytest.fixture
def started(trigger_env: Path, lambda_api: FakeLambdaApi, monkeypatch: pytest.MonkeyPatch) -> FakeLambdaApi:
    """As in AWS: the handler starts each run with an async invoke of the worker, which the local Lambda
    API records (the worker itself does not run)."""
    monkeypatch.setenv("XATA_API_KEY", FAKE_XATA_KEY)
    monkeypatch.setenv("CONVEX_DEPLOY_KEY", FAKE_CONVEX_KEY)
    return lambda_api


def local_store(root: Path) -> SnapshotStore:
    return SnapshotStore(LocalBlobStore(root), "sample", "main")


# --- the Function URL handler ------------------------------------------------------------------


@pytest.mark.parametrize("base64_body", [False, True], ids=["text-body", "base64-body"])
def test_a_valid_trigger_is_accepted_and_starts_the_worker(
    started: FakeLambdaApi, trigger_env: Path, base64_body: bool
) -> None:
    body = trigger_body("run-valid-1", "full")
    status, answer = post(body, signed_headers(body), base64_body=base64_body)
    assert (status, answer) == (202, {"runId": "run-valid-1"})
    assert started.invocations == [worker_invocation("run-valid-1", "full")]
    assert RunLock.for_store(local_store(trigger_env)).holder() == "run-valid-1"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong secret", "does not match"),
        ("body changed", "does not match"),
        ("stale past", "300 s"),
        ("stale future", "300 s"),
        ("no signature", "missing x-xata2convex-signature"),
        ("no timestamp", "missing x-xata2convex-timestamp"),
    ],
)
def test_bad_signatures_get_401_and_start_nothing(
    started: FakeLambdaApi, trigger_env: Path, case: str, message: str
) -> None:
    body = trigger_body("run-401")
    now = int(time.time())
    headers = {
        "wrong secret": signed_headers(body, secret="another-secret-of-some-length"),
        "body changed": signed_headers(trigger_body("run-other")),
        "stale past": signed_headers(body, timestamp=now - 301),
        "stale future": signed_headers(body, timestamp=now + 301),
        "no signature": {k: v for k, v in signed_headers(body).items() if k != trigger.SIGNATURE_HEADER},
        "no timestamp": {k: v for k, v in signed_headers(body).items() if k != trigger.TIMESTAMP_HEADER},
    }[case]
    status, answer = post(body, headers, base64_body=case == "stale past")
    assert status == 401 and answer["error"] == "unauthorized" and message in answer["message"]
    assert started.invocations == []
    # An unauthenticated request must not burn the run id or touch the lock.
    assert not (trigger_env / "sample" / "main" / "triggers").exists()
    assert RunLock.for_store(local_store(trigger_env)).holder() is None


def test_a_replayed_run_id_gets_409_even_after_the_run_ended(
    started: FakeLambdaApi, trigger_env: Path
) -> None:
    body = trigger_body("run-replay-1")
    assert post(body, signed_headers(body))[0] == 202
    RunLock.for_store(local_store(trigger_env)).release("run-replay-1")
    status, answer = post(body, signed_headers(body))
    assert status == 409 and answer["error"] == "replayed"
    assert started.invocations == [worker_invocation("run-replay-1")]


def test_a_second_run_while_one_is_in_progress_gets_409(started: FakeLambdaApi, trigger_env: Path) -> None:
    first, second = trigger_body("run-first"), trigger_body("run-second")
    assert post(first, signed_headers(first))[0] == 202
    status, answer = post(second, signed_headers(second))
    assert status == 409 and answer["error"] == "run_in_progress" and "run-first" in answer["message"]
    assert started.invocations == [worker_invocation("run-first")]
    report = local_store(trigger_env).read_run_report("run-second")
    assert report is not None and report["status"] == "rejected"


@pytest.mark.parametrize(
    "body",
    [b'{"runId": "../escape"}', b"[" * 4000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b" " * 10_000_000],
    ids=["bad-run-id", "deeply-nested-array", "deeply-nested-object", "ten-megabytes"],
)
def test_a_signed_but_malformed_body_gets_400(started: FakeLambdaApi, trigger_env: Path, body: bytes) -> None:
    status, answer = post(body, signed_headers(body))
    assert status == 400 and answer["error"] == "bad_request" and started.invocations == []
    assert RunLock.for_store(local_store(trigger_env)).holder() is None


def test_inside_lambda_a_missing_worker_function_is_a_500_never_a_local_thread(
    trigger_env: Path, monkeypatch: pytest.MonkeyPatch, log_records: list[str]
) -> None:
    """A thread started by the trigger Lambda would be frozen once it answers, holding the lock."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "xata2convex-TriggerFunction-abc")
    threads_before = list(trigger._local_workers)
    body = trigger_body("run-no-worker")
    status, answer = post(body, signed_headers(body))
    assert (status, answer) == (500, {"error": "internal", "message": "the run could not be started"})
    assert trigger._local_workers == threads_before
    assert RunLock.for_store(local_store(trigger_env)).holder() is None
    assert any("missing setting: WORKER_FUNCTION_NAME" in line for line in log_records)


def test_only_post_to_the_root_is_served(started: FakeLambdaApi) -> None:
    body = trigger_body("run-get")
    event = url_event(body, signed_headers(body))
    event["requestContext"]["http"]["method"] = "GET"
    assert invoke("trigger_url", event)["statusCode"] == 404
    event = url_event(body, signed_headers(body))
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/other"
    assert invoke("trigger_url", event)["statusCode"] == 404
    assert started.invocations == []


def test_the_conditional_writes_hold_on_s3(
    started: FakeLambdaApi, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNAPSHOT_URI", f"s3://{s3_bucket}/xata2convex")
    first, second = trigger_body("s3-run-1"), trigger_body("s3-run-2")
    assert post(first, signed_headers(first), base64_body=True)[0] == 202
    assert post(second, signed_headers(second))[1]["error"] == "run_in_progress"
    store = SnapshotStore(open_blob_store(f"s3://{s3_bucket}/xata2convex"), "sample", "main")
    assert RunLock.for_store(store).release("s3-run-1")
    assert post(first, signed_headers(first))[1]["error"] == "replayed"
    assert post(second, signed_headers(second))[1]["error"] == "replayed"  # refused runs keep their id
    third = trigger_body("s3-run-3")
    assert post(third, signed_headers(third))[0] == 202
    assert started.invocations == [worker_invocation("s3-run-1"), worker_invocation("s3-run-3")]


def test_a_missing_signing_secret_is_a_500_that_names_the_setting_in_the_log(
    started: FakeLambdaApi, monkeypatch: pytest.MonkeyPatch, log_records: list[str]
) -> None:
    monkeypatch.delenv("XATA2CONVEX_TRIGGER_SECRET")
    body = trigger_body("run-nosecret")
    assert post(body, signed_headers(body)) == (
        500, {"error": "internal", "message": "the trigger is not configured"}
    )  # fmt: skip
    assert started.invocations == []
    assert any("missing setting: XATA2CONVEX_TRIGGER_SECRET" in line for line in log_records)


def test_no_secret_reaches_any_log_line_or_answer(
    started: FakeLambdaApi,
    trigger_env: Path,
    log_records: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    answers: list[str] = []
    good, other = trigger_body("run-logs-1"), trigger_body("run-logs-2")
    for body, headers in [
        (good, signed_headers(good)),
        (good, signed_headers(good)),  # replay
        (other, signed_headers(other)),  # in progress
        (other, signed_headers(other, secret="not-the-secret-at-all")),
        (other, signed_headers(other, timestamp=1)),
        (b"{", signed_headers(b"{")),
    ]:
        answers.append(json.dumps(post(body, headers, base64_body=True)))

    started.fail_with(403, "AccessDeniedException", f"could not start: {TEST_TRIGGER_SECRET}")
    third = trigger_body("run-logs-3")
    RunLock.for_store(local_store(trigger_env)).release("run-logs-1")
    answers.append(json.dumps(post(third, signed_headers(third))))
    assert json.loads(answers[-1])[0] == 500
    assert started.invocations == [worker_invocation("run-logs-1"), worker_invocation("run-logs-3")]

    out = capfd.readouterr()
    everything = "\n".join([*log_records, out.out, out.err, *answers])
    assert "run accepted" in everything and "trigger refused" in everything and "trigger failed" in everything
    for secret in (TEST_TRIGGER_SECRET, FAKE_XATA_KEY, FAKE_CONVEX_KEY):
        assert secret not in everything


# --- how the worker starts in AWS: an async invoke that Lambda's API may refuse ----------------------


def test_when_the_worker_cannot_be_invoked_the_trigger_answers_500_scrubbed_and_frees_the_lock(
    started: FakeLambdaApi,
    trigger_env: Path,
    log_records: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Lambda's error body may echo anything; the signing secret in it never reaches an answer or log."""
    started.fail_with(403, "AccessDeniedException", f"not authorized; context {TEST_TRIGGER_SECRET}")
    body = trigger_body("run-async-2")
    status, answer = post(body, signed_headers(body))
    assert status == 500 and answer == {"error": "internal", "message": "the run could not be started"}
    assert started.invocations == [worker_invocation("run-async-2")]
    assert RunLock.for_store(local_store(trigger_env)).holder() is None
    failed = [line for line in log_records if "trigger failed" in line]
    assert failed and all("AccessDeniedException" in line and "***" in line for line in failed)  # scrubbed
    out = capfd.readouterr()
    for text in [*log_records, out.out, out.err, json.dumps(answer)]:
        assert TEST_TRIGGER_SECRET not in text


# --- the other handlers, with the events/ samples ------------------------------------------------


@pytest.fixture
def xata_env(xata_standin: XataStandInFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in xata_standin().settings().items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "snapshots"
    monkeypatch.setenv("SNAPSHOT_URI", str(root))
    for name in ("XATA_API_KEY_SECRET_ARN", "CONVEX_DEPLOY_KEY_SECRET_ARN", "XATA_POSTGRES_URL"):
        monkeypatch.delenv(name, raising=False)
    return root


def test_export_with_the_sample_event_then_a_dry_run_sync(xata_env: Path) -> None:
    summary = invoke("export_snapshot", event_file("export_snapshot.json"))
    manifest = local_store(xata_env).read_manifest(summary["snapshotId"])
    assert summary["tables"] == {t.name: t.rows for t in manifest.tables}
    assert summary["rows"] == sum(t.rows for t in manifest.tables) > 0
    report = invoke("sync_convex", {"dryRun": True})
    assert report["dryRun"] is True and report["snapshotId"] == summary["snapshotId"]
    # Every row is added but those the mapping refuses, reported apart.
    added = {name: t["added"] + t.get("rejected", 0) for name, t in report["tables"].items()}
    assert added == summary["tables"]
    assert local_store(xata_env).read_state() == (None, None)  # a dry run writes nothing


@pytest.mark.parametrize(
    ("event", "message"),
    [({"dryrun": True}, "unknown event field 'dryrun'"), ({"full": "yes"}, "'full' must be a bool")],
)
def test_the_sync_handler_refuses_malformed_events(
    xata_env: Path, event: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        invoke("sync_convex", event)


def test_the_sync_handler_refuses_while_another_run_holds_the_lock(
    xata_env: Path, fresh_local_convex: LocalConvex, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fresh_local_convex.settings().items():
        monkeypatch.setenv(name, value)
    invoke("export_snapshot", {})
    held = RunLock.for_store(local_store(xata_env)).acquire("cli-run-1")
    with pytest.raises(
        trigger.JobFailed, match=r"LockBusy: run cli-run-1 is in progress \(it holds the run lock until 20"
    ):
        invoke("sync_convex", {"runId": "lambda-run-1"})
    assert sync_run(fresh_local_convex, "lambda-run-1") is None  # refused before it wrote anything
    assert local_store(xata_env).read_state() == (None, None)
    assert RunLock.for_store(local_store(xata_env)).holder() == "cli-run-1"
    held.release()
    assert invoke("sync_convex", {"runId": "lambda-run-2"})["runId"] == "lambda-run-2"
    assert RunLock.for_store(local_store(xata_env)).holder() is None  # released after the run


def test_a_failed_export_raises_a_scrubbed_error(xata_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XATA_API_KEY", FAKE_XATA_KEY)
    monkeypatch.setenv("XATA_DATABASE_URL", "https://local.us-east-1.xata.sh/db/no-such-db:main")
    with pytest.raises(trigger.JobFailed) as raised:
        invoke("export_snapshot", {})
    assert FAKE_XATA_KEY not in str(raised.value)
    assert raised.value.__suppress_context__  # the original (unscrubbed) exception is not chained


def test_the_sample_trigger_event_is_signed_and_answers_401_once_stale(
    started: FakeLambdaApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = event_file("trigger_url.json")
    secret = "sample-signing-secret-for-sam-local-0001"
    body = event["body"].encode()
    stamp = int(event["headers"][trigger.TIMESTAMP_HEADER])
    trigger.verify_signature(secret, event["headers"], body, now=stamp)
    monkeypatch.setenv("XATA2CONVEX_TRIGGER_SECRET", secret)
    response = invoke("trigger_url", event)
    assert response["statusCode"] == 401 and "300 s" in response["body"]
    event["headers"].update(signed_headers(body, secret=secret))
    response = invoke("trigger_url", event)
    assert response["statusCode"] == 202 and json.loads(response["body"]) == {
        "runId": "20251129T120000Z-a1b2c3"
    }


@pytest.fixture
def sink_convex(xata_standin: XataStandInFactory, tmp_path: Path) -> Iterator[tuple[LocalConvex, Path]]:
    """A local Convex mirroring a generated seed whose every value Convex can store (so `verify` can
    say equal), and that seed."""
    seed = tmp_path / "seed"
    write_bench_seed(seed, records=120, tables=2)
    with project_for_schema(seed_schema(seed)) as project, LocalConvex(project) as convex:
        yield convex, seed


def test_the_aws_path_end_to_end_with_no_deploy_key_only_the_signed_sink(
    xata_standin: XataStandInFactory,
    sink_convex: tuple[LocalConvex, Path],
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """As deployed: keys only in Secrets Manager, snapshots in S3, and no Convex deploy key anywhere in the
    handlers' environment. The worker and sync handlers write through the sink HTTP action; `verify`, with
    the deploy key as the CLI has it, finds the mirror equal to the snapshot."""
    convex, seed = sink_convex
    xata = xata_standin(seed).settings()
    secrets = boto3.client("secretsmanager")
    suffix = s3_bucket[-8:]
    uri = f"s3://{s3_bucket}/xata2convex"
    for name in [n for n in os.environ if n.startswith(("CONVEX_", "XATA", "SNAPSHOT_URI"))]:
        monkeypatch.delenv(name)
    for name, value in xata.items():
        if name != "XATA_API_KEY":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "XATA_API_KEY_SECRET_ARN",
        # Stored with line endings, as a copy-paste into the console easily does: ignored on load.
        secrets.create_secret(Name=f"xata-{suffix}", SecretString=xata["XATA_API_KEY"] + "\r\n")["ARN"],
    )
    # As the stack generates it, here with a pasted newline, which is ignored on load.
    sink_arn = secrets.create_secret(Name=f"sink-{suffix}", SecretString=f"{convex.sink_secret}\n")["ARN"]
    monkeypatch.setenv("XATA2CONVEX_SINK_SECRET_ARN", sink_arn)
    monkeypatch.setenv("CONVEX_SITE_URL", convex.site_url)
    monkeypatch.setenv("SNAPSHOT_URI", uri)
    assert not [n for n in os.environ if "DEPLOY_KEY" in n or n == "CONVEX_URL"]
    assert not [n for n, v in os.environ.items() if convex.deploy_key in v or convex.sink_secret in v]
    store = SnapshotStore(open_blob_store(uri), *parse_database_url(xata["XATA_DATABASE_URL"]))

    RunLock.for_store(store).reserve("sink-run-1")
    report = invoke("sync_worker", {"runId": "sink-run-1", "mode": "incremental"})
    assert report["status"] == "succeeded" and report["runId"] == "sink-run-1"
    assert {name: t["added"] for name, t in report["tables"].items()} == {
        t.name: t.rows for t in store.read_manifest(report["snapshotId"]).tables
    }
    resync = invoke("sync_convex", {"full": True})  # reconciles by listing every mirror table
    assert resync["status"] == "succeeded"
    assert all(t["added"] == t["changed"] == t["deleted"] == 0 for t in resync["tables"].values())

    # Everything the handlers sent went through the signed sink, none through the deploy key's API.
    calls = convex.request_log()
    assert calls and {c["path"] for c in calls} == {"http:/xata2convex/sink"}
    assert all(c["status"] == "success" for c in calls)
    run = sync_run(convex, "sink-run-1")
    assert run["status"] == "succeeded" and run["snapshotId"] == report["snapshotId"]

    config = Config(
        snapshot_uri=uri,
        xata_database_url=xata["XATA_DATABASE_URL"],
        convex_url=convex.url,
        convex_deploy_key=convex.deploy_key,
    )
    verified = jobs.verify(config)
    assert verified["equal"] and verified["snapshotId"] == resync["snapshotId"]

    out = capfd.readouterr()
    everything = "\n".join([out.out, out.err, json.dumps([report, resync, verified])])
    for secret in (xata["XATA_API_KEY"], convex.deploy_key, convex.sink_secret):
        assert secret not in everything


def test_a_failed_worker_run_fails_the_invocation_with_the_scrubbed_error(
    xata_env: Path, local_convex: LocalConvex, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in local_convex.settings().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XATA_DATABASE_URL", "https://local.us-east-1.xata.sh/db/sample:no-such-branch")
    store = SnapshotStore(LocalBlobStore(xata_env), "sample", "no-such-branch")
    RunLock.for_store(store).reserve("handler-fail-1")
    with pytest.raises(trigger.JobFailed, match="run handler-fail-1 failed") as raised:
        invoke("sync_worker", {"runId": "handler-fail-1", "mode": "incremental"})
    assert os.environ["XATA_API_KEY"] not in str(raised.value)
    assert RunLock.for_store(store).holder() is None
    doc = sync_run(local_convex, "handler-fail-1")
    assert doc["status"] == "failed"


# --- SourceKind=postgres: the Postgres URL (password included) only in Secrets Manager ---------------


@pytest.fixture
def postgres_env(
    pg_database: PgDatabase, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> PgDatabase:
    """The export and worker Lambdas' settings when the stack reads Xata over Postgres."""
    pg_database.execute(
        "CREATE TABLE authors (xata_id text PRIMARY KEY, name text);"
        "INSERT INTO authors VALUES ('rec_1', 'Ann'), ('rec_2', 'Bo');"
    )
    # The local server trusts local connections; the password is there to prove it never leaks.
    url = pg_database.url.replace("postgresql://postgres@", f"postgresql://postgres:{FAKE_PG_PASSWORD}@")
    secret = boto3.client("secretsmanager").create_secret(Name=f"pg-{pg_database.name}", SecretString=url)
    monkeypatch.setenv("XATA_POSTGRES_URL_SECRET_ARN", secret["ARN"])
    monkeypatch.setenv("XATA_DATABASE_URL", f"https://ws.us-east-1.xata.sh/db/{pg_database.name}:main")
    monkeypatch.setenv("SNAPSHOT_URI", str(tmp_path / "snapshots"))
    for name in (
        "XATA_API_KEY", "XATA_API_KEY_SECRET_ARN", "XATA_POSTGRES_URL", "XATA_ENDPOINT_URL",
        "CONVEX_DEPLOY_KEY", "CONVEX_DEPLOY_KEY_SECRET_ARN",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return pg_database


def test_the_export_handler_reads_postgres_with_the_url_from_secrets_manager(
    postgres_env: PgDatabase, tmp_path: Path
) -> None:
    summary = invoke("export_snapshot", {})
    assert summary["tables"] == {"authors": 2}
    store = SnapshotStore(LocalBlobStore(tmp_path / "snapshots"), postgres_env.name, "main")
    assert store.read_manifest(summary["snapshotId"]).tables[0].rows == 2


def test_a_postgres_url_naming_another_folder_than_xata_database_url_fails_clearly(
    postgres_env: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trigger took the lock in XATA_DATABASE_URL's folder: the worker frees it there and says why."""
    monkeypatch.setenv("XATA_DATABASE_URL", "https://ws.us-east-1.xata.sh/db/other:main")
    expected = (
        f"XATA_POSTGRES_URL names database {postgres_env.name}:main but XATA_DATABASE_URL names other:main"
    )
    with pytest.raises(trigger.JobFailed, match=expected) as export_failure:
        invoke("export_snapshot", {})
    store = SnapshotStore(LocalBlobStore(tmp_path / "snapshots"), "other", "main")
    RunLock.for_store(store).reserve("pg-mismatch-1")
    with pytest.raises(trigger.JobFailed, match=expected) as worker_failure:
        invoke("sync_worker", {"runId": "pg-mismatch-1", "mode": "incremental"})
    assert RunLock.for_store(store).holder() is None
    report = store.read_run_report("pg-mismatch-1")
    assert report is not None and report["status"] == "failed" and expected in report["error"]
    for failure in (export_failure, worker_failure):
        assert FAKE_PG_PASSWORD not in str(failure.value)
    assert not (tmp_path / "snapshots" / postgres_env.name).exists()  # nothing written elsewhere


# --- the local trigger server: HTTP -> Function URL event -> handler -> worker thread --------------


def test_a_signed_post_over_http_runs_export_and_sync_into_convex(
    trigger_server: TriggerServer,
    xata_standin: XataStandInFactory,
    fresh_local_convex: LocalConvex,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {**xata_standin().settings(), **fresh_local_convex.settings()}.items():
        monkeypatch.setenv(name, value)
    body = trigger_body("http-run-1")
    response = requests.post(trigger_server.url, data=body, headers=signed_headers(body), timeout=30)
    assert (response.status_code, response.json()) == (202, {"runId": "http-run-1"})
    assert response.headers["content-type"].startswith("application/json")
    replay = requests.post(trigger_server.url, data=body, headers=signed_headers(body), timeout=30)
    assert replay.status_code == 409 and replay.json()["error"] == "replayed"
    unsigned = requests.post(
        trigger_server.url, data=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert unsigned.status_code == 401
    assert trigger_server.wait_for_runs(timeout=120)
    doc = sync_run(fresh_local_convex, "http-run-1")
    assert doc["status"] == "succeeded" and sum(t["added"] for t in doc["tables"]) > 0
    assert doc["finishedAt"] >= doc["startedAt"]


def test_binary_bodies_reach_the_handler_base64_encoded_like_function_urls_send_them(
    trigger_server: TriggerServer, started: FakeLambdaApi
) -> None:
    body = trigger_body("http-binary-1")
    headers = {**signed_headers(body), "content-type": "application/octet-stream"}
    response = requests.post(trigger_server.url, data=body, headers=headers, timeout=30)
    assert response.status_code == 202 and started.invocations == [worker_invocation("http-binary-1")]


def test_the_local_trigger_command_prints_its_url_and_serves(trigger_env: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "xata2convex_local.trigger_server", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("TRIGGER_URL=http://127.0.0.1:")
        url = line.removeprefix("TRIGGER_URL=")
        body = trigger_body("cli-run-1")
        stale = requests.post(url, data=body, headers=signed_headers(body, timestamp=1000), timeout=30)
        assert stale.status_code == 401 and stale.json()["error"] == "unauthorized"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_local_trigger_command_refuses_to_start_without_a_secret(
    trigger_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XATA2CONVEX_TRIGGER_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "xata2convex_local.trigger_server"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "XATA2CONVEX_TRIGGER_SECRET" in result.stderr


def test_base64_helper_matches_what_lambda_sends() -> None:
    body = trigger_body("b64")
    event = url_event(body, signed_headers(body), base64_body=True)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body

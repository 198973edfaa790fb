"""The trigger's parts: signature (shared vectors), request body, run lock, replay guard, worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.trigger import TEST_TRIGGER_SECRET, signed_headers, sync_run, trigger_body
from xata2convex import trigger
from xata2convex.config import Config, ConfigError
from xata2convex.lock import RunLock
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import BlobStore, LocalBlobStore
from xata2convex.sync import SyncOptions
from xata2convex_local.convex_server import LocalConvex

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "signing_vectors.json").read_text())
NOW = 1_764_417_600


def vector_headers(case: dict[str, Any]) -> dict[str, str]:
    return {trigger.TIMESTAMP_HEADER: case["timestamp"], trigger.SIGNATURE_HEADER: case["signature"]}


# --- signature ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["vectors"], ids=lambda c: c["name"])
def test_signer_and_verifier_agree_with_every_vector(case: dict[str, Any]) -> None:
    body = case["body"].encode()
    assert trigger.compute_signature(case["secret"], case["timestamp"], body) == case["signature"]
    now = case.get("now", int(case["timestamp"]))
    trigger.verify_signature(case["secret"], vector_headers(case), body, now=now)


@pytest.mark.parametrize("case", VECTORS["negative"], ids=lambda c: c["name"])
def test_verifier_rejects_every_negative_vector(case: dict[str, Any]) -> None:
    now = case.get("now", int(case["timestamp"]))
    with pytest.raises(trigger.BadSignature) as raised:
        trigger.verify_signature(case["secret"], vector_headers(case), case["body"].encode(), now=now)
    expected = {"signature": "does not match", "missing": "missing", "stale": "300 s"}[case["reason"]]
    assert expected in str(raised.value)
    assert raised.value.status == 401


def test_vector_file_documents_itself_and_covers_both_stale_directions() -> None:
    assert "HMAC-SHA256" in VECTORS["description"]
    stale_offsets = {c["now"] - int(c["timestamp"]) for c in VECTORS["negative"] if c["reason"] == "stale"}
    assert any(o > 300 for o in stale_offsets) and any(o < -300 for o in stale_offsets)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (trigger.TIMESTAMP_HEADER, "missing x-xata2convex-timestamp"),
        (trigger.SIGNATURE_HEADER, "missing x-xata2"),
    ],
)
def test_missing_headers_are_named(drop: str, message: str) -> None:
    body = trigger_body("run-1")
    headers = signed_headers(body, timestamp=NOW)
    del headers[drop]
    with pytest.raises(trigger.BadSignature, match=message):
        trigger.verify_signature(TEST_TRIGGER_SECRET, headers, body, now=NOW)


@pytest.mark.parametrize("stamp", ["-1764417600", "1764417600.5", " 1764417600", "١٧٦٤٤١٧٦٠٠", "9" * 13])
def test_timestamps_that_are_not_plain_unix_seconds_are_refused(stamp: str) -> None:
    body = trigger_body("run-1")
    headers = {
        trigger.TIMESTAMP_HEADER: stamp,
        trigger.SIGNATURE_HEADER: trigger.compute_signature(TEST_TRIGGER_SECRET, stamp, body),
    }
    with pytest.raises(trigger.BadSignature, match="unix seconds"):
        trigger.verify_signature(TEST_TRIGGER_SECRET, headers, body, now=NOW)


def test_header_names_match_in_any_case_and_rotation_may_send_two_signatures() -> None:
    body = trigger_body("run-1")
    stamp = str(NOW)
    old = trigger.compute_signature("the-previous-secret-value", stamp, body)
    new = trigger.compute_signature(TEST_TRIGGER_SECRET, stamp, body)
    headers = {"X-Xata2Convex-Timestamp": stamp, "X-XATA2CONVEX-SIGNATURE": f"{old}, {new}"}
    trigger.verify_signature(TEST_TRIGGER_SECRET, headers, body, now=NOW)
    with pytest.raises(trigger.BadSignature):
        trigger.verify_signature(
            TEST_TRIGGER_SECRET, {**headers, "X-XATA2CONVEX-SIGNATURE": old}, body, now=NOW
        )


def test_the_signing_secret_comes_from_the_environment_and_must_be_long_enough() -> None:
    assert (
        trigger.load_trigger_secret({"XATA2CONVEX_TRIGGER_SECRET": TEST_TRIGGER_SECRET})
        == TEST_TRIGGER_SECRET
    )
    with pytest.raises(ConfigError, match="missing setting: XATA2CONVEX_TRIGGER_SECRET"):
        trigger.load_trigger_secret({})
    with pytest.raises(ConfigError, match="shorter than 16") as raised:
        trigger.load_trigger_secret({"XATA2CONVEX_TRIGGER_SECRET": "short-secret"})
    assert "short-secret" not in str(raised.value)


def test_the_signing_secret_is_read_from_secrets_manager_when_an_arn_is_set(s3_env: str) -> None:
    import boto3

    arn = boto3.client("secretsmanager").create_secret(
        Name="trigger-signing", SecretString=TEST_TRIGGER_SECRET
    )["ARN"]
    assert trigger.load_trigger_secret({"XATA2CONVEX_TRIGGER_SECRET_ARN": arn}) == TEST_TRIGGER_SECRET


# --- request body ------------------------------------------------------------------------------


def test_a_valid_body_parses_with_incremental_as_the_default_mode() -> None:
    assert trigger.parse_request(b'{"runId": "r-1", "mode": "full"}') == trigger.TriggerRequest("r-1", "full")
    assert trigger.parse_request(b'{"runId": "20261129T120000Z-3f9c"}').mode == "incremental"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b'["r-1"]', "must be a JSON object"),
        (b'{"mode": "full"}', "runId must match"),
        (b'{"runId": "../../state/applied"}', "runId must match"),
        (b'{"runId": "a/b"}', "runId must match"),
        (b'{"runId": 12}', "runId must match"),
        (b'{"runId": "r-1", "mode": "partial"}', "mode must be"),
        (b'{"runId": "r-1", "extra": 1}', "unknown field.*extra"),
        (b'{"runId": "r-1", "runId": "r-2"}', "each field once"),
        (b"[" * 4000, "not valid UTF-8 JSON"),  # deep nesting: RecursionError in the parser
        (b'{"runId": ' * 300 + b'"r"' + b"}" * 300, "runId must match"),
        (b'{"runId": "r-1", "mode": "' + b"f" * 5000 + b'"}', "larger than 4096 bytes"),
        (b'{"runId": ' + b"9" * 4000 + b"}", "runId must match"),
    ],
)
def test_bad_bodies_are_refused_with_the_reason(body: bytes, message: str) -> None:
    with pytest.raises(trigger.TriggerRejected, match=message) as raised:
        trigger.parse_request(body)
    assert raised.value.status == 400


# --- replay guard, on a local folder and on S3 (moto over a socket) ----------------------------


def test_a_run_id_is_claimed_once(blobs: BlobStore) -> None:
    store = SnapshotStore(blobs, "db", "main")
    trigger.claim_run_id(store, trigger.TriggerRequest("run-1"), NOW)
    with pytest.raises(trigger.RunReplayed, match="'run-1' was already used") as raised:
        trigger.claim_run_id(store, trigger.TriggerRequest("run-1", "full"), NOW + 5)
    assert raised.value.status == 409
    trigger.claim_run_id(store, trigger.TriggerRequest("run-2"), NOW)
    marker = blobs.get("db/main/triggers/run-1.json")
    assert marker is not None and json.loads(marker.data)["mode"] == "incremental"


# --- admission ---------------------------------------------------------------------------------


def test_accept_checks_in_order_and_releases_the_lock_when_the_worker_cannot_start(tmp_path: Path) -> None:
    store = SnapshotStore(LocalBlobStore(tmp_path), "db", "main")
    body = trigger_body("run-1")

    def broken_start(request: trigger.TriggerRequest) -> None:
        raise RuntimeError("lambda unavailable")

    with pytest.raises(RuntimeError, match="lambda unavailable"):
        trigger.accept_trigger(
            signed_headers(body, timestamp=NOW), body, secret=TEST_TRIGGER_SECRET, store=store,
            start=broken_start, now=NOW,
        )  # fmt: skip
    assert RunLock.for_store(store).holder() is None
    started: list[trigger.TriggerRequest] = []
    body2 = trigger_body("run-2", "full")
    accepted = trigger.accept_trigger(
        signed_headers(body2, timestamp=NOW), body2, secret=TEST_TRIGGER_SECRET, store=store,
        start=started.append, now=NOW,
    )  # fmt: skip
    assert accepted == trigger.TriggerRequest("run-2", "full") and started == [accepted]
    assert RunLock.for_store(store).holder() == "run-2"


def test_a_trigger_refused_because_a_run_is_in_progress_is_recorded_in_runs(tmp_path: Path) -> None:
    store = SnapshotStore(LocalBlobStore(tmp_path), "db", "main")
    RunLock.for_store(store).reserve("running-run")
    body = trigger_body("second")
    with pytest.raises(trigger.RunInProgress):
        trigger.accept_trigger(
            signed_headers(body, timestamp=NOW), body, secret=TEST_TRIGGER_SECRET, store=store,
            start=lambda r: None, now=NOW,
        )  # fmt: skip
    report = store.read_run_report("second")
    assert report is not None and report["status"] == "rejected" and "running-run" in report["error"]


# --- worker ------------------------------------------------------------------------------------

FAKE_XATA_KEY = "xau_FAKE-xata-key-9d8c7b6a5f4e"


def worker_config(root: Path, convex: LocalConvex) -> Config:
    return Config(
        xata_api_key=FAKE_XATA_KEY,
        xata_database_url="https://ws.us-east-1.xata.sh/db/sample:main",
        snapshot_uri=str(root),
        convex_url=convex.url,
        convex_deploy_key=convex.deploy_key,
    )


def store_held_by(root: Path, run_id: str) -> SnapshotStore:
    """The worker's snapshot folder with `run_id` holding the run lock, as the trigger leaves it."""
    store = SnapshotStore(LocalBlobStore(root), "sample", "main")
    RunLock.for_store(store).reserve(run_id)
    return store


def test_the_worker_runs_export_and_sync_under_the_run_id_and_releases_the_lock(
    tmp_path: Path, local_convex: LocalConvex
) -> None:
    config = worker_config(tmp_path, local_convex)
    store = store_held_by(tmp_path, "worker-ok-1")
    seen: list[SyncOptions] = []

    def job(cfg: Config, options: SyncOptions, **_: Any) -> dict[str, Any]:
        seen.append(options)
        assert sync_run(local_convex, "worker-ok-1")["status"] == "running"  # recorded before the work
        return {"runId": options.run_id, "status": "succeeded", "snapshotId": "s1", "tables": {}}

    report = trigger.run_worker(config, trigger.TriggerRequest("worker-ok-1", "full"), job=job)
    assert report["status"] == "succeeded"
    assert seen == [SyncOptions(run_id="worker-ok-1", full=True)]
    assert RunLock.for_store(store).holder() is None


def test_a_failed_run_is_recorded_scrubbed_in_convex_and_runs_and_frees_the_lock(
    tmp_path: Path, local_convex: LocalConvex, log_records: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    config = worker_config(tmp_path, local_convex)
    store = store_held_by(tmp_path, "worker-fail-1")

    def job(cfg: Config, options: SyncOptions, **_: Any) -> dict[str, Any]:
        raise RuntimeError(f"upstream said: bad key {FAKE_XATA_KEY} / {local_convex.deploy_key}")

    report = trigger.run_worker(config, trigger.TriggerRequest("worker-fail-1"), job=job)
    assert report["status"] == "failed"
    assert report["error"] == "RuntimeError: upstream said: bad key *** / ***"
    doc = sync_run(local_convex, "worker-fail-1")
    assert doc["status"] == "failed" and doc["error"] == report["error"] and doc["finishedAt"] > 0
    assert store.read_run_report("worker-fail-1") == report
    assert RunLock.for_store(store).holder() is None
    out = capfd.readouterr()
    everything = "\n".join([*log_records, out.out, out.err])
    assert "worker-fail-1 failed" in everything
    for secret in (FAKE_XATA_KEY, local_convex.deploy_key):
        assert secret not in everything


def test_a_worker_without_the_lock_does_nothing(tmp_path: Path, local_convex: LocalConvex) -> None:
    """A duplicate async delivery, or a start after the lease expired, must not run a second sync."""
    config = worker_config(tmp_path, local_convex)
    store = store_held_by(tmp_path, "the-holder")
    calls: list[SyncOptions] = []

    def job(cfg: Config, options: SyncOptions, **_: Any) -> dict[str, Any]:
        calls.append(options)
        return {}

    report = trigger.run_worker(config, trigger.TriggerRequest("a-duplicate"), job=job)
    assert report["status"] == "rejected" and "holder: the-holder" in report["error"]
    assert calls == []
    assert RunLock.for_store(store).holder() == "the-holder"


def test_a_worker_that_cannot_open_its_store_reports_the_failure(local_convex: LocalConvex) -> None:
    config = Config(
        xata_database_url="https://ws.us-east-1.xata.sh/db/sample:main",
        snapshot_uri="ftp://nowhere/x",
        convex_url=local_convex.url,
        convex_deploy_key=local_convex.deploy_key,
    )
    report = trigger.run_worker(config, trigger.TriggerRequest("worker-nostore-1"))
    assert report["status"] == "failed" and "ftp://nowhere/x" in report["error"]
    assert sync_run(local_convex, "worker-nostore-1")["status"] == "failed"

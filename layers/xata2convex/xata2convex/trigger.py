"""The signed trigger request (docs/deploy.md): verify it, admit one run at a time, run it.

Admission happens in the Function URL handler, before it answers 202:
  1. the HMAC signature over "<timestamp>.<raw body>" and the 300 s window (else 401);
  2. the replay guard: a create-only marker per run id under `triggers/` (a run id seen before: 409);
  3. the run lock `state/lock.json` (lock.py), reserved for the run id (a run in progress: 409).
The worker (`run_worker`) claims that reservation, exports and syncs under the run id while renewing
the lease, and always releases the lock.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from . import jobs
from .config import Config, ConfigError, env_name, get_lambda_secret, load_secret, scrub
from .lock import DEFAULT_LEASE_SECONDS, LockBusy, RunLock, iso
from .model import XataToConvexError
from .signing import (
    MAX_SKEW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    compute_signature,
)
from .snapshot import SnapshotStore, json_bytes
from .storage import PreconditionFailed
from .sync import SyncOptions
from .xata_source import parse_database_url

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096  # the documented body is under 200 bytes
# Run ids become object keys, so they are restricted to characters safe in S3 keys and file names.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
Mode = Literal["incremental", "full"]


class TriggerRejected(XataToConvexError):
    """A trigger request refused; `status` and `code` become the HTTP answer."""

    status = 400
    code = "bad_request"


class BadSignature(TriggerRejected):
    status = 401
    code = "unauthorized"


class RunReplayed(TriggerRejected):
    status = 409
    code = "replayed"


class RunInProgress(TriggerRejected):
    status = 409
    code = "run_in_progress"


class JobFailed(XataToConvexError):
    """A job's failure with every secret scrubbed from its message."""


def scrubbed_failure(exc: BaseException, config: Config) -> JobFailed:
    return JobFailed(scrub(f"{type(exc).__name__}: {exc}", config.secrets()))


@dataclass(frozen=True)
class TriggerRequest:
    run_id: str
    mode: Mode = "incremental"

    def to_json(self) -> dict[str, str]:
        return {"runId": self.run_id, "mode": self.mode}

    @classmethod
    def from_json(cls, data: Any) -> TriggerRequest:
        if not isinstance(data, dict):
            raise TriggerRejected('the body must be a JSON object {"runId": ..., "mode": ...}')
        unknown = sorted(set(data) - {"runId", "mode"})
        if unknown:
            raise TriggerRejected(f"unknown field(s) in the body: {', '.join(unknown)}")
        run_id, mode = data.get("runId"), data.get("mode", "incremental")
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
            raise TriggerRejected(f"runId must match {RUN_ID_PATTERN.pattern}")
        if mode not in ("incremental", "full"):
            raise TriggerRejected('mode must be "incremental" or "full"')
        return cls(run_id, cast(Mode, mode))


# --- signature -------------------------------------------------------------------------------


def verify_signature(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> None:
    """Raise BadSignature unless the headers carry a valid, fresh signature of exactly this body."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp, signature = lowered.get(TIMESTAMP_HEADER), lowered.get(SIGNATURE_HEADER)
    if not timestamp:
        raise BadSignature(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise BadSignature(f"missing {SIGNATURE_HEADER} header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise BadSignature(f"{TIMESTAMP_HEADER} must be unix seconds")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise BadSignature(
            f"{TIMESTAMP_HEADER} is more than {MAX_SKEW_SECONDS} s away from the server's clock"
        )
    expected = compute_signature(secret, timestamp, body).encode()
    # Several comma-separated signatures are accepted so a signer can send old and new during rotation.
    offered = [s.strip().encode("utf-8", "replace") for s in signature.split(",")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise BadSignature("signature does not match")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("a field is given twice")
    return data


def parse_request(body: bytes) -> TriggerRequest:
    """The documented body or TriggerRejected (400): never another exception, whatever the bytes."""
    if len(body) > MAX_BODY_BYTES:
        raise TriggerRejected(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deep nesting
        raise TriggerRejected("the body is not valid UTF-8 JSON with each field once") from None
    return TriggerRequest.from_json(data)


def load_trigger_secret(env: Mapping[str, str] | None = None) -> str:
    """The signing secret: from Secrets Manager in Lambda (…_ARN), else XATA2CONVEX_TRIGGER_SECRET."""
    env = os.environ if env is None else env
    arn = env.get("XATA2CONVEX_TRIGGER_SECRET_ARN")
    if arn:
        secret = get_lambda_secret(arn, "XATA2CONVEX_TRIGGER_SECRET")
    else:
        secret = env.get("XATA2CONVEX_TRIGGER_SECRET", "")
    loaded = load_secret("XATA2CONVEX_TRIGGER_SECRET", secret)
    if not loaded:
        raise ConfigError("missing setting: XATA2CONVEX_TRIGGER_SECRET (or XATA2CONVEX_TRIGGER_SECRET_ARN)")
    return loaded


# --- replay guard -----------------------------------------------------------------------------


def claim_run_id(store: SnapshotStore, request: TriggerRequest, now: float) -> None:
    """Replay guard: the first request with a run id creates its marker; any later one gets 409."""
    marker = {**request.to_json(), "receivedAt": iso(now)}
    try:
        store.blobs.put(f"{store.base}triggers/{request.run_id}.json", json_bytes(marker), if_none_match=True)
    except PreconditionFailed as exc:
        raise RunReplayed(f"run id {request.run_id!r} was already used") from exc


# --- admission (the Function URL handler's work) ---------------------------------------------


def accept_trigger(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    store: SnapshotStore,
    start: Callable[[TriggerRequest], None],
    now: float | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> TriggerRequest:
    """Verify, claim the run id, take the lock, start the worker; raises TriggerRejected otherwise."""
    now = time.time() if now is None else now
    verify_signature(secret, headers, body, now=now)
    request = parse_request(body)
    claim_run_id(store, request, now)
    lock = RunLock.for_store(store, lease_seconds=lease_seconds)
    try:
        lock.reserve(request.run_id)
    except LockBusy as exc:
        # The refused run keeps an audit record in runs/ beside the real ones.
        store.write_run_report(
            request.run_id,
            {**request.to_json(), "status": "rejected", "error": str(exc), "finishedAt": iso(now)},
        )
        raise RunInProgress(str(exc)) from exc
    try:
        start(request)
    except BaseException:
        lock.release(request.run_id)
        raise
    return request


# --- starting and running the worker -----------------------------------------------------------

_local_workers: list[threading.Thread] = []


def start_worker(request: TriggerRequest) -> None:
    """The one place deciding how a run starts: async invoke of the worker Lambda, else (outside Lambda:
    `local trigger`, tests) a thread of this process. Inside Lambda a thread would be frozen after the
    answer and killed at the timeout, so a missing WORKER_FUNCTION_NAME there is an error."""
    function_name = os.environ.get("WORKER_FUNCTION_NAME")
    if not function_name and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        raise ConfigError(
            "missing setting: WORKER_FUNCTION_NAME (inside Lambda a run starts only as the worker Lambda; "
            "the template sets it to SyncWorkerFunction)"
        )
    if function_name:
        import boto3

        response = boto3.client("lambda").invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(request.to_json()).encode()
        )
        if response.get("StatusCode") != 202:
            raise XataToConvexError(
                f"the worker did not accept run {request.run_id}: {response.get('StatusCode')}"
            )
        return
    thread = threading.Thread(
        target=run_worker,
        args=(Config.from_env(), request),
        name=f"xata2convex-run-{request.run_id}",
        daemon=True,
    )
    _local_workers.append(thread)
    thread.start()


def wait_for_local_workers(timeout: float | None = None) -> bool:
    """Join the runs started in threads (local serving, tests); True when all have finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in list(_local_workers):
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            _local_workers.remove(thread)
    return not _local_workers


Job = Callable[..., dict[str, Any]]


def run_worker(
    config: Config, request: TriggerRequest, *, job: Job = jobs.run_export_and_sync
) -> dict[str, Any]:
    """Export then sync under the request's run id; failures go to syncRuns; the lock is always released.

    Returns the run report (status "failed" with a scrubbed error when the run failed) and never raises,
    so a local thread and the worker Lambda end the same way.
    """
    try:
        store = jobs.open_store(config)
    except Exception as exc:
        return _failed(config, None, request, exc)
    try:
        lease = RunLock.for_store(store).claim(request.run_id)
    except LockBusy as exc:
        # A repeated delivery of the async event, or a start so late that the lease expired.
        log.warning("%s", exc)
        return {**request.to_json(), "status": "rejected", "error": str(exc)}
    try:
        with lease.renewing():
            convex = jobs.open_convex(config)
            jobs.record_run(convex, {**request.to_json(), "status": "running"})
            jobs.close_taken_over(store, convex, lease)
            options = SyncOptions(run_id=request.run_id, full=request.mode == "full")
            report = job(config, options, lease=lease)
        log.info(
            "run %s %s: snapshot %s, %s",
            request.run_id,
            report.get("status"),
            report.get("snapshotId"),
            _counts(report),
        )
        return report
    except Exception as exc:
        return _failed(config, store, request, exc)
    finally:
        lease.release()


def check_snapshot_folder(config: Config) -> None:
    """With the Postgres source, XATA_DATABASE_URL must name the Postgres URL's database and branch.

    The trigger and the sync Lambda, which never see the Postgres URL, find the snapshot folder (lock,
    replay markers, snapshots) from XATA_DATABASE_URL; the export and the worker find it from their source.
    """
    if not (config.xata_postgres_url and config.xata_database_url):
        return
    from_source = jobs.source_identity(config)
    from_url = parse_database_url(config.xata_database_url)
    if from_source != from_url:
        raise ConfigError(
            f"XATA_POSTGRES_URL names database {':'.join(from_source)} but XATA_DATABASE_URL names "
            f"{':'.join(from_url)}; both must name the same database and branch (the snapshot folder)"
        )


# What a worker needs to find the run's folder, and nothing else (no secret).
STORE_SETTINGS = frozenset(env_name(field) for field in ("snapshot_uri", "xata_database_url"))


def abandon_run(request: TriggerRequest, reason: str) -> None:
    """For a worker that cannot even load its settings: record the failure in runs/ and free the lock.
    Only the store's settings are read, since the one that failed may be any other."""
    config = Config.from_env({k: v for k, v in os.environ.items() if k in STORE_SETTINGS})
    store = jobs.open_store(config)
    _failed(config, store, request, JobFailed(reason), record_in_convex=False)
    RunLock.for_store(store).release(request.run_id)


def _counts(report: dict[str, Any]) -> str:
    totals = jobs.run_totals(report, ("added", "changed", "deleted", "unchanged"))
    return ", ".join(f"{v} {k}" for k, v in totals.items())


def _failed(
    config: Config,
    store: SnapshotStore | None,
    request: TriggerRequest,
    exc: Exception,
    *,
    record_in_convex: bool = True,
) -> dict[str, Any]:
    error = str(scrubbed_failure(exc, config))
    log.error("run %s failed: %s", request.run_id, error)
    report = {**request.to_json(), "status": "failed", "error": error, "finishedAt": iso(time.time())}
    if store is not None:  # first, so that syncRuns gets the report's keys
        try:
            report = store.write_run_report(request.run_id, report)
        except Exception as write_exc:
            log.error("run %s: could not write its report: %s", request.run_id,
                      scrubbed_failure(write_exc, config))  # fmt: skip
    try:
        if record_in_convex:
            jobs.record_run(jobs.open_convex(config), report)
    except Exception as record_exc:
        log.error("run %s: could not record the failure in Convex: %s", request.run_id,
                  scrubbed_failure(record_exc, config))  # fmt: skip
    return report

"""The run the Function URL handler started (async invoke): `{"runId", "mode"}` -> export, then sync.

A failed run is recorded in Convex `syncRuns` and S3 `runs/` by the worker itself; the invocation then
fails too (with the scrubbed error) so the async failure destination and the Errors metric see it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from xata2convex import trigger
from xata2convex.config import ConfigError, load_lambda_config

logger = Logger(service="xata2convex")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = trigger.TriggerRequest.from_json(event)
    try:
        config = load_lambda_config()
    except ConfigError as exc:  # names the setting or secret, never a value
        trigger.abandon_run(request, str(exc))
        raise trigger.JobFailed(f"run {request.run_id}: {exc}") from None
    except Exception as exc:
        reason = f"could not load settings ({type(exc).__name__})"
        trigger.abandon_run(request, reason)
        raise trigger.JobFailed(f"run {request.run_id}: {reason}") from None
    try:
        trigger.check_snapshot_folder(config)
    except ConfigError as exc:
        # abandon_run frees the lock where the trigger took it: the folder XATA_DATABASE_URL names.
        trigger.abandon_run(request, str(exc))
        raise trigger.JobFailed(f"run {request.run_id}: {exc}") from None
    report = trigger.run_worker(config, request)
    if report["status"] == "failed":
        raise trigger.JobFailed(f"run {request.run_id} failed: {report['error']}")
    return report

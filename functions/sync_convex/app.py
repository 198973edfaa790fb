"""Direct invoke: `{"snapshotId"?, "full"?, "dryRun"?, "runId"?}` -> apply that snapshot to Convex."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from xata2convex import jobs, trigger
from xata2convex.config import load_lambda_config
from xata2convex.sync import SyncOptions

logger = Logger(service="xata2convex")
FIELDS: dict[str, type] = {"snapshotId": str, "full": bool, "dryRun": bool, "runId": str}


def sync_options(event: dict[str, Any]) -> SyncOptions:
    for name, value in event.items():
        if name not in FIELDS:
            raise ValueError(f"unknown event field {name!r}; expected {', '.join(FIELDS)}")
        if not isinstance(value, FIELDS[name]):
            raise ValueError(f"event field {name!r} must be a {FIELDS[name].__name__}")
    return SyncOptions(
        snapshot_id=event.get("snapshotId"),
        full=event.get("full", False),
        dry_run=event.get("dryRun", False),
        run_id=event.get("runId"),
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    options = sync_options(event)
    config = load_lambda_config()
    try:
        report = jobs.run_sync(config, options)
    except Exception as exc:
        raise trigger.scrubbed_failure(exc, config) from None
    logger.info("sync finished", extra={"runId": report["runId"], "status": report["status"]})
    return report

"""Direct invoke: `{"snapshotId"?, "full"?, "dryRun"?, "runId"?}` -> apply that snapshot to Convex."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from xata2convex import jobs, trigger
from xata2convex.config import load_lambda_config
from xata2convex.sync import SyncOptions

logger = Logger(service="xata2convex")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    options = SyncOptions.from_event(event)
    config = load_lambda_config()
    try:
        report = jobs.run_sync(config, options)
    except Exception as exc:
        raise trigger.scrubbed_failure(exc, config) from None
    logger.info("sync finished", extra={"runId": report["runId"], "status": report["status"]})
    return report

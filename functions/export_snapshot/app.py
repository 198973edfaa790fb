"""Direct invoke: write a snapshot of every Xata table to the snapshot store; return its summary."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from xata2convex import jobs, trigger
from xata2convex.config import load_lambda_config

logger = Logger(service="xata2convex")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = load_lambda_config()
    try:
        trigger.check_snapshot_folder(config)
        manifest = jobs.run_export(config)
    except Exception as exc:
        raise trigger.scrubbed_failure(exc, config) from None
    summary = {
        "snapshotId": manifest.snapshot_id,
        "tables": {t.name: t.rows for t in manifest.tables},
        "rows": sum(t.rows for t in manifest.tables),
    }
    logger.info("snapshot written", extra=summary)
    return summary

"""Function URL handler: verify the signed trigger, admit the run, start the worker, answer 202 at once.

The HMAC signature is the authentication (the URL's AuthType is NONE unless the stack chose AWS_IAM),
so nothing is done before it verifies. Answers: 202 {"runId"}; 400, 401, 409 {"error", "message"}.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from xata2convex import jobs, trigger
from xata2convex.config import Config, scrub

# Named like the package's loggers' parent, so the library's log lines share this JSON handler.
logger = Logger(service="xata2convex")
metrics = Metrics(namespace="xata2convex", service="trigger")
app = LambdaFunctionUrlResolver()


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _raw_body() -> bytes:
    """The exact bytes that were signed: Function URLs base64-encode bodies they deem binary."""
    event = app.current_event
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")


@app.post("/")
def trigger_run() -> Response[str]:
    try:
        secret = trigger.load_trigger_secret()
    except Exception as exc:  # the message names the setting or the Secrets Manager error, not a value
        logger.error("trigger secret unavailable", extra={"detail": f"{type(exc).__name__}: {exc}"})
        metrics.add_metric(name="TriggerFailed", unit=MetricUnit.Count, value=1)
        return _json(500, {"error": "internal", "message": "the trigger is not configured"})
    try:
        request = trigger.accept_trigger(
            app.current_event.headers,
            _raw_body(),
            secret=secret,
            store=jobs.open_store(Config.from_env()),
            start=trigger.start_worker,
        )
    except trigger.TriggerRejected as exc:
        logger.warning(
            "trigger refused", extra={"status": exc.status, "reason": exc.code, "detail": str(exc)}
        )
        metrics.add_metric(name=f"TriggerRefused_{exc.code}", unit=MetricUnit.Count, value=1)
        return _json(exc.status, {"error": exc.code, "message": str(exc)})
    except Exception as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", [secret])
        logger.error("trigger failed", extra={"detail": message})
        metrics.add_metric(name="TriggerFailed", unit=MetricUnit.Count, value=1)
        return _json(500, {"error": "internal", "message": "the run could not be started"})
    logger.info("run accepted", extra=request.to_json())
    metrics.add_metric(name="TriggerAccepted", unit=MetricUnit.Count, value=1)
    return _json(202, {"runId": request.run_id})


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="TriggerRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)

"""One Lambda invocation in a fresh runtime interpreter, as the python3.13 runtime runs it.

Run by `xata2convex local invoke` as `python3.13 -I -S lambda_bootstrap.py SPEC.json` with the event on
stdin, in the function's folder and with the function's environment only. Standard library only:
nothing of the development install is on the path, which is Lambda's (function, layer, runtime
libraries). The function's own output (prints, Powertools' log lines) goes to stderr, its log; the
answer, or Lambda's error object, is the one JSON value on stdout.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any


class LocalLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(
        self,
        function_name: str = "xata2convex-trigger-local",
        timeout_s: float = 30.0,
        *,
        memory_mb: int = 512,
        region: str = "local",
        request_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_error(exc: BaseException) -> dict[str, Any]:
    """What Lambda answers for a handler that raised."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    sys.path[:0] = spec["path"]
    answer = sys.stdout
    sys.stdout = sys.stderr
    context = LocalLambdaContext(
        spec["function_name"],
        spec["timeout_s"],
        memory_mb=spec["memory_mb"],
        region=spec["region"],
        request_id=spec["request_id"],
    )
    event = json.loads(sys.stdin.read() or "{}")
    module_name, _, handler_name = spec["handler"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), handler_name)
        result = handler(event, context)
    except Exception as exc:
        print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr)
        json.dump({**lambda_error(exc), "requestId": context.aws_request_id}, answer)
        answer.write("\n")
        return 1
    json.dump(result, answer)
    answer.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

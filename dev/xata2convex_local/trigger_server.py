"""`xata2convex local trigger`: the Function URL handler (functions/trigger_url/app.py) on a local port.

Each HTTP request becomes a Function URL event (payload format 2.0) and the handler's answer becomes the
HTTP response, so Convex's `trigger` action can call the very handler that runs in AWS. Without
WORKER_FUNCTION_NAME the handler runs accepted runs in a background thread of this process, with the
settings of this process's environment (XATA_*, SNAPSHOT_URI, CONVEX_*, XATA2CONVEX_TRIGGER_SECRET).
"""

from __future__ import annotations

import base64
import importlib.util
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import click

from xata2convex import trigger
from xata2convex.config import ConfigError

from .foreground import catch_stop_signals, serve_until_stopped
from .lambda_bootstrap import LocalLambdaContext

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLER_FILE = Path("functions/trigger_url/app.py")
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


def default_handler_path() -> Path:
    """The handler of the checkout we run from: the current directory's, else the package's repository."""
    for root in (Path.cwd(), REPO_ROOT):
        if (root / HANDLER_FILE).is_file():
            return root / HANDLER_FILE
    raise click.ClickException(f"cannot find {HANDLER_FILE}; run from the repository or pass --handler")


def load_handler_module(path: Path) -> ModuleType:
    """A handler file (functions/<name>/app.py) as a module named after its folder."""
    spec = importlib.util.spec_from_file_location(f"xata2convex_handler_{path.parent.name}", path)
    if spec is None or spec.loader is None:
        raise click.ClickException(f"cannot load the handler {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def function_url_event(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
) -> dict[str, Any]:
    """An HTTP request as Lambda delivers it through a Function URL (payload format 2.0)."""
    url = urlsplit(target)
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    content_type = merged.get("content-type", "")
    is_text = content_type.startswith(TEXT_TYPES)
    try:
        text = body.decode("utf-8") if is_text else None
    except UnicodeDecodeError:
        text = None
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": merged,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": merged.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": url.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": text is None and bool(body),
    }
    if url.query:
        event["queryStringParameters"] = dict(parse_qsl(url.query, keep_blank_values=True))
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
    return event


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler_module: ModuleType) -> None:
        self.handler_module = handler_module
        # One event at a time, as in one Lambda instance (the resolver keeps the current event).
        self.invoke_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        event = function_url_event(
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        with self.server.invoke_lock:
            result = self.server.handler_module.lambda_handler(event, LocalLambdaContext())
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else str(payload).encode("utf-8")
        self.send_response(int(result.get("statusCode", 200)))
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, str(value))
        for cookie in result.get("cookies") or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the handler logs each request itself


class TriggerServer:
    """The trigger handler on a local port: `TriggerServer().start()`, `.url`, `.stop()` (or `with`)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, handler_path: Path | None = None) -> None:
        self._address = (host, port)
        self._handler_path = handler_path
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TriggerServer:
        module = load_handler_module(self._handler_path or default_handler_path())
        self._server = _Server(self._address, module)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="trigger-url", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the trigger server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def wait_for_runs(self, timeout: float | None = None) -> bool:
        """Wait for the runs this process started in threads; True when none is left running."""
        return trigger.wait_for_local_workers(timeout)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> TriggerServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@click.command("trigger")
@click.option("--port", type=int, default=0, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--handler",
    "handler_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"The Function URL handler to serve [{HANDLER_FILE}]",
)
def local_trigger_command(port: int, host: str, handler_path: Path | None) -> None:
    """Serve the trigger Function URL handler locally; print TRIGGER_URL=… once ready."""
    try:
        trigger.load_trigger_secret()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    stopped = catch_stop_signals()
    with TriggerServer(host=host, port=port, handler_path=handler_path) as server:
        serve_until_stopped(stopped, {"TRIGGER_URL": server.url})
        server.wait_for_runs(timeout=60)


if __name__ == "__main__":
    local_trigger_command()

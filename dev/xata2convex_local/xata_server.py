"""A local stand-in for Xata's classic data-plane REST API: one database branch loaded from a seed folder.

The branch's data and operations live in `xata_store`; this module serves them over HTTP.

Endpoints (paths as the xata SDK 1.3.5 builds them; every one needs `Authorization: Bearer <key>`):
`GET /dbs/{db}`, `GET /db/{db}:{branch}`, `GET .../tables/{t}/schema`, `GET .../tables/{t}/columns`,
`POST .../tables/{t}/query`, `POST .../tables/{t}/summarize`, `POST .../tables/{t}/data` and
`GET|PUT|POST|PATCH|DELETE .../tables/{t}/data/{id}`.

Where Xata's documentation is silent, the simplest behaviour was chosen:
- Failure knobs count every request from 1: request n answers 429 when n is a multiple of
  `fail_429_every`, else 503 when it is a multiple of `fail_5xx_every`. A 429 carries
  `x-ratelimit-reset`: seconds (decimal) until the window resets, `ratelimit_reset_s`.
- Error bodies are `{"id", "message"}` with a random id.
- A page fault (`page_fault`) answers one page of one table's query the way a broken server or proxy
  might, with status 200: `html` (an error page), `not-json` (a cut-off body), `empty-object` (`{}`),
  `empty-end` (no records and `more: false`), `repeat-cursor` (the page with a cursor leading back to
  itself, forever). Pages count from 1 per query; cursors carry the page number.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import click

from .foreground import catch_stop_signals, serve_until_stopped
from .xata_store import ApiError, Branch, page_number, projector, repeating_cursor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # without the query string
    status: int


PAGE_FAULTS = ("html", "not-json", "empty-object", "empty-end", "repeat-cursor")


@dataclass(frozen=True)
class PageFault:
    """Answer page `page` (from 1) of table `table`'s query with a broken page of kind `kind`."""

    table: str
    page: int
    kind: str

    @classmethod
    def parse(cls, text: str) -> PageFault:
        """`TABLE:PAGE:KIND`, as the command line takes it."""
        table, page, kind = ([""] * 3 + text.rsplit(":", 2))[-3:]
        if not table or not page.isdigit() or int(page) < 1 or kind not in PAGE_FAULTS:
            raise ValueError(f"expected TABLE:PAGE:KIND, PAGE from 1, KIND one of {', '.join(PAGE_FAULTS)}")
        return cls(table, int(page), kind)


@dataclass(frozen=True)
class RawBody:
    """A response body sent as it is (not JSON-encoded)."""

    data: bytes
    content_type: str


# ---------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: XataStandIn) -> None:
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) is not a server fault worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's requests.Session reuses connections
    server: _Server
    timeout = 60  # close idle keep-alive connections

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, payload, headers = self.server.standin.respond(
            method, self.path, self.headers.get("authorization"), raw
        )
        if isinstance(payload, RawBody):
            body, content_type = payload.data, payload.content_type
        else:
            body = (
                b"" if payload is None else json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
            )
            content_type = "application/json"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the stand-in's request log, not stderr."""


class XataStandIn:
    """Xata's classic data-plane REST API for one database branch, on a local port."""

    def __init__(
        self,
        seed_dir: Path,
        *,
        database: str = "sample",
        branch: str = "main",
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        fail_429_every: int = 0,
        fail_5xx_every: int = 0,
        ratelimit_reset_s: float = 0.01,
        page_fault: PageFault | None = None,
    ) -> None:
        self.api_key = api_key if api_key is not None else f"xau_local_{secrets.token_urlsafe(24)}"
        self.latency_ms = latency_ms
        self.fail_429_every = fail_429_every
        self.fail_5xx_every = fail_5xx_every
        self.ratelimit_reset_s = ratelimit_reset_s
        self.page_fault = page_fault
        self._data = Branch(Path(seed_dir), database, branch)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._count = 0
        self._in_flight = 0
        self._peak_in_flight = 0

    # lifecycle

    def start(self) -> XataStandIn:
        self._server = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="xata-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._server.connections_lock:
            for connection in list(self._server.connections):
                # Kept-alive connections would otherwise go on being served after stop().
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> XataStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # what callers read

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Xata stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def database(self) -> str:
        return self._data.database

    @property
    def branch(self) -> str:
        return self._data.branch

    def settings(self) -> dict[str, str]:
        return {
            "XATA_ENDPOINT_URL": self.url,
            "XATA_DATABASE_URL": f"https://local.us-east-1.xata.sh/db/{self.database}:{self.branch}",
            "XATA_API_KEY": self.api_key,
        }

    @property
    def request_count(self) -> int:
        with self._log_lock:
            return self._count

    @property
    def peak_in_flight(self) -> int:
        """The most requests ever being answered at the same moment (to check client concurrency)."""
        with self._log_lock:
            return self._peak_in_flight

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._log_lock:
            return list(self._requests)

    def force_values(self, table: str, record_id: str, values: dict[str, Any]) -> None:
        """Store values in a record as they are, unchecked: what a Xata branch can hold that its
        write API would refuse (e.g. "yes" in a bool column), for tests of values that do not fit."""
        with self._data.lock:
            records = self._data.table(table)
            records.store({**records.records[record_id], **values})

    def table_ids(self, table: str) -> list[str]:
        """The ids of a table's records, in query order (for tests and the demo)."""
        with self._data.lock:
            return list(self._data.table(table).ids)

    # request handling

    def respond(
        self, method: str, target: str, authorization: str | None, raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (status, JSON payload or None, extra headers)."""
        with self._log_lock:
            self._count += 1
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            number = self._count
        try:
            return self._answer(number, method, target, authorization, raw)
        finally:
            with self._log_lock:
                self._in_flight -= 1

    def _answer(
        self, number: int, method: str, target: str, authorization: str | None, raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        url = urlsplit(target)
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)  # the simulated network and server latency
        try:
            if self.fail_429_every and number % self.fail_429_every == 0:
                raise ApiError(
                    429,
                    "rate limit exceeded: too many requests",
                    {"x-ratelimit-reset": format(self.ratelimit_reset_s, "g")},
                )
            if self.fail_5xx_every and number % self.fail_5xx_every == 0:
                raise ApiError(503, "service unavailable, please retry")
            self._authorize(authorization)
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise ApiError(400, "the request body is not valid JSON") from None
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, payload = self._route(
                method, [unquote(p) for p in url.path.strip("/").split("/")], body, query
            )
            headers: dict[str, str] = {}
        except ApiError as exc:
            status, payload, headers = (
                exc.status,
                {"id": secrets.token_hex(10), "message": exc.message},
                exc.headers,
            )
        except Exception:
            log.exception("Xata stand-in failed on %s %s", method, url.path)
            status, payload, headers = 500, {"id": secrets.token_hex(10), "message": "internal error"}, {}
        with self._log_lock:
            self._requests.append(LoggedRequest(method, url.path, status))
        return status, payload, headers

    def _authorize(self, authorization: str | None) -> None:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, "missing API key: send Authorization: Bearer <key>")
        if not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            raise ApiError(401, "invalid API key")

    def _route(self, method: str, parts: list[str], body: Any, query: dict[str, str]) -> tuple[int, Any]:
        data = self._data
        if method == "GET" and len(parts) == 2 and parts[0] == "dbs":
            if parts[1] != data.database:
                raise ApiError(404, f"database [{parts[1]}] not found")
            return 200, {
                "databaseName": data.database,
                "branches": [{"name": data.branch, "createdAt": "2024-01-01T00:00:00Z"}],
            }
        if len(parts) < 2 or parts[0] != "db":
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        if parts[1] != f"{data.database}:{data.branch}":
            raise ApiError(404, f"branch [{parts[1]}] not found")
        rest = parts[2:]
        if not rest and method == "GET":
            return 200, data.details()
        if len(rest) < 3 or rest[0] != "tables":
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        table = data.table(rest[1])
        action, record_id = rest[2], (rest[3] if len(rest) == 4 else None)
        columns = query["columns"].split(",") if "columns" in query else None
        if len(rest) == 3 and method == "GET" and action in ("schema", "columns"):
            return 200, {"columns": [dict(c) for c in table.columns.values()]}
        if len(rest) == 3 and method == "POST" and action == "query":
            fault = self.page_fault
            if fault and fault.table == table.name and fault.page == page_number(table, body):
                return 200, self._broken_page(fault.kind, table, body)
            return 200, data.query(table, body)
        if len(rest) == 3 and method == "POST" and action == "summarize":
            return 200, data.summarize(table, body)
        if action != "data" or len(rest) > 4:
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        project = projector(table, columns) if columns is not None else table.meta_view
        if record_id is None and method == "POST":
            status, record = data.write(table, None, body, "insert", query)
            return status, project(record)
        if record_id is None:
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        if method == "GET":
            return 200, projector(table, columns)(data.get(table, record_id))
        if method == "DELETE":
            deleted = data.delete(table, record_id)
            return (200, project(deleted)) if columns is not None else (204, None)
        modes = {"PUT": "put", "POST": "upsert", "PATCH": "update"}
        if method not in modes:
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        status, record = data.write(table, record_id, body, modes[method], query)
        return status, project(record)

    def _broken_page(self, kind: str, table: Any, body: Any) -> Any:
        if kind == "html":
            return RawBody(b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>", "text/html")
        if kind == "not-json":
            return RawBody(b'{"records": [{"id": "rec_', "application/json")
        if kind == "empty-object":
            return {}
        cursor = repeating_cursor(table, body)
        if kind == "empty-end":
            return {"records": [], "meta": {"page": {"cursor": cursor, "more": False, "size": 0}}}
        answer = self._data.query(table, body)  # repeat-cursor: this page again, and again
        answer["meta"]["page"].update(cursor=cursor, more=True)
        return answer


# ---------------------------------------------------------------- CLI


@click.command("xata")
@click.option(
    "--seed",
    "seed_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Seed folder: schema.json and <table>.jsonl.",
)
@click.option(
    "--port", type=int, default=4010, show_default=True, help="Port to listen on (0: any free port)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--database", default="sample", show_default=True)
@click.option("--branch", default="main", show_default=True)
@click.option("--api-key", default=None, help="API key to accept (default: a random one, printed).")
@click.option("--latency-ms", type=float, default=0, show_default=True, help="Delay added to every request.")
@click.option(
    "--fail-429-every", type=int, default=0, show_default=True, help="Answer 429 to every Nth request."
)
@click.option(
    "--fail-5xx-every", type=int, default=0, show_default=True, help="Answer 503 to every Nth request."
)
@click.option(
    "--page-fault",
    "page_fault",
    default=None,
    help=f"TABLE:PAGE:KIND: answer that page broken ({', '.join(PAGE_FAULTS)}).",
)
def xata_command(
    seed_dir: Path,
    port: int,
    host: str,
    database: str,
    branch: str,
    api_key: str | None,
    latency_ms: float,
    fail_429_every: int,
    fail_5xx_every: int,
    page_fault: str | None,
) -> None:
    """Serve a local Xata stand-in in the foreground: print the settings to use, serve until stopped."""
    standin = XataStandIn(
        seed_dir,
        database=database,
        branch=branch,
        api_key=api_key,
        host=host,
        port=port,
        latency_ms=latency_ms,
        fail_429_every=fail_429_every,
        fail_5xx_every=fail_5xx_every,
        page_fault=_page_fault_option(page_fault),
    )
    stopped = catch_stop_signals()
    with standin:
        serve_until_stopped(stopped, standin.settings())


def _page_fault_option(text: str | None) -> PageFault | None:
    try:
        return PageFault.parse(text) if text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--page-fault") from None


if __name__ == "__main__":
    xata_command()

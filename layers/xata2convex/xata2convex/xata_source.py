"""Read a Xata branch through the official `xata` SDK (1.3.5).

The SDK has no timeouts, no retries and a fixed `https://{workspace}.{region}.xata.sh` base URL.
We keep the SDK's calls and add, per namespace session: a transport adapter that sets a timeout and
remembers the last response (the SDK's RateLimitError drops the headers we need for
`x-ratelimit-reset`), a base-URL override for XATA_ENDPOINT_URL, bounded retries with jittered
backoff on 429 / 5xx / connection errors, and a shared request-rate limit.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from xata.api_request import ApiRequest
from xata.client import XataClient
from xata.errors import RateLimitError, UnauthorizedError, XataServerError

from .errors import could_not_connect, transport_problem
from .model import (
    EXPIRING_FILE_FIELDS,
    ID_COLUMN,
    POSTGRES_META_NAMES,
    DatabaseSchema,
    Record,
    SourceError,
    TableSchema,
    schema_from_xata,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class XataSettings:
    api_key: str
    database_url: str  # https://{workspace}.{region}.xata.sh/db/{database}:{branch}
    endpoint_url: str | None = None  # replaces https://{workspace}.{region}.xata.sh
    page_size: int = 1000  # the largest page Xata's docs allow
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_attempts: int = 8
    max_connect_attempts: int = 3  # a host that never answered is a wrong URL more often than a blip
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 20.0
    requests_per_second: float = 75.0  # Xata's free plan: 75 req/s per branch
    # Loop bound: no table is read past this many records (Xata Lite's largest plans held tens of
    # millions of rows); with repeated cursors and ids refused, only a hostile server gets near it.
    max_records_per_table: int = 100_000_000

    def __repr__(self) -> str:  # never print the key
        return f"XataSettings(database_url={self.database_url!r}, endpoint_url={self.endpoint_url!r}, ...)"


def parse_database_url(url: str) -> tuple[str, str]:
    """(database, branch) from `https://{workspace}.{region}.xata.sh/db/{database}:{branch}`."""
    path = urlparse(url).path
    if not path.startswith("/db/") or not path[4:]:
        raise SourceError(
            f"XATA_DATABASE_URL {url!r}: expected https://{{workspace}}.{{region}}.xata.sh/db/NAME:BRANCH"
        )
    database, _, branch = path[4:].partition(":")
    return database, branch or "main"


def sdk_client(api_key: str, database_url: str, endpoint_url: str | None = None) -> XataClient:
    """The official SDK client; with an endpoint URL, every data-plane request is sent there."""
    client = XataClient(api_key=api_key, db_url=database_url)
    if endpoint_url:
        base = endpoint_url.rstrip("/")
        for namespace in data_plane_namespaces(client):
            namespace.get_base_url = lambda: base
            namespace.get_upload_base_url = lambda: base  # files' uploads use their own host
    return client


def data_plane_namespaces(client: XataClient) -> list[ApiRequest]:
    """Every SDK namespace whose requests go to the workspace (data plane), including ones added in
    later SDK versions: found among the client's attributes rather than listed by hand."""
    return [
        namespace
        for namespace in vars(client).values()
        if isinstance(namespace, ApiRequest) and not namespace.is_control_plane()
    ]


class _RateLimiter:
    """Spaces requests evenly to stay under a requests-per-second budget shared by all threads."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.lock = threading.Lock()
        self.next_slot = 0.0
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = self._clock()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout_s: tuple[float, float]) -> None:
        super().__init__(pool_connections=4, pool_maxsize=4)
        self.timeout_s = timeout_s
        self.last_response: requests.Response | None = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        self.last_response = None
        response = super().send(request, **kwargs)
        self.last_response = response
        return response


class _TransientError(Exception):
    def __init__(self, message: str, retry_after: float | None = None, *, connect: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.connect = connect  # the server was never reached


class XataSdkSource:
    """A `model.Source` over the xata SDK. Thread-safe: each thread gets its own SDK client."""

    def __init__(self, settings: XataSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._database, self._branch = parse_database_url(settings.database_url)
        self._limiter = _RateLimiter(settings.requests_per_second)
        self._local = threading.local()
        self._sleep = sleep

    def database(self) -> str:
        return self._database

    def branch(self) -> str:
        return self._branch

    def close(self) -> None:
        pass

    # --- SDK plumbing ---
    def _client(self) -> XataClient:
        client: XataClient | None = getattr(self._local, "client", None)
        if client is None:
            settings = self.settings
            client = sdk_client(settings.api_key, settings.database_url, settings.endpoint_url)
            # One adapter for the thread's sessions: its last response is the one that just failed.
            adapter = _TimeoutAdapter((settings.connect_timeout_s, settings.timeout_s))
            for namespace in (client.branch(), client.data()):
                namespace.session.mount("https://", adapter)
                namespace.session.mount("http://", adapter)
            self._local.client, self._local.adapter = client, adapter
        return client

    def _last_response(self) -> requests.Response | None:
        adapter: _TimeoutAdapter = self._local.adapter
        return adapter.last_response

    def _call(self, what: str, call: Callable[[XataClient], Any]) -> dict[str, Any]:
        """One SDK call with rate limiting, retries and clear errors. `what` names table and page."""
        last: _TransientError | None = None
        attempt = 0
        while True:
            attempt += 1
            self._limiter.acquire()
            try:
                return _json_object(what, self._checked(what, call))
            except _TransientError as exc:
                last = exc
                limit = self.settings.max_connect_attempts if exc.connect else self.settings.max_attempts
                if attempt >= limit:
                    break
                delay = self._backoff(attempt, exc.retry_after)
                log.info("%s: %s; retry %d of %d in %.1f s", what, exc, attempt, limit - 1, delay)
                self._sleep(delay)
        raise SourceError(f"{what}: gave up after {attempt} attempts; last error: {last}") from last

    def _checked(self, what: str, call: Callable[[XataClient], Any]) -> Any:
        client = self._client()
        try:
            response = call(client)
        except RateLimitError as exc:
            last = self._last_response()
            raise _TransientError(
                f"429 rate limited: {last.url if last is not None else ''}", self._retry_after()
            ) from exc
        except XataServerError as exc:
            last = self._last_response()
            code, url = (last.status_code, last.url) if last is not None else ("unknown status", "")
            raise _TransientError(f"server error ({code}): {url}") from exc  # a 5xx Response is falsy
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _TransientError(transport_problem(exc), connect=could_not_connect(exc)) from exc
        except requests.JSONDecodeError as exc:  # the SDK parses 401 and 429 bodies itself
            last = self._last_response()
            status = last.status_code if last is not None else None
            if status == 429:
                raise _TransientError("429 rate limited", self._retry_after()) from exc
            raise SourceError(f"{what}: Xata answered {status} with a body that is not JSON") from None
        except UnauthorizedError as exc:
            raise SourceError(f"{what}: Xata rejected the API key (401 unauthorized)") from exc
        if not response.is_success():
            message = response.get("message") or response.response.text[:300]
            raise SourceError(f"{what}: Xata answered {response.status_code}: {message}")
        return response

    def _retry_after(self) -> float | None:
        last = self._last_response()
        header = last.headers.get("x-ratelimit-reset") if last is not None else None
        if header is None:
            return None
        try:
            value = float(header)
        except ValueError:
            return None
        # Seconds to wait, or (if it looks like one) a Unix time at which the window resets.
        return max(0.0, value - time.time()) if value > 1e9 else value

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.backoff_cap_s))
        return delay

    # --- Source ---
    def read_schema(self) -> DatabaseSchema:
        details = self._call(
            f"branch {self._database}:{self._branch}: reading the schema",
            lambda c: c.branch().get_details(self._database, self._branch),
        )
        raw = details.get("schema")
        if not isinstance(raw, dict):
            raise SourceError(f"branch {self._database}:{self._branch}: the branch details carry no schema")
        return schema_from_xata(raw)

    def read_table(self, table: TableSchema) -> Iterator[list[Record]]:
        normalise = _RecordNormaliser(table)
        settings = self.settings
        pages = PageChecker(table.name, settings.page_size, settings.max_records_per_table)
        cursor: str | None = None
        while True:
            payload: dict[str, Any] = {"page": {"size": settings.page_size}}
            if cursor is not None:
                payload["page"]["after"] = cursor
            what = f"table {table.name!r} page {pages.page_no}"

            def query(client: XataClient, payload: dict[str, Any] = payload) -> Any:
                return client.data().query(table.name, payload, self._database, self._branch)

            page = pages.check(self._call(what, query))
            try:
                yield [normalise(r) for r in page.records]
            except (KeyError, TypeError, ValueError) as exc:
                raise SourceError(f"{what}: unexpected record shape: {exc}") from exc
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    next_cursor: str | None  # None: this was the table's last page


class PageChecker:
    """Checks the pages of one table's query, in order, against Xata's documented shape and against
    the pages before them. Anything else fails the table (SourceError naming table and page), because
    a page that ends a table early would read as deletions:
    - the body is a JSON object with a `records` list of objects that each carry an id, and
      `meta.page` holds a string `cursor` and a bool `more`;
    - a page holds at most the page size asked for, and, once a page said `more`, at least one record
      (Xata computes `more` by looking ahead, so an empty page after it is a broken answer, not the end);
    - no cursor comes back twice and no record id appears on two pages (a loop, or a shifting read);
    - at most `max_records // page_size + 1` pages are read.
    """

    def __init__(self, table: str, page_size: int, max_records: int) -> None:
        self.table = table
        self.page_size = page_size
        self.max_pages = max_records // page_size + 1
        self.page_no = 1
        self._more_promised = False
        self._cursors: set[str] = set()
        self._ids: set[int] = set()  # 64-bit hashes of the ids seen: memory per record stays small

    def _fail(self, problem: str) -> SourceError:
        return SourceError(f"table {self.table!r} page {self.page_no}: {problem}; the export stops here")

    def check(self, body: Any) -> Page:
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise self._fail("Xata's answer has no `records` list (not the documented query response)")
        meta = body.get("meta")
        page = meta.get("page") if isinstance(meta, dict) else None
        more = page.get("more") if isinstance(page, dict) else None
        cursor = page.get("cursor") if isinstance(page, dict) else None
        if not isinstance(more, bool) or not isinstance(cursor, str):
            raise self._fail("Xata's answer has no `meta.page` with a string `cursor` and a bool `more`")
        if len(records) > self.page_size:
            raise self._fail(f"{len(records)} records on a page of {self.page_size} asked for")
        if not records and (more or self._more_promised):
            raise self._fail("an empty page where more records were announced")
        ids = [_record_id(r) for r in records]
        if None in ids:
            raise self._fail(f"record {ids.index(None) + 1} of the page is not an object with an id")
        hashes = {hash(i) for i in ids}
        if len(hashes) < len(ids) or not self._ids.isdisjoint(hashes):
            repeated = next(i for n, i in enumerate(ids) if hash(i) in self._ids or i in ids[:n])
            raise self._fail(f"record {repeated!r} was already read (the cursor does not advance)")
        if more and cursor in self._cursors:
            raise self._fail("Xata sent a cursor it had already sent (the pages would repeat forever)")
        if more and self.page_no >= self.max_pages:
            raise self._fail(f"more than {self.max_pages} pages; a table this size is not plausible")
        self._ids |= hashes
        self._cursors.add(cursor)
        self._more_promised = more
        self.page_no += 1
        return Page(records, cursor if more else None)


def _record_id(raw: Any) -> str | None:
    """A record's id: `id` (classic) or `xata_id` (Postgres-enabled branches); None if it has none."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("xata_id", raw.get("id"))
    return value if isinstance(value, str) and value else None


def _json_object(what: str, response: Any) -> dict[str, Any]:
    """The response body as a JSON object, parsed here: the SDK's ApiResponse silently reads a body
    that is not JSON (an HTML error page from a proxy, a cut-off answer) as an empty dict."""
    raw: requests.Response = response.response
    try:
        body = json.loads(raw.content)
    except ValueError:
        kind = raw.headers.get("content-type") or "no content type"
        raise SourceError(
            f"{what}: Xata answered {raw.status_code} with a body that is not JSON ({kind})"
        ) from None
    if not isinstance(body, dict):
        raise SourceError(f"{what}: Xata answered {raw.status_code} with JSON that is not an object")
    return body


class _RecordNormaliser:
    """Xata record (classic or Postgres-enabled shape) -> snapshot record."""

    def __init__(self, table: TableSchema) -> None:
        self.columns = table.columns

    def __call__(self, raw: dict[str, Any]) -> Record:
        if "xata_id" in raw:
            record: Record = {snap: raw.get(pg) for pg, snap in POSTGRES_META_NAMES.items()}
        else:
            meta = raw.get("xata") or {}
            record = {
                ID_COLUMN: raw["id"],
                "xata_version": meta.get("version"),
                "xata_createdAt": meta.get("createdAt"),
                "xata_updatedAt": meta.get("updatedAt"),
            }
        for column in self.columns:
            value = raw.get(column.name)
            if value is not None:
                if column.type == "link":
                    value = value["id"] if isinstance(value, dict) else value
                elif column.type == "json" and not isinstance(value, str):
                    value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                elif column.type == "file":
                    value = _without_expiring(value)
                elif column.type == "file[]":
                    value = [_without_expiring(item) for item in value]
            record[column.name] = value
        return record


def _without_expiring(file: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in file.items() if k not in EXPIRING_FILE_FIELDS}

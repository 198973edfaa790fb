"""Sink stage: the two ways into the Convex mirror, and batched writes to it.

`ConvexTransport` runs one of the mirror's operations. Two transports:
- `ConvexHttp`: Convex's HTTP API with a deploy key (`CONVEX_URL`, `CONVEX_DEPLOY_KEY`), the CLI's way;
- `ConvexSinkAction`: the signed sink HTTP action (`CONVEX_SITE_URL`, `XATA2CONVEX_SINK_SECRET`), the
  Lambdas' way: the secret can only run these operations, where a deploy key could deploy code and read
  every table.
Both answer the internal function's value, and share the request loop.

Plain HTTP rather than the `convex` package's WebSocket client, which retries forever (a Lambda
cannot wait forever). Every call has a timeout; transport errors, 429 and 5xx are retried a bounded
number of times with jittered backoff. That is safe because every mirror mutation is idempotent
(upsert and delete by `xata_id`), and so is `recordRun` (it sets fields). Batches stay well inside
Convex's per-transaction limits (16,000 writes, 16 MiB written, 4,096 index ranges): at most
`max_documents` documents (each costs one index lookup and at most one write) and `max_bytes` of JSON.
The 16 MiB read limit depends on the documents already in Convex, which only Convex sees: a mirror
mutation stops at its own read budget and answers how many items it `processed`, and the writer sends
the rest as another batch.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import requests

from . import convex_json
from .errors import could_not_connect, transport_problem
from .model import XataToConvexError
from .signing import signed_headers

log = logging.getLogger(__name__)


class ConvexError(XataToConvexError):
    """Convex refused a call (function error, bad key or signature, bad arguments); not retried."""


class ConvexUnavailable(XataToConvexError):
    """Convex could not be reached or kept failing after the retries."""


SinkOp = Literal["upsertBatch", "deleteBatch", "listPage", "schemaInfo", "recordRun", "resolveLinks"]

# Each operation's internal function, as the HTTP API names it.
OPERATIONS: Final[Mapping[SinkOp, tuple[Literal["query", "mutation"], str]]] = {
    "upsertBatch": ("mutation", "mirror:upsertBatch"),
    "deleteBatch": ("mutation", "mirror:deleteBatch"),
    "listPage": ("query", "mirror:listPage"),
    "schemaInfo": ("query", "mirror:schemaInfo"),
    "recordRun": ("mutation", "syncRuns:record"),
    "resolveLinks": ("mutation", "mirror:resolveLinks"),
}
SINK_PATH: Final = "/xata2convex/sink"


class ConvexTransport(Protocol):
    """A way into the mirror: runs one operation and answers the internal function's value.

    Raises ConvexError when Convex refuses the call and ConvexUnavailable when it cannot be reached.
    """

    url: str

    def call(self, op: SinkOp, args: dict[str, Any]) -> Any: ...


class _RetryingPoster:
    """POSTs JSON with a timeout and bounded, jittered retries of transport errors, 429 and 5xx."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_attempts: int = 5,
        max_connect_attempts: int = 3,
        backoff_base_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = (connect_timeout_s, timeout_s)
        self.max_attempts = max_attempts
        self.max_connect_attempts = max_connect_attempts
        self.backoff_base_s = backoff_base_s
        self._sleep = sleep
        self.session = requests.Session()

    def __repr__(self) -> str:  # never show the key or secret
        return f"{type(self).__name__}({self.url!r})"

    def _post(self, what: str, endpoint: str, body: bytes, headers: Callable[[], dict[str, str]]) -> Any:
        """The answer's value; `headers` is called for every attempt (a signature is stamped afresh)."""
        problem = ""
        failure: Exception | None = None
        attempt, limit = 0, self.max_attempts
        while attempt < limit:
            attempt += 1
            try:
                response = self.session.post(endpoint, data=body, headers=headers(), timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem, failure = transport_problem(exc), exc
                if could_not_connect(exc):
                    limit = min(limit, self.max_connect_attempts)
            else:
                # 560 is hosted Convex's answer for a function error: not transient.
                if response.status_code == 429 or (
                    response.status_code >= 500 and response.status_code != 560
                ):
                    problem, failure = (
                        f"HTTP {response.status_code} from {response.url}{_reason(response)}",
                        None,
                    )
                else:
                    return self._result(what, response)
            if attempt < limit:
                delay = random.uniform(0, self.backoff_base_s * 2 ** (attempt - 1))
                log.info("Convex %s: %s; retry %d of %d in %.1f s", what, problem, attempt, limit - 1, delay)
                self._sleep(delay)
        raise ConvexUnavailable(f"Convex {what}: gave up after {attempt} attempts ({problem})") from failure

    @staticmethod
    def _result(what: str, response: requests.Response) -> Any:
        try:
            payload = convex_json.loads(response.content)  # int64 arrives as {"$integer": ...}
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise ConvexError(
                f"Convex {what}: HTTP {response.status_code}, unexpected body {response.text[:200]!r}"
            )
        if response.status_code >= 400 and payload.get("status") != "error":
            message = payload.get("message") or response.text[:300]
            raise ConvexError(
                f"Convex {what}: HTTP {response.status_code} {payload.get('code', '')}: {message}"
            )
        if payload.get("status") == "success":
            return payload.get("value")
        raise ConvexError(f"Convex {what}: {payload.get('errorMessage') or payload}")


def _reason(response: requests.Response) -> str:
    """`: <message>` from a JSON error answer, so a gave-up error still says why."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    message = payload.get("message") if isinstance(payload, dict) else None
    return f": {str(message)[:300]}" if message else ""


class ConvexHttp(_RetryingPoster):
    """Convex's HTTP API with a deploy key: any function, internal ones included."""

    def __init__(self, url: str, deploy_key: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._headers = {"Authorization": f"Convex {deploy_key}", "Content-Type": "application/json"}

    def call(self, op: SinkOp, args: dict[str, Any]) -> Any:
        kind, path = OPERATIONS[op]
        return self._call(kind, path, args)

    def query(self, path: str, args: dict[str, Any]) -> Any:
        return self._call("query", path, args)

    def mutation(self, path: str, args: dict[str, Any]) -> Any:
        return self._call("mutation", path, args)

    def action(self, path: str, args: dict[str, Any]) -> Any:
        return self._call("action", path, args)

    def _call(self, kind: str, path: str, args: dict[str, Any]) -> Any:
        # Convex's own encoding both ways, so that int64 values (`convex_json.Int64`) arrive exactly.
        body = convex_json.dumps({"path": path, "args": args, "format": "convex_encoded_json"}).encode()
        return self._post(f"{kind} {path}", f"{self.url}/api/{kind}", body, lambda: self._headers)


class ConvexSinkAction(_RetryingPoster):
    """The sink HTTP action `POST {CONVEX_SITE_URL}/xata2convex/sink`, each attempt signed afresh."""

    def __init__(self, site_url: str, secret: str, **options: Any) -> None:
        super().__init__(site_url, **options)
        self._secret = secret

    def call(self, op: SinkOp, args: dict[str, Any]) -> Any:
        body = convex_json.dumps({"op": op, "args": args}).encode()  # the action decodes Convex JSON
        return self._post(
            f"sink {op}",
            f"{self.url}{SINK_PATH}",
            body,
            lambda: {"Content-Type": "application/json", **signed_headers(self._secret, body)},
        )


@dataclass
class PushStats:
    batches: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    missing: int = 0
    duplicates_removed: int = 0  # extra documents with one `xata_id`, left by another loader
    unresolved: int = 0  # documents written with a link whose target is not in Convex (yet)
    unlinked: int = 0  # documents that lost a link's `f_id` because its target was deleted


class BatchLimitReached(XataToConvexError):
    """Raised by the fault hook: the push stops after a set number of batches (tests, drills)."""


class MirrorWriter:
    """Pushes documents and deletes through `upsertBatch` / `deleteBatch` in bounded batches."""

    def __init__(
        self,
        convex: ConvexTransport,
        *,
        max_documents: int = 500,
        max_bytes: int = 4 * 1024 * 1024,
        max_read_bytes: int = 8 * 1024 * 1024,
        max_lookups: int = 2_000,
        stop_after_batches: int | None = None,
        before_write: Callable[[], None] = lambda: None,
    ) -> None:
        self.convex = convex
        self.before_write = before_write  # the run lock's checkpoint: raises once the lease is lost
        self.max_documents = max_documents
        self.max_bytes = max_bytes
        self.max_read_bytes = max_read_bytes
        self.max_lookups = max_lookups  # index reads a batch may cost, inside Convex's 4,096
        self.stop_after_batches = stop_after_batches
        self.total_batches = 0
        self.writes = True
        # Convex tables this writer inserted into, and those it wrote unresolved links to: what the
        # end of a run must resolve (see links.py).
        self.inserted_tables: set[str] = set()
        self.unresolved_tables: set[str] = set()

    def _batches(self, items: Iterable[Any], cost: Callable[[Any], int] | None = None) -> Iterator[list[Any]]:
        """Batches of at most max_documents items, max_bytes of JSON and max_lookups of `cost`."""
        batch: list[Any] = []
        size = lookups = 0
        for item in items:
            item_size = len(convex_json.dumps(item, ascii_only=False).encode())
            item_lookups = 1 if cost is None else cost(item)
            if batch and (
                len(batch) >= self.max_documents
                or size + item_size > self.max_bytes
                or lookups + item_lookups > self.max_lookups
            ):
                yield batch
                batch, size, lookups = [], 0, 0
            batch.append(item)
            size += item_size
            lookups += item_lookups
        if batch:
            yield batch

    def _count_batch(self) -> None:
        if self.stop_after_batches is not None and self.total_batches >= self.stop_after_batches:
            raise BatchLimitReached(f"push stopped after {self.total_batches} batches (fault hook)")
        self.total_batches += 1

    def _send(self, table: str, op: SinkOp, key: str, batch: list[Any]) -> Iterator[dict[str, Any]]:
        """Run `op` on `batch`, then on what it left unprocessed, until all is done."""
        while batch:
            self._count_batch()
            self.before_write()
            result: dict[str, Any] = self.convex.call(op, {"table": table, key: batch})
            # a mirror deployed before `processed` existed always did the whole batch
            processed = int(result.get("processed", len(batch)))
            # 0 only while a deleted target's referrers are being unlinked, a call's worth at a time
            progressed = processed > 0 or int(result.get("unlinked", 0)) > 0
            if not (progressed and 0 <= processed <= len(batch)):
                raise ConvexError(
                    f"Convex {op} on table '{table}': processed {processed} of {len(batch)} items"
                )
            yield result
            batch = batch[processed:]

    def upsert(
        self,
        table: str,
        documents: Iterable[dict[str, Any]],
        stats: PushStats,
        cost: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        """Upsert `documents`; `cost` is a document's index reads in Convex (default 1)."""
        for batch in self._batches(documents, cost):
            for result in self._send(table, "upsertBatch", "documents", batch):
                stats.batches += 1
                stats.inserted += int(result["inserted"])
                stats.updated += int(result["updated"])
                stats.unchanged += int(result["unchanged"])
                stats.duplicates_removed += int(result.get("duplicatesRemoved", 0))
                stats.unresolved += int(result.get("unresolved", 0))
                if int(result["inserted"]):
                    self.inserted_tables.add(table)
                if int(result.get("unresolved", 0)):
                    self.unresolved_tables.add(table)

    def delete(self, table: str, xata_ids: Iterable[str], stats: PushStats) -> None:
        for batch in self._batches(xata_ids):
            for result in self._send(table, "deleteBatch", "xataIds", batch):
                stats.batches += 1
                stats.deleted += int(result["deleted"])
                stats.missing += int(result["missing"])
                stats.duplicates_removed += int(result.get("duplicatesRemoved", 0))
                stats.unlinked += int(result.get("unlinked", 0))

    def list_documents(self, table: str, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every mirrored document of a table, a page at a time (`mirror:listPage`).

        A page also ends after `max_read_bytes` of documents, inside Convex's 16 MiB read limit.
        """
        cursor: str | None = None
        while True:
            options = {"numItems": page_size, "cursor": cursor, "maximumBytesRead": self.max_read_bytes}
            page = self.convex.call("listPage", {"table": table, "paginationOpts": options})
            yield from page["page"]
            if page["isDone"]:
                return
            cursor = page["continueCursor"]

    def has_documents(self, table: str) -> bool:
        """Whether the mirror table holds any document: one page of one item."""
        options = {"numItems": 1, "cursor": None, "maximumBytesRead": self.max_read_bytes}
        page = self.convex.call("listPage", {"table": table, "paginationOpts": options})
        return bool(page["page"])

    def schema_info(self) -> dict[str, Any] | None:
        """What the deployed mirror was generated from (`mirror:schemaInfo`; see drift.py)."""
        info: dict[str, Any] = self.convex.call("schemaInfo", {})
        return info

    def resolve_links(self, table: str, field: str, start: dict[str, Any] | None) -> dict[str, Any]:
        """One `resolveLinks` call: links of `table.field` whose target arrived (see links.py)."""
        self.before_write()
        result: dict[str, Any] = self.convex.call(
            "resolveLinks", {"table": table, "field": field, "from": start}
        )
        return result


class MirrorSink(Protocol):
    """Where the sync writes the mirror: `MirrorWriter`, or `DryRunSink` which only reads."""

    writes: bool
    inserted_tables: set[str]
    unresolved_tables: set[str]

    def upsert(
        self,
        table: str,
        documents: Iterable[dict[str, Any]],
        stats: PushStats,
        cost: Callable[[dict[str, Any]], int] | None = None,
    ) -> None: ...

    def resolve_links(self, table: str, field: str, start: dict[str, Any] | None) -> dict[str, Any]: ...

    def delete(self, table: str, xata_ids: Iterable[str], stats: PushStats) -> None: ...

    def list_documents(self, table: str) -> Iterator[dict[str, Any]]: ...

    def has_documents(self, table: str) -> bool: ...

    def schema_info(self) -> dict[str, Any] | None: ...


class DryRunSink:
    """A dry run's sink: counts what would be written, reads from Convex when it can, writes nothing.

    Without a reader (Convex not configured) it reads as an empty deployment with no schema to compare.
    """

    writes = False

    def __init__(self, reader: MirrorWriter | None) -> None:
        self.reader = reader
        self.inserted_tables: set[str] = set()  # nothing is written, so no link is left to resolve
        self.unresolved_tables: set[str] = set()

    def upsert(
        self,
        table: str,
        documents: Iterable[dict[str, Any]],
        stats: PushStats,
        cost: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        stats.inserted += sum(1 for _ in documents)  # as if each were new: nothing is compared

    def resolve_links(self, table: str, field: str, start: dict[str, Any] | None) -> dict[str, Any]:
        return {"linked": 0, "scanned": 0, "next": None}

    def delete(self, table: str, xata_ids: Iterable[str], stats: PushStats) -> None:
        stats.deleted += sum(1 for _ in xata_ids)

    def list_documents(self, table: str) -> Iterator[dict[str, Any]]:
        return self.reader.list_documents(table) if self.reader else iter(())

    def has_documents(self, table: str) -> bool:
        return self.reader.has_documents(table) if self.reader else False

    def schema_info(self) -> dict[str, Any] | None:
        return self.reader.schema_info() if self.reader else None

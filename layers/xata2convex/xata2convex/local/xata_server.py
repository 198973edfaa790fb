"""A local stand-in for Xata's classic data-plane REST API: one database branch loaded from a seed folder.

A seed is `schema.json` (`{"tables": [...]}` as in the branch details) plus `<table>.jsonl`, the records
exactly as the query API returns them. A table whose columns include `xata_id` is Postgres-enabled: its
records carry `xata_id`, `xata_version`, `xata_createdat`, `xata_updatedat` at top level; other tables
use the classic `{"id", ..., "xata": {"version", "createdAt", "updatedAt"}}` shape.

Endpoints (paths as the xata SDK 1.3.5 builds them; every one needs `Authorization: Bearer <key>`):
`GET /dbs/{db}`, `GET /db/{db}:{branch}`, `GET .../tables/{t}/schema`, `GET .../tables/{t}/columns`,
`POST .../tables/{t}/query`, `POST .../tables/{t}/summarize`, `POST .../tables/{t}/data` and
`GET|PUT|POST|PATCH|DELETE .../tables/{t}/data/{id}`.

Where Xata's documentation is silent, the simplest behaviour was chosen:
- Query results are ordered by record id (code-point order) unless `sort` is given. A cursor encodes
  the last id (or sort key) returned, not an offset, so pages stay stable while records are inserted or
  deleted between them. `meta.page.size` is the number of records on the returned page; an empty page
  still carries a cursor (the position it was asked for).
- Only `page.size` and `page.after` are supported; `before`, `start`, `end`, `first`, `last`, `offset`,
  random sort and `sort` in summarize answer 400 naming the feature.
- Writing a link to a record that does not exist is 400; deleting a record leaves links to it in place.
- Failure knobs count every request from 1: request n answers 429 when n is a multiple of
  `fail_429_every`, else 503 when it is a multiple of `fail_5xx_every`. A 429 carries
  `x-ratelimit-reset`: seconds (decimal) until the window resets, `ratelimit_reset_s`.
- Error bodies are `{"id", "message"}` with a random id.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hmac
import json
import logging
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import click

log = logging.getLogger(__name__)

Record = dict[str, Any]
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
PG_META = ("xata_id", "xata_version", "xata_createdat", "xata_updatedat")
_CLASSIC_META = ("id", "xata")
_INT64 = (-(2**63), 2**63 - 1)
_UNSUPPORTED_PAGE_KEYS = ("before", "start", "end", "first", "last", "offset")
_B32HEX = "0123456789abcdefghijklmnopqrstuv"


def xid(timestamp: int, middle: bytes, counter: int) -> str:
    """A Xata-style record id `rec_` + 20 base32hex characters (xid layout: time, 5 bytes, counter).

    Ids made later with the same `middle` sort after earlier ones, as Xata's do.
    """
    raw = timestamp.to_bytes(4, "big") + middle[:5].ljust(5, b"\0") + (counter & 0xFFFFFF).to_bytes(3, "big")
    bits = int.from_bytes(raw, "big") << 4  # 96 bits padded to 100 = 20 characters of 5 bits
    return "rec_" + "".join(_B32HEX[(bits >> (5 * i)) & 31] for i in reversed(range(20)))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # without the query string
    status: int


class _Table:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.name: str = schema["name"]
        self.columns: dict[str, dict[str, Any]] = {c["name"]: c for c in schema.get("columns", [])}
        self.postgres = "xata_id" in self.columns
        self.records: dict[str, Record] = {}
        self.ids: list[str] = []  # sorted; pagination bisects it

    def record_id(self, record: Record) -> str:
        return str(record["xata_id" if self.postgres else "id"])

    def user_columns(self) -> list[str]:
        return [name for name in self.columns if name not in PG_META]

    def store(self, record: Record) -> None:
        # Stored dicts are never mutated afterwards, so readers may serialise them outside the lock.
        rid = self.record_id(record)
        if rid not in self.records:
            bisect.insort(self.ids, rid)
        self.records[rid] = record

    def remove(self, rid: str) -> Record:
        record = self.records.pop(rid)
        del self.ids[bisect.bisect_left(self.ids, rid)]
        return record

    def meta_view(self, record: Record) -> Record:
        if self.postgres:
            return {k: record[k] for k in PG_META if k in record}
        return {"id": record["id"], "xata": record["xata"]}

    def version(self, record: Record) -> int:
        return int(record["xata_version"] if self.postgres else record["xata"]["version"])

    def created_at(self, record: Record) -> str:
        return str(record["xata_createdat"] if self.postgres else record["xata"]["createdAt"])

    def lookup(self, record: Record, name: str) -> Any:
        """The value a filter or sort sees for `name` (links compare by the linked id)."""
        if not self.postgres and name == "id":
            return record["id"]
        value: Any = record
        for part in name.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        if self.columns.get(name, {}).get("type") == "link" and isinstance(value, dict):
            return value.get("id")
        return value


def load_seed(seed_dir: Path) -> tuple[dict[str, Any], dict[str, _Table]]:
    """Read `schema.json` and every `<table>.jsonl`; a missing .jsonl is an empty table."""
    schema = json.loads((seed_dir / "schema.json").read_text(encoding="utf-8"))
    tables: dict[str, _Table] = {}
    for table_schema in schema["tables"]:
        table = _Table(table_schema)
        path = seed_dir / f"{table.name}.jsonl"
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    key = "xata_id" if table.postgres else "id"
                    if not isinstance(record, dict) or not isinstance(record.get(key), str):
                        raise ValueError(f"{path}:{number}: a record of table {table.name!r} needs {key!r}")
                    table.store(record)
        tables[table.name] = table
    return schema, tables


# ---------------------------------------------------------------- filters, sorting, projection


def _matches(table: _Table, record: Record, expression: Any) -> bool:
    if isinstance(expression, list):
        return all(_matches(table, record, e) for e in expression)
    if not isinstance(expression, dict):
        raise ApiError(400, f"invalid filter expression: {json.dumps(expression)}")
    for key, cond in expression.items():
        if key in ("$all", "$any", "$none", "$not"):
            parts = cond if isinstance(cond, list) else [{k: v} for k, v in cond.items()]
            results = [_matches(table, record, p) for p in parts]
            ok = {"$all": all(results), "$any": any(results), "$none": not any(results)}.get(
                key, not all(results)
            )
        elif key in ("$exists", "$existsNot"):
            ok = (table.lookup(record, str(cond)) is not None) == (key == "$exists")
        elif key.startswith("$"):
            raise ApiError(400, f"filter operator {key} is not supported by the local Xata stand-in")
        else:
            ok = _predicate(table.lookup(record, key), cond)
        if not ok:
            return False
    return True


def _predicate(value: Any, cond: Any) -> bool:
    if isinstance(cond, list):
        return any(_predicate(value, c) for c in cond)
    if not isinstance(cond, dict):
        return bool(value == cond)
    for op, arg in cond.items():
        try:
            ok = _operator(op, value, arg)
        except TypeError as exc:
            raise ApiError(400, f"filter {op} cannot compare {value!r} with {arg!r}") from exc
        if not ok:
            return False
    return True


def _operator(op: str, value: Any, arg: Any) -> bool:
    args = arg if isinstance(arg, list) else [arg]
    if op in ("$any", "$all", "$none", "$not"):
        results = [_predicate(value, a) for a in args]
        return {"$any": any(results), "$all": all(results), "$none": not any(results)}.get(
            op, not all(results)
        )
    if op in ("$is", "$isNot"):
        return (value in args) == (op == "$is")
    if op in ("$gt", "$ge", "$lt", "$le"):
        if value is None:
            return False
        return bool({"$gt": value > arg, "$ge": value >= arg, "$lt": value < arg, "$le": value <= arg}[op])
    if op in ("$contains", "$startsWith", "$endsWith"):
        if not isinstance(value, str):
            return False
        return {
            "$contains": arg in value,
            "$startsWith": value.startswith(arg),
            "$endsWith": value.endswith(arg),
        }[op]
    if op in ("$includes", "$includesAny", "$includesAll", "$includesNone"):
        items = value if isinstance(value, list) else []
        hits = [any(_predicate(item, a) for item in items) for a in args]
        return {"$includesAll": all(hits), "$includesNone": not any(hits)}.get(op, any(hits))
    raise ApiError(400, f"filter operator {op} is not supported by the local Xata stand-in")


class _Desc:
    """Reverses the order of a sort component."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.value == other.value)


def _sort_spec(sort: Any) -> list[tuple[str, bool]]:
    """`sort` as Xata takes it (a column, `{column: order}` or a list of either) -> [(column, descending)]."""
    spec: list[tuple[str, bool]] = []
    for item in sort if isinstance(sort, list) else [sort]:
        pairs = (
            [(item, "asc")] if isinstance(item, str) else list(item.items()) if isinstance(item, dict) else []
        )
        if not pairs:
            raise ApiError(400, f"invalid sort expression: {json.dumps(sort)}")
        for column, order in pairs:
            if order not in ("asc", "desc"):
                raise ApiError(400, f"sort order {order!r} is not supported by the local Xata stand-in")
            spec.append((column, order == "desc"))
    return spec


def _comparable(raw: list[Any], spec: list[tuple[str, bool]]) -> tuple[Any, ...]:
    """Sort key from raw values (the sort columns, then the id): nulls sort last ascending."""
    parts: list[Any] = []
    for value, (_, descending) in zip(raw, spec, strict=False):
        part = (1,) if value is None else (0, value)
        parts.append(_Desc(part) if descending else part)
    return (*parts, raw[-1])


def _projector(table: _Table, columns: Any) -> Callable[[Record], Record]:
    """Select columns as the query API does: `*`, names, and `column.sub` for parts of objects."""
    if columns is None:
        return lambda record: record
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ApiError(400, "columns must be a list of column names")
    star = False
    names: set[str] = set()
    subs: dict[str, set[str]] = {}
    for column in columns:
        base, _, sub = column.partition(".")
        if column == "*":
            star = True
        elif base in _CLASSIC_META or column in PG_META:
            continue  # the record metadata is always returned
        elif base not in table.columns:
            raise ApiError(400, f"column [{column}] not found in table [{table.name}]")
        elif sub and sub != "*":
            subs.setdefault(base, set()).add(sub)
        else:
            names.add(base)

    def project(record: Record) -> Record:
        out: Record = {}
        for key, value in record.items():
            if key in _CLASSIC_META or key in PG_META or ((star or key in names) and key not in subs):
                out[key] = value
            elif key in subs:
                out[key] = _sub_select(value, subs[key], keep_all=star or key in names)
        return out

    return project


def _sub_select(value: Any, subs: set[str], *, keep_all: bool) -> Any:
    if isinstance(value, list):
        return [_sub_select(item, subs | {"id"}, keep_all=keep_all) for item in value]
    if not isinstance(value, dict):
        return value
    out = dict(value) if keep_all else {k: v for k, v in value.items() if k in subs}
    if "signedUrl" in subs and "mediaType" in value:
        # Signed URLs exist only when asked for and expire; this one points nowhere real.
        expires = int(time.time()) + int(value.get("signedUrlTimeout", 60))
        out["signedUrl"] = f"https://local.storage.xata.sh/signed/{secrets.token_hex(8)}?expires={expires}"
    return out


def _encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: Any, table: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"invalid cursor for table [{table}]") from exc
    if not isinstance(payload, dict) or payload.get("t") != table:
        raise ApiError(400, f"invalid cursor for table [{table}]")
    return payload


def _page_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise ApiError(400, f"page.size must be an integer between 1 and {MAX_PAGE_SIZE}, got {value!r}")
    return value


# ---------------------------------------------------------------- the branch: data and operations


class _Branch:
    def __init__(self, seed_dir: Path, database: str, branch: str) -> None:
        self.database = database
        self.branch = branch
        self.schema, self.tables = load_seed(seed_dir)
        self.lock = threading.RLock()
        self._id_middle = secrets.token_bytes(5)
        self._id_counter = 0

    def table(self, name: str) -> _Table:
        try:
            return self.tables[name]
        except KeyError:
            raise ApiError(404, f"table [{self.database}:{self.branch}/{name}] not found") from None

    def details(self) -> Record:
        return {
            "databaseName": self.database,
            "branchName": self.branch,
            "createdAt": "2024-01-01T00:00:00.000000Z",
            "id": f"bb_local_{self.database}_{self.branch}",
            "version": 1,
            "lastMigrationID": "",
            "metadata": {},
            "schema": self.schema,
        }

    def query(self, table: _Table, body: Record) -> Record:
        page = body.get("page") or {}
        if not isinstance(page, dict):
            raise ApiError(400, "page must be an object")
        for key in _UNSUPPORTED_PAGE_KEYS:
            if key in page:
                raise ApiError(400, f"page.{key} is not supported by the local Xata stand-in")
        after = page.get("after")
        if after is not None:
            if body.get("filter") is not None or body.get("sort") is not None:
                raise ApiError(
                    400, "a cursor cannot be combined with filter or sort: they are read from the cursor"
                )
            cursor = _decode_cursor(after, table.name)
            flt, sort, position = cursor.get("f"), cursor.get("s"), cursor.get("k")
            columns = body.get("columns", cursor.get("c"))
            size = _page_size(page.get("size", cursor.get("n", DEFAULT_PAGE_SIZE)))
        else:
            flt, sort, position = body.get("filter"), body.get("sort"), None
            columns = body.get("columns")
            size = _page_size(page.get("size", DEFAULT_PAGE_SIZE))
        project = _projector(table, columns)
        records, last, more = self._page(table, flt, sort, position, size)
        cursor_out = _encode_cursor(
            {"t": table.name, "k": last, "n": size, "c": columns, "f": flt, "s": sort}
        )
        return {
            "records": [project(r) for r in records],
            "meta": {"page": {"cursor": cursor_out, "more": more, "size": len(records)}},
        }

    def _page(
        self, table: _Table, flt: Any, sort: Any, position: Any, size: int
    ) -> tuple[list[Record], Any, bool]:
        """Up to `size` records after `position`, the new position, and whether more follow."""
        with self.lock:
            if not sort:
                start = bisect.bisect_right(table.ids, position) if position is not None else 0
                out: list[Record] = []
                for rid in table.ids[start:] if flt is not None else table.ids[start : start + size + 1]:
                    record = table.records[rid]
                    if flt is not None and not _matches(table, record, flt):
                        continue
                    if len(out) == size:
                        return out, table.record_id(out[-1]), True
                    out.append(record)
                return out, table.record_id(out[-1]) if out else position, False
            spec = _sort_spec(sort)
            keyed = []
            for record in table.records.values():
                if flt is None or _matches(table, record, flt):
                    raw = [table.lookup(record, column) for column, _ in spec] + [table.record_id(record)]
                    keyed.append((_comparable(raw, spec), raw, record))
            try:
                keyed.sort(key=itemgetter(0))
                start = 0
                if position is not None:
                    start = bisect.bisect_right(keyed, _comparable(position, spec), key=itemgetter(0))
            except TypeError as exc:
                raise ApiError(400, f"cannot sort table [{table.name}] by {json.dumps(sort)}") from exc
            chosen = keyed[start : start + size]
            last = chosen[-1][1] if chosen else position
            return [r for _, _, r in chosen], last, start + size < len(keyed)

    def summarize(self, table: _Table, body: Record) -> Record:
        if body.get("sort") is not None:
            raise ApiError(400, "sort in summarize is not supported by the local Xata stand-in")
        group_by = body.get("columns") or []
        summaries = body.get("summaries") or {}
        if not isinstance(group_by, list) or not isinstance(summaries, dict):
            raise ApiError(400, "columns must be a list and summaries an object")
        for name, expression in summaries.items():
            if not isinstance(expression, dict) or len(expression) != 1:
                raise ApiError(400, f"summary [{name}] must have exactly one operation")
            ((op, column),) = expression.items()
            if op not in ("count", "min", "max", "sum", "average"):
                raise ApiError(400, f"summary operation {op} is not supported by the local Xata stand-in")
            if column != "*" and column not in table.columns:
                raise ApiError(400, f"column [{column}] not found in table [{table.name}]")
        size = _page_size((body.get("page") or {}).get("size", DEFAULT_PAGE_SIZE))
        flt = body.get("filter")
        groups: dict[str, tuple[list[Any], list[Record]]] = {}
        with self.lock:
            for rid in table.ids:
                record = table.records[rid]
                if flt is None or _matches(table, record, flt):
                    values = [table.lookup(record, c) for c in group_by]
                    groups.setdefault(json.dumps(values, sort_keys=True), (values, []))[1].append(record)
        if not group_by and not groups:
            groups[""] = ([], [])
        rows = []
        for values, records in list(groups.values())[:size]:
            row: Record = dict(zip(group_by, values, strict=True))
            for name, expression in summaries.items():
                ((op, column),) = expression.items()
                row[name] = _summary(table, records, op, column)
            rows.append(row)
        return {"summaries": rows}

    # ------------------------------------------------------------ writes

    def new_id(self) -> str:
        with self.lock:
            self._id_counter += 1
            return xid(int(time.time()), self._id_middle, self._id_counter)

    def write(
        self, table: _Table, rid: str | None, body: Any, mode: str, query: dict[str, str]
    ) -> tuple[int, Record]:
        """Insert (`insert`), insert-or-replace (`put`), insert-or-merge (`upsert`) or merge (`update`)."""
        if not isinstance(body, dict):
            raise ApiError(400, f"table [{table.name}]: the record must be a JSON object")
        body = dict(body)
        id_key = "xata_id" if table.postgres else "id"
        if mode == "insert" and id_key in body:
            rid = body.pop(id_key)
            if not isinstance(rid, str) or not rid:
                raise ApiError(400, f"table [{table.name}]: {id_key} must be a non-empty string")
        body.pop(id_key, None)
        with self.lock:
            rid = rid or self.new_id()
            fields = {name: self._coerce(table, rid, name, value) for name, value in body.items()}
            existing = table.records.get(rid)
            if existing is None and mode == "update":
                raise ApiError(404, f"record [{rid}] not found in table [{table.name}]")
            # The SDK sends createOnly=True (a Python repr), the docs createOnly=true.
            if existing is not None and (mode == "insert" or query.get("createOnly", "").lower() == "true"):
                raise ApiError(422, f"record [{rid}] already exists in table [{table.name}]")
            if "ifVersion" in query and (
                existing is None or str(table.version(existing)) != query["ifVersion"]
            ):
                raise ApiError(
                    422, f"record [{rid}] in table [{table.name}] is not at version {query['ifVersion']}"
                )
            now = _now()
            if existing is None:
                version, created, values = 0, now, fields
            else:
                version, created = table.version(existing) + 1, table.created_at(existing)
                kept = {k: existing[k] for k in table.user_columns() if k in existing}
                values = {**kept, **fields} if mode in ("upsert", "update") else fields
            record = self._assemble(table, rid, values, version, created, now)
            table.store(record)
        return (201 if existing is None else 200), record

    def delete(self, table: _Table, rid: str) -> Record:
        with self.lock:
            if rid not in table.records:
                raise ApiError(404, f"record [{rid}] not found in table [{table.name}]")
            return table.remove(rid)

    def get(self, table: _Table, rid: str) -> Record:
        with self.lock:
            record = table.records.get(rid)
        if record is None:
            raise ApiError(404, f"record [{rid}] not found in table [{table.name}]")
        return record

    @staticmethod
    def _assemble(
        table: _Table, rid: str, values: Record, version: int, created: str, updated: str
    ) -> Record:
        ordered = {k: values[k] for k in table.user_columns() if values.get(k) is not None}
        if table.postgres:
            meta = {"xata_version": version, "xata_createdat": created, "xata_updatedat": updated}
            return {"xata_id": rid, **ordered, **meta}
        return {
            "id": rid,
            **ordered,
            "xata": {"version": version, "createdAt": created, "updatedAt": updated},
        }

    def _coerce(self, table: _Table, rid: str, name: str, value: Any) -> Any:
        """Validate one input value and turn it into the shape the query API returns."""

        def bad(reason: str) -> ApiError:
            return ApiError(400, f"table [{table.name}] record [{rid}] column [{name}]: {reason}")

        column = table.columns.get(name)
        if column is None or name in PG_META or name == "xata":
            raise bad("column not found or not writable")
        kind = column["type"]
        if value is None:
            return None
        if kind in ("string", "text", "email", "datetime"):
            if not isinstance(value, str):
                raise bad(f"expected a string for type {kind}")
            if kind == "datetime":
                try:
                    datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    raise bad("expected an RFC 3339 datetime") from None
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not _INT64[0] <= value <= _INT64[1]:
                raise bad("expected a 64-bit integer")
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad("expected a number")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise bad("expected true or false")
            return value
        if kind == "link":
            target = value.get("id") if isinstance(value, dict) else value
            linked = column.get("link", {}).get("table", "")
            if not isinstance(target, str) or target not in self.table(linked).records:
                raise bad(f"linked record {target!r} not found in table [{linked}]")
            return {"id": target}
        if kind == "multiple":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad("expected a list of strings")
            return value
        if kind == "json":
            if isinstance(value, str):
                try:
                    json.loads(value)
                except ValueError:
                    raise bad("not valid JSON text") from None
                return value
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if kind == "vector":
            dimension = column.get("vector", {}).get("dimension")
            if not isinstance(value, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                raise bad("expected a list of numbers")
            if len(value) != dimension:
                raise bad(f"expected {dimension} dimensions, got {len(value)}")
            return value
        try:
            if kind == "file" and isinstance(value, dict):
                return _file_object(value, with_id=False)
            if kind == "file[]" and isinstance(value, list) and all(isinstance(v, dict) for v in value):
                return [_file_object(v, with_id=True) for v in value]
        except ValueError as exc:
            raise bad(str(exc)) from None
        if kind in ("file", "file[]"):
            raise bad(f"expected {'a list of file objects' if kind == 'file[]' else 'a file object'}")
        raise bad(f"unsupported column type {kind}")


def _summary(table: _Table, records: list[Record], op: str, column: str) -> Any:
    if op == "count":
        return len(records) if column == "*" else sum(table.lookup(r, column) is not None for r in records)
    numbers = [v for r in records if isinstance(v := table.lookup(r, column), int | float)]
    if not numbers:
        return None
    if op == "sum":
        return sum(numbers)
    if op == "average":
        return sum(numbers) / len(numbers)
    return min(numbers) if op == "min" else max(numbers)


def _file_object(value: Record, *, with_id: bool) -> Record:
    """An input file (`base64Content`, ...) as the query API returns it: stored, with size and url."""
    try:
        size = len(base64.b64decode(value.get("base64Content", ""), validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("base64Content is not valid base64") from None
    timeout = value.get("signedUrlTimeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise ValueError("signedUrlTimeout must be an integer (seconds)")
    file: Record = {"id": value.get("id") or f"file_{secrets.token_hex(10)}"} if with_id else {}
    file.update(
        name=value.get("name", ""),
        mediaType=value.get("mediaType", "application/octet-stream"),
        enablePublicUrl=bool(value.get("enablePublicUrl", False)),
        signedUrlTimeout=timeout,
        size=size,
        version=1,
        url=f"https://local.storage.xata.sh/{secrets.token_hex(12)}",
        attributes={},
    )
    return file


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
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("content-type", "application/json")
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
    ) -> None:
        self.api_key = api_key if api_key is not None else f"xau_local_{secrets.token_urlsafe(24)}"
        self.latency_ms = latency_ms
        self.fail_429_every = fail_429_every
        self.fail_5xx_every = fail_5xx_every
        self.ratelimit_reset_s = ratelimit_reset_s
        self._data = _Branch(Path(seed_dir), database, branch)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._count = 0

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
    def requests(self) -> list[LoggedRequest]:
        with self._log_lock:
            return list(self._requests)

    def table_ids(self, table: str) -> list[str]:
        """The ids of a table's records, in query order (for tests and the demo)."""
        with self._data.lock:
            return list(self._data.table(table).ids)

    # request handling

    def respond(
        self, method: str, target: str, authorization: str | None, raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (status, JSON payload or None, extra headers)."""
        url = urlsplit(target)
        with self._log_lock:
            self._count += 1
            number = self._count
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
            return 200, data.query(table, body)
        if len(rest) == 3 and method == "POST" and action == "summarize":
            return 200, data.summarize(table, body)
        if action != "data" or len(rest) > 4:
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        project = _projector(table, columns) if columns is not None else table.meta_view
        if record_id is None and method == "POST":
            status, record = data.write(table, None, body, "insert", query)
            return status, project(record)
        if record_id is None:
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        if method == "GET":
            return 200, _projector(table, columns)(data.get(table, record_id))
        if method == "DELETE":
            deleted = data.delete(table, record_id)
            return (200, project(deleted)) if columns is not None else (204, None)
        modes = {"PUT": "put", "POST": "upsert", "PATCH": "update"}
        if method not in modes:
            raise ApiError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        status, record = data.write(table, record_id, body, modes[method], query)
        return status, project(record)


# ---------------------------------------------------------------- CLI


@click.command("xata")
@click.option(
    "--seed",
    "seed_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Seed folder: schema.json and <table>.jsonl.",
)
@click.option("--port", type=int, default=0, show_default=True, help="Port to listen on (0: any free port).")
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
    )
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with standin:
        for name, value in standin.settings().items():
            click.echo(f"{name}={value}")
        click.get_text_stream("stdout").flush()
        while not stopped.wait(0.5):
            pass


if __name__ == "__main__":
    xata_command()

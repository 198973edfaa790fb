"""The data behind the local Xata stand-in: one database branch loaded from a seed folder, in memory.

A seed is `schema.json` (`{"tables": [...]}` as in the branch details) plus `<table>.jsonl`, the records
exactly as the query API returns them. A table whose columns include `xata_id` is Postgres-enabled: its
records carry `xata_id`, `xata_version`, `xata_createdat`, `xata_updatedat` at top level; other tables
use the classic `{"id", ..., "xata": {"version", "createdAt", "updatedAt"}}` shape.

This module knows nothing of HTTP: operations raise `ApiError` with the status Xata would answer, and
`xata_server` turns it into a response.

Where Xata's documentation is silent, the simplest behaviour was chosen:
- Query results are ordered by record id (code-point order) unless `sort` is given. A cursor encodes
  the last id (or sort key) returned, not an offset, so pages stay stable while records are inserted or
  deleted between them. `meta.page.size` is the number of records on the returned page; an empty page
  still carries a cursor (the position it was asked for).
- Only `page.size` and `page.after` are supported; `before`, `start`, `end`, `first`, `last`, `offset`,
  random sort and `sort` in summarize answer 400 naming the feature.
- Writing a link to a record that does not exist is 400; deleting a record leaves links to it in place.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

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


class Table:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.name: str = schema["name"]
        self.columns: dict[str, dict[str, Any]] = {c["name"]: c for c in schema.get("columns", [])}
        self.postgres = "xata_id" in self.columns
        self.id_key = "xata_id" if self.postgres else "id"
        self.records: dict[str, Record] = {}
        self.ids: list[str] = []  # sorted; pagination bisects it

    def record_id(self, record: Record) -> str:
        return str(record[self.id_key])

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


def load_seed(seed_dir: Path) -> tuple[dict[str, Any], dict[str, Table]]:
    """Read `schema.json` and every `<table>.jsonl`; a missing .jsonl is an empty table."""
    schema = json.loads((seed_dir / "schema.json").read_text(encoding="utf-8"))
    tables: dict[str, Table] = {}
    for table_schema in schema["tables"]:
        table = Table(table_schema)
        path = seed_dir / f"{table.name}.jsonl"
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    if not isinstance(record, dict) or not isinstance(record.get(table.id_key), str):
                        raise ValueError(
                            f"{path}:{number}: a record of table {table.name!r} needs {table.id_key!r}"
                        )
                    table.store(record)
        tables[table.name] = table
    return schema, tables


# ---------------------------------------------------------------- filters, sorting, projection


def _matches(table: Table, record: Record, expression: Any) -> bool:
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


def projector(table: Table, columns: Any) -> Callable[[Record], Record]:
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


def page_number(table: Table, body: Any) -> int:
    """Which page of a query a request asks for (1 without a cursor): cursors carry the number."""
    page = body.get("page") if isinstance(body, dict) else None
    after = page.get("after") if isinstance(page, dict) else None
    return 1 if after is None else int(_decode_cursor(after, table.name).get("p", 0)) + 1


def repeating_cursor(table: Table, body: Any) -> str:
    """A cursor that leads back to the page this request asks for (the `repeat-cursor` fault)."""
    after = (body.get("page") or {}).get("after")
    size = (body.get("page") or {}).get("size", DEFAULT_PAGE_SIZE)
    return (
        str(after) if after is not None else _encode_cursor({"t": table.name, "k": None, "n": size, "p": 0})
    )


def _page_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise ApiError(400, f"page.size must be an integer between 1 and {MAX_PAGE_SIZE}, got {value!r}")
    return value


# ---------------------------------------------------------------- the branch: data and operations


class Branch:
    def __init__(self, seed_dir: Path, database: str, branch: str) -> None:
        self.database = database
        self.branch = branch
        self.schema, self.tables = load_seed(seed_dir)
        self.lock = threading.RLock()
        self._id_middle = secrets.token_bytes(5)
        self._id_counter = 0

    def table(self, name: str) -> Table:
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

    def query(self, table: Table, body: Record) -> Record:
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
        project = projector(table, columns)
        page_no = page_number(table, body)
        records, last, more = self._page(table, flt, sort, position, size)
        cursor_out = _encode_cursor(
            {"t": table.name, "k": last, "n": size, "c": columns, "f": flt, "s": sort, "p": page_no}
        )
        return {
            "records": [project(r) for r in records],
            "meta": {"page": {"cursor": cursor_out, "more": more, "size": len(records)}},
        }

    def _page(
        self, table: Table, flt: Any, sort: Any, position: Any, size: int
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

    def summarize(self, table: Table, body: Record) -> Record:
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
        self, table: Table, rid: str | None, body: Any, mode: str, query: dict[str, str]
    ) -> tuple[int, Record]:
        """Insert (`insert`), insert-or-replace (`put`), insert-or-merge (`upsert`) or merge (`update`)."""
        if not isinstance(body, dict):
            raise ApiError(400, f"table [{table.name}]: the record must be a JSON object")
        body = dict(body)
        id_key = table.id_key
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

    def delete(self, table: Table, rid: str) -> Record:
        with self.lock:
            if rid not in table.records:
                raise ApiError(404, f"record [{rid}] not found in table [{table.name}]")
            return table.remove(rid)

    def get(self, table: Table, rid: str) -> Record:
        with self.lock:
            record = table.records.get(rid)
        if record is None:
            raise ApiError(404, f"record [{rid}] not found in table [{table.name}]")
        return record

    @staticmethod
    def _assemble(table: Table, rid: str, values: Record, version: int, created: str, updated: str) -> Record:
        ordered = {k: values[k] for k in table.user_columns() if values.get(k) is not None}
        if table.postgres:
            meta = {"xata_version": version, "xata_createdat": created, "xata_updatedat": updated}
            return {"xata_id": rid, **ordered, **meta}
        return {
            "id": rid,
            **ordered,
            "xata": {"version": version, "createdAt": created, "updatedAt": updated},
        }

    def _coerce(self, table: Table, rid: str, name: str, value: Any) -> Any:
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


def _summary(table: Table, records: list[Record], op: str, column: str) -> Any:
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

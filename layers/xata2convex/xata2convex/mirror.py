"""How a Xata database maps onto the Convex mirror: table and field names, and record values.

Names: Convex table and top-level field names must match
`[A-Za-z][A-Za-z0-9_]*`, be at most 64 characters and not start with `_`. A Xata name becomes a Convex
name by these steps, in order:
  1. every character outside `[A-Za-z0-9_]` becomes `_` (`event-subject-matter-experts` ->
     `event_subject_matter_experts`);
  2. a name that does not start with a letter gets the prefix `t_` (tables) or `f_` (fields);
  3. a name the mirror keeps for itself (the fields `xata_id`, `xata_version`, `xata_createdAt`,
     `xata_updatedAt`; the tables `syncRuns` and `syncSchedule`) gets that prefix too;
  4. a name that had non-ASCII characters (so that `名前` and `住所` stay apart) or is now longer than
     64 characters keeps at most its first 55 characters and gets `_` + the first 8 hex digits of the
     SHA-256 of the original name.
Two Xata names that end up as one Convex name raise `MirrorNameError` naming both.

Values (`to_convex_document`): see the function. Values Convex cannot store either take a documented
fallback (json: the JSON text is stored as a string, with a warning) or raise `RecordError`.
Comparing a mirrored document with a snapshot record is `verify.document_digest`'s job.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import Any, Final, Literal, TypeVar

from xata2convex.convex_json import Int64
from xata2convex.mirror_config import CONFIG_FILE, MirrorConfig, int64_hint
from xata2convex.model import (
    EXPIRING_FILE_FIELDS,
    ID_COLUMN,
    META_COLUMNS,
    Column,
    DatabaseSchema,
    Record,
    RecordError,
    TableSchema,
    XataToConvexError,
)

# Convex limits (see NOTES.md "Convex").
MAX_NAME_LENGTH: Final = 64
MAX_ARRAY_ELEMENTS: Final = 8192
MAX_OBJECT_FIELDS: Final = 1024
MAX_NESTING: Final = 16
MAX_DOCUMENT_BYTES: Final = 1 << 20
MAX_SAFE_INTEGER: Final = 2**53
# Convex adds `_id` (about 38 bytes in its size rule) and `_creationTime` (23); counted generously.
SYSTEM_FIELDS_BYTES: Final = 96

# The mirror's own fields on every document: the Xata record id and metadata (snapshot column names).
XATA_ID_FIELD: Final = "xata_id"
META_FIELDS: Final[tuple[str, ...]] = tuple(name for name, _ in META_COLUMNS)
RESERVED_FIELD_NAMES: Final = frozenset({XATA_ID_FIELD, *META_FIELDS})
# Tables defined by the mirror's own Convex schema (convex/schema.ts).
RESERVED_TABLE_NAMES: Final = frozenset({"syncRuns", "syncSchedule"})
BY_XATA_ID_INDEX: Final = "by_xata_id"

# The fields a mirrored file object may have (Xata's file object minus EXPIRING_FILE_FIELDS), with their
# Convex kind; `id` is set on items of file[] columns. Other fields are left out, with a warning.
FileFieldKind = Literal["string", "number", "boolean", "any"]
FILE_FIELDS: Final[Mapping[str, FileFieldKind]] = {
    "id": "string",
    "name": "string",
    "mediaType": "string",
    "size": "number",
    "version": "number",
    "url": "string",
    "enablePublicUrl": "boolean",
    "signedUrlTimeout": "number",
    "uploadUrlTimeout": "number",
    "storageKey": "string",
    "uploadKey": "string",
    "base64Content": "string",
    "attributes": "any",
}

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NOT_IDENTIFIER_CHAR = re.compile(r"[^A-Za-z0-9_]")
_HASH_SUFFIX_LENGTH: Final = 9  # "_" + 8 hex digits


class MirrorSchemaError(XataToConvexError):
    """The Xata schema cannot be mirrored as it is."""


class MirrorNameError(MirrorSchemaError):
    """Two Xata names map to one Convex name."""

    def __init__(self, table: str | None, first: str, second: str, convex_name: str) -> None:
        where = "tables" if table is None else f"table {table!r}: columns"
        super().__init__(
            f"{where} {first!r} and {second!r} both map to the Convex name {convex_name!r}; "
            "rename one of them in Xata"
        )
        self.table = table
        self.names = (first, second)
        self.convex_name = convex_name


def convex_name(name: str, prefix: Literal["t_", "f_"], reserved: frozenset[str] = frozenset()) -> str:
    """The Convex identifier for a Xata table (`prefix="t_"`) or column (`"f_"`) name; see the module doc."""
    mapped = _NOT_IDENTIFIER_CHAR.sub("_", name)
    if not mapped[:1].isalpha() or mapped in reserved:
        mapped = prefix + mapped
    return _fit(mapped, name, force=not name.isascii())


def convex_table_name(name: str, table_prefix: str = "") -> str:
    """A Xata table's Convex name: mapped as `convex_name` says, then `table_prefix` prepended."""
    prefixed = table_prefix + convex_name(name, "t_", RESERVED_TABLE_NAMES)
    if prefixed in RESERVED_TABLE_NAMES:
        prefixed = "t_" + prefixed
    return _fit(prefixed, name)


def link_id_field(convex_field: str) -> str:
    """The field holding a link's Convex `_id`: the link field's name + `_id` (shortened past 64)."""
    return _fit(f"{convex_field}_id", convex_field)


def _fit(mapped: str, original: str, force: bool = False) -> str:
    """`mapped`, or when it is too long (or `force`) its first 55 characters + `_` + a hash of `original`."""
    if not force and len(mapped) <= MAX_NAME_LENGTH:
        return mapped
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{mapped[: MAX_NAME_LENGTH - _HASH_SUFFIX_LENGTH]}_{digest}"


def is_convex_identifier(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _IDENTIFIER.fullmatch(name) is not None


@dataclass(frozen=True)
class FieldPlan:
    column: Column
    convex_name: str
    int64: bool = False  # an int column mirrored as v.int64() (xata2convex.toml)
    # A link to a mirrored table: that table's Convex name, and the field holding the target's `_id`.
    link_table: str | None = None
    link_id: str | None = None

    @property
    def xata_name(self) -> str:
        return self.column.name


@dataclass(frozen=True)
class TablePlan:
    schema: TableSchema
    convex_name: str
    fields: tuple[FieldPlan, ...]
    search: tuple[FieldPlan, ...] = ()  # string columns with a search index (xata2convex.toml)

    @property
    def xata_name(self) -> str:
        return self.schema.name

    @cached_property
    def links(self) -> tuple[FieldPlan, ...]:
        """The link fields whose target table is mirrored (each has `link_table` and `link_id`)."""
        return tuple(field for field in self.fields if field.link_id is not None)

    @cached_property
    def int64_fields(self) -> frozenset[str]:
        return frozenset(field.convex_name for field in self.fields if field.int64)

    @cached_property
    def document_columns(self) -> tuple[tuple[str, Column], ...]:
        """(Convex field, snapshot column) for the id, the metadata and the user's columns."""
        return (
            (XATA_ID_FIELD, Column(ID_COLUMN, "string", not_null=True)),
            *((name, Column(name, type_)) for name, type_ in META_COLUMNS),
            *((plan.convex_name, plan.column) for plan in self.fields),
        )

    def field(self, xata_column: str) -> FieldPlan:
        return _find(self.fields, "xata_name", xata_column)

    def field_for_convex(self, convex_field: str) -> FieldPlan:
        return _find(self.fields, "convex_name", convex_field)


@dataclass(frozen=True)
class MirrorPlan:
    """Per Xata table its Convex table, per Xata column its Convex field; both directions."""

    schema: DatabaseSchema
    tables: tuple[TablePlan, ...]

    @classmethod
    def from_schema(cls, schema: DatabaseSchema, config: MirrorConfig | None = None) -> MirrorPlan:
        """The plan for `schema` shaped by `config` (settings naming unknown columns are ignored here:
        `mirror_config.check_mirror_config` reports them where the file is read)."""
        config = config or MirrorConfig()
        names = {table.name: convex_table_name(table.name, config.table_prefix) for table in schema.tables}
        tables = []
        table_owner: dict[str, str] = {}
        for table in schema.tables:
            name = names[table.name]
            if name in table_owner:
                raise MirrorNameError(None, table_owner[name], table.name, name)
            table_owner[name] = table.name
            settings = config.table(table.name)
            fields = []
            field_owner = dict.fromkeys(RESERVED_FIELD_NAMES, "(the mirror's own field)")
            for column in table.columns:
                field_name = convex_name(column.name, "f_", RESERVED_FIELD_NAMES)
                link_table = names.get(column.link_table or "") if column.type == "link" else None
                link_id = link_id_field(field_name) if link_table else None
                for owned in filter(None, (field_name, link_id)):
                    if owned in field_owner:
                        raise MirrorNameError(table.name, field_owner[owned], column.name, owned)
                    field_owner[owned] = column.name
                int64 = column.type == "int" and column.name in settings.int64
                fields.append(FieldPlan(column, field_name, int64, link_table, link_id))
            # Convex counts `_id` and `_creationTime` among a document's fields.
            own = len(field_owner) + 2 - len(table.columns)
            if len(table.columns) + own > MAX_OBJECT_FIELDS:
                raise MirrorSchemaError(
                    f"table {table.name!r}: {len(table.columns)} columns; a Convex document holds at most "
                    f"{MAX_OBJECT_FIELDS} fields including the mirror's {own}"
                )
            search = tuple(f for f in fields if f.xata_name in settings.search)
            tables.append(TablePlan(table, name, tuple(fields), search))
        return cls(schema, tuple(tables))

    def table(self, xata_table: str) -> TablePlan:
        return _find(self.tables, "xata_name", xata_table)

    def table_for_convex(self, convex_table: str) -> TablePlan:
        return _find(self.tables, "convex_name", convex_table)


_Plan = TypeVar("_Plan", FieldPlan, TablePlan)


def _find(plans: tuple[_Plan, ...], side: Literal["xata_name", "convex_name"], name: str) -> _Plan:
    for plan in plans:
        if getattr(plan, side) == name:
            return plan
    raise KeyError(name)


class _Unstorable(ValueError):
    """A value Convex cannot store; the message says why."""


class _BeyondFloat(_Unstorable):
    """An integer a Convex number (float64) cannot hold exactly; an int64 field could."""


Warn = Callable[[str], None]


def to_convex_document(table: TablePlan, record: Record, warnings: list[str] | None = None) -> dict[str, Any]:
    """The Convex document that mirrors one snapshot record.

    `id` -> `xata_id`; `xata_version` -> number; `xata_createdAt`/`xata_updatedAt` -> ms since epoch.
    Columns: string/text/email/link -> string; int/float -> number (beyond ±2^53, NaN and the
    infinities raise); bool -> boolean; datetime (ISO 8601; no offset means UTC) -> ms since epoch, an
    int, fractional only when the value has sub-millisecond digits; multiple -> list of strings; json ->
    the parsed value; vector -> list of numbers (as long as the declared dimension); file / file[] ->
    object / list of objects with the fields in FILE_FIELDS (expiring ones dropped silently, unknown ones
    with a warning); null or absent -> field absent.

    Fallback, with a warning appended to `warnings`: a json value Convex cannot store (an object key that
    starts with `$`, is empty, longer than 1,024 characters or not printable ASCII; over 1,024 keys in
    one object; nesting beyond Convex's 16 levels counting the document; an array over 8,192 elements;
    an integer beyond ±2^53; NaN or Infinity; text that is not JSON) is stored as its JSON text, a string,
    which the json field's validator `v.any()` accepts. A file's `attributes` fall back the same way.

    Raises RecordError naming table, record and field for everything else Convex cannot hold: a value of
    the wrong type, `multiple`/`vector`/`file[]` over 8,192 elements, strings that are not valid Unicode,
    a document over 1 MiB by Convex's size rule (naming the largest field).
    """
    record_id = record.get(ID_COLUMN)
    if not isinstance(record_id, str) or not record_id:
        raise RecordError(table.xata_name, str(record_id), ID_COLUMN, "the record has no id")
    sink: list[str] = [] if warnings is None else warnings
    document: dict[str, Any] = {}
    int64_fields = table.int64_fields
    for field_name, column in table.document_columns:
        value = record.get(column.name)
        if value is None:
            continue
        warn = partial(_warn, sink, table.xata_name, record_id, column.name)
        try:
            document[field_name] = (
                _int64(value) if field_name in int64_fields else _convert(column, value, warn)
            )
        except _BeyondFloat as err:
            reason = str(err)
            if column.type == "int" and field_name not in RESERVED_FIELD_NAMES:
                reason += f"; {int64_hint(CONFIG_FILE, table.xata_name, column.name)}"
            raise RecordError(table.xata_name, record_id, column.name, reason) from None
        except _Unstorable as err:
            raise RecordError(table.xata_name, record_id, column.name, str(err)) from None
    size = SYSTEM_FIELDS_BYTES + convex_size(document)
    if size > MAX_DOCUMENT_BYTES:
        largest = max(document, key=lambda name: convex_size(document[name]))
        raise RecordError(
            table.xata_name,
            record_id,
            next(column.name for name, column in table.document_columns if name == largest),
            f"the document would be about {size} bytes by Convex's size rule; Convex stores at most "
            f"{MAX_DOCUMENT_BYTES} bytes (1 MiB) per document",
        )
    return document


def _warn(sink: list[str], table: str, record_id: str, column: str, reason: str) -> None:
    # Formatted only when a warning is given: this runs once per field of every record.
    sink.append(f"table {table!r} record {record_id!r} field {column!r}: {reason}")


def _convert(column: Column, value: Any, warn: Warn) -> Any:
    match column.type:
        case "string" | "text" | "email" | "link":
            return _string(value)
        case "int":
            return _integer(value)
        case "float":
            return _number(value)
        case "bool":
            if not isinstance(value, bool):
                raise _Unstorable(f"expected a boolean, got {type(value).__name__}")
            return value
        case "datetime":
            return epoch_ms(_string(value))
        case "multiple":
            return [_string(item) for item in _array(value)]
        case "json":
            return _json(_string(value), warn)
        case "vector":
            vector = [_number(item) for item in _array(value)]
            if column.vector_dimension is not None and len(vector) != column.vector_dimension:
                raise _Unstorable(f"{len(vector)} numbers in a vector of dimension {column.vector_dimension}")
            return vector
        case "file":
            return _file(value, 2, warn)
        case "file[]":
            return [_file(item, 3, warn) for item in _array(value)]
    raise _Unstorable(f"unknown column type {column.type!r}")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unstorable(f"expected a string, got {type(value).__name__}")
    if not _is_unicode(value):
        raise _Unstorable("the string is not valid Unicode (it has a lone surrogate)")
    return value


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Unstorable(f"expected an integer, got {type(value).__name__}")
    return value


def _integer(value: Any) -> int:
    whole = _whole(value)
    if abs(whole) > MAX_SAFE_INTEGER:
        raise _BeyondFloat("the integer is beyond ±2^53, which a Convex number (float64) cannot hold exactly")
    return whole


def _int64(value: Any) -> Int64:
    whole = _whole(value)
    try:
        return Int64(whole)  # which checks the range
    except ValueError:
        raise _Unstorable("the integer is outside the int64 range (-2^63 .. 2^63-1)") from None


def _number(value: Any) -> int | float:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Unstorable(f"{value} cannot be sent to Convex as a JSON number")
        return value
    return _integer(value)


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Unstorable(f"expected a list, got {type(value).__name__}")
    if len(value) > MAX_ARRAY_ELEMENTS:
        raise _Unstorable(f"{len(value)} elements; Convex arrays hold at most {MAX_ARRAY_ELEMENTS}")
    return value


def epoch_ms(text: str) -> int | float:
    """Milliseconds since the Unix epoch for an ISO 8601 datetime; no offset means UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Unstorable(f"{text[:64]!r} is not an ISO 8601 datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        delta = moment - _EPOCH
    except OverflowError:
        raise _Unstorable(f"{text[:64]!r} is out of range") from None
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // 1000 if micros % 1000 == 0 else micros / 1000


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _json(text: str, warn: Warn) -> Any:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        warn("json stored as its text: it is not valid JSON")
        return text
    problem = json_problem(value, 2)
    if problem is not None:
        warn(f"json stored as its JSON text: {problem}")
        return text
    return value


def json_problem(value: Any, level: int) -> str | None:
    """Why Convex cannot store a parsed JSON value whose containers start at nesting `level`, or None.

    The document itself is level 1, so a field's object or array is level 2.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return None if _is_unicode(value) else "a string that is not valid Unicode"
    if isinstance(value, int):
        return None if abs(value) <= MAX_SAFE_INTEGER else "an integer beyond ±2^53"
    if isinstance(value, float):
        return None if math.isfinite(value) else "NaN or Infinity"
    if not isinstance(value, list | dict):
        return f"a value of type {type(value).__name__}"
    if level > MAX_NESTING:
        return f"nested deeper than Convex's {MAX_NESTING} levels"
    if isinstance(value, list):
        if len(value) > MAX_ARRAY_ELEMENTS:
            return f"an array of {len(value)} elements; Convex arrays hold at most {MAX_ARRAY_ELEMENTS}"
        items = value
    else:
        if len(value) > MAX_OBJECT_FIELDS:
            return f"an object with {len(value)} keys; Convex objects hold at most {MAX_OBJECT_FIELDS}"
        for key in value:
            if not is_nested_field_name(key):
                return f"the object key {str(key)[:64]!r}, which Convex does not accept"
        items = list(value.values())
    for item in items:
        problem = json_problem(item, level + 1)
        if problem is not None:
            return problem
    return None


def is_nested_field_name(key: Any) -> bool:
    """Convex's rule for keys of nested objects: printable ASCII, not starting with `$` (nor empty)."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= 1024
        and not key.startswith("$")
        and all(" " <= char <= "~" for char in key)
    )


def _file(value: Any, level: int, warn: Warn) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Unstorable(f"expected a file object, got {type(value).__name__}")
    mirrored: dict[str, Any] = {}
    for key, item in value.items():
        if key in EXPIRING_FILE_FIELDS or item is None:
            continue
        kind = FILE_FIELDS.get(key)
        if kind is None:
            warn(f"file field {str(key)[:64]!r} left out: the mirror's file validator does not have it")
        elif kind == "string":
            mirrored[key] = _string(item)
        elif kind == "number":
            mirrored[key] = _number(item)
        elif kind == "boolean":
            if not isinstance(item, bool):
                raise _Unstorable(f"file field {key!r}: expected a boolean, got {type(item).__name__}")
            mirrored[key] = item
        else:
            mirrored[key] = _file_attributes(item, level + 1, warn)
    return mirrored


def _file_attributes(value: Any, level: int, warn: Warn) -> Any:
    problem = json_problem(value, level)
    if problem is None:
        return value
    try:
        text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    except (ValueError, TypeError, RecursionError):
        raise _Unstorable(f"file attributes cannot be stored: {problem}") from None
    warn(f"file attributes stored as their JSON text: {problem}")
    return text


def convex_size(value: Any) -> int:
    """Bytes a value counts toward Convex's document limit (Convex's `getConvexSize` rule)."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | Int64):
        return 9
    if isinstance(value, str):
        return 2 + len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list):
        return 2 + sum(convex_size(item) for item in value)
    if isinstance(value, dict):
        return 2 + sum(convex_size(str(key)) - 1 + convex_size(item) for key, item in value.items())
    raise TypeError(f"not a Convex value: {type(value).__name__}")

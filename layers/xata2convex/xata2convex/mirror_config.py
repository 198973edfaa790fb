"""`xata2convex.toml`: what shapes the Convex mirror beyond the Xata schema.

```toml
[mirror]
table_prefix = "xata_"        # prepended to every mirrored Convex table name
[tables."user-theories"]      # per Xata table
search = ["name", "content"]  # a Convex search index per listed string/text/email column: search_<field>
int64 = ["views"]             # int columns mirrored as v.int64() (bigint) instead of v.number()
```

Only `xata2convex schema` reads the file. What the sync needs of it (the prefix, the int64 columns) is
written into the generated `convex/xataTables.ts`, and the sync reads it back from the deployed mirror
(`mirror:schemaInfo`, `MirrorConfig.from_schema_info`): the deployed schema and the sync always agree,
and a Lambda needs no copy of the file.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .model import DatabaseSchema, XataToConvexError

CONFIG_FILE: Final = "xata2convex.toml"
SEARCHABLE_TYPES: Final = frozenset({"string", "text", "email"})
# A prefix must itself start a Convex identifier; the rest of the name is checked once prefixed.
_PREFIX = re.compile(r"(?:[A-Za-z][A-Za-z0-9_]*)?")
_MAX_PREFIX: Final = 32


class MirrorConfigError(XataToConvexError):
    """`xata2convex.toml` is not valid for this Xata schema; the message names file, table and column."""


@dataclass(frozen=True)
class TableConfig:
    search: tuple[str, ...] = ()  # Xata column names
    int64: tuple[str, ...] = ()


@dataclass(frozen=True)
class MirrorConfig:
    table_prefix: str = ""
    tables: Mapping[str, TableConfig] = field(default_factory=dict)  # by Xata table name
    source: str = CONFIG_FILE  # the file it came from, for messages

    def table(self, xata_table: str) -> TableConfig:
        return self.tables.get(xata_table, TableConfig())

    @classmethod
    def from_schema_info(cls, info: Mapping[str, Any]) -> MirrorConfig:
        """The settings the deployed mirror was generated with (`mirror:schemaInfo`'s answer)."""
        tables: dict[str, TableConfig] = {}
        for table in (info.get("tables") or {}).values():
            int64 = tuple(f["xata"] for f in (table.get("fields") or {}).values() if f.get("int64"))
            if int64:
                tables[table["xata"]] = TableConfig(int64=int64)
        return cls(str(info.get("tablePrefix") or ""), tables, source="the deployed mirror")


def load_mirror_config(path: Path | None = None) -> MirrorConfig:
    """`path`, or `./xata2convex.toml` when it exists, or the defaults (no prefix, no search, no int64)."""
    if path is None:
        path = Path(CONFIG_FILE)
        if not path.is_file():
            return MirrorConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MirrorConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_mirror_config(text, str(path))


def parse_mirror_config(text: str, source: str = CONFIG_FILE) -> MirrorConfig:
    """The file's settings, checked for shape (not yet against a schema: see `check_mirror_config`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MirrorConfigError(f"{source}: not valid TOML: {exc}") from None
    _only(data, {"mirror", "tables"}, source)
    mirror = data.get("mirror", {})
    if not isinstance(mirror, dict):
        raise MirrorConfigError(f"{source}: [mirror] must be a table")
    _only(mirror, {"table_prefix"}, f"{source}: [mirror]")
    prefix = mirror.get("table_prefix", "")
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or len(prefix) > _MAX_PREFIX:
        raise MirrorConfigError(
            f"{source}: [mirror] table_prefix = {prefix!r}: it must be empty or a letter followed by "
            f"letters, digits and '_', at most {_MAX_PREFIX} characters (e.g. \"xata_\")"
        )
    tables_data = data.get("tables", {})
    if not isinstance(tables_data, dict):
        raise MirrorConfigError(f'{source}: "tables" must hold one [tables."<xata table>"] section per table')
    tables: dict[str, TableConfig] = {}
    for name, settings in tables_data.items():
        where = f"{source}: [tables.{_toml_key(name)}]"
        if not isinstance(settings, dict):
            raise MirrorConfigError(f"{where} must be a table")
        _only(settings, {"search", "int64"}, where)
        tables[name] = TableConfig(
            search=_names(settings, "search", where), int64=_names(settings, "int64", where)
        )
    return MirrorConfig(prefix, tables, source)


def check_mirror_config(config: MirrorConfig, schema: DatabaseSchema) -> None:
    """Every table and column the config names exists and has a type its setting applies to."""
    known = {t.name: t for t in schema.tables}
    for name, settings in config.tables.items():
        where = f"{config.source}: [tables.{_toml_key(name)}]"
        if name not in known:
            raise MirrorConfigError(
                f"{where}: no Xata table {name!r} (tables: {', '.join(sorted(known)) or 'none'})"
            )
        types = {c.name: c.type for c in known[name].columns}
        for key, allowed, wanted in (
            ("search", SEARCHABLE_TYPES, "a search index needs a string, text or email column"),
            ("int64", frozenset({"int"}), "int64 applies to int columns only"),
        ):
            for column in getattr(settings, key):
                if column not in types:
                    raise MirrorConfigError(f"{where} {key}: table {name!r} has no column {column!r}")
                if types[column] not in allowed:
                    raise MirrorConfigError(
                        f"{where} {key}: column {column!r} of table {name!r} is {types[column]}; {wanted}"
                    )


def int64_hint(source: str, table: str, column: str) -> str:
    """The config line that mirrors an int column exactly, for messages about integers beyond ±2^53."""
    return (
        f'to mirror it exactly add int64 = ["{column}"] under [tables.{_toml_key(table)}] in {source}, '
        "then run `xata2convex schema` and deploy"
    )


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise MirrorConfigError(
            f"{where}: unknown setting {unknown[0]!r} (expected: {', '.join(sorted(allowed))})"
        )


def _names(settings: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = settings.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MirrorConfigError(f'{where} {key} must be a list of column names, e.g. {key} = ["name"]')
    if len(set(value)) != len(value):
        raise MirrorConfigError(f"{where} {key} lists a column twice")
    return tuple(value)


def _toml_key(name: str) -> str:
    """A table name as written in a TOML section header: quoted (JSON's escapes are TOML's too)."""
    return json.dumps(name, ensure_ascii=False)

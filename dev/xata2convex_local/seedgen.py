"""Seeds for the local Xata stand-in: the committed sample (every column type, hostile values) and a
generated benchmark seed. Both are deterministic: the same arguments write the same bytes.

    python -m xata2convex_local.seedgen sample seeds/sample
    python -m xata2convex_local.seedgen bench /tmp/bench --records 200000 --tables 10
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .xata_store import xid

Record = dict[str, Any]
VECTOR_DIMENSION = 1536
_SEED_EPOCH = 1_685_600_000  # 2023-06-01: seed ids sort before ids the stand-in makes later

_PG_META_COLUMNS: list[Record] = [
    {"name": "xata_id", "type": "string", "notNull": True, "unique": True,
     "defaultValue": "('rec_'::text || (xata_private.xid())::text)"},
    {"name": "xata_version", "type": "int", "notNull": True, "defaultValue": "0"},
    {"name": "xata_createdat", "type": "datetime", "notNull": True, "defaultValue": "now()"},
    {"name": "xata_updatedat", "type": "datetime", "notNull": True, "defaultValue": "now()"},
]  # fmt: skip


def _col(name: str, type_: str, **extra: Any) -> Record:
    return {"name": name, "type": type_, **extra}


SAMPLE_SCHEMA: Record = {
    "tables": [
        {
            "name": "teams",
            "columns": [
                _col("name", "string"),
                _col("description", "text"),
                _col("budget", "int"),
                _col("founded", "datetime"),
                _col("tags", "multiple"),
                _col("embedding", "vector", vector={"dimension": VECTOR_DIMENSION}),
            ],
        },
        {
            "name": "users",
            "columns": [
                _col("name", "string"),
                _col("email", "email", unique=True),
                _col("age", "int"),
                _col("score", "float"),
                _col("active", "bool"),
                _col("joined", "datetime"),
                _col("bio", "text"),
                _col("tags", "multiple"),
                _col("settings", "json"),
                _col("avatar", "file"),
                _col("attachments", "file[]"),
                _col("team", "link", link={"table": "teams"}),
            ],
        },
        {
            "name": "event-subject-matter-experts",
            "columns": [
                _col("full-name", "string"),
                _col("user", "link", link={"table": "users"}),
                _col("expertise-level", "int"),
                _col("hourly-rate", "float"),
                _col("verified", "bool"),
                _col("expert-since", "datetime"),
                _col("notes", "text"),
                _col("topics", "multiple"),
                _col("profile", "json"),
                _col("head-shot", "file"),
                _col("slide-decks", "file[]"),
                _col("embedding", "vector", vector={"dimension": VECTOR_DIMENSION}),
            ],
        },
        {
            "name": "documents",
            "columns": [
                *_PG_META_COLUMNS,
                _col("title", "string"),
                _col("body", "text"),
                _col("author", "link", link={"table": "users"}),
                _col("rating", "float"),
                _col("published", "bool"),
                _col("published-at", "datetime"),
                _col("word-count", "int"),
                _col("labels", "multiple"),
                _col("extra", "json"),
                _col("embedding", "vector", vector={"dimension": VECTOR_DIMENSION}),
                _col("cover", "file"),
                _col("files", "file[]"),
            ],
        },
        {
            "name": "empty-table",
            "columns": [
                _col("label", "string"),
                _col("amount", "int"),
                _col("at", "datetime"),
                _col("payload", "json"),
            ],
        },
    ]
}


class _Ids:
    """Deterministic record ids per table, in insertion order."""

    def __init__(self, table_index: int) -> None:
        self._middle = f"seed{table_index}".encode()
        self._counter = 0

    def next(self) -> str:
        self._counter += 1
        return xid(_SEED_EPOCH + self._counter, self._middle, self._counter)


def _classic(rid: str, fields: Record, version: int, created: str, updated: str | None = None) -> Record:
    meta = {"version": version, "createdAt": created, "updatedAt": updated or created}
    return {"id": rid, **fields, "xata": meta}


def _postgres(rid: str, fields: Record, version: int, created: str, updated: str | None = None) -> Record:
    meta = {"xata_version": version, "xata_createdat": created, "xata_updatedat": updated or created}
    return {"xata_id": rid, **fields, **meta}


def _vector(rng: random.Random) -> list[float]:
    values = [round(rng.uniform(-1, 1), 6) for _ in range(VECTOR_DIMENSION)]
    values[0], values[1] = -0.0, 1.5e-7  # a signed zero and an exponent inside a vector
    return values


def _file(rng: random.Random, name: str, media_type: str, *, public: bool, item: bool = False) -> Record:
    file: Record = {"id": f"file_{rng.getrandbits(80):020x}"} if item else {}
    file.update(
        name=name,
        mediaType=media_type,
        enablePublicUrl=public,
        signedUrlTimeout=600,
        size=rng.randint(1, 5_000_000),
        version=1,
        url=f"https://us-east-1.storage.xata.sh/{rng.getrandbits(100):025x}",
        attributes={"width": 64, "height": 48} if media_type.startswith("image/") else {},
    )
    return file


def _big_text(min_chars: int) -> str:
    """Over `min_chars` of text with every awkward character a CSV field can hold."""
    lines: list[str] = []
    total = 0
    number = 0
    while total <= min_chars:
        number += 1
        line = (
            f'Paragraph {number}: "quoted", commas, a\ttab; emoji 🎉👩‍💻, RTL שלום مرحبا,'
            f" backslash \\ and 'single' quotes.\r\n"
        )
        lines.append(line if number % 3 else line.replace("\r\n", "\n"))
        total += len(lines[-1])
    return "".join(lines) + "  trailing spaces  "


def _sample_records(rng: random.Random) -> dict[str, list[Record]]:
    team_ids, user_ids, expert_ids, doc_ids = _Ids(0), _Ids(1), _Ids(2), _Ids(3)
    created = "2023-06-01T09:00:00.000000Z"
    teams = [
        _classic(team_ids.next(), fields, version, created)
        for version, fields in enumerate(
            [
                {"name": "Platform", "description": "Builds the platform.", "budget": 1_250_000,
                 "founded": "2019-03-01T00:00:00Z", "tags": ["infra", "core"], "embedding": _vector(rng)},
                {"name": "Research, \"Applied\"", "description": "Line one\r\nline two", "budget": 2**53 + 1,
                 "founded": "1969-12-31T23:59:59.999Z", "tags": [], "embedding": _vector(rng)},
                {"name": "Ops", "budget": -(2**63), "founded": "2024-02-29T23:59:59.999Z",
                 "embedding": _vector(rng)},
                {"name": "  Spaced Team  ", "description": "", "budget": 2**63 - 1,
                 "founded": "2024-03-10T02:30:00-05:00", "tags": ["", " "], "embedding": _vector(rng)},
            ]
        )
    ]  # fmt: skip
    team = [{"id": t["id"]} for t in teams]
    avatar = _file(rng, "avatar.png", "image/png", public=True)
    attachments = [
        _file(rng, "report_final(v2).pdf", "application/pdf", public=False, item=True),
        _file(rng, "it's-notes.txt", "text/plain", public=False, item=True),
    ]
    user_fields: list[Record] = [
        {"name": "Ada Lovelace", "email": "ada@example.com", "age": 36, "score": 99.5, "active": True,
         "joined": "1843-07-01T00:00:00Z", "bio": "Analyst and poet.", "tags": ["math", "poetry"],
         "settings": '{"theme":"dark","notifications":{"email":true,"sms":false}}', "avatar": avatar,
         "attachments": attachments, "team": team[0]},
        {"name": "O'Brien, \"The Hammer\"", "email": "o'brien+test@example.com", "age": 41, "score": 0.1,
         "active": False, "bio": 'She said "hi", then left, twice.', "tags": ["a,b", '"quoted"', "it's"],
         "settings": '{"a":{"b":[1,2.5,null,true,"\\u00fc\\u2192\\ud83d\\ude00"]},"q":"\\"x\\"",'
                     '"deep":{"deeper":{"deepest":[{}]}}}',
         "team": team[1]},
        {"name": "Multi\nLine", "email": "multi@example.com",
         "bio": "line one\r\nline two\nline three\rline four\r\n", "settings": "[1,2,3]", "team": team[0]},
        {"name": "  padded  ", "email": "padded@example.com", "bio": "\tindented\tand a trailing tab\t",
         "tags": ["  spaced  ", ""], "settings": '"just a string"'},
        {"name": "José 👩‍💻 Ñoño", "email": "jose.nono+tag@example.com", "age": 29, "score": 3.14159,
         "bio": "مرحبا بالعالم — שלום עולם — \u200fmixed RTL\u200e text 🎉", "tags": ["emoji 🎉", "עברית"],
         "settings": '{"greeting":"مرحبا","emoji":"🎉"}', "team": team[2]},
        {"name": "", "email": "empty@example.com", "bio": "", "tags": [], "settings": '""'},
        {"name": "Absent Fields"},
        {"name": "Explicit Nulls", "email": None, "age": None, "score": None, "active": None, "joined": None,
         "bio": None, "tags": None, "settings": None, "avatar": None, "attachments": None, "team": None},
        {"name": "null", "email": "big@example.com", "age": 2**53 + 1, "score": 1e308, "bio": "\\N",
         "tags": ["NULL", "null", "None"], "settings": "42", "active": True},
        {"name": "=SUM(A1:A2)", "email": "max@example.com", "age": 2**63 - 1, "score": 5e-324,
         "settings": "true", "joined": "2038-01-19T03:14:08Z", "team": team[3]},
        {"name": "Min Int", "email": "min@example.com", "age": -(2**63), "score": -0.0, "active": False,
         "joined": "1970-01-01T00:00:00Z", "attachments": []},
        {"name": "Integral Float", "email": "integral@example.com", "age": 0, "score": 7, "active": False,
         "bio": " ", "settings": '{"unicode":"\\u00e9","raw":"é","nested":[[],{}]}',
         "joined": "2024-03-10T02:30:00.123+01:00"},
    ]  # fmt: skip
    users = [_classic(user_ids.next(), fields, i % 4, created) for i, fields in enumerate(user_fields)]
    # An id the user chose, with every character Xata allows; it sorts before generated ids.
    users.append(_classic("custom:id-with~chars_1", {"name": "Custom Id", "team": team[0]}, 2,
                          "2023-05-15T08:21:31.96526+01:00", "2023-05-15T21:58:54.072595+01:00"))  # fmt: skip
    user = [{"id": u["id"]} for u in users]
    experts = [
        _classic(expert_ids.next(), fields, 1, created, "2024-01-02T03:04:05.678901Z")
        for fields in [
            {"full-name": "Grace Hopper", "user": user[0], "expertise-level": 5, "hourly-rate": 250.0,
             "verified": True, "expert-since": "1944-01-01T00:00:00Z", "notes": "Compilers,\r\nCOBOL.",
             "topics": ["compilers", "navy"], "profile": '{"rank":"Rear Admiral","awards":["NMS"]}',
             "head-shot": _file(rng, "grace.jpg", "image/jpeg", public=True),
             "slide-decks": [_file(rng, "nanoseconds.pdf", "application/pdf", public=True, item=True)],
             "embedding": _vector(rng)},
            {"full-name": "Quote \"Master\", Jr.", "user": user[1], "expertise-level": 0, "hourly-rate": -0.0,
             "verified": False, "notes": "", "topics": [], "profile": "[]", "slide-decks": []},
            {"full-name": "No Link", "expertise-level": -1, "notes": "tab\there", "profile": '{"k":null}'},
            {"full-name": "RTL خبير", "user": user[4], "hourly-rate": 1e-10, "topics": ["שלום"],
             "embedding": _vector(rng)},
        ]
    ]  # fmt: skip
    body = _big_text(200 * 1024)
    document_rows: list[tuple[int, str | None, Record]] = [
        (3, "2024-05-23T08:00:00.000001Z",
         {"title": "The long one", "body": body, "author": user[0], "rating": 4.5, "published": True,
          "published-at": "2024-05-22T13:38:46.353Z", "word-count": len(body.split()),
          "labels": ["long", "hostile"], "extra": '{"pages":123,"toc":[{"h":"Intro"}]}',
          "embedding": _vector(rng), "cover": _file(rng, "cover.webp", "image/webp", public=False),
          "files": [_file(rng, "appendix.csv", "text/csv", public=False, item=True)]}),
        (0, None,
         {"title": "Short, \"quoted\"", "body": "a\r\nb", "author": user[1], "rating": 1e308,
          "published": False, "word-count": 2**53 + 1, "labels": [""], "extra": '"text json"',
          "embedding": _vector(rng), "files": []}),
        (1, None,
         {"title": "", "body": "", "rating": -0.0, "word-count": -(2**63), "extra": "3.5"}),
        (2, None, {"title": "Sparse"}),
        (0, None,
         {"title": "  emoji 🎉 and RTL שלום  ", "body": "\t", "author": {"id": "custom:id-with~chars_1"},
          "rating": 5e-324, "published": True, "published-at": "1900-01-01T00:00:00Z",
          "word-count": 2**63 - 1, "labels": ["a,b", "c\nd"], "extra": '{"nested":{"ü":["🎉",null]}}',
          "embedding": _vector(rng)}),
    ]  # fmt: skip
    documents = [
        _postgres(doc_ids.next(), fields, version, "2024-05-22T13:38:46.353585Z", updated)
        for version, updated, fields in document_rows
    ]
    return {
        "teams": teams,
        "users": users,
        "event-subject-matter-experts": experts,
        "documents": documents,
        "empty-table": [],
    }


def _write_seed(directory: Path, schema: Record, tables: Mapping[str, Iterable[Record]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.jsonl"):
        if stale.stem not in tables:
            stale.unlink()
    (directory / "schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    for name, records in tables.items():
        with (directory / f"{name}.jsonl").open("w", encoding="utf-8", newline="\n") as out:
            for record in records:
                # ASCII-only lines: no reader can split a record on U+2028 or a stray CR.
                out.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")


def write_sample_seed(directory: Path) -> None:
    """Write the sample seed (also the `make demo` data) into `directory`."""
    _write_seed(directory, SAMPLE_SCHEMA, _sample_records(random.Random(20240229)))


def write_bench_seed(directory: Path, *, records: int = 200_000, tables: int = 10, seed: int = 0) -> None:
    """Write `records` records spread over `tables` classic tables of simple typed columns."""
    columns = [
        _col("name", "string"),
        _col("count", "int"),
        _col("amount", "float"),
        _col("active", "bool"),
        _col("created", "datetime"),
        _col("note", "text"),
    ]
    names = [f"bench_{i:02d}" for i in range(tables)]
    schema = {"tables": [{"name": name, "columns": columns} for name in names]}
    rng = random.Random(seed)

    def table_records(index: int) -> Iterable[Record]:
        ids = _Ids(100 + index)
        count = records // tables + (1 if index < records % tables else 0)
        for n in range(count):
            fields = {
                "name": f"{names[index]} row {n}",
                "count": rng.randint(-(10**9), 10**9),
                "amount": round(rng.uniform(-1e6, 1e6), 4),
                "active": rng.random() < 0.5,
                "created": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00.000Z",
                "note": f"note {rng.getrandbits(64):016x}, with a comma",
            }
            yield _classic(ids.next(), fields, 0, "2024-01-01T00:00:00.000000Z")

    _write_seed(directory, schema, {name: table_records(i) for i, name in enumerate(names)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xata2convex_local.seedgen", description=__doc__)
    parser.add_argument("kind", choices=["sample", "bench"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--records", type=int, default=200_000, help="bench only")
    parser.add_argument("--tables", type=int, default=10, help="bench only")
    parser.add_argument("--seed", type=int, default=0, help="bench only: random seed")
    args = parser.parse_args(argv)
    if args.kind == "sample":
        write_sample_seed(args.directory)
    else:
        write_bench_seed(args.directory, records=args.records, tables=args.tables, seed=args.seed)


if __name__ == "__main__":
    main()

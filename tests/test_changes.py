"""Change rows from the diff: kinds, changed fields, before/after values, whatever the diff's path."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_codec import JSON_VALUE, TEXT
from tests.test_diff import HEADER, TABLE, row, text
from xata2convex import changes
from xata2convex.changes import ChangeFile, ChangeRecorder, ChangeRow, read_change_file
from xata2convex.diff import TableDiffer
from xata2convex.model import SnapshotError

HOSTILE = 'a "quoted",\r\nline <script>alert(1)</script> <img src=x onerror=alert(1)> שלום 👩‍💻'


def record(record_id: str, name: str | None, n: int | None, version: int = 0) -> dict[str, object]:
    return {"id": record_id, "xata_version": version, "xata_createdAt": None, "xata_updatedAt": None,
            "name": name, "n": n}  # fmt: skip


def rows_of(
    old: list[list[str | None]], new: list[list[str | None]], deletes: bool = True, **kwargs: object
) -> list[ChangeRow]:
    rows: list[ChangeRow] = []
    recorder = ChangeRecorder(TABLE, rows.append)
    differ = TableDiffer(TABLE, text(old), text(new), keep_old=recorder.keep_old, **kwargs)  # type: ignore[arg-type]
    for change in differ:
        recorder.record(change)
    recorder.finish(differ, deletes=deletes)
    return sorted(rows, key=lambda r: r.record_id)


OLD = [HEADER, row("a", "x", 1), row("b", HOSTILE, 2), row("c", "z", 3), row("e", "same", None)]
NEW = [HEADER, row("a", "x", 1), row("b", HOSTILE + "!", None, version=1), row("d", HOSTILE, None),
       row("e", "same", None)]  # fmt: skip
EXPECTED = [
    ChangeRow("b", "changed", ("xata_version", "name", "n"), {"xata_version": 0, "name": HOSTILE, "n": 2},
              {"xata_version": 1, "name": HOSTILE + "!", "n": None}),
    ChangeRow("c", "deleted", tuple(record("c", "z", 3)), record("c", "z", 3), None),
    ChangeRow("d", "added", tuple(record("d", HOSTILE, None)), None, record("d", HOSTILE, None)),
]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"old_rows": 4, "partition_rows": 1}],  # in one pass, and spread over partition files
    ids=["one-pass", "partitioned"],
)
@pytest.mark.parametrize("old_in_memory", [1 << 20, 0, 200], ids=["held", "on-disk", "both"])
def test_rows_name_kind_changed_fields_and_values(
    kwargs: dict[str, int], old_in_memory: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the old texts stay in memory, go to disk, or the first in memory and the rest not."""
    monkeypatch.setattr(changes, "OLD_IN_MEMORY", old_in_memory)
    assert rows_of(OLD, NEW, **kwargs) == EXPECTED


def test_columns_in_another_order_and_a_column_only_the_old_side_has() -> None:
    order = [5, 4, 3, 2, 1, 0]
    new = [[r[i] for i in order] for r in ([HEADER, row("a", "x", 1)])]
    assert rows_of([HEADER, row("a", "x", 1)], new) == []
    old = [[*HEADER, "gone"], [*row("a", "x", 1), "old text"]]
    [changed] = rows_of(old, [HEADER, row("a", "y", 1)])
    assert changed.fields == ("name", "gone")
    assert changed.before == {"name": "x", "gone": "old text"} and changed.after == {
        "name": "y",
        "gone": None,
    }


def test_minus_zero_and_empty_string_against_null_are_changes() -> None:
    from xata2convex.model import Column, TableSchema

    table = TableSchema("f", (Column("score", "float"), Column("s", "string")))
    header = ["id", "xata_version", "xata_createdAt", "xata_updatedAt", "score", "s"]
    rows: list[ChangeRow] = []
    recorder = ChangeRecorder(table, rows.append)
    old = text([header, ["a", "0", None, None, "0.0", None]])
    new = text([header, ["a", "0", None, None, "-0.0", ""]])
    differ = TableDiffer(table, old, new, keep_old=recorder.keep_old)
    for change in differ:
        recorder.record(change)
    recorder.finish(differ)
    assert rows == [
        ChangeRow("a", "changed", ("score", "s"), {"score": 0.0, "s": None}, {"score": -0.0, "s": ""})
    ]
    assert str(rows[0].after["score"]) == "-0.0"  # type: ignore[index]


def test_across_writers_only_values_that_differ_are_fields() -> None:
    """Postgres writes `1`, `t` and `…00+00:00` where the SDK wrote `1.0`, `true` and `…00.000Z`:
    the same values, so only the column whose value changed is a field of the change."""
    from xata2convex.model import Column, TableSchema

    table = TableSchema(
        "w", (Column("x", "float"), Column("ok", "bool"), Column("at", "datetime"), Column("s", "string"))
    )
    header = ["id", "xata_version", "xata_createdAt", "xata_updatedAt", "x", "ok", "at", "s"]
    sdk = ["a", "0", None, None, "1.0", "true", "2026-01-01T00:00:00.000Z", "old"]
    postgres = ["a", "0", None, None, "1", "t", "2026-01-01T00:00:00+00:00", "new"]
    rows: list[ChangeRow] = []
    recorder = ChangeRecorder(table, rows.append)
    differ = TableDiffer(
        table,
        text([header, sdk]),
        text([header, postgres]),
        different_writers=True,
        keep_old=recorder.keep_old,
    )
    for change in differ:
        recorder.record(change)
    recorder.finish(differ)
    assert rows == [ChangeRow("a", "changed", ("s",), {"s": "old"}, {"s": "new"})]


@settings(max_examples=300)
@given(JSON_VALUE | st.dictionaries(TEXT, st.floats() | st.integers() | TEXT, max_size=5))
def test_change_rows_hold_the_json_that_json_dumps_writes(value: object) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert changes._json(value) == expected
    assert changes._json([value]) == f"[{expected}]"


@pytest.mark.parametrize("kind", ["changed", "deleted"])
def test_an_old_record_that_cannot_be_read_names_its_table(kind: str) -> None:
    """The diff only hashes old records; the change file is where a short one is first parsed."""
    short = [HEADER, ["a", "0", None, None, "x"]]  # one cell missing
    new = [HEADER, row("a", "y", 1)] if kind == "changed" else [HEADER]
    with pytest.raises(SnapshotError, match=r"table 't': an old record cannot be read"):
        rows_of(short, new)


def test_withheld_deletes_are_left_out() -> None:
    rows = rows_of(OLD, NEW, deletes=False)
    assert [r.change for r in rows] == ["changed", "added"]


def test_a_change_file_reads_back_row_for_row() -> None:
    file = ChangeFile("t")
    for change_row in EXPECTED:
        file.write(change_row)
    saved: list[bytes] = []
    sample = file.save(lambda data: saved.append(data.read()) or "key")  # type: ignore[func-returns-value]
    assert sample.total == 3 and sample.key == "key" and sample.rows == EXPECTED
    assert saved[0].startswith(b"id,change,fields,before,after\r\n")
    back = list(read_change_file(io.StringIO(saved[0].decode(), newline="")))
    assert back == EXPECTED


def test_nothing_changed_stores_no_file() -> None:
    sample = ChangeFile("t").save(lambda data: pytest.fail("stored an empty change file"))
    assert sample.total == 0 and sample.key is None

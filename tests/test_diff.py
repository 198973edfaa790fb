"""The diff engine: adds, changes and deletes by record id, whatever the column order."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xata2convex.codec import Cell, format_row
from xata2convex.diff import TableDiffer
from xata2convex.model import Column, SnapshotError, TableSchema

TABLE = TableSchema("t", (Column("name", "string"), Column("n", "int")))
HEADER: list[Cell] = ["id", "xata_version", "xata_createdAt", "xata_updatedAt", "name", "n"]


def row(record_id: str, name: str | None, n: int | None, version: int = 0) -> list[Cell]:
    return [record_id, str(version), None, None, name, None if n is None else str(n)]


def text(rows: list[list[Cell]]) -> io.StringIO:
    return io.StringIO("".join(format_row(r) for r in rows), newline="")


def run(old: list[list[Cell]] | None, new: list[list[Cell]], **kwargs: object) -> tuple[dict[str, int], list]:
    differ = TableDiffer(TABLE, None if old is None else text(old), text(new), **kwargs)  # type: ignore[arg-type]
    changes = [(c.kind, c.record_id, c.record) for c in differ]
    return differ.result.to_json(), changes


def test_classifies_adds_changes_deletes_and_unchanged() -> None:
    old = [HEADER, row("a", "x", 1), row("b", "y", 2), row("c", "z", 3)]
    new = [HEADER, row("a", "x", 1), row("b", "Y", 2, version=1), row("d", "", None)]
    counts, changes = run(old, new)
    assert counts == {"added": 1, "changed": 1, "deleted": 1, "unchanged": 1}
    assert [(k, i) for k, i, _ in changes] == [("changed", "b"), ("added", "d"), ("deleted", "c")]
    assert changes[1][2] == {
        "id": "d", "xata_version": 0, "xata_createdAt": None, "xata_updatedAt": None, "name": "", "n": None
    }  # fmt: skip
    assert changes[2][2] is None


def test_column_order_does_not_count_as_a_change() -> None:
    old = [HEADER, row("a", "x", 1)]
    order = [5, 4, 3, 2, 1, 0]
    new = [[HEADER[i] for i in order], [row("a", "x", 1)[i] for i in order]]
    assert run(old, new)[0] == {"added": 0, "changed": 0, "deleted": 0, "unchanged": 1}


def test_a_column_only_one_side_has_reads_as_null() -> None:
    old = [HEADER[:-1], row("a", "x", None)[:-1], row("b", "y", None)[:-1]]
    new = [HEADER, row("a", "x", None), row("b", "y", 7)]
    counts, changes = run(old, new)
    assert counts == {"added": 0, "changed": 1, "deleted": 0, "unchanged": 1}
    assert changes[0][1] == "b"


def test_snapshots_of_different_writers_compare_decoded_values() -> None:
    table = TableSchema(
        "t", (Column("f", "float"), Column("b", "bool"), Column("at", "datetime"), Column("j", "json"))
    )
    header: list[Cell] = ["id", "xata_version", "xata_createdAt", "xata_updatedAt", "f", "b", "at", "j"]
    old = [header, ["a", "1", None, None, "1.0", "true", "2024-01-01T00:00:00Z", '{"x":1,"y":[1,2]}']]
    new = [header, ["a", "1", None, None, "1", "t", "2024-01-01T00:00:00.000Z", '{"y": [1, 2], "x": 1}']]

    def counts(**kwargs: bool) -> dict[str, int]:
        differ = TableDiffer(table, text(old), text(new), **kwargs)
        list(differ)
        return differ.result.to_json()

    assert counts()["changed"] == 1  # one writer's text: a different text is a different value
    assert counts(different_writers=True)["unchanged"] == 1
    new[1][4] = "1.5"
    assert counts(different_writers=True)["changed"] == 1


def test_null_differs_from_empty_string() -> None:
    assert run([HEADER, row("a", None, 1)], [HEADER, row("a", "", 1)])[0]["changed"] == 1


def test_retry_ids_are_pushed_again() -> None:
    old = [HEADER, row("a", "x", 1)]
    counts, changes = run(old, [HEADER, row("a", "x", 1)], retry_ids=frozenset({"a"}))
    assert counts["unchanged"] == 1 and [(k, i) for k, i, _ in changes] == [("retry", "a")]


def test_first_sync_adds_everything() -> None:
    counts, _ = run(None, [HEADER, row("a", "x", 1), row("b", "x", 1)])
    assert counts == {"added": 2, "changed": 0, "deleted": 0, "unchanged": 0}


@settings(max_examples=60, deadline=None)
@given(
    old=st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(0, 3), max_size=40),
    new=st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(0, 3), max_size=40),
)
def test_partitioned_diff_equals_in_memory_diff(old: dict[str, int], new: dict[str, int]) -> None:
    old_rows = [HEADER, *[row(k, "v", n) for k, n in old.items()]]
    new_rows = [HEADER, *[row(k, "v", n) for k, n in new.items()]]
    whole, whole_changes = run(old_rows, new_rows, old_rows=len(old))
    parts, part_changes = run(old_rows, new_rows, old_rows=len(old), partition_rows=3)
    assert whole == parts
    assert sorted((k, i) for k, i, _ in whole_changes) == sorted((k, i) for k, i, _ in part_changes)
    expected = {
        "added": len(new.keys() - old.keys()),
        "deleted": len(old.keys() - new.keys()),
        "changed": sum(1 for k in new.keys() & old.keys() if new[k] != old[k]),
        "unchanged": sum(1 for k in new.keys() & old.keys() if new[k] == old[k]),
    }
    assert whole == expected


def test_records_with_line_breaks_and_quoted_ids() -> None:
    old = [HEADER, row("a,1", "x\r\ny", 1), row("b", 'q"uote', 2)]
    new = [HEADER, row("a,1", "x\r\ny", 1), row("b", 'q"uote\n', 2)]
    counts, changes = run(old, new)
    assert counts == {"added": 0, "changed": 1, "deleted": 0, "unchanged": 1}
    assert changes[0][2]["name"] == 'q"uote\n'


def test_a_short_record_is_refused_when_cells_are_matched_by_name() -> None:
    """Reordered columns: a record one cell short must not read its last column as null."""
    reordered = [HEADER[5], *HEADER[:5]]  # n first: cells are matched by name
    old = [reordered, ["1", "a", "0", None, None, "x"], ["2", "b", "0", None, None]]  # b is short
    with pytest.raises(SnapshotError, match=r"table 't': a snapshot record cannot be read .*5 cells"):
        run(old, [HEADER, row("a", "x", 1)])

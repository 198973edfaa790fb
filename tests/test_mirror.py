"""Names and values of the Convex mirror (xata2convex.mirror)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xata2convex.mirror import (
    FILE_FIELDS,
    MAX_DOCUMENT_BYTES,
    RESERVED_FIELD_NAMES,
    RESERVED_TABLE_NAMES,
    SYSTEM_FIELDS_BYTES,
    MirrorNameError,
    MirrorPlan,
    MirrorSchemaError,
    convex_name,
    convex_size,
    is_convex_identifier,
    json_problem,
    to_convex_document,
)
from xata2convex.model import COLUMN_TYPES, Column, DatabaseSchema, RecordError, TableSchema
from xata2convex.verify import document_digest

# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("xata", "table", "field"),
    [
        ("event-subject-matter-experts", "event_subject_matter_experts", "event_subject_matter_experts"),
        ("plain", "plain", "plain"),
        ("with space.dot", "with_space_dot", "with_space_dot"),
        ("_id", "t__id", "f__id"),
        ("_creationTime", "t__creationTime", "f__creationTime"),
        ("9lives", "t_9lives", "f_9lives"),
        ("-x", "t__x", "f__x"),
        ("xata_id", "xata_id", "f_xata_id"),
        ("xata_createdAt", "xata_createdAt", "f_xata_createdAt"),
        ("xata-version", "xata_version", "f_xata_version"),
        ("syncRuns", "t_syncRuns", "syncRuns"),
    ],
)
def test_name_mapping_examples(xata: str, table: str, field: str) -> None:
    assert convex_name(xata, "t_", RESERVED_TABLE_NAMES) == table
    assert convex_name(xata, "f_", RESERVED_FIELD_NAMES) == field


def test_long_names_are_cut_with_a_stable_hash() -> None:
    long_a, long_b = "a" * 64 + "-one", "a" * 64 + "-two"
    mapped_a, mapped_b = convex_name(long_a, "f_"), convex_name(long_b, "f_")
    assert len(mapped_a) == len(mapped_b) == 64
    assert mapped_a != mapped_b
    assert mapped_a == convex_name(long_a, "f_")
    assert mapped_a.startswith("a" * 55 + "_")
    assert convex_name("b" * 64, "f_") == "b" * 64  # exactly 64 stays


def test_non_ascii_names_stay_apart() -> None:
    names = {convex_name(name, "f_") for name in ("名前", "住所", "café", "cafè")}
    assert len(names) == 4
    assert all(is_convex_identifier(name) for name in names)


def test_table_collision_names_both() -> None:
    schema = DatabaseSchema((TableSchema("a-b", ()), TableSchema("a_b", ())))
    with pytest.raises(MirrorNameError) as caught:
        MirrorPlan.from_schema(schema)
    assert caught.value.names == ("a-b", "a_b")
    assert caught.value.table is None
    assert "'a-b'" in str(caught.value) and "'a_b'" in str(caught.value)


def test_column_collision_names_both_and_the_table() -> None:
    table = TableSchema("people", (Column("xata-id", "string"), Column("xata_id", "string")))
    with pytest.raises(MirrorNameError) as caught:
        MirrorPlan.from_schema(DatabaseSchema((table,)))
    assert caught.value.table == "people"
    assert caught.value.names == ("xata-id", "xata_id")
    assert caught.value.convex_name == "f_xata_id"
    assert "people" in str(caught.value)


def test_too_many_columns_is_a_schema_error() -> None:
    table = TableSchema("wide", tuple(Column(f"c{i}", "int") for i in range(1019)))
    with pytest.raises(MirrorSchemaError, match="wide"):
        MirrorPlan.from_schema(DatabaseSchema((table,)))
    MirrorPlan.from_schema(DatabaseSchema((TableSchema("wide", table.columns[:1018]),)))


def test_plan_lookups_both_ways() -> None:
    table = TableSchema("event-experts", (Column("full-name", "string"), Column("email", "email")))
    plan = MirrorPlan.from_schema(DatabaseSchema((table,)))
    table_plan = plan.table("event-experts")
    assert table_plan is plan.table_for_convex("event_experts")
    assert table_plan.field("full-name").convex_name == "full_name"
    assert table_plan.field_for_convex("full_name").xata_name == "full-name"
    with pytest.raises(KeyError):
        plan.table("nope")


_NAME_PIECES = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=6),
    st.sampled_from(["-", "_", " ", "9", "a", "A", "é", "名", "$", ".", "__"]),
    st.sampled_from(["_id", "_creationTime", "xata_id", "xata_version", "syncRuns", "xata-id", "1"]),
    st.just("x" * 40),
)
_NAMES = st.lists(_NAME_PIECES, min_size=1, max_size=4).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_NAMES, st.lists(_NAMES, max_size=8, unique=True)), max_size=5, unique_by=lambda t: t[0]
    )
)
def test_random_schemas_give_valid_distinct_names_or_the_collision(
    tables: list[tuple[str, list[str]]],
) -> None:
    schema = DatabaseSchema(
        tuple(TableSchema(name, tuple(Column(c, "string") for c in columns)) for name, columns in tables)
    )
    try:
        plan = MirrorPlan.from_schema(schema)
    except MirrorNameError as err:
        first, second = err.names
        assert first != second
        if err.table is None:
            scope = [t for t, _ in tables]
            mapped = {convex_name(n, "t_", RESERVED_TABLE_NAMES) for n in (first, second)}
        else:
            scope = dict(tables)[err.table]
            mapped = {convex_name(n, "f_", RESERVED_FIELD_NAMES) for n in (first, second)}
        assert first in scope and second in scope
        assert mapped == {err.convex_name}
        return
    table_names = [t.convex_name for t in plan.tables]
    assert len(set(table_names)) == len(table_names)
    for table_plan in plan.tables:
        assert is_convex_identifier(table_plan.convex_name)
        assert table_plan.convex_name not in RESERVED_TABLE_NAMES
        assert plan.table_for_convex(table_plan.convex_name).xata_name == table_plan.xata_name
        field_names = [f.convex_name for f in table_plan.fields]
        assert len(set(field_names)) == len(field_names)
        for field in table_plan.fields:
            assert is_convex_identifier(field.convex_name) and field.convex_name not in RESERVED_FIELD_NAMES
            assert table_plan.field_for_convex(field.convex_name).xata_name == field.xata_name
    assert MirrorPlan.from_schema(schema) == plan


# ---------------------------------------------------------------- values

ALL_TYPES = TableSchema(
    "all-types",
    (
        Column("a-string", "string"),
        Column("text", "text"),
        Column("email", "email"),
        Column("int", "int"),
        Column("float", "float"),
        Column("bool", "bool"),
        Column("when", "datetime"),
        Column("link", "link", link_table="all-types"),
        Column("tags", "multiple"),
        Column("doc", "json"),
        Column("embedding", "vector", vector_dimension=3),
        Column("free-vector", "vector"),
        Column("photo", "file"),
        Column("attachments", "file[]"),
    ),
)
PLAN = MirrorPlan.from_schema(DatabaseSchema((ALL_TYPES,))).table("all-types")


def convert(values: dict[str, Any], warnings: list[str] | None = None) -> dict[str, Any]:
    return to_convex_document(PLAN, {"id": "rec_1", **values}, warnings)


def record_error(values: dict[str, Any]) -> RecordError:
    with pytest.raises(RecordError) as caught:
        convert(values)
    assert caught.value.table == "all-types" and caught.value.record_id == "rec_1"
    return caught.value


def test_full_record_maps_every_type() -> None:
    record = {
        "id": "rec_1",
        "xata_version": 3,
        "xata_createdAt": "2024-01-02T03:04:05.678Z",
        "xata_updatedAt": "2024-01-02T03:04:06Z",
        "a-string": "hello",
        "text": "long\ntext",
        "email": "a@b.c",
        "int": -42,
        "float": 1.5,
        "bool": False,
        "when": "1970-01-01T00:00:01Z",
        "link": "rec_2",
        "tags": ["x", "y"],
        "doc": '{"a": [1, {"b": null}], "_under": true}',
        "embedding": [0.1, 2, -3.5],
        "photo": {"name": "p.png", "mediaType": "image/png", "size": 10, "url": "https://x/p.png"},
        "attachments": [{"id": "f1", "name": "a.txt", "version": 1}],
    }
    warnings: list[str] = []
    assert to_convex_document(PLAN, record, warnings) == {
        "xata_id": "rec_1",
        "xata_version": 3,
        "xata_createdAt": 1704164645678,
        "xata_updatedAt": 1704164646000,
        "a_string": "hello",
        "text": "long\ntext",
        "email": "a@b.c",
        "int": -42,
        "float": 1.5,
        "bool": False,
        "when": 1000,
        "link": "rec_2",
        "tags": ["x", "y"],
        "doc": {"a": [1, {"b": None}], "_under": True},
        "embedding": [0.1, 2, -3.5],
        "photo": {"name": "p.png", "mediaType": "image/png", "size": 10, "url": "https://x/p.png"},
        "attachments": [{"id": "f1", "name": "a.txt", "version": 1}],
    }
    assert warnings == []


def test_null_and_absent_values_leave_the_field_out() -> None:
    document = convert({"a-string": None, "xata_version": None, "photo": None})
    assert document == {"xata_id": "rec_1"}


def test_empty_string_is_kept() -> None:
    assert convert({"a-string": ""})["a_string"] == ""


def test_record_without_id_is_an_error() -> None:
    with pytest.raises(RecordError, match="no id") as caught:
        to_convex_document(PLAN, {"a-string": "x"})
    assert caught.value.column == "id"


@pytest.mark.parametrize("value", [2**53, -(2**53), 0, 7])
def test_ints_within_two_to_the_53_are_numbers(value: int) -> None:
    assert convert({"int": value})["int"] == value


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**64, 10**400])
def test_ints_beyond_two_to_the_53_are_record_errors(value: int) -> None:
    error = record_error({"int": value})
    assert error.column == "int" and "2^53" in error.reason


def test_float_column_keeps_negative_zero_and_huge_values() -> None:
    negative_zero = convert({"float": -0.0})["float"]
    assert negative_zero == 0.0 and math.copysign(1.0, negative_zero) == -1.0
    assert convert({"float": 1e308})["float"] == 1e308
    assert convert({"float": 5})["float"] == 5
    assert record_error({"float": 2**53 + 1}).column == "float"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_record_errors(value: float) -> None:
    assert record_error({"float": value}).column == "float"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("int", True),
        ("int", 1.0),
        ("int", "1"),
        ("float", "1.5"),
        ("bool", 1),
        ("a-string", 5),
        ("tags", "x"),
        ("tags", [1]),
        ("embedding", ["1", 2, 3]),
        ("embedding", [True, 2.0, 3.0]),
        ("photo", "p.png"),
        ("photo", {"size": "big"}),
        ("photo", {"enablePublicUrl": "yes"}),
        ("attachments", {"id": "x"}),
        ("doc", {"already": "parsed"}),
        ("when", 1700000000000),
        ("a-string", "bad \ud800 surrogate"),
    ],
)
def test_wrongly_typed_values_are_record_errors_naming_the_field(column: str, value: Any) -> None:
    error = record_error({column: value})
    assert error.column == column
    assert f"field {column!r}" in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", 1704164645000),
        ("2024-01-02T03:04:05.123Z", 1704164645123),
        ("2024-01-02T03:04:05.1Z", 1704164645100),
        ("2024-01-02T05:04:05.123+02:00", 1704164645123),
        ("2024-01-01T21:34:05-05:30", 1704164645000),
        ("2024-01-02T03:04:05", 1704164645000),  # no offset: UTC
        ("2024-01-02T03:04:05.000500Z", 1704164645000.5),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_datetimes_become_ms_since_epoch(text: str, expected: float) -> None:
    assert convert({"when": text})["when"] == expected
    assert isinstance(convert({"when": text})["when"], type(expected))


@pytest.mark.parametrize("text", ["yesterday", "", "2024-13-01T00:00:00Z", "0000-01-01T00:00:00Z"])
def test_unparsable_datetimes_are_record_errors(text: str) -> None:
    assert record_error({"when": text}).column == "when"


def test_metadata_timestamps_become_ms() -> None:
    document = convert({"xata_createdAt": "2024-01-02T03:04:05.5+00:00", "xata_version": 0})
    assert document["xata_createdAt"] == 1704164645500
    assert document["xata_version"] == 0


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (nested(16), "nested deeper"),
        (nested(17), "nested deeper"),
        ({"$key": 1}, "$key"),
        ({"ok": [{"$inner": 1}]}, "$inner"),
        ({"naïve": 1}, "na"),
        ({"tab\tkey": 1}, "tab"),
        ({"": 1}, "''"),
        (list(range(8193)), "8193 elements"),
        ({"big": 2**53 + 1}, "2^53"),
        ({f"k{i}": i for i in range(1025)}, "1025 keys"),
    ],
)
def test_json_convex_cannot_store_falls_back_to_its_text(value: Any, why: str) -> None:
    text = json.dumps(value)
    warnings: list[str] = []
    assert convert({"doc": text}, warnings)["doc"] == text
    assert len(warnings) == 1
    assert "'all-types'" in warnings[0] and "'rec_1'" in warnings[0] and "'doc'" in warnings[0]
    assert why in warnings[0]


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "{not json", '"\\ud800"'])
def test_json_text_that_is_not_storable_json_falls_back(text: str) -> None:
    warnings: list[str] = []
    assert convert({"doc": text}, warnings)["doc"] == text
    assert len(warnings) == 1


def test_deep_json_that_python_cannot_parse_falls_back() -> None:
    text = "[" * 100_000 + "]" * 100_000
    warnings: list[str] = []
    assert convert({"doc": text}, warnings)["doc"] == text
    assert warnings


@pytest.mark.parametrize(
    "value",
    [nested(15), list(range(8192)), {"_under": 1, "a b": [None, True, 1.5, "é"]}, "just text", None, 2**53],
)
def test_json_convex_can_store_is_parsed(value: Any) -> None:
    warnings: list[str] = []
    document = convert({"doc": json.dumps(value)}, warnings)
    assert document["doc"] == value
    assert warnings == []


def test_json_null_is_a_present_null_not_an_absent_field() -> None:
    assert convert({"doc": "null"}) == {"xata_id": "rec_1", "doc": None}


@pytest.mark.parametrize("column", ["tags", "embedding", "free-vector", "attachments"])
def test_arrays_over_8192_elements_are_record_errors(column: str) -> None:
    item: Any = {"tags": "t", "embedding": 0.5, "free-vector": 0.5, "attachments": {"name": "f"}}[column]
    error = record_error({column: [item] * 8193})
    assert error.column == column and "8193" in error.reason
    if column in ("tags", "free-vector"):
        assert len(convert({column: [item] * 8192})[convex_name(column, "f_")]) == 8192


def test_vector_must_have_its_declared_dimension() -> None:
    error = record_error({"embedding": [1.0, 2.0]})
    assert "dimension 3" in error.reason
    assert convert({"free-vector": [1.0, 2.0]})["free_vector"] == [1.0, 2.0]


def test_file_drops_expiring_fields_and_unknown_ones_with_a_warning() -> None:
    photo = {
        "name": "p.png",
        "mediaType": "image/png",
        "size": 3,
        "version": 2,
        "url": "https://x/p.png",
        "enablePublicUrl": True,
        "signedUrlTimeout": 600,
        "uploadUrlTimeout": 86400,
        "signedUrl": "https://x/p.png?sig=secret",
        "uploadUrl": "https://x/upload?sig=secret",
        "storageKey": "k",
        "attributes": {"width": 10, "height": 20},
        "mystery": 1,
        "uploadKey": None,
    }
    warnings: list[str] = []
    mirrored = convert({"photo": photo, "attachments": [{**photo, "id": "f1"}]}, warnings)
    expected = {k: v for k, v in photo.items() if k not in ("signedUrl", "uploadUrl", "mystery", "uploadKey")}
    assert mirrored["photo"] == expected
    assert mirrored["attachments"] == [{**expected, "id": "f1"}]
    assert set(expected) | {"id"} <= set(FILE_FIELDS)
    assert len(warnings) == 2 and all("'mystery'" in w for w in warnings)
    assert "secret" not in json.dumps(mirrored)


def test_file_attributes_convex_cannot_store_fall_back_to_text() -> None:
    warnings: list[str] = []
    mirrored = convert({"photo": {"name": "p", "attributes": {"$meta": 1}}}, warnings)
    assert mirrored["photo"] == {"name": "p", "attributes": '{"$meta": 1}'}
    assert len(warnings) == 1 and "attributes" in warnings[0]


def test_one_mib_text_is_a_record_error_naming_the_field() -> None:
    error = record_error({"text": "x" * MAX_DOCUMENT_BYTES, "a-string": "small"})
    assert error.column == "text" and "1 MiB" in error.reason
    near = MAX_DOCUMENT_BYTES - SYSTEM_FIELDS_BYTES - 100
    assert len(convert({"text": "x" * near})["text"]) == near


def test_document_size_counts_multibyte_characters() -> None:
    error = record_error({"text": "é" * (MAX_DOCUMENT_BYTES // 2)})
    assert error.column == "text"


def test_convex_size_follows_convexs_rule() -> None:
    assert convex_size({"a": None, "bb": [True, 1, 2.5, "é"]}) == 2 + (1 + 1 + 1) + (
        2 + 1 + 2 + 1 + 9 + 9 + 4
    )


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from([c.name for c in ALL_TYPES.columns]), _JSONISH | st.text(), max_size=6)
)
def test_any_input_gives_a_storable_document_or_a_record_error(values: dict[str, Any]) -> None:
    try:
        document = convert(values)
    except RecordError as err:
        assert err.column in values
        return
    json.dumps(document, allow_nan=False)
    assert json_problem({k: v for k, v in document.items() if k != "doc"}, 1) is None
    assert json_problem(document.get("doc"), 2) is None
    assert SYSTEM_FIELDS_BYTES + convex_size(document) <= MAX_DOCUMENT_BYTES


def test_every_column_type_is_mapped() -> None:
    assert {c.type for c in ALL_TYPES.columns} == COLUMN_TYPES


# ---------------------------------------------------------------- comparing back (verify)


def as_convex_returns_it(document: dict[str, Any]) -> dict[str, Any]:
    """What mirror:listPage gives back: system fields added, numbers as float64 through JSON."""

    def floats(value: Any) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, list):
            return [floats(v) for v in value]
        return {k: floats(v) for k, v in reversed(value.items())}

    returned = json.loads(json.dumps(floats(document)))
    return {"_id": "j57abc", "_creationTime": 1.7e12, **returned}


SAMPLE = {
    "id": "rec_1",
    "xata_version": 1,
    "xata_updatedAt": "2024-01-02T03:04:05.123Z",
    "a-string": "a",
    "int": 0,
    "float": -0.0,
    "bool": True,
    "doc": '{"z": 1, "a": [1, 2]}',
    "photo": {"name": "p", "size": 1, "signedUrl": "https://x?sig"},
}


def test_mirrored_document_equals_its_record() -> None:
    document = as_convex_returns_it(to_convex_document(PLAN, SAMPLE))
    assert document_digest(document) == document_digest(to_convex_document(PLAN, SAMPLE))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"a_string": "b"}, "a_string"),
        ({"bool": 1.0}, "bool"),
        ({"int": False}, "int"),
        ({"doc": {"z": 1, "a": [2, 1]}}, "doc"),
        ({"extra": 1.0}, "extra"),
        ({"photo": {"name": "p", "size": 1.0, "signedUrl": "https://x?sig"}}, "photo"),
    ],
)
def test_changed_document_differs_on_that_field(change: dict[str, Any], field: str) -> None:
    document = {**as_convex_returns_it(to_convex_document(PLAN, SAMPLE)), **change}
    assert field in document
    assert document_digest(document) != document_digest(to_convex_document(PLAN, SAMPLE))


def test_missing_field_differs() -> None:
    document = as_convex_returns_it(to_convex_document(PLAN, SAMPLE))
    del document["xata_updatedAt"]
    assert document_digest(document) != document_digest(to_convex_document(PLAN, SAMPLE))

"""Values that do not fit their column never abort the export and are never coerced: the record is
left out of the snapshot and listed in its manifest (table, record, field, reason), its Convex
document stays as it was (neither updated nor deleted), the run reports it, and once the value is
fixed in Xata the record syncs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import Setup, bench_setup
from xata2convex.cli import main
from xata2convex.model import Column, SnapshotManifest, TableSchema
from xata2convex.snapshot import RecordsCsv, SnapshotStore
from xata2convex.storage import open_blob_store

TABLE = TableSchema(
    "things",
    (Column("flag", "bool"), Column("count", "int"), Column("embedding", "vector"), Column("name", "string")),
)
FINE = {"flag": True, "count": 1, "embedding": [0.5, 1.0], "name": "ok"}
UNFIT: dict[str, tuple[dict[str, Any], str, str]] = {
    "a string in a bool column": (
        {"flag": "yes"},
        "flag",
        "expected a bool, got str: 'yes' (column type bool)",
    ),
    "a string in an int column": (
        {"count": "12"},
        "count",
        "expected an int, got str: '12' (column type int)",
    ),
    "a float in an int column": ({"count": 1.5}, "count", "expected an int, got float: 1.5"),
    "NaN in a vector": ({"embedding": [math.nan, 1.0]}, "embedding", "not JSON compliant"),
    "a lone surrogate": ({"name": "a\ud800b"}, "name", "lone surrogate"),
}


@pytest.mark.parametrize("case", UNFIT)
def test_a_value_that_does_not_fit_leaves_its_record_out_and_names_it(case: str) -> None:
    values, field, reason = UNFIT[case]
    pages = [[{"id": "rec_a", **FINE}, {"id": "rec_bad", **FINE, **values}], [{"id": "rec_c", **FINE}]]
    rendered = RecordsCsv(TABLE, pages)
    data = b"".join(rendered.chunks()).decode()
    assert rendered.rows == 2 and "rec_a" in data and "rec_c" in data and "rec_bad" not in data
    [unfit] = rendered.unfit
    assert (unfit.record_id, unfit.field) == ("rec_bad", field) and reason in unfit.reason


def test_the_manifest_lists_them_and_old_manifests_still_read(tmp_path: Path) -> None:
    store = SnapshotStore(open_blob_store(str(tmp_path)), "db", "main")
    table = store.write_table("s1", TABLE, [[{"id": "rec_bad", **FINE, "flag": "yes"}]])
    manifest = SnapshotManifest("s1", "db", "main", "xata", "now", "h", (table,))
    as_json = manifest.to_json()
    assert as_json["tables"][0]["rejected"] == [
        {"id": "rec_bad", "field": "flag", "reason": "expected a bool, got str: 'yes' (column type bool)"}
    ]
    assert SnapshotManifest.from_json(as_json) == manifest
    del as_json["tables"][0]["rejected"]  # written before the field existed
    assert SnapshotManifest.from_json(as_json).tables[0].rejected == ()


@pytest.fixture
def bench(xata_standin: XataStandInFactory, tmp_path: Path) -> Iterator[Setup]:
    with bench_setup(xata_standin, tmp_path, records=40) as setup:
        yield setup


def run(setup: Setup, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["run", "--json", *args], env=setup.env, catch_exceptions=False)
    return result.exit_code, json.loads(result.output.splitlines()[0])


@pytest.mark.parametrize("mode", [(), ("--full",)], ids=["incremental", "full"])
def test_a_bool_holding_yes_keeps_its_document_until_fixed(bench: Setup, mode: tuple[str, ...]) -> None:
    assert run(bench)[0] == 0
    bad, other = bench.xata.table_ids("bench_00")[:2]
    kept = bench.documents("bench_00")[bad]
    bench.xata.force_values("bench_00", bad, {"active": "yes", "name": "renamed while broken"})
    bench.sdk.records().update("bench_00", other, {"name": "edited"})
    bench.sdk.records().update("bench_01", bench.xata.table_ids("bench_01")[0], {"name": "edited too"})

    code, report = run(bench, *mode)
    assert code == 2 and report["status"] == "partial"  # the export did not abort
    table = report["tables"]["bench_00"]
    assert table["notExported"] == [
        {"id": bad, "field": "active", "reason": "expected a bool, got str: 'yes' (column type bool)"}
    ]
    assert table["deleted"] == 0 and report["tables"]["bench_01"]["status"] == "applied"
    documents = bench.documents("bench_00")
    assert documents[bad] == kept  # neither updated nor deleted
    assert documents[other]["name"] == "edited" and len(documents) == 20
    assert bench.documents("bench_01")[bench.xata.table_ids("bench_01")[0]]["name"] == "edited too"
    code, again = run(bench)  # retried every run: still reported, still kept
    assert code == 2 and again["tables"]["bench_00"]["notExported"][0]["id"] == bad
    assert bench.documents("bench_00")[bad] == kept

    bench.sdk.records().update("bench_00", bad, {"active": False})  # fixed in Xata
    code, fixed = run(bench)
    assert code == 0, fixed
    assert "notExported" not in fixed["tables"]["bench_00"]
    synced = bench.documents("bench_00")[bad]
    assert synced["active"] is False and synced["name"] == "renamed while broken"
    verified = CliRunner().invoke(main, ["verify"], env=bench.env)
    assert verified.exit_code == 0, verified.output

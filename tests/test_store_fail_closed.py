"""Stores fail closed: a table file is used only after its bytes match the manifest's SHA-256 and row
count, checked as it streams. A changed or cut file fails that table naming the file, nothing of it
reaches Convex, the other tables apply, and the next export heals it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.xata import XataStandInFactory
from tests.test_snapshot_store import TABLE, write_snapshot
from tests.test_sync import Setup, bench_setup
from xata2convex import jobs
from xata2convex.cli import main
from xata2convex.diff import TableDiffer
from xata2convex.model import SnapshotError
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import open_blob_store


def flip_a_digit(data: bytes) -> bytes:
    at = data.index(b"rec_1_5,") + len(b"rec_1_5,")  # the record's xata_version: 0 -> 1
    return data[:at] + b"1" + data[at + 1 :]


def cut_the_last_row(data: bytes) -> bytes:
    return data[: data.rstrip(b"\r\n").rindex(b"\n") + 1]


def cut_mid_row(data: bytes) -> bytes:
    return data[: len(data) - 7]


def not_utf8(data: bytes) -> bytes:
    at = data.index(b"rec_2_1")
    return data[:at] + b"\xff" + data[at + 1 :]


def an_extra_row(data: bytes) -> bytes:
    return data + data[data.index(b"\n") + 1 : data.index(b"\n", data.index(b"\n") + 1) + 1]


def swapped_rows(data: bytes) -> bytes:  # same rows, same count: only the hash tells
    lines = data.split(b"\r\n")
    lines[1], lines[2] = lines[2], lines[1]
    return b"\r\n".join(lines)


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "a changed digit": flip_a_digit,
    "the last row cut": cut_the_last_row,
    "cut inside a row": cut_mid_row,
    "a byte that is not UTF-8": not_utf8,
    "a row added": an_extra_row,
    "two rows swapped": swapped_rows,
}


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(open_blob_store(str(tmp_path / "snaps")), "db", "main")


def damage(store: SnapshotStore, snapshot_id: str, table: str, how: Callable[[bytes], bytes]) -> Path:
    path = Path(store.describe(store.table_key(snapshot_id, table)))
    path.write_bytes(how(path.read_bytes()))
    return path


@pytest.mark.parametrize("how", DAMAGE)
def test_every_reader_refuses_a_damaged_file_naming_it(store: SnapshotStore, how: str) -> None:
    manifest = write_snapshot(store)
    sid = manifest.snapshot_id
    path = damage(store, sid, "people", DAMAGE[how])
    readers: dict[str, Callable[[], object]] = {
        "iter_text": lambda: list(store.iter_text(sid, "people")),
        "iter_records": lambda: list(store.iter_records(sid, TABLE)),
        "check_table": lambda: store.check_table(sid, manifest.table("people")),
        "diff": lambda: list(TableDiffer(TABLE, None, store.iter_text(sid, "people"))),
    }
    for name, read in readers.items():
        with pytest.raises(SnapshotError, match="does not match its manifest") as refused:
            read()
        assert str(path) in str(refused.value), name


def test_an_intact_file_reads_and_checks(store: SnapshotStore) -> None:
    manifest = write_snapshot(store)
    store.check_table(manifest.snapshot_id, manifest.table("people"))
    assert sum(1 for _ in store.iter_records(manifest.snapshot_id, TABLE)) == 300


def test_the_diff_yields_nothing_before_the_new_file_is_checked(store: SnapshotStore) -> None:
    manifest = write_snapshot(store, rows_pages=30)  # 3,000 rows: many batches of changes
    damage(store, manifest.snapshot_id, "people", cut_the_last_row)
    changes: Iterator[object] = iter(
        TableDiffer(TABLE, None, store.iter_text(manifest.snapshot_id, "people"))
    )
    with pytest.raises(SnapshotError, match="does not match its manifest"):
        next(changes)  # not one added record before the end of the file


def flip_a_digit_in_bench(data: bytes) -> bytes:
    at = data.index(b" row 1,") + len(b" row ")
    return data[:at] + b"2" + data[at + 1 :]


BENCH_DAMAGE = {"a changed name": flip_a_digit_in_bench, "the last row cut": cut_the_last_row}


@pytest.fixture
def bench(xata_standin: XataStandInFactory, tmp_path: Path) -> Iterator[Setup]:
    with bench_setup(xata_standin, tmp_path, records=60) as setup:
        yield setup


def cli(setup: Setup, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=setup.env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("how", BENCH_DAMAGE)
def test_a_damaged_snapshot_file_is_not_applied_and_the_next_export_heals_it(bench: Setup, how: str) -> None:
    assert cli(bench, "run")[0] == 0
    bench.sdk.records().update("bench_00", bench.xata.table_ids("bench_00")[0], {"name": "edited 0"})
    bench.sdk.records().update("bench_01", bench.xata.table_ids("bench_01")[0], {"name": "edited 1"})
    before = bench.documents("bench_01")
    snapshot_id = jobs.run_export(bench.config).snapshot_id
    store = bench.store()
    path = damage(store, snapshot_id, "bench_01", BENCH_DAMAGE[how])

    code, output = cli(bench, "sync", "--json")
    report = json.loads(output)
    assert code == 2
    assert report["tables"]["bench_01"]["status"] == "failed"
    assert str(path) in report["tables"]["bench_01"]["message"]
    assert report["tables"]["bench_00"]["status"] == "applied"
    assert report["tables"]["bench_00"]["changed"] == 1
    assert bench.documents("bench_01") == before  # nothing of the damaged file reached Convex

    code, output = cli(bench, "run", "--json")  # a fresh export: a fresh file
    assert code == 0, output
    healed = bench.documents("bench_01")
    assert healed[bench.xata.table_ids("bench_01")[0]]["name"] == "edited 1" and len(healed) == 30
    assert cli(bench, "verify")[0] == 0


def text_after_a_header_quote(data: bytes) -> bytes:
    """Quotes that pair up (so records split as usual) around text no CSV reader accepts."""
    return b'"id"x' + data[len(b"id") :]


@pytest.mark.parametrize("which", ["new", "applied"])
def test_a_damaged_header_fails_or_reconciles_that_table_only(bench: Setup, which: str) -> None:
    """A header is read before its file's checksum is known; its damage must still be that table's."""
    assert cli(bench, "run")[0] == 0
    applied = bench.store().latest_snapshot()
    bench.sdk.records().update("bench_00", bench.xata.table_ids("bench_00")[0], {"name": "edited 0"})
    bench.sdk.records().update("bench_01", bench.xata.table_ids("bench_01")[0], {"name": "edited 1"})
    before = bench.documents("bench_01")
    snapshot_id = jobs.run_export(bench.config).snapshot_id
    assert applied is not None
    damage(bench.store(), snapshot_id if which == "new" else applied, "bench_01", text_after_a_header_quote)
    code, output = cli(bench, "sync", "--json")
    report = json.loads(output)
    assert report["tables"]["bench_00"]["status"] == "applied"
    damaged = report["tables"]["bench_01"]
    if which == "new":
        assert code == 2 and damaged["status"] == "failed"
        assert "table 'bench_01': a snapshot's CSV header cannot be read" in damaged["message"]
        assert bench.documents("bench_01") == before
    else:  # the applied file is only the diff's base: a reconcile against Convex does without it
        assert code == 0 and damaged["status"] == "applied" and "reconcil" in damaged["message"]
        assert cli(bench, "verify")[0] == 0


def test_the_unchanged_shortcut_checks_the_file(bench: Setup) -> None:
    assert cli(bench, "run")[0] == 0
    snapshot_id = jobs.run_export(bench.config).snapshot_id  # nothing changed in Xata
    path = damage(bench.store(), snapshot_id, "bench_00", cut_the_last_row)
    report = json.loads(cli(bench, "sync", "--json")[1])
    assert (
        report["tables"]["bench_00"]["status"] == "failed"
        and str(path) in report["tables"]["bench_00"]["message"]
    )
    assert report["tables"]["bench_01"]["status"] == "unchanged"


def test_verify_reports_a_damaged_applied_file_instead_of_passing(bench: Setup) -> None:
    assert cli(bench, "run")[0] == 0
    state, _ = bench.store().read_state()
    assert state is not None and state.snapshot_id is not None
    path = damage(bench.store(), state.snapshot_id, "bench_01", flip_a_digit_in_bench)
    code, output = cli(bench, "verify")
    assert code == 1
    assert f"bench_01: NOT CHECKED: {path} does not match its manifest" in output
    verified = json.loads(cli(bench, "verify", "--json")[1])
    assert verified["tables"]["bench_00"]["equal"] and not verified["tables"]["bench_01"]["equal"]
    code, output = cli(bench, "snapshots", "diff", state.snapshot_id, state.snapshot_id)
    assert code == 1 and str(path) in output

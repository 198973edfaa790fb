"""Sources fail closed: a page that is not the documented shape, a repeated cursor or an implausible
page fails the table's export naming table and page, no manifest is written, and Convex keeps what it
had (the next sync finds nothing new to apply)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.fixtures.xata import XataStandInFactory
from tests.test_export import source_for
from tests.test_sync import seed_schema
from xata2convex import jobs
from xata2convex.cli import main
from xata2convex.config import Config
from xata2convex.convex_sink import MirrorWriter
from xata2convex.model import SourceError, TableSchema
from xata2convex.xata_source import PageChecker
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed
from xata2convex_local.xata_server import PAGE_FAULTS, PageFault


def pg_page(ids: list[str]) -> dict[str, Any]:
    return {"records": [{"xata_id": i} for i in ids], "meta": {"page": {"cursor": "", "more": False}}}


def page(ids: list[str], cursor: Any = "c", more: Any = False) -> dict[str, Any]:
    return {"records": [{"id": i} for i in ids], "meta": {"page": {"cursor": cursor, "more": more}}}


# Each case: the pages one table's query answers, in order, and what the checker must say.
CHECKER_CASES: dict[str, tuple[list[Any], str | None]] = {
    "one full table": ([page(["a", "b"], "c1", True), page(["c"], "c2", False)], None),
    "an empty table": ([page([], "c0", False)], None),
    "a short page with more is read on": ([page(["a"], "c1", True), page(["b", "c"], "c2", False)], None),
    "postgres-enabled ids": ([pg_page(["a", "b"])], None),
    "not an object": ([["a"]], "page 1: Xata's answer has no `records` list"),
    "empty object": ([page(["a"], "c1", True), {}], "page 2: Xata's answer has no `records` list"),
    "records not a list": ([{"records": {"id": "a"}, "meta": {"page": {"cursor": "c", "more": False}}}],
                           "page 1: Xata's answer has no `records` list"),
    "no meta": ([{"records": []}], "page 1: Xata's answer has no `meta.page`"),
    "more not a bool": ([page(["a"], "c", "false")], "page 1: Xata's answer has no `meta.page`"),
    "cursor not a string": ([page(["a"], None, False)], "page 1: Xata's answer has no `meta.page`"),
    "a record without an id": ([{"records": [{"id": "a"}, {"name": "x"}],
                                 "meta": {"page": {"cursor": "c", "more": False}}}],
                               "page 1: record 2 of the page is not an object with an id"),
    "a record that is not an object": ([{"records": ["a"], "meta": {"page": {"cursor": "c", "more": False}}}],
                                       "page 1: record 1 of the page is not an object"),
    "larger than asked": ([page(["a", "b", "c"], "c1", True)], "page 1: 3 records on a page of 2"),
    "empty with more": ([page([], "c1", True)], "page 1: an empty page where more records were announced"),
    "empty end after more": ([page(["a", "b"], "c1", True), page([], "c2", False)],
                             "page 2: an empty page where more records were announced"),
    "a repeated cursor": ([page(["a", "b"], "c1", True), page(["c", "d"], "c1", True)],
                          "page 2: Xata sent a cursor it had already sent"),
    "an id on two pages": ([page(["a", "b"], "c1", True), page(["b"], "c2", False)],
                           "page 2: record 'b' was already read"),
    "an id twice on a page": ([page(["a", "a"], "c1", False)], "page 1: record 'a' was already read"),
    "past the page bound": ([page([f"{n}a", f"{n}b"], f"c{n}", True) for n in range(3)],
                            "page 3: more than 3 pages"),
}  # fmt: skip


@pytest.mark.parametrize("case", CHECKER_CASES)
def test_page_checker(case: str) -> None:
    pages, error = CHECKER_CASES[case]
    checker = PageChecker("t", page_size=2, max_records=5)
    try:
        for body in pages:
            checked = checker.check(body)
    except SourceError as exc:
        assert error is not None, f"refused a valid answer: {exc}"
        assert str(exc).startswith(f"table 't' {error}"), str(exc)
        return
    assert error is None, "accepted an answer it must refuse"
    assert checked.next_cursor is None  # the last page ends the table


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def two_page_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    seed = tmp_path_factory.mktemp("seed")
    write_bench_seed(seed, records=2_400, tables=2)  # 1,200 records a table: 2 pages of 1,000
    return seed


@pytest.mark.parametrize("kind", PAGE_FAULTS)
def test_a_broken_page_fails_the_export_naming_table_and_page(
    kind: str, xata_standin: XataStandInFactory, two_page_seed: Path, tmp_path: Path
) -> None:
    standin = xata_standin(two_page_seed, page_fault=PageFault("bench_01", 2, kind))
    env = {**standin.settings(), "SNAPSHOT_URI": str(tmp_path / "snapshots")}
    result = invoke(env, "export")
    assert result.exit_code == 1, result.output
    assert "table 'bench_01' page 2" in result.output and "no manifest written" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "snapshots").rglob("manifest.json"))
    queries = [r for r in standin.requests if r.path.endswith("/bench_01/query")]
    assert len(queries) <= 3  # a repeating cursor is caught on the page it repeats


def test_a_repeating_cursor_ends_within_a_bounded_number_of_pages(xata_standin: XataStandInFactory) -> None:
    standin = xata_standin(page_fault=PageFault("users", 1, "repeat-cursor"))
    source = source_for(standin, page_size=5)
    with pytest.raises(SourceError, match=r"table 'users' page 2: record .* was already read"):
        list(source.read_table(TableSchema("users", ())))
    assert standin.request_count == 2


def test_after_a_broken_export_the_sync_leaves_convex_as_it_was(
    xata_standin: XataStandInFactory, two_page_seed: Path, tmp_path: Path
) -> None:
    standin = xata_standin(two_page_seed)
    with project_for_schema(seed_schema(two_page_seed)) as project, LocalConvex(project) as convex:
        env = {**standin.settings(), **convex.settings(), "SNAPSHOT_URI": str(tmp_path / "snapshots")}
        assert invoke(env, "run").exit_code == 0
        writer = MirrorWriter(jobs.open_convex(Config.from_env(env)))
        before = {t: list(writer.list_documents(t)) for t in ("bench_00", "bench_01")}
        assert [len(d) for d in before.values()] == [1_200, 1_200]
        standin.page_fault = PageFault("bench_01", 2, "empty-end")
        broken = invoke(env, "run", "--json")
        assert broken.exit_code == 1
        assert "table 'bench_01' page 2" in json.loads(broken.output.splitlines()[0])["error"]
        synced = invoke(env, "sync", "--json")
        assert synced.exit_code == 0, synced.output
        tables = json.loads(synced.output)["tables"]
        assert all(t["status"] == "unchanged" and t["deleted"] == 0 for t in tables.values())
        assert {t: list(writer.list_documents(t)) for t in before} == before

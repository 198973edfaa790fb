"""Convex's 16 MiB per-transaction read limit, through MirrorWriter against the local Convex stand-in
(which enforces Convex's transaction limits): large documents in the mirror must not wedge a table."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest

from xata2convex.convex_sink import BatchLimitReached, ConvexHttp, MirrorWriter, PushStats
from xata2convex.model import schema_from_xata
from xata2convex_local.convex_server import LocalConvex, project_for_schema

TABLE = "notes"
IDS = [f"rec_{i:04d}" for i in range(120)]
BIG = 300_000  # 120 documents of ~300 KB: ~36 MB, over twice the read limit


@pytest.fixture(scope="module")
def notes_convex() -> Iterator[LocalConvex]:
    schema = schema_from_xata({"tables": [{"name": TABLE, "columns": [{"name": "body", "type": "text"}]}]})
    with project_for_schema(schema) as project, LocalConvex(project) as convex:
        yield convex


def writer_for(convex: LocalConvex) -> MirrorWriter:
    return MirrorWriter(ConvexHttp(convex.url, convex.deploy_key, max_attempts=1))


def document(xata_id: str, n: int, size: int) -> dict[str, Any]:
    return {"xata_id": xata_id, "xata_version": n, "body": chr(97 + n % 26) * size}


def calls(convex: LocalConvex, path: str) -> list[dict[str, Any]]:
    return [entry for entry in convex.request_log() if entry["path"] == path]


def test_large_documents_are_replaced_deleted_and_listed_within_the_read_limit(
    notes_convex: LocalConvex,
) -> None:
    convex, writer = notes_convex, writer_for(notes_convex)
    big = [document(xata_id, n, BIG) for n, xata_id in enumerate(IDS)]
    inserted = PushStats()
    writer.upsert(TABLE, big, inserted)
    assert (inserted.inserted, inserted.updated) == (120, 0)

    convex.reset_log()
    listed = list(writer.list_documents(TABLE))
    assert [d["xata_id"] for d in listed] == IDS
    assert listed[5]["body"] == big[5]["body"]
    pages = calls(convex, "mirror:listPage")
    assert len(pages) > 2  # 1000 documents asked, but each page stops at the byte bound
    assert all(page["status"] == "success" for page in pages)

    # Small replacements fit one batch by their own bytes; reading the old documents does not.
    convex.reset_log()
    small = [document(xata_id, n, 10) for n, xata_id in enumerate(IDS)]
    replaced = PushStats()
    writer.upsert(TABLE, small, replaced)
    assert (replaced.inserted, replaced.updated, replaced.unchanged) == (0, 120, 0)
    upserts = calls(convex, "mirror:upsertBatch")
    assert [entry["status"] for entry in upserts] == ["success"] * len(upserts)
    assert len(upserts) == replaced.batches > 2
    sent = [entry["documents"] for entry in upserts]
    assert sent[0] == 120
    assert [a - b for a, b in pairwise(sent)] == [e["result"]["processed"] for e in upserts[:-1]]
    assert {d["xata_id"]: d["body"] for d in writer.list_documents(TABLE)} == {
        d["xata_id"]: d["body"] for d in small
    }

    writer.upsert(TABLE, big, PushStats())  # large again, to delete
    convex.reset_log()
    deleted = PushStats()
    writer.delete(TABLE, IDS, deleted)
    assert (deleted.deleted, deleted.missing) == (120, 0)
    deletes = calls(convex, "mirror:deleteBatch")
    assert [entry["status"] for entry in deletes] == ["success"] * len(deletes)
    assert len(deletes) == deleted.batches > 2
    assert list(writer.list_documents(TABLE)) == []


def test_each_resent_remainder_counts_for_the_fault_hook(notes_convex: LocalConvex) -> None:
    writer = writer_for(notes_convex)
    ids = [f"hook_{i:03d}" for i in range(60)]
    writer.upsert(TABLE, [document(xata_id, n, BIG) for n, xata_id in enumerate(ids)], PushStats())
    writer.stop_after_batches = writer.total_batches + 1
    first = PushStats()
    with pytest.raises(BatchLimitReached):
        writer.delete(TABLE, ids, first)
    assert first.batches == 1
    assert 0 < first.deleted < 60  # the first call did part of the batch, then the hook stopped the rest

    writer.stop_after_batches = None
    again = PushStats()
    writer.delete(TABLE, ids, again)
    assert (again.deleted, again.missing) == (60 - first.deleted, first.deleted)
    assert not {d["xata_id"] for d in writer.list_documents(TABLE)} & set(ids)

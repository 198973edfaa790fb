"""Links as Convex references: the order tables are written in, and the pass that ends a run.

For a link field `f` to a mirrored table, Convex keeps `f_id`, the target document's `_id` (see
convex/mirror.ts). A document's links are resolved when it is written, so the sync writes a link's
target table before the tables that point at it (`link_order`). What that cannot settle (a cycle, a
self link, a target added after the documents pointing at it, a target deleted and re-created) is
settled at the end of the run by `resolve_pending`: for each link whose table was written with
unresolved links, or whose target table got new documents, `mirror:resolveLinks` walks the
documents still waiting (index `by_f_id`) and sets `f_id` where the target now exists. A run that
writes nothing calls nothing. Deleting a target takes `f_id` off the documents pointing at it in
`mirror:deleteBatch` itself.

Costs in Convex: writing a document reads one index per link it has set (`upsert_cost`), which the
writer counts when it sizes a batch (Convex allows 4,096 index reads per transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .convex_sink import MirrorSink, MirrorWriter
from .mirror import FieldPlan, MirrorPlan, TablePlan
from .state import LinkStats


def link_order(plan: MirrorPlan) -> list[TablePlan]:
    """The tables with every link's target before the tables pointing at it, where no cycle prevents
    it; otherwise (and among tables that do not depend on each other) in schema order."""
    by_convex = {table.convex_name: table for table in plan.tables}
    ordered: list[TablePlan] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(table: TablePlan) -> None:
        if table.convex_name in placed or table.convex_name in visiting:
            return  # done, or a cycle: resolved at the end of the run
        visiting.add(table.convex_name)
        for link in table.links:
            if link.link_table is not None and link.link_table != table.convex_name:
                place(by_convex[link.link_table])
        visiting.discard(table.convex_name)
        placed.add(table.convex_name)
        ordered.append(table)

    for table in plan.tables:
        place(table)
    return ordered


def upsert_cost(table: TablePlan) -> Callable[[dict[str, Any]], int]:
    """A document's index reads in `mirror:upsertBatch`: its own lookup by `xata_id` and one per link
    it has set."""
    fields = [link.convex_name for link in table.links]
    return lambda document: 1 + sum(1 for name in fields if document.get(name) is not None)


def links_to_resolve(
    tables: Iterable[TablePlan], inserted: Iterable[str], unresolved: Iterable[str], everything: bool = False
) -> list[tuple[TablePlan, FieldPlan]]:
    """(table, link) pairs the end of a run must resolve: written with unresolved links, or whose
    target table got new documents (Convex table names); `everything` after a run that died."""
    inserted, unresolved = set(inserted), set(unresolved)
    return [
        (table, link)
        for table in tables
        for link in table.links
        if everything or table.convex_name in unresolved or link.link_table in inserted
    ]


def resolve_pending(sink: MirrorSink, tables: Iterable[TablePlan], everything: bool = False) -> LinkStats:
    """The end-of-run pass over `tables` (those the deployed mirror has): `mirror:resolveLinks` for
    every link this run's writes left open, or for every link when `everything`."""
    stats = LinkStats()
    if not sink.writes:
        return stats
    for table, link in links_to_resolve(tables, sink.inserted_tables, sink.unresolved_tables, everything):
        cursor: dict[str, Any] | None = None
        while True:
            result = sink.resolve_links(table.convex_name, link.convex_name, cursor)
            stats.calls += 1
            stats.linked += int(result["linked"])
            stats.scanned += int(result["scanned"])
            cursor = result["next"]
            if cursor is None:
                break
    sink.inserted_tables.clear()
    sink.unresolved_tables.clear()
    return stats


@dataclass
class LinkCheck:
    """`check_links` for one table: links whose `f_id` is not what their field `f` says."""

    checked: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)


def check_links(writer: MirrorWriter, plan: MirrorPlan, max_examples: int = 10) -> dict[str, LinkCheck]:
    """Per Xata table, whether every `f_id` is the `_id` of the document whose `xata_id` is `f`, and
    absent exactly when no such document is mirrored. Reads each target table once per link to it."""
    checks: dict[str, LinkCheck] = {}
    targets: dict[str, dict[str, str]] = {}  # convex table -> xata_id -> _id
    for table in plan.tables:
        check = checks.setdefault(table.xata_name, LinkCheck())
        if not table.links:
            continue
        for link in table.links:
            assert link.link_table is not None and link.link_id is not None
            if link.link_table not in targets:
                targets[link.link_table] = {
                    document["xata_id"]: document["_id"]
                    for document in writer.list_documents(link.link_table)
                }
        for document in writer.list_documents(table.convex_name):
            for link in table.links:
                assert link.link_table is not None and link.link_id is not None
                check.checked += 1
                xata_id = document.get(link.convex_name)
                want = targets[link.link_table].get(xata_id) if isinstance(xata_id, str) else None
                have = document.get(link.link_id)
                if have != want:
                    check.wrong += 1
                    if len(check.examples) < max_examples:
                        check.examples.append(
                            f"record {document.get('xata_id')!r}: {link.link_id} is {have!r}, "
                            f"expected {want!r} (the document with xata_id {xata_id!r})"
                        )
    return checks

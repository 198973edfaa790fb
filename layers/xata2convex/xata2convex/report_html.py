"""A run report as one self-contained HTML page (`runs/{run_id}.html`): inline CSS, no scripts, no
external assets, so it opens straight from S3 or a local folder.

Every value from a source is hostile until escaped: each one goes through `html.escape(quote=True)`,
inside `<bdi>` so right-to-left text cannot reorder what is around it, and values longer than
VALUE_CHARS are cut visibly. Links are relative to the page's own place in the store (`runs/`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from .changes import ChangeRow, ChangeSample

VALUE_CHARS = 500
HELD_BACK = ("blocked", "drift", "failed")
CSP = "default-src 'none'; style-src 'unsafe-inline'"

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}h3{font-size:14px;margin:18px 0 6px}
table{border-collapse:collapse;margin:4px 0 12px}th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.v{font:12px/1.4 ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
.status{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;background:#57606a}
.succeeded,.applied,.unchanged{background:#1a7f37}.partial,.blocked,.drift{background:#9a6700}
.failed,.rejected{background:#cf222e}.added{color:#1a7f37}.changed{color:#9a6700}.deleted{color:#cf222e}
.muted{color:#57606a}.before{background:#ffebe9}.after{background:#dafbe1}ul{margin:4px 0}
"""


def cut(text: str, limit: int = VALUE_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there are."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def text_html(text: str) -> str:
    """A text of any length and direction (a value, a message), cut and escaped."""
    return f'<bdi class="v">{esc(cut(text))}</bdi>'


def value_html(value: Any) -> str:
    """A decoded Xata value as its JSON text, cut and escaped."""
    return text_html(json.dumps(value, ensure_ascii=False))  # strings quoted: "" and " " stay visible


def _status(status: Any) -> str:
    return f'<span class="status {esc(status)}">{esc(status)}</span>'


def _rows(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _cell(value: Any, numeric: bool = False) -> str:
    shown = "" if value is None else esc(cut(str(value)))
    return f'<td class="n">{shown}</td>' if numeric else f"<td><bdi>{shown}</bdi></td>"


def _summary(report: Mapping[str, Any]) -> str:
    fields = [
        ("status", _status(report.get("status"))),
        *[
            (label, esc(report[key]))
            for label, key in (
                ("snapshot", "snapshotId"),
                ("base snapshot", "baseSnapshotId"),
                ("trigger", "trigger"),
                ("mode", "mode"),
                ("started", "startedAt"),
                ("finished", "finishedAt"),
                ("duration (ms)", "durationMs"),
                ("batches", "batches"),
            )
            if report.get(key) is not None
        ],
    ]
    if report.get("dryRun"):
        fields.append(("dry run", "nothing was written"))
    if report.get("error"):
        fields.append(("error", text_html(str(report["error"]))))
    return _rows([], [[f"<th>{label}</th>", f"<td>{value}</td>"] for label, value in fields])


COUNTED = ("added", "changed", "deleted", "unchanged", "rejected", "batches")


def _counts(tables: Mapping[str, Any]) -> str:
    header = ["table", "status", "added", "changed", "deleted", "unchanged", "rejected", "batches", "ms"]
    rows = [
        [
            _cell(name),
            f"<td>{_status(t.get('status'))}</td>",
            *[_cell(t.get(k, 0), numeric=True) for k in COUNTED],
            _cell(t.get("durationMs"), numeric=True),
        ]
        for name, t in tables.items()
    ]
    return _rows(header, rows)


def _held_back(tables: Mapping[str, Any]) -> str:
    held = [(n, t) for n, t in tables.items() if t.get("status") in HELD_BACK]
    if not held:
        return ""
    items = "".join(
        f"<li><b><bdi>{esc(n)}</bdi></b> {_status(t['status'])} {text_html(str(t.get('message') or ''))}</li>"
        for n, t in held
    )
    return f"<h2>Held-back tables</h2><ul>{items}</ul>"


def _notices(report: Mapping[str, Any]) -> str:
    """Rejected records with their fix, notes on tables that did apply, schema drift."""
    parts = []
    tables: Mapping[str, Any] = report.get("tables", {})
    rejected = [(n, t) for n, t in tables.items() if t.get("errors")]
    if rejected:
        items = "".join(f"<li>{text_html(str(e))}</li>" for _, t in rejected for e in t["errors"])
        total = sum(int(t.get("rejected", len(t["errors"]))) for _, t in rejected)
        parts.append(
            f"<h2>Rejected records ({total:,})</h2><p>These records are not mirrored and their Convex "
            "documents are left as they were. Fix: correct the named value in Xata; the next run retries "
            f"them.</p><ul>{items}</ul>"
        )
    notices = [(n, t) for n, t in tables.items() if t.get("status") not in HELD_BACK and t.get("message")]
    if notices:
        items = "".join(
            f"<li><b><bdi>{esc(n)}</bdi></b> {text_html(str(t['message']))}</li>" for n, t in notices
        )
        parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
    drift = report.get("drift") or []
    if drift:
        items = "".join(f"<li>{text_html(str(d))}</li>" for d in drift)
        parts.append(f"<h2>Schema drift</h2><ul>{items}</ul>")
    return "".join(parts)


def _change(row: ChangeRow) -> list[str]:
    if row.change == "changed" and row.before is not None and row.after is not None:
        values = "".join(
            f"<div><code>{esc(f)}</code>: <span class=before>{value_html(row.before.get(f))}</span> → "
            f"<span class=after>{value_html(row.after.get(f))}</span></div>"
            for f in row.fields
        )
    else:  # the whole record; its null fields are left out here (the change file has them)
        record = row.after if row.after is not None else row.before or {}
        values = "".join(
            f"<div><code>{esc(f)}</code>: {value_html(record[f])}</div>"
            for f in row.fields
            if record.get(f) is not None
        )
    return [
        _cell(row.record_id),
        f'<td class="{esc(row.change)}">{esc(row.change)}</td>',
        f"<td>{values}</td>",
    ]


def _changes(run_id: str, changes: Mapping[str, ChangeSample]) -> str:
    parts = []
    for name, sample in changes.items():
        if not sample.total:
            continue
        link = f"{quote(run_id, safe='')}/changes/{quote(name, safe='')}.csv"
        rest = sample.total - len(sample.rows)
        more = f"and {rest:,} more, " if rest > 0 else ""
        parts.append(
            f"<h3><bdi>{esc(name)}</bdi>: {sample.total:,} record(s)</h3>"
            f'<p class="muted">The first {len(sample.rows):,} shown, {more}all in '
            f'<a href="{esc(link)}"><code>{esc(sample.key)}</code></a>.</p>'
            + _rows(["id", "change", "values (before → after)"], map(_change, sample.rows))
        )
    if not parts:
        return ""
    return "<h2>Record changes</h2>" + "".join(parts)


def _addresses(where: Mapping[str, str]) -> str:
    """Where the report's files are, to copy: a presigned URL opens this page, not its links."""
    if not where:
        return ""
    items = "".join(f"<li>{esc(label)}: <code>{esc(address)}</code></li>" for label, address in where.items())
    return f'<details><summary class="muted">Where these files are</summary><ul>{items}</ul></details>'


def render_run_report(
    report: Mapping[str, Any], changes: Mapping[str, ChangeSample], where: Mapping[str, str] | None = None
) -> str:
    """The page for one run report and the first rows of its change files; `where` names the full
    address (an `s3://` URI, or a path) of each file the page links to, by label."""
    run_id = str(report.get("runId", ""))
    links = [f'<a href="{esc(quote(run_id, safe=""))}.json">JSON report</a>']
    if report.get("snapshotId"):
        manifest = f"../snapshots/{quote(str(report['snapshotId']), safe='')}/manifest.json"
        links.append(f'<a href="{esc(manifest)}">snapshot manifest</a>')
    tables: Mapping[str, Any] = report.get("tables", {})
    body = [
        f"<h1>xata2convex run <bdi>{esc(run_id)}</bdi> {_status(report.get('status'))}</h1>",
        f'<p class="muted">{" · ".join(links)}</p>',
        _addresses(where or {}),
        _summary(report),
    ]
    if tables:
        body.append("<h2>Tables</h2>" + _counts(tables))
    body += [_held_back(tables), _changes(run_id, changes), _notices(report)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No script may run and nothing may load, should a value ever slip past the escaping.
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>xata2convex run {esc(run_id)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )

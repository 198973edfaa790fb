"""The audit trail of a run: change files, the HTML page (opened in a real headless browser), S3 types."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests import test_sync
from tests.test_sync import Setup
from xata2convex.changes import ChangeRow, ChangeSample
from xata2convex.report_html import VALUE_CHARS, render_run_report
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import open_blob_store

setup = test_sync.setup  # the fixture: a Xata stand-in, a fresh local Convex, a snapshot folder
BROWSER = shutil.which("chromium-headless-shell")
CSVJSON = str(Path(sys.executable).parent / "csvjson")
IMG = "<img src=x onerror=alert(1)>"
HOSTILE = f"\"quoted\", 'single'\r\nCRLF <script>alert(1)</script> {IMG} مرحبا بالعالم 👩🏽‍🚀 &amp;"
LONG = "long text " * 20_000  # 200 KB


# --- a real browser ------------------------------------------------------------------------------


def png_pixels(data: bytes) -> list[bytes]:
    """The RGB of every pixel of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prior = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up, corner = prior[x], prior[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        prior = line
    return [r[i : i + 3] for r in rows for i in range(0, len(r), bpp)]


def open_in_browser(page: Path, tmp_path: Path) -> tuple[str, set[bytes], float]:
    """The page's DOM as the browser built it, its screenshot's colours, and the share of non-white pixels."""
    if BROWSER is None:
        pytest.fail("chromium-headless-shell is missing: run `make setup`")
    flags = [BROWSER, "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=800,600"]
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    shot = tmp_path / "page.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120
    )
    pixels = png_pixels(shot.read_bytes())
    return dom, set(pixels), sum(p != b"\xff\xff\xff" for p in pixels) / len(pixels)


def render_hostile_page(tmp_path: Path) -> Path:
    report: dict[str, Any] = {
        "runId": "20261201T120000Z-abc123", "snapshotId": "20261201T120000Z-0001", "status": "partial",
        "trigger": "cron", "mode": "incremental", "startedAt": "2026-12-01T12:00:00Z", "durationMs": 1234,
        "tables": {
            f"t{IMG}": {"added": 1, "changed": 1, "deleted": 0, "unchanged": 7, "status": "blocked",
                        "message": f"mass-delete guard {IMG}", "errors": [f"record 'r9' field {IMG}"],
                        "rejected": 1},
        },
        "drift": [f"column {IMG} added"],
    }  # fmt: skip
    added = {"id": "rec_added", "name": HOSTILE, "bio": LONG}
    rows = [
        ChangeRow("rec_added", "added", ("id", "name", "bio"), None, added),
        ChangeRow("rec_changed", "changed", ("name",), {"name": "old"}, {"name": HOSTILE}),
    ]  # fmt: skip
    page = tmp_path / "report.html"
    page.write_text(
        render_run_report(report, {f"t{IMG}": ChangeSample(f"t{IMG}", 60, rows, "k/changes.csv")})
    )
    return page


def test_hostile_values_render_as_text_in_a_real_browser(tmp_path: Path) -> None:
    page = render_hostile_page(tmp_path)
    source = page.read_text()
    assert "<script" not in source and "<img" not in source and "http" not in source.split("</head>")[1]
    assert f"… ({len(json.dumps(LONG)) - VALUE_CHARS:,} more characters)" in source
    dom, colours, inked = open_in_browser(page, tmp_path)
    assert "<img" not in dom and "<script>alert" not in dom  # never an element
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom  # but there, as text
    assert "rec_added" in dom and "rec_changed" in dom and "and 58 more" in dom
    assert "مرحبا بالعالم" in dom and "👩🏽‍🚀" in dom
    assert len(colours) > 20 and inked > 0.02, (len(colours), inked)  # rendered, not blank


# --- a sync over the stand-ins -------------------------------------------------------------------


def csvkit_rows(path: Path) -> list[dict[str, str | None]]:
    """The change file as csvkit reads it (no type inference)."""
    command = [CSVJSON, "-I", "-z", "10000000", str(path)]  # -z: fields beyond 128 KB
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    rows: list[dict[str, str | None]] = json.loads(out.stdout)
    return rows


def test_change_files_list_exactly_what_the_run_changed(setup: Setup, tmp_path: Path) -> None:
    first = setup.run()
    source = setup.sdk
    users = [r for r in source.data().query("users", {"page": {"size": 20}})["records"]
             if not (isinstance(r.get("age"), int) and abs(r["age"]) > 2**53)]  # fmt: skip
    changed, deleted = users[:2], users[2:4]
    added = [source.records().insert("users", {"name": HOSTILE, "bio": LONG})["id"],
             source.records().insert("users", {"name": IMG, "bio": None})["id"]]  # fmt: skip
    for r in changed:
        assert source.records().update("users", r["id"], {"name": HOSTILE, "bio": LONG}).is_success()
    for r in deleted:
        assert source.records().delete("users", r["id"]).is_success()

    second = setup.run()
    store = setup.store()
    table = second["tables"]["users"]
    assert second["baseSnapshotId"] == table["baseSnapshotId"] == first["snapshotId"]
    assert second["trigger"] == "manual" and second["htmlReportKey"].endswith(f"runs/{second['runId']}.html")
    assert table["changesKey"] == store.change_key(second["runId"], "users")
    assert [n for n, t in second["tables"].items() if "changesKey" in t] == ["users"]  # only what changed

    rows = {r.record_id: r for r in store.read_change_file(table["changesKey"])}
    expected = {**{i: "added" for i in added}, **{r["id"]: "changed" for r in changed},
                **{r["id"]: "deleted" for r in deleted}}  # fmt: skip
    assert {i: r.change for i, r in rows.items()} == expected
    for record_id in added:
        now = source.records().get("users", record_id)
        assert rows[record_id].before is None and rows[record_id].after is not None
        assert {k: rows[record_id].after[k] for k in ("id", "name", "bio")} == {  # type: ignore[index]
            "id": now["id"],
            "name": now["name"],
            "bio": now.get("bio"),
        }
    for r in changed:
        row = rows[r["id"]]
        assert set(row.fields) == {"name", "bio", "xata_version", "xata_updatedAt"}
        assert row.before is not None and row.after is not None
        assert (row.before["name"], row.before["bio"]) == (r["name"], r.get("bio"))
        assert (row.after["name"], row.after["bio"]) == (HOSTILE, LONG)
        assert row.after["xata_version"] == row.before["xata_version"] + 1 == r["xata"]["version"] + 1
    for r in deleted:
        row = rows[r["id"]]
        assert row.after is None and row.before is not None
        assert (row.before["id"], row.before["name"], row.before["email"]) == (
            r["id"],
            r["name"],
            r.get("email"),
        )

    blobs = store.blobs
    for name in ("users",):
        path = Path(blobs.describe(store.change_key(second["runId"], name)))
        read = csvkit_rows(path)
        assert [r["id"] for r in read] == [r.record_id for r in store.read_change_file(table["changesKey"])]
        for parsed in read:
            ours = rows[str(parsed["id"])]
            assert parsed["change"] == ours.change and json.loads(str(parsed["fields"])) == list(ours.fields)
            assert (None if parsed["before"] is None else json.loads(parsed["before"])) == ours.before
            assert (None if parsed["after"] is None else json.loads(parsed["after"])) == ours.after

    run_doc = setup.writer.convex.query("syncRuns:get", {"runId": second["runId"]})
    assert run_doc["reportKey"] == second["reportKey"] and run_doc["htmlReportKey"] == second["htmlReportKey"]
    assert run_doc["trigger"] == "manual"
    manifest = store.read_manifest(second["snapshotId"])
    assert manifest.run_id == second["runId"]

    page = Path(blobs.describe(second["htmlReportKey"]))
    dom, colours, inked = open_in_browser(page, tmp_path)
    assert all(i in dom for i in expected), "every changed record id is on the page"
    assert "<img" not in dom and "&lt;img src=x onerror=alert(1)&gt;" in dom
    counts = [f'<td class="n">{table[k]}</td>' for k in ("added", "changed", "deleted", "unchanged")]
    assert "".join(counts) in dom
    assert len(colours) > 20 and inked > 0.02
    # A presigned URL opens the page but not its relative links: the page names each file's address.
    for key in (
        second["reportKey"],
        table["changesKey"],
        store.manifest_key(second["snapshotId"]),
    ):
        assert f"<code>{blobs.describe(key)}</code>" in dom


def test_s3_objects_carry_their_content_types(s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    store = SnapshotStore(open_blob_store(f"s3://{s3_bucket}/audit"), "db", "main")
    report = store.write_run_report("r1", {"runId": "r1", "status": "succeeded", "tables": {}})
    change_file = tmp_path / "c.csv"
    change_file.write_bytes(b"id,change,fields,before,after\r\n")
    with change_file.open("rb") as data:
        change_key = store.write_change_file("r1", "users", data)
    client: Any = boto3.client("s3")
    types = {
        key: client.head_object(Bucket=s3_bucket, Key=f"audit/{key}")["ContentType"]
        for key in (report["htmlReportKey"], report["reportKey"], change_key)
    }
    assert types == {
        "db/main/runs/r1.html": "text/html; charset=utf-8",
        "db/main/runs/r1.json": "application/json",
        "db/main/runs/r1/changes/users.csv": "text/csv; charset=utf-8",
    }
    assert store.list_runs() == ["r1"]
    page = client.get_object(Bucket=s3_bucket, Key="audit/db/main/runs/r1.html")["Body"].read().decode()
    assert f"<code>s3://{s3_bucket}/audit/db/main/runs/r1.json</code>" in page

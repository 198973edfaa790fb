"""`make demo` runs the job from both sources: today's Xata (PostgreSQL) and the xata SDK."""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.convex import REPO_ROOT


def test_the_demo_syncs_changes_and_verifies_from_both_sources() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xata2convex_local.demo"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    postgres, _, sdk = out.partition("=== xata SDK (XATA_DATABASE_URL)")
    assert "=== PostgreSQL (XATA_POSTGRES_URL)" in postgres and sdk, out
    for part in (postgres, sdk):
        second = part.split("second sync: only the differences are written")[1]
        assert "users: +3 added, ~3 changed, -3 deleted" in second  # the change, and only it, reached Convex
        verified = part.split("verify, Convex against the applied snapshot")[1]
        tables = [line for line in verified.splitlines() if " documents, " in line]
        assert len(tables) == 5 and all(", 0 missing, 0 extra, 0 different, " in line for line in tables)

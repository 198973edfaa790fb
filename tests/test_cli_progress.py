"""Progress: on a terminal, export and sync show per-table counts and rates on stderr; with --json
(or without a terminal) stdout is the one JSON object and stderr stays quiet. In Lambda the same
per-table lines go through the logger."""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.xata import XataStandInFactory
from xata2convex import jobs
from xata2convex.config import Config
from xata2convex_local.convex_server import LocalConvex

CLI = str(Path(sys.executable).parent / "xata2convex")


def run_with_terminal_stderr(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal and stdout on a pipe: (exit code, stdout, stderr)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [CLI, *args], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    terminal = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, "no output for 60 s"
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end (EIO on Linux)
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    assert process.stdout is not None
    stdout = process.stdout.read()
    return process.wait(timeout=60), stdout, terminal.decode()


@pytest.fixture
def env(xata_standin: XataStandInFactory, fresh_local_convex: LocalConvex, tmp_path: Path) -> dict[str, str]:
    return {**xata_standin().settings(), **fresh_local_convex.settings(), "SNAPSHOT_URI": str(tmp_path)}


def test_export_and_sync_show_progress_on_a_terminal(env: dict[str, str]) -> None:
    code, stdout, terminal = run_with_terminal_stderr(env, "export")
    assert code == 0, terminal
    assert stdout.strip() and "\n" not in stdout.strip()  # stdout: the snapshot id, nothing else
    assert "exported users: " in terminal and " rows, 1 pages, " in terminal and "rows/s)" in terminal

    code, stdout, terminal = run_with_terminal_stderr(env, "sync")
    assert code in (0, 2), terminal  # 2: the sample holds records Convex cannot take, reported
    assert (
        "synced users: " in terminal and " documents, 1 batches, " in terminal and "documents/s)" in terminal
    )
    assert stdout.startswith("run ")


def test_json_output_stays_one_object_and_shows_no_progress(env: dict[str, str]) -> None:
    code, stdout, terminal = run_with_terminal_stderr(env, "run", "--json")
    assert code in (0, 2), terminal
    report = json.loads(stdout)  # the whole of stdout is one JSON object
    assert report["tables"]["users"]["added"] > 0
    assert terminal == ""


def test_without_a_terminal_nothing_is_shown_and_verbose_logs_the_tables(env: dict[str, str]) -> None:
    quiet = subprocess.run([CLI, "export"], env={**os.environ, **env}, capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = subprocess.run([CLI, "export", "-v"], env={**os.environ, **env}, capture_output=True, text=True)
    assert loud.returncode == 0 and "xata2convex: exported users: " in loud.stderr


def test_lambda_logs_one_progress_line_per_table(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="xata2convex"):
        manifest = jobs.run_export(Config.from_env(env))  # what the handlers call, with no progress given
    lines = [r for r in caplog.records if r.name == "xata2convex.progress"]
    assert sorted(r.table for r in lines) == sorted(t.name for t in manifest.tables)  # type: ignore[attr-defined]
    users = next(r for r in lines if r.table == "users")  # type: ignore[attr-defined]
    assert users.rows == manifest.table("users").rows and users.getMessage().startswith("exported users: ")  # type: ignore[attr-defined]


def test_verbose_logs_retries_with_their_url_and_never_the_key(
    xata_standin: XataStandInFactory, tmp_path: Path
) -> None:
    standin = xata_standin(fail_5xx_every=3)
    env = {**standin.settings(), "SNAPSHOT_URI": str(tmp_path)}
    result = subprocess.run([CLI, "export", "-v"], env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    retries = [line for line in result.stderr.splitlines() if "; retry 1 of 7 in " in line]
    assert retries and all(f"server error (503): {standin.url}/db/sample:main" in line for line in retries)
    assert standin.api_key not in result.stderr

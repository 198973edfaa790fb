"""Every user mistake ends the real CLI with one line: what is wrong, the setting or URL, the fix.

Each test runs `.venv/bin/xata2convex` as a user would (a subprocess with only the settings given)
and checks the line: exit 1, at most three lines on stderr, the setting or URL named, no traceback,
no secret, and a bounded wait for an endpoint that does not answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.s3 import free_port
from tests.fixtures.xata import XataStandInFactory
from xata2convex import jobs
from xata2convex.cli import main

CLI = str(Path(sys.executable).parent / "xata2convex")
BOUND_S = 45  # an unreachable endpoint must fail well before this
DATABASE_URL = "https://ws.us-east-1.xata.sh/db/sample:main"


def fails(env: dict[str, str], *args: str, names: tuple[str, ...], secrets: tuple[str, ...] = ()) -> str:
    """Run the CLI; assert it failed with one clear line naming `names`; return that line."""
    isolated = {
        "PATH": os.environ["PATH"],
        "HOME": env.pop("HOME", "/nonexistent"),
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = subprocess.run(
        [CLI, *args], env={**isolated, **env}, capture_output=True, text=True, timeout=BOUND_S
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert 1 <= len(lines) <= 3 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "Error:" not in result.stderr
    for name in names:
        assert name in result.stderr, result.stderr
    for secret in secrets:
        assert secret not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def xata_env(xata_standin: XataStandInFactory) -> dict[str, str]:
    return xata_standin().settings()


def closed_url(scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


def test_a_bucket_that_does_not_exist(xata_env: dict[str, str], s3_endpoint: str) -> None:
    env = {
        **xata_env,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_REGION": "us-east-1",
        "SNAPSHOT_URI": "s3://no-such-bucket-x2c/snapshots",
    }
    line = fails(env, "export", names=("no-such-bucket-x2c", "SNAPSHOT_URI"), secrets=("testing-secret-key",))
    assert "does not exist" in line and "aws s3 mb" in line


def test_no_aws_credentials(s3_endpoint: str) -> None:
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "SNAPSHOT_URI": "s3://some-bucket/snapshots",
        "XATA_DATABASE_URL": DATABASE_URL,
    }
    line = fails(
        env, "snapshots", "ls", names=("SNAPSHOT_URI=s3://some-bucket/snapshots", "AWS_ACCESS_KEY_ID")
    )
    assert line.startswith("error: no AWS credentials")


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write into, root included (root ignores modes, not the immutable flag)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and (not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)]).returncode):
        pytest.skip("running as root on a file system without the immutable flag")
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_read_only_snapshot_folder(xata_env: dict[str, str], read_only_folder: Path) -> None:
    env = {**xata_env, "SNAPSHOT_URI": str(read_only_folder)}
    line = fails(
        env, "export", names=(f"SNAPSHOT_URI={read_only_folder}",), secrets=(xata_env["XATA_API_KEY"],)
    )
    assert line.startswith(f"error: cannot write {read_only_folder}/") and "make it writable" in line


def test_a_file_in_the_way_of_the_snapshot_folder(xata_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "snapshots"
    blocker.write_text("not a folder")
    line = fails({**xata_env, "SNAPSHOT_URI": str(blocker)}, "export", names=(f"SNAPSHOT_URI={blocker}",))
    assert line.startswith(f"error: {blocker} is a file where a folder must be")


def test_a_convex_url_without_a_scheme(tmp_path: Path) -> None:
    env = {
        "XATA_DATABASE_URL": DATABASE_URL,
        "SNAPSHOT_URI": str(tmp_path),
        "CONVEX_URL": "happy-animal-123.convex.cloud",
        "CONVEX_DEPLOY_KEY": "prod:happy-animal-123|secret-deploy-key",
    }
    line = fails(env, "sync", names=("CONVEX_URL", "https://"), secrets=("secret-deploy-key",))
    assert "happy-animal-123.convex.cloud" in line
    fails({}, "verify", "--convex-url", "ftp://x", names=("CONVEX_URL",))  # a flag is checked the same way


@pytest.mark.parametrize(
    ("name", "value"),
    [("XATA_CONCURRENCY", "abc"), ("XATA_CONCURRENCY", "0"), ("XATA_REQUESTS_PER_SECOND", "fast")],
)
def test_a_number_setting_that_is_not_a_number(name: str, value: str, tmp_path: Path) -> None:
    env = {
        "XATA_DATABASE_URL": DATABASE_URL,
        "XATA_API_KEY": "xau_placeholder_key_0123",
        "SNAPSHOT_URI": str(tmp_path),
        name: value,
    }
    fails(env, "export", names=(f"{name}=", value))


def test_a_corrupt_state_file(xata_env: dict[str, str], tmp_path: Path) -> None:
    env = {**xata_env, "SNAPSHOT_URI": str(tmp_path)}
    exported = subprocess.run([CLI, "export"], env={**os.environ, **env}, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    database, branch = xata_env["XATA_DATABASE_URL"].rpartition("/db/")[2].split(":")
    state = tmp_path / database / branch / "state" / "applied.json"
    state.parent.mkdir(exist_ok=True)
    state.write_text('{"tables": {')
    line = fails(env, "verify", names=(str(state),))  # a sync would reconcile (test_reconcile.py)
    assert "corrupt" in line and "the next `xata2convex sync` reconciles every table" in line


def test_an_unreachable_convex(tmp_path: Path) -> None:
    url = closed_url()
    env = {
        "XATA_DATABASE_URL": DATABASE_URL,
        "SNAPSHOT_URI": str(tmp_path),
        "CONVEX_URL": url,
        "CONVEX_DEPLOY_KEY": "local:x|convex-deploy-secret",
    }
    line = fails(env, "sync", names=(url, "CONVEX_URL"), secrets=("convex-deploy-secret",))
    assert line.startswith(f"error: cannot reach Convex at {url} (CONVEX_URL): connection refused")


def test_an_unreachable_xata(tmp_path: Path) -> None:
    url = closed_url()
    env = {
        "XATA_API_KEY": "xau_unreachable_secret",
        "XATA_DATABASE_URL": DATABASE_URL,
        "XATA_ENDPOINT_URL": url,
        "SNAPSHOT_URI": str(tmp_path),
    }
    line = fails(env, "export", names=(url, "XATA_ENDPOINT_URL"), secrets=("xau_unreachable_secret",))
    assert "cannot reach Xata" in line


def test_an_unreachable_postgres(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://xata:pg-password-secret@127.0.0.1:{port}/sample:main"
    env = {"XATA_POSTGRES_URL": url, "SNAPSHOT_URI": str(tmp_path)}
    line = fails(env, "export", names=(f"127.0.0.1:{port}/sample:main", "XATA_POSTGRES_URL"),
                 secrets=("pg-password-secret",))  # fmt: skip
    assert "cannot connect to Postgres" in line and "refused" in line.lower()


def test_an_unreachable_s3(tmp_path: Path) -> None:
    url = closed_url()
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "s3-secret-key-value",
        "AWS_REGION": "us-east-1",
        "SNAPSHOT_URI": "s3://bucket/snapshots",
        "XATA_DATABASE_URL": DATABASE_URL,
    }
    line = fails(
        env,
        "snapshots",
        "ls",
        names=(url, "AWS_ENDPOINT_URL", "SNAPSHOT_URI"),
        secrets=("s3-secret-key-value",),
    )
    assert "cannot reach S3" in line


def test_a_rejected_key_and_missing_settings(xata_env: dict[str, str], tmp_path: Path) -> None:
    wrong = {**xata_env, "XATA_API_KEY": "xau_secret_wrong_key", "SNAPSHOT_URI": str(tmp_path)}
    assert "401" in fails(wrong, "export", names=("API key",), secrets=("xau_secret_wrong_key",))
    fails({"SNAPSHOT_URI": str(tmp_path)}, "export", names=("XATA_API_KEY", "XATA_DATABASE_URL"))


def test_usage_errors_use_the_same_prefix() -> None:
    line = fails({}, "sync", "--no-such-flag", names=("--no-such-flag", "xata2convex sync --help"))
    assert line.startswith("error: No such option")
    fails({}, "export", "--concurrency", "many", names=("--concurrency",))


def test_snapshots_show_refuses_json_for_a_table_csv(tmp_path: Path) -> None:
    env = {"XATA_DATABASE_URL": DATABASE_URL, "SNAPSHOT_URI": str(tmp_path)}
    result = subprocess.run(
        [CLI, "snapshots", "show", "20260101T000000Z-0000", "users", "--json"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=BOUND_S,
    )  # fmt: skip
    assert result.returncode == 1 and "no JSON form" in json.loads(result.stdout)["error"]
    assert result.stderr.startswith("error: a table's CSV has no JSON form")


def test_an_unexpected_error_shows_its_traceback_only_under_verbose(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(jobs, "run_export", broken)
    env = {
        "XATA_DATABASE_URL": DATABASE_URL,
        "XATA_API_KEY": "xau_placeholder_key_0123",
        "SNAPSHOT_URI": str(tmp_path),
    }
    quiet = CliRunner(mix_stderr=False).invoke(main, ["export"], env=env)
    assert quiet.exit_code == 1
    assert quiet.stderr.strip() == (
        "error: unexpected RuntimeError: something nobody planned for "
        "(a bug: rerun with -v for the traceback)"
    )
    loud = CliRunner(mix_stderr=False).invoke(main, ["export", "-v"], env=env)
    assert loud.exit_code == 1 and "Traceback" in loud.stderr and "raise RuntimeError" in loud.stderr

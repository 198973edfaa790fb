"""Secrets: loaded stripped and checked (never echoed when refused), scrubbed in every form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import seed_schema
from xata2convex.config import MIN_SECRET_LENGTH, Config, ConfigError, load_secret, scrub
from xata2convex.convex_sink import ConvexHttp
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed

CLI = str(Path(sys.executable).parent / "xata2convex")
KEY = "xau_0123456789abcdefGHIJ"

LOADED = {
    "plain": (KEY, KEY),
    "trailing LF": (KEY + "\n", KEY),
    "trailing CRLF": (KEY + "\r\n", KEY),
    "surrounding blanks and tabs": (f" \t{KEY} \n", KEY),
    "empty": ("", None),
    "only whitespace": (" \r\n", None),
    "unset": (None, None),
}


@pytest.mark.parametrize("case", LOADED)
def test_load_secret_strips_surrounding_whitespace(case: str) -> None:
    given, loaded = LOADED[case]
    assert load_secret("XATA_API_KEY", given) == loaded


REFUSED = {
    "a line feed inside": (KEY[:10] + "\n" + KEY[10:], "contains a control character"),
    "a carriage return inside": (KEY[:10] + "\r" + KEY[10:], "contains a control character"),
    "a NUL inside": (KEY[:10] + "\0" + KEY[10:], "contains a control character"),
    "an escape inside": (KEY[:10] + "\x1b" + KEY[10:], "contains a control character"),
    "too short": ("xau_short", f"shorter than {MIN_SECRET_LENGTH} characters"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_load_secret_refuses_without_echoing(case: str) -> None:
    given, reason = REFUSED[case]
    with pytest.raises(ConfigError, match=reason) as refused:
        load_secret("XATA_API_KEY", given)
    message = str(refused.value)
    assert message.startswith("XATA_API_KEY ")
    assert given.strip() not in message and given[:8] not in message and given[-8:] not in message


def test_every_secret_setting_is_loaded_the_same_way_from_the_environment_and_flags() -> None:
    env = {"XATA_API_KEY": KEY + "\r\n", "CONVEX_DEPLOY_KEY": f" prod:{KEY}\n"}
    config = Config.from_env(env).with_overrides(xata_postgres_url="postgresql://u:pw@h/db\n")
    assert (config.xata_api_key, config.convex_deploy_key) == (KEY, f"prod:{KEY}")
    assert config.xata_postgres_url == "postgresql://u:pw@h/db"  # a URL has no minimum length
    with pytest.raises(ConfigError, match=r"^CONVEX_DEPLOY_KEY contains a control character"):
        Config.from_env({"CONVEX_DEPLOY_KEY": "prod:" + KEY + "\x07x"})
    with pytest.raises(ConfigError, match=r"^XATA_API_KEY is shorter"):
        Config().with_overrides(xata_api_key="abc")


SECRET = 'xau_Qz"W\\v/ü+Zk=9876'  # a quote, a backslash, a slash, non-ASCII, a plus, an equals sign
FORMS = {
    "raw": f"Authorization: Bearer {SECRET}",
    "repr": f"headers={ {'authorization': SECRET}!r}",
    "ascii": f"value {SECRET!a}",
    "json": json.dumps({"key": SECRET}),
    "json, ASCII only": json.dumps({"key": SECRET}, ensure_ascii=True),
    "url-encoded": f"https://x.test/?key={quote(SECRET, safe='')}",
    "url-encoded path": f"https://x.test/{quote(SECRET)}",
    "quoted": f"key '{SECRET}' refused",
    "with its trailing newline": f"Invalid header value {SECRET + chr(10)!r}",
}


@pytest.mark.parametrize("form", FORMS)
def test_scrub_removes_every_form_of_a_secret(form: str) -> None:
    scrubbed = scrub(FORMS[form], [SECRET + "\n"])  # as loaded before stripping
    assert "***" in scrubbed
    assert "Qz" not in scrubbed and "9876" not in scrubbed, scrubbed


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("connect to postgresql://app:hunter2@db.test:5432/x:main failed",
         "connect to postgresql://app:***@db.test:5432/x:main failed"),
        ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        ("conninfo host=h password=hunter2 dbname=x", "conninfo host=h password=*** dbname=x"),
        ("conninfo password='a b' dbname=x", "conninfo password=*** dbname=x"),
        ("https://user@host/path has no password", "https://user@host/path has no password"),
    ],
)  # fmt: skip
def test_scrub_removes_url_and_conninfo_passwords_of_any_length(message: str, expected: str) -> None:
    assert scrub(message, []) == expected


def test_scrubbing_never_mangles_a_message_around_a_short_string() -> None:
    message = "Convex mirror:listPage failed for table users"
    assert scrub(message, ["Conve", "e", "users"]) == message


def test_a_postgres_password_never_appears_in_cli_errors(tmp_path: Path) -> None:
    for url in (
        "postgres://user:password@127.0.0.1:1/db",  # nothing listens on port 1
        "postgresql://user:s3cr3t-Pa55word-long@127.0.0.1:1/db:main",
        "postgres://user:password@host:notaport/db",
    ):
        for args in (["export", "--source", url], ["snapshots", "ls", "--source", url, "--json"]):
            done = subprocess.run(
                [CLI, *args],
                capture_output=True,
                text=True,
                env={"SNAPSHOT_URI": str(tmp_path / "s"), "PATH": "/usr/bin:/bin"},
            )
            password = url.split(":")[2].split("@")[0]
            assert password not in done.stdout + done.stderr, (args, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def bench_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    seed = tmp_path_factory.mktemp("seed")
    write_bench_seed(seed, records=40, tables=2)
    return seed


def test_keys_with_line_endings_work_and_a_key_with_a_control_character_inside_never_shows(
    xata_standin: XataStandInFactory, bench_seed: Path, tmp_path: Path
) -> None:
    standin = xata_standin(bench_seed)
    snapshots = tmp_path / "snapshots"
    with project_for_schema(seed_schema(bench_seed)) as project, LocalConvex(project) as convex:
        base = {
            **standin.settings(),
            **convex.settings(),
            "SNAPSHOT_URI": str(snapshots),
            "PATH": "/usr/bin:/bin",
        }

        def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([CLI, *args], capture_output=True, text=True, env={**base, **env})

        endings = {"XATA_API_KEY": standin.api_key + "\n", "CONVEX_DEPLOY_KEY": convex.deploy_key + "\r\n"}
        assert cli(endings, "run").returncode == 0
        assert cli({**endings, "XATA_API_KEY": standin.api_key + "\r\n"}, "run", "--json").returncode == 0

        key = standin.api_key
        for broken in (
            key[:12] + "\n" + key[12:],
            key[:12] + "\x07" + key[12:],
            key[:12] + "\r\n" + key[12:],
        ):
            for args in (["run"], ["run", "--json"], ["export"]):
                done = cli({"XATA_API_KEY": broken}, *args)
                assert done.returncode == 1
                assert "XATA_API_KEY contains a control character" in done.stdout + done.stderr
                seen = done.stdout + done.stderr
                files = "".join(p.read_text(errors="replace") for p in snapshots.rglob("*") if p.is_file())
                runs = json.dumps(
                    ConvexHttp(convex.url, convex.deploy_key).query(
                        "syncRuns:list", {"paginationOpts": {"numItems": 100, "cursor": None}}
                    )
                )
                for where in (seen, files, runs):
                    for part in (broken, key, key[:12], key[12:], repr(broken)[1:-1]):
                        assert part not in where

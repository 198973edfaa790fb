"""The `xata2convex` CLI: the documented commands and their --json output, against the local stand-ins."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from tests.fixtures.xata import XataStandInFactory
from tests.test_sync import seed_schema
from xata2convex.cli import main
from xata2convex.signing import signed_headers
from xata2convex_local.convex_server import LocalConvex, project_for_schema
from xata2convex_local.seedgen import write_bench_seed

CLI = str(Path(sys.executable).parent / "xata2convex")


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def env(xata_standin: XataStandInFactory, tmp_path: Path) -> dict[str, str]:
    return {**xata_standin().settings(), "SNAPSHOT_URI": str(tmp_path / "snapshots")}


def test_export_ls_show_and_diff(env: dict[str, str]) -> None:
    first = invoke(env, "export")
    assert first.exit_code == 0, first.output
    snapshot_id = first.output.strip()
    manifest = json.loads(invoke(env, "export", "--json").output)
    second_id = manifest["snapshotId"]
    assert {t["name"] for t in manifest["tables"]} >= {"users", "event-subject-matter-experts"}

    listed = json.loads(invoke(env, "snapshots", "ls", "--json").output)
    assert [s["snapshotId"] for s in listed["snapshots"]] == [snapshot_id, second_id]
    shown = invoke(env, "snapshots", "show", snapshot_id)
    assert "users:" in shown.output and "sha256" in shown.output
    table_csv = invoke(env, "snapshots", "show", snapshot_id, "users").output
    rows = list(csv.reader(table_csv.splitlines(keepends=True)))
    assert rows[0][:2] == ["id", "xata_version"] and len(rows) > 5
    diff = json.loads(invoke(env, "snapshots", "diff", snapshot_id, second_id, "--json").output)
    assert all(t["added"] == t["changed"] == t["deleted"] == 0 for t in diff["tables"].values())
    missing = invoke(env, "snapshots", "show", snapshot_id, "no-such-table")
    assert missing.exit_code != 0 and "no table 'no-such-table'" in missing.output


def test_xreplay_writes_schema_and_one_csv_per_table(
    xata_standin: XataStandInFactory, tmp_path: Path, xata_seed_dir: Path
) -> None:
    standin = xata_standin()
    out = tmp_path / "replay"
    result = invoke(
        {"XATA_ENDPOINT_URL": standin.url},
        "xreplay", "--from_workspace", "ws", "--from_database", standin.database, "--from_branch", "main",
        "--from_region", "us-east-1", "--from_XATA_API_KEY", standin.api_key, "--output", "file",
        "--output_path", str(out), "--output_format", "csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tables = [t["name"] for t in json.loads((xata_seed_dir / "schema.json").read_text())["tables"]]
    assert json.loads((out / "schema.json").read_text())["tables"][0]["name"] == tables[0]
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(f"{t}.csv" for t in tables)
    as_json = invoke(
        {"XATA_ENDPOINT_URL": standin.url},
        "xreplay", "--from_workspace", "ws", "--from_database", standin.database,
        "--from_XATA_API_KEY", standin.api_key, "--output_path", str(tmp_path / "j"),
        "--output_format", "json",
    )  # fmt: skip
    assert as_json.exit_code == 0
    assert len(json.loads((tmp_path / "j" / "users.json").read_text())) > 5


def test_errors_name_the_missing_setting_and_never_print_keys(env: dict[str, str]) -> None:
    result = invoke({"SNAPSHOT_URI": env["SNAPSHOT_URI"]}, "export")
    assert result.exit_code == 1 and "missing setting(s): XATA_API_KEY, XATA_DATABASE_URL" in result.output
    wrong = invoke({**env, "XATA_API_KEY": "xau_secret_wrong_key"}, "export")
    assert wrong.exit_code == 1 and "401" in wrong.output and "xau_secret_wrong_key" not in wrong.output
    as_json = CliRunner().invoke(main, ["sync", "--json"], env=env)
    assert as_json.exit_code == 1  # the JSON object comes first; the runner also shows stderr after it
    assert json.loads(as_json.output.splitlines()[0]) == {
        "error": "missing setting(s): CONVEX_SITE_URL and XATA2CONVEX_SINK_SECRET (the signed sink), "
        "or CONVEX_URL and CONVEX_DEPLOY_KEY (a deploy key)"
    }


def test_sync_run_verify_and_schema(xata_standin: XataStandInFactory, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    write_bench_seed(seed, records=300, tables=2)
    with project_for_schema(seed_schema(seed)) as project, LocalConvex(project) as convex:
        env = {**xata_standin(seed).settings(), **convex.settings(), "SNAPSHOT_URI": str(tmp_path / "s")}
        dry = json.loads(invoke(env, "run", "--dry-run", "--json").output)
        assert dry["dryRun"] and all(t["added"] == 150 for t in dry["tables"].values())
        assert invoke(env, "verify").exit_code == 1  # nothing applied yet
        report = json.loads(invoke(env, "sync", "--json").output)
        assert set(report) >= {"runId", "snapshotId", "tables"}
        assert all(
            set(t) >= {"added", "changed", "deleted", "unchanged"} and t["added"] == 150
            for t in report["tables"].values()
        )
        again = invoke(env, "run")
        assert again.exit_code == 0 and "+0 added" in again.output
        verified = invoke(env, "verify", "--json")
        assert verified.exit_code == 0 and json.loads(verified.output)["equal"]
        convex_key = env["CONVEX_DEPLOY_KEY"]
        assert convex_key not in again.output + verified.output
        out = tmp_path / "xataTables.ts"
        no_settings = tmp_path / "empty.toml"  # not the repository's xata2convex.toml (the sample seed's)
        no_settings.write_text("")
        schema = invoke(
            env, "schema", "--out", str(out), "--snapshot", report["snapshotId"], "--config", str(no_settings)
        )
        assert schema.exit_code == 0 and "export const xataTables" in out.read_text()
        assert out.read_text() == (project / "convex" / "xataTables.ts").read_text()


def _first_lines(command: list[str], count: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start a `local` command; its first `count` lines, as bash reads them after `export`."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(count)]
    assert all(lines), "the command ended before printing its settings"
    names = [line.partition("=")[0] for line in lines]
    script = "".join(f"export {line}" for line in lines)
    script += "".join(f'printf "%s\\0" "${{{name}}}"\n' for name in names)
    values = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, check=True).stdout
    return process, dict(zip(names, values.split("\0")[:-1], strict=True))


def test_local_commands_print_shell_safe_settings(xata_seed_dir: Path) -> None:
    xata, xata_settings = _first_lines([CLI, "local", "xata", "--seed", str(xata_seed_dir), "--port", "0"], 3)
    try:
        assert xata_settings["XATA_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert xata_settings["XATA_DATABASE_URL"].endswith(":main")
    finally:
        xata.send_signal(signal.SIGINT)
        assert xata.wait(timeout=30) == 0
    key = "local:xata2convex|with a space & $dollar"
    convex, convex_settings = _first_lines([CLI, "local", "convex", "--port", "0", "--deploy-key", key], 4)
    try:
        assert convex_settings["CONVEX_URL"].startswith("http://127.0.0.1:")
        assert convex_settings["CONVEX_DEPLOY_KEY"] == key  # survived `export` intact
        site = convex_settings["CONVEX_SITE_URL"]
        assert site.startswith("http://127.0.0.1:") and site != convex_settings["CONVEX_URL"]
        secret = convex_settings["XATA2CONVEX_SINK_SECRET"]
        assert len(secret) >= 32
        body = b'{"op": "schemaInfo", "args": {}}'
        answer = requests.post(
            f"{site}/xata2convex/sink", data=body, headers=signed_headers(secret, body), timeout=30
        )
        assert answer.status_code == 200 and answer.json()["status"] == "success"
    finally:
        convex.send_signal(signal.SIGINT)
        convex.wait(timeout=30)


def test_local_convex_keeps_off_the_port_of_npx_convex_dev() -> None:
    from xata2convex_local.convex_server import DEFAULT_PORT

    assert DEFAULT_PORT not in (3210, 3211)
    assert f"[default: {DEFAULT_PORT}]" in invoke({}, "local", "convex", "--help").output


def test_help_lists_designs_commands() -> None:
    output = invoke({}, "--help").output
    for command in ("export", "sync", "run", "verify", "schema", "snapshots", "local", "xreplay"):
        assert f"  {command}" in output


def test_runs_and_record_level_diffs(xata_standin: XataStandInFactory, fresh_local_convex: LocalConvex,
                                     tmp_path: Path) -> None:  # fmt: skip
    standin = xata_standin()
    env = {**standin.settings(), **fresh_local_convex.settings(), "SNAPSHOT_URI": str(tmp_path / "s")}
    first = json.loads(invoke(env, "run", "--json").output)
    from xata2convex.xata_source import sdk_client

    sdk = sdk_client(env["XATA_API_KEY"], env["XATA_DATABASE_URL"], env["XATA_ENDPOINT_URL"])
    team = sdk.data().query("teams", {"page": {"size": 1}})["records"][0]
    assert sdk.records().update("teams", team["id"], {"name": "Renamed <b>"}).is_success()
    added = sdk.records().insert("teams", {"name": "New team"})["id"]
    second = json.loads(invoke(env, "run", "--json").output)
    assert second["trigger"] == "cli" and second["baseSnapshotId"] == first["snapshotId"]

    listed = invoke(env, "runs", "ls")
    assert listed.exit_code == 0
    # both runs may start within one second: find the second run's line rather than rely on order
    [line] = [line for line in listed.output.splitlines() if line.startswith(f"{second['runId']}  ")]
    assert line.startswith(f"{second['runId']}  succeeded  cli  ")  # the big ints are int64
    assert "+1 ~1 -0" in line
    runs = json.loads(invoke(env, "runs", "ls", "--limit", "1", "--json").output)["runs"]
    assert [(r["runId"], r["trigger"], r["added"], r["changed"]) for r in runs] == [
        (second["runId"], "cli", 1, 1)
    ]

    shown = invoke(env, "runs", "show", second["runId"])
    assert shown.exit_code == 0 and "teams: +1 added, ~1 changed" in shown.output
    assert second["htmlReportKey"].split("/")[-1] in shown.output
    assert json.loads(invoke(env, "runs", "show", second["runId"], "--json").output) == second
    changes = invoke(env, "runs", "show", second["runId"], "--table", "teams")
    assert f"added {added}" in changes.output and f"changed {team['id']}: " in changes.output
    assert f'name: "{team["name"]}" -> "Renamed <b>"' in changes.output
    as_json = json.loads(invoke(env, "runs", "show", second["runId"], "--table", "teams", "--json").output)
    by_id = {c["id"]: c for c in as_json["changes"]}
    assert by_id[team["id"]]["before"]["name"] == team["name"] and by_id[added]["before"] is None
    missing = invoke(env, "runs", "show", "no-such-run")
    assert missing.exit_code == 1 and "no run report 'no-such-run'" in missing.output

    diff = invoke(env, "snapshots", "diff", first["snapshotId"], second["snapshotId"], "--records")
    assert f"    added {added}" in diff.output and f"    changed {team['id']}: " in diff.output
    diff_json = json.loads(
        invoke(
            env,
            "snapshots",
            "diff",
            first["snapshotId"],
            second["snapshotId"],
            "--records",
            "--table",
            "teams",
            "--json",
        ).output
    )
    assert list(diff_json["tables"]) == ["teams"]
    records = {r["id"]: r for r in diff_json["tables"]["teams"]["records"]}
    assert records[added]["change"] == "added"
    assert {"name", "xata_version"} <= set(records[team["id"]]["fields"])
    assert len(records) == 2

    snapshots = json.loads(invoke(env, "snapshots", "ls", "--json").output)
    assert [(s["runId"], s["applied"]) for s in snapshots["snapshots"]] == [
        (first["runId"], False),
        (second["runId"], True),
    ]
    assert snapshots["appliedSnapshotId"] == second["snapshotId"]
    lines = invoke(env, "snapshots", "ls").output.splitlines()
    assert lines[1].endswith(f"run {second['runId']}  applied") and "applied" not in lines[0]

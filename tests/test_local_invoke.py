"""`xata2convex local invoke` of every built function with every events/ file, against the stand-ins.

The functions run from `make build`'s artifact in the runtime's Python, with the settings of
events/env.json (its default ports replaced by the stand-ins' free ones), their secrets in the local
Secrets Manager of `xata2convex local aws` and their snapshots in its S3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest

from tests.fixtures.build import FUNCTIONS, REPO
from tests.fixtures.trigger import sync_run
from tests.fixtures.xata import XataStandInFactory
from xata2convex import trigger
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import open_blob_store
from xata2convex_local.aws_server import LocalAws, aws_command, stack_secrets
from xata2convex_local.convex_server import LocalConvex, convex_command
from xata2convex_local.xata_server import xata_command

EVENTS = REPO / "events"
CLI = Path(sys.executable).parent / "xata2convex"
ENV_FILES = sorted(EVENTS.glob("env*.json"))
# Which function each sample event is for.
EVENT_FUNCTION = {
    "export_snapshot.json": "ExportSnapshotFunction",
    "sync_convex.json": "SyncConvexFunction",
    "sync_worker.json": "SyncWorkerFunction",
    "trigger_url.json": "TriggerFunction",
}


def declared_variables(template: dict[str, Any], function: str) -> set[str]:
    """Every variable the template gives the function under some parameters (Globals included)."""
    globals_ = template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return set(globals_) | set(own)


def env_file(path: Path) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(path.read_text())
    return data


def default_port(command: click.Command) -> int:
    port = next(p for p in command.params if p.name == "port").default
    assert isinstance(port, int)
    return port


# --- events/env.json against the template and the stand-ins ---------------------------------------


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.name for p in ENV_FILES])
def test_every_env_file_key_is_a_variable_the_template_declares_for_that_function(path: Path) -> None:
    """`sam local invoke --env-vars` silently ignores any other key."""
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse((REPO / "template.yaml").read_text())
    sections = env_file(path)
    assert set(sections) == set(FUNCTIONS)
    for function, variables in sections.items():
        undeclared = set(variables) - declared_variables(template, function)
        assert not undeclared, f"{path.name}: {function} does not declare {sorted(undeclared)}"


def test_env_json_points_at_the_stand_ins_default_ports_and_the_local_stack() -> None:
    local = LocalAws(port=default_port(aws_command))
    expected_ports = {
        "XATA_ENDPOINT_URL": default_port(xata_command),
        "CONVEX_URL": default_port(convex_command),
        "CONVEX_SITE_URL": default_port(convex_command) + 1,  # the site listens next to the API
        "AWS_ENDPOINT_URL": default_port(aws_command),
    }
    secret_names = {s.name for s in stack_secrets()}
    for function, variables in env_file(EVENTS / "env.json").items():
        assert variables["AWS_ENDPOINT_URL"] == local.settings()["AWS_ENDPOINT_URL"], function
        assert variables["SNAPSHOT_URI"] == local.settings()["SNAPSHOT_URI"], function
        for name, value in variables.items():
            if name in expected_ports:
                url = urlsplit(value)
                assert (url.hostname, url.port) == ("127.0.0.1", expected_ports[name]), (function, name)
            if name.endswith("_SECRET_ARN") and value:
                assert value in secret_names, (function, name)


# --- every function, every event, on the built artifact ---------------------------------------------


class LocalStack:
    """The stand-ins and the local AWS, started the way the docs start them."""

    def __init__(self, xata: Any, convex: LocalConvex, aws: LocalAws, env_vars: Path) -> None:
        self.xata, self.convex, self.aws, self.env_vars = xata, convex, aws, env_vars

    def store(self) -> SnapshotStore:
        return SnapshotStore(open_blob_store(self.aws.settings()["SNAPSHOT_URI"]), "sample", "main")


@pytest.fixture
def local_stack(
    xata_standin: XataStandInFactory,
    fresh_local_convex: LocalConvex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalStack]:
    xata = xata_standin()
    aws = LocalAws(port=0)
    # What a user does: each secret takes the value the stand-ins printed.
    printed = {**xata.settings(), **fresh_local_convex.settings(), **fresh_local_convex.sink_settings()}
    empty = aws.start(printed)
    try:
        assert "xata2convex/xata-postgres-url" in empty  # its setting was not given: no value yet
        actual = {**printed, **aws.settings()}
        for name, value in aws.settings().items():
            monkeypatch.setenv(name, value)  # so that this test reads the same S3
        sections = {
            function: {name: actual.get(name, value) for name, value in variables.items()}
            for function, variables in env_file(EVENTS / "env.json").items()
        }
        env_vars = tmp_path / "env.json"
        env_vars.write_text(json.dumps(sections))
        yield LocalStack(xata, fresh_local_convex, aws, env_vars)
    finally:
        aws.stop()


def local_invoke(stack: LocalStack, build: Path, event: str, *extra: str) -> tuple[int, Any]:
    """`xata2convex local invoke <Function> -e events/<event> --env-vars …`: (exit code, answer)."""
    result = subprocess.run(
        [str(CLI), "local", "invoke", EVENT_FUNCTION[event], "-e", str(EVENTS / event),
         "--env-vars", str(stack.env_vars), "--build-dir", str(build), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.stdout.count("\n") == 1, result.stdout + result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


def test_every_function_runs_from_the_build_with_every_sample_event(
    local_stack: LocalStack, sam_build: Path
) -> None:
    assert set(EVENT_FUNCTION) == {p.name for p in EVENTS.glob("*.json")} - {p.name for p in ENV_FILES}
    store = local_stack.store()

    # Export writes a snapshot to the local S3, reading the Xata key from the local Secrets Manager.
    code, summary = local_invoke(local_stack, sam_build, "export_snapshot.json")
    assert code == 0, summary
    manifest = store.read_manifest(summary["snapshotId"])
    assert summary["tables"] == {t.name: t.rows for t in manifest.tables} and summary["rows"] > 0

    # Sync applies it to the local Convex.
    code, report = local_invoke(local_stack, sam_build, "sync_convex.json")
    assert code == 0 and report["snapshotId"] == summary["snapshotId"], report
    assert report["dryRun"] is False and sum(t["added"] for t in report["tables"].values()) > 0
    state, _ = store.read_state()
    assert state is not None and state.snapshot_id == summary["snapshotId"]

    # The trigger refuses the sample's stale signature, and accepts it signed again now.
    code, stale = local_invoke(local_stack, sam_build, "trigger_url.json")
    assert code == 0 and stale["statusCode"] == 401 and "300 s" in json.loads(stale["body"])["message"]
    lock = trigger.RunLock.for_store(store)
    assert lock.holder() is None
    code, accepted = local_invoke(local_stack, sam_build, "trigger_url.json", "--sign")
    run_id = json.loads(EVENTS.joinpath("sync_worker.json").read_text())["runId"]
    assert code == 0 and accepted["statusCode"] == 202, accepted
    assert json.loads(accepted["body"]) == {"runId": run_id}
    assert lock.holder() == run_id

    # The worker event names the run the trigger admitted: it runs under that lock, then frees it.
    code, run = local_invoke(local_stack, sam_build, "sync_worker.json")
    assert code == 0 and run["runId"] == run_id, run
    assert run["status"] == "succeeded"  # the sample's integers past 2^53 are int64 (xata2convex.toml)
    assert lock.holder() is None
    assert store.read_run_report(run_id) == run
    assert sync_run(local_stack.convex, run_id)["status"] == "succeeded"


def test_a_failing_function_answers_lambdas_error_object_and_exits_1(
    local_stack: LocalStack, sam_build: Path, tmp_path: Path
) -> None:
    """The worker's run fails (its branch does not exist): Lambda's error object, the key scrubbed."""
    sections = env_file(local_stack.env_vars)
    sections["SyncWorkerFunction"]["XATA_DATABASE_URL"] = "https://local.us-east-1.xata.sh/db/sample:nope"
    local_stack.env_vars.write_text(json.dumps(sections))
    trigger.RunLock.for_store(
        SnapshotStore(open_blob_store(local_stack.aws.settings()["SNAPSHOT_URI"]), "sample", "nope")
    ).reserve(json.loads(EVENTS.joinpath("sync_worker.json").read_text())["runId"])
    code, error = local_invoke(local_stack, sam_build, "sync_worker.json")
    assert code == 1 and error["errorType"] == "JobFailed" and "failed" in error["errorMessage"]
    assert local_stack.xata.settings()["XATA_API_KEY"] not in json.dumps(error)


def test_the_invoke_command_names_what_is_missing_in_one_line(sam_build: Path, tmp_path: Path) -> None:
    cases = [
        (["NoSuchFunction", "--build-dir", str(sam_build)], "no function NoSuchFunction"),
        (["TriggerFunction", "--build-dir", str(tmp_path)], "run `make build` first"),
        (["TriggerFunction", "--build-dir", str(sam_build), "--env-vars", str(tmp_path / "none.json")],
         "cannot read the env-vars file"),
    ]  # fmt: skip
    for args, message in cases:
        result = subprocess.run(
            [str(CLI), "local", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and message in lines[0], result.stderr

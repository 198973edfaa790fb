"""End to end without AWS: the local Convex runs `trigger:trigger`, which sends the signed POST to the
Function URL handler served on a local port; its worker exports from the local Xata stand-in and syncs
into that same local Convex, where `syncRuns` shows the finished run with its counts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.convex import REPO_ROOT
from tests.fixtures.trigger import TEST_TRIGGER_SECRET
from tests.fixtures.xata import XataStandInFactory
from xata2convex.convex_sink import ConvexHttp
from xata2convex_local.convex_server import LocalConvex
from xata2convex_local.trigger_server import TriggerServer


def _added(run: dict[str, Any]) -> int:
    return sum(int(table["added"]) for table in run["tables"])


def test_the_convex_trigger_action_runs_a_sync_through_the_function_url(
    trigger_server: TriggerServer, xata_standin: XataStandInFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local Convex takes its environment variables from this process when it starts;
    # trigger_env already holds the signing secret the handler checks.
    monkeypatch.setenv("XATA2CONVEX_TRIGGER_URL", trigger_server.url)
    with LocalConvex(REPO_ROOT) as convex:
        # The worker threads in this process read these when a run starts.
        for name, value in {**xata_standin().settings(), **convex.settings()}.items():
            monkeypatch.setenv(name, value)
        client = ConvexHttp(convex.url, convex.deploy_key)

        first = client.action("trigger:trigger", {"mode": "full"})
        assert first["status"] == "pending" and first["httpStatus"] == 202, first
        assert trigger_server.wait_for_runs(timeout=120)
        run = client.query("syncRuns:get", {"runId": first["runId"]})
        # succeeded: xata2convex.toml mirrors the seed's integers beyond 2^53 as int64.
        assert run["status"] == "succeeded", run.get("error")
        assert (run["mode"], run["trigger"]) == ("full", "manual")
        assert _added(run) > 0
        assert run["finishedAt"] >= run["startedAt"]

        # Nothing changed in Xata: the next incremental run adds nothing.
        second = client.action("trigger:trigger", {})
        assert second["httpStatus"] == 202 and second["runId"] != first["runId"]
        assert trigger_server.wait_for_runs(timeout=120)
        again = client.query("syncRuns:get", {"runId": second["runId"]})
        assert again["status"] == "succeeded" and again["mode"] == "incremental"
        assert _added(again) == 0
        assert TEST_TRIGGER_SECRET not in repr([first, run, second, again])

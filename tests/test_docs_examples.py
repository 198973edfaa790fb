"""docs/convex.md's query examples are docs/examples/xataQueries.ts, quoted verbatim, and they run:
copied into a Convex project beside the mirror, typechecked, then called in the local Convex (the
official convex-test) after a sync of the sample database."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.convex import REPO_ROOT
from tests.fixtures.xata import XataStandInFactory
from xata2convex import jobs
from xata2convex.config import Config
from xata2convex.convex_sink import ConvexHttp
from xata2convex.sync import SyncOptions
from xata2convex_local.convex_server import LocalConvex

EXAMPLES = REPO_ROOT / "docs" / "examples" / "xataQueries.ts"
GUIDE = REPO_ROOT / "docs" / "convex.md"
TSC = REPO_ROOT / "node_modules" / ".bin" / "tsc"
ADA, PLATFORM = "rec_chs3e0bjclim8c80000g", "rec_chs3e0bjclim8c00000g"


def quoted_blocks() -> list[str]:
    """The ```ts blocks of the guide's "Querying the mirror" section."""
    section = GUIDE.read_text().split("## Querying the mirror", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```ts\n(.*?)```", section, flags=re.DOTALL)


def test_the_guide_quotes_every_example_verbatim() -> None:
    source = EXAMPLES.read_text()
    blocks = quoted_blocks()
    assert blocks, "the guide quotes the examples"
    for block in blocks:
        assert block in source, f"not in {EXAMPLES.name} as written:\n{block}"
    exported = re.findall(r"^export const (\w+)", source, flags=re.MULTILINE)
    shown = re.findall(r"^export const (\w+)", "".join(blocks), flags=re.MULTILINE)
    assert shown == exported


@pytest.fixture
def app_project() -> Iterator[Path]:
    """The repository's convex/ (the sample database's mirror) plus the examples, as an app has them."""
    project = Path(tempfile.mkdtemp(prefix=".convex-examples-", dir=REPO_ROOT))
    try:
        shutil.copytree(REPO_ROOT / "convex", project / "convex")
        shutil.copy(EXAMPLES, project / "convex" / "xataQueries.ts")
        yield project
    finally:
        shutil.rmtree(project, ignore_errors=True)


@pytest.mark.skipif(not TSC.exists(), reason="node_modules/.bin/tsc is missing: run `make setup`")
def test_the_examples_typecheck_against_the_generated_schema(app_project: Path) -> None:
    result = subprocess.run(
        [str(TSC), "--noEmit", "-p", str(app_project / "convex")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_examples_answer_from_a_mirrored_seed(
    app_project: Path, xata_standin: XataStandInFactory, tmp_path: Path
) -> None:
    seed = REPO_ROOT / "seeds" / "sample"
    users = [json.loads(line) for line in (seed / "users.jsonl").read_text().splitlines() if line]
    with LocalConvex(app_project) as convex:
        env = {**xata_standin().settings(), **convex.settings(), "SNAPSHOT_URI": str(tmp_path)}
        assert jobs.run_export_and_sync(Config.from_env(env), SyncOptions())["status"] == "succeeded"
        client = ConvexHttp(convex.url, convex.deploy_key)

        ada = client.query("xataQueries:userByXataId", {"xataId": ADA})
        assert ada["name"] == "Ada Lovelace" and ada["xata_id"] == ADA
        team = client.query("xataQueries:teamOfUser", {"userId": ada["_id"]})
        assert team["xata_id"] == PLATFORM and team["_id"] == ada["team_id"]

        members = client.query("xataQueries:usersOfTeam", {"teamId": team["_id"]})
        expected = {u["id"] for u in users if (u.get("team") or {}).get("id") == PLATFORM}
        assert {m["xata_id"] for m in members} == expected and len(expected) > 1

        found = client.query("xataQueries:searchUsersByBio", {"text": "poet"})
        assert ADA in {u["xata_id"] for u in found}
        assert client.query("xataQueries:searchUsersByBio", {"text": "zzzunknownword"}) == []

        teams = {
            line["id"]: line for line in map(json.loads, (seed / "teams.jsonl").read_text().splitlines())
        }
        embedding = teams[PLATFORM]["embedding"]
        hits = client.action("xataQueries:similarTeams", {"embedding": embedding})
        assert 0 < len(hits) <= 3 and hits[0]["_id"] == team["_id"]
        nearest = client.query("xataQueries:teamsByIds", {"ids": [hit["_id"] for hit in hits]})
        assert nearest[0]["xata_id"] == PLATFORM

"""Secrets the Lambdas read from Secrets Manager (moto's, over a real socket): a secret the stack
created but nobody filled yet names itself and the command that fills it, in one line."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from xata2convex import trigger
from xata2convex.config import ConfigError, load_lambda_config
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import LocalBlobStore
from xata2convex_local.trigger_server import LocalLambdaContext, load_handler_module

REPO = Path(__file__).resolve().parents[1]


def empty_secret() -> str:
    """A secret created without a value, as the stack creates the Xata one: its ARN."""
    client: Any = boto3.client("secretsmanager")
    arn: str = client.create_secret(Name=f"xata2convex-{uuid.uuid4().hex[:8]}/xata-api-key")["ARN"]
    return arn


@pytest.mark.parametrize(
    ("arn_setting", "setting"),
    [
        ("XATA_API_KEY_SECRET_ARN", "XATA_API_KEY"),
        ("XATA_POSTGRES_URL_SECRET_ARN", "XATA_POSTGRES_URL"),
        ("XATA2CONVEX_SINK_SECRET_ARN", "XATA2CONVEX_SINK_SECRET"),
    ],
)
def test_an_empty_secret_names_itself_and_the_put_secret_value_that_fills_it(
    s3_env: str, arn_setting: str, setting: str
) -> None:
    arn = empty_secret()
    with pytest.raises(ConfigError) as raised:
        load_lambda_config({arn_setting: arn, "XATA_DATABASE_URL": "https://w.us-east-1.xata.sh/db/d:main"})
    assert str(raised.value) == (
        f"the secret {arn} ({setting}) has no value yet; set it: aws secretsmanager put-secret-value "
        f'--secret-id {arn} --secret-string "${setting}"'
    )
    assert raised.value.__suppress_context__  # no chained traceback from Powertools or botocore


def test_an_empty_trigger_secret_is_named_too(s3_env: str) -> None:
    arn = empty_secret()
    with pytest.raises(ConfigError, match=f"the secret {arn} \\(XATA2CONVEX_TRIGGER_SECRET\\) has no value"):
        trigger.load_trigger_secret({"XATA2CONVEX_TRIGGER_SECRET_ARN": arn})


def test_a_secret_that_does_not_exist_is_named(s3_env: str) -> None:
    name = f"xata2convex-{uuid.uuid4().hex[:8]}/missing"
    with pytest.raises(ConfigError) as raised:
        load_lambda_config({"XATA_API_KEY_SECRET_ARN": name})
    message = str(raised.value)
    assert message.startswith(f"cannot read the secret {name} (XATA_API_KEY): ") and "\n" not in message


def test_the_worker_fails_the_run_with_that_line_and_frees_the_lock(
    s3_env: str, trigger_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = empty_secret()
    monkeypatch.setenv("XATA_API_KEY_SECRET_ARN", arn)
    store = SnapshotStore(LocalBlobStore(trigger_env), "sample", "main")
    trigger.RunLock.for_store(store).reserve("empty-secret-1")
    worker = load_handler_module(REPO / "functions" / "sync_worker" / "app.py")
    with pytest.raises(trigger.JobFailed, match=f"run empty-secret-1: the secret {arn} \\(XATA_API_KEY\\)"):
        worker.lambda_handler({"runId": "empty-secret-1", "mode": "incremental"}, LocalLambdaContext())
    assert trigger.RunLock.for_store(store).holder() is None
    report = store.read_run_report("empty-secret-1")
    assert report is not None and "put-secret-value" in report["error"]


def test_a_worker_whose_other_settings_are_wrong_still_frees_the_lock(
    trigger_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """abandon_run reads only the store's settings: the one that failed may be any other."""
    monkeypatch.setenv("CONVEX_URL", "notaurl")
    store = SnapshotStore(LocalBlobStore(trigger_env), "sample", "main")
    trigger.RunLock.for_store(store).reserve("bad-url-1")
    worker = load_handler_module(REPO / "functions" / "sync_worker" / "app.py")
    expected = r"run bad-url-1: CONVEX_URL='notaurl' is not an http\(s\) URL"
    with pytest.raises(trigger.JobFailed, match=expected):
        worker.lambda_handler({"runId": "bad-url-1", "mode": "incremental"}, LocalLambdaContext())
    assert trigger.RunLock.for_store(store).holder() is None
    report = store.read_run_report("bad-url-1")
    assert report is not None and "CONVEX_URL" in report["error"]

"""`xata2convex local aws`: a local S3, Secrets Manager and Lambda API (moto) set up as the stack is.

What `sam local invoke` and `xata2convex local invoke` need instead of the deployed stack: the snapshot
bucket, and one secret per secret the template creates, named as the stack names them
(`xata2convex/xata-api-key`, …), which `events/env.json` gives the functions in place of ARNs. A
secret's value comes from the environment variable its function setting names without
`_SECRET_ARN` (XATA_API_KEY for XATA_API_KEY_SECRET_ARN, …); one left unset is created without a
value, as the stack leaves it until `aws secretsmanager put-secret-value`. The Lambda API accepts the
trigger's asynchronous invoke of the worker (202) without running it: run the worker yourself with
the same run id (`events/sync_worker.json`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .foreground import catch_stop_signals, serve_until_stopped

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 4569
STACK_NAME = "xata2convex"  # samconfig.toml's stack_name: the secrets' names start with it
BUCKET = "xata2convex-local"
SNAPSHOT_PREFIX = "xata2convex"  # the template's SnapshotPrefix default
REGION = "us-east-1"
# The secret events/trigger_url.json is signed with, unless XATA2CONVEX_TRIGGER_SECRET says otherwise.
SAMPLE_TRIGGER_SECRET = "sample-signing-secret-for-sam-local-0001"
ARN_SUFFIX = "_SECRET_ARN"


@dataclass(frozen=True)
class StackSecret:
    name: str  # as the stack names it: {stack}/{suffix}
    setting: str  # the environment variable holding its value for a local run, e.g. XATA_API_KEY


def stack_secrets(template: Path = REPO_ROOT / "template.yaml") -> list[StackSecret]:
    """Each secret a function is told about (`X_SECRET_ARN: !Ref Secret`), with the setting X it holds."""
    from samcli.yamlhelper import yaml_parse

    resources: dict[str, Any] = yaml_parse(template.read_text())["Resources"]
    found: dict[str, StackSecret] = {}
    for resource in resources.values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        for variable, value in variables.items():
            logical_id = _secret_ref(value)
            if variable.endswith(ARN_SUFFIX) and logical_id in resources:
                sub = resources[logical_id]["Properties"]["Name"]["Fn::Sub"]
                name = sub.replace("${AWS::StackName}", STACK_NAME)
                found[name] = StackSecret(name, plain_setting(variable))
    return sorted(found.values(), key=lambda s: s.name)


def plain_setting(arn_variable: str) -> str:
    """The setting a `…_SECRET_ARN` variable replaces: XATA_API_KEY_SECRET_ARN holds XATA_API_KEY, while
    the tool's own secrets keep the word: XATA2CONVEX_TRIGGER_SECRET_ARN holds XATA2CONVEX_TRIGGER_SECRET."""
    if arn_variable.startswith("XATA2CONVEX_"):
        return arn_variable.removesuffix("_ARN")
    return arn_variable.removesuffix(ARN_SUFFIX)


def _secret_ref(value: Any) -> str | None:
    """The logical id of `!Ref X`, also inside `!If [cond, !Ref X, …]`."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::If" in value:
        for branch in value["Fn::If"][1:]:
            if (ref := _secret_ref(branch)) and ref != "AWS::NoValue":
                return ref
    return None


class LocalAws:
    """moto in server mode on a local port, with the bucket and the stack's secrets in place."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self._host, self._port = host, port
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self, values: Mapping[str, str]) -> list[str]:
        """Serve, then create the bucket and the secrets (each from `values[secret.setting]`; the trigger's
        defaults to the sample one); returns the names of the secrets left without a value."""
        import boto3
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        # moto's Lambda without Docker: an async invoke of any function name is accepted (202).
        default_user_config["lambda"]["use_docker"] = False
        self._server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        self._server.start()
        self._port = self._server.get_host_and_port()[1]  # the port taken, when asked for 0
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        s3: Any = session.client("s3", endpoint_url=self.url)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        secrets: Any = session.client("secretsmanager", endpoint_url=self.url)
        values = {"XATA2CONVEX_TRIGGER_SECRET": SAMPLE_TRIGGER_SECRET, **values}
        empty = []
        for secret in stack_secrets():
            value = values.get(secret.setting)
            # moto's state is per process: a second LocalAws in it (tests) finds the first one's secrets.
            with contextlib.suppress(secrets.exceptions.ResourceNotFoundException):
                secrets.delete_secret(SecretId=secret.name, ForceDeleteWithoutRecovery=True)
            if value:
                secrets.create_secret(Name=secret.name, SecretString=value)
            else:
                secrets.create_secret(Name=secret.name)
                empty.append(secret.name)
        return empty

    def settings(self) -> dict[str, str]:
        """What the CLI needs to reach this local AWS (moto accepts any credentials)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "SNAPSHOT_URI": f"s3://{BUCKET}/{SNAPSHOT_PREFIX}",
        }

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@click.command("aws")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True)
def aws_command(port: int, host: str) -> None:
    """Serve a local S3, Secrets Manager and Lambda API with the stack's bucket and secrets.

    Each secret takes its value from the setting it holds (XATA_API_KEY, CONVEX_DEPLOY_KEY,
    XATA_POSTGRES_URL, XATA2CONVEX_TRIGGER_SECRET, …) when that is set in this shell.
    """
    aws = LocalAws(host=host, port=port)
    stopped = catch_stop_signals()
    try:
        empty = aws.start(os.environ)
        for name in empty:
            click.echo(f"# secret {name} has no value yet (its setting was not set)", err=True)
        serve_until_stopped(stopped, aws.settings())
    finally:
        aws.stop()


if __name__ == "__main__":
    aws_command()

"""template.yaml: cfn-lint, least privilege and the settings the trigger relies on, and a real `sam build`."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from cfnlint.decode import decode

from xata2convex import trigger
from xata2convex.config import Config
from xata2convex.snapshot import SnapshotStore
from xata2convex.storage import Blob, LocalBlobStore

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEMPLATE, _ = decode(str(REPO / "template.yaml"))
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
SOURCE_KINDS = TEMPLATE["Parameters"]["SourceKind"]["AllowedValues"]
NO_VALUE = {"Ref": "AWS::NoValue"}


def of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def resolve(value: Any, conditions: dict[str, bool]) -> Any:
    """`value` with each Fn::If decided and each AWS::NoValue dropped, as CloudFormation does."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return resolve(when_true if conditions[name] else when_false, conditions)
        resolved = {k: resolve(v, conditions) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v != NO_VALUE}
    if isinstance(value, list):
        return [v for v in (resolve(item, conditions) for item in value) if v != NO_VALUE]
    return value


def deployed(source_kind: str) -> dict[str, Any]:
    """The resources a deploy with this SourceKind creates (other parameters at their defaults)."""
    conditions = {
        "PostgresSource": source_kind == "postgres",
        "ExpireSnapshots": True,
        "PublicTriggerUrl": True,
        "IamTriggerUrl": False,
        "ReserveWorkerConcurrency": True,
    }
    assert set(conditions) == set(TEMPLATE["Conditions"])
    return {
        name: resolve(resource, conditions)
        for name, resource in RESOURCES.items()
        if conditions.get(resource.get("Condition", ""), True)
    }


def allow_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Allow statement our roles, managed policies and users grant."""
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in document["Statement"]:
                if statement["Effect"] == "Allow":
                    yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "cfn-lint"), "template.yaml"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source_kind", SOURCE_KINDS)
def test_no_policy_allows_a_wildcard_action_or_resource(source_kind: str) -> None:
    statements = list(allow_statements(deployed(source_kind)))
    assert len(statements) >= 12
    for owner, statement in statements:
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{owner}: {action}"
        for resource in as_list(statement["Resource"]):
            # Resources name our own resources; wildcards only stand for keys under the snapshot prefix.
            assert isinstance(resource, dict) and set(resource) <= {"Ref", "Fn::GetAtt", "Fn::Sub"}, owner
            if "Fn::Sub" in resource:
                text = as_list(resource["Fn::Sub"])[0]
                assert text.startswith("${SnapshotBucket.Arn}/${SnapshotPrefix}/"), owner
                assert "*" not in text or text.endswith("/*"), owner
        if "s3:ListBucket" in as_list(statement["Action"]):
            assert set(statement["Condition"]) <= {"StringLike", "StringEquals"}, owner
            assert all(set(c) == {"s3:prefix"} for c in statement["Condition"].values()), owner


def grants(resources: dict[str, Any], role: str, action: str) -> list[Any]:
    return [
        r
        for owner, s in allow_statements(resources)
        if owner == role and action in as_list(s["Action"])
        for r in as_list(s["Resource"])
    ]


@pytest.mark.parametrize(
    ("source_kind", "source_secret"),
    [("xata-rest", "XataApiKeySecret"), ("postgres", "XataPostgresUrlSecret")],
)
def test_each_function_reads_only_the_secrets_it_needs_and_the_trigger_invokes_only_the_worker(
    source_kind: str, source_secret: str
) -> None:
    resources = deployed(source_kind)
    secrets = "secretsmanager:GetSecretValue"
    assert grants(resources, "TriggerRole", secrets) == [{"Ref": "TriggerSigningSecret"}]
    assert grants(resources, "ExportSnapshotRole", secrets) == [{"Ref": source_secret}]
    assert grants(resources, "SyncConvexRole", secrets) == [{"Ref": "SinkSigningSecret"}]
    assert grants(resources, "SyncWorkerRole", secrets) == [
        {"Ref": source_secret},
        {"Ref": "SinkSigningSecret"},
    ]
    assert grants(resources, "TriggerRole", "lambda:InvokeFunction") == [
        {"Fn::GetAtt": ["SyncWorkerFunction", "Arn"]}
    ]
    for name, function in of_type("AWS::Serverless::Function").items():
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        assert grants(resources, role, "logs:PutLogEvents") == [
            {"Fn::GetAtt": [function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]}
        ], name


@pytest.mark.parametrize("source_kind", SOURCE_KINDS)
def test_every_secret_a_function_is_told_about_exists_and_its_role_may_read_it(source_kind: str) -> None:
    resources = deployed(source_kind)
    code = "".join(
        (REPO / "layers/xata2convex/xata2convex" / module).read_text()
        for module in ("config.py", "trigger.py")
    )
    for name, function in resources.items():
        if function["Type"] != "AWS::Serverless::Function":
            continue
        variables = function["Properties"]["Environment"]["Variables"]
        named = {k: v["Ref"] for k, v in variables.items() if k.endswith("_SECRET_ARN")}
        for variable, secret in named.items():
            assert f'"{variable}"' in code, f"{name}: the code never reads {variable}"
            assert resources[secret]["Type"] == "AWS::SecretsManager::Secret", (name, variable)
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        readable = grants(resources, role, "secretsmanager:GetSecretValue")
        assert sorted(r["Ref"] for r in readable) == sorted(named.values()), name


def mentions(value: Any, needle: str) -> bool:
    """Whether any name, reference or text inside a template value contains `needle` (case-insensitive)."""
    if isinstance(value, dict):
        return any(mentions(k, needle) or mentions(v, needle) for k, v in value.items())
    if isinstance(value, list):
        return any(mentions(item, needle) for item in value)
    return needle.lower() in str(value).lower().replace("-", "_")


@pytest.mark.parametrize("source_kind", SOURCE_KINDS)
def test_no_function_environment_or_role_references_a_convex_deploy_key(source_kind: str) -> None:
    """The Lambdas reach Convex only through the signed sink: no deploy key is in the stack at all."""
    resources = deployed(source_kind)
    assert not mentions(TEMPLATE, "deploy_key") and not mentions(TEMPLATE, "DeployKey")
    for name, function in of_type("AWS::Serverless::Function").items():
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert not mentions(variables, "deploy_key"), name
        assert "CONVEX_URL" not in variables, name  # the HTTP API, which only a deploy key opens
        role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
        assert not mentions(role, "deploy_key") and not mentions(role, "DeployKey"), name
    globals_ = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert not mentions(globals_, "deploy_key") and "CONVEX_URL" not in globals_
    for name in ("SyncConvexFunction", "SyncWorkerFunction"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert variables["XATA2CONVEX_SINK_SECRET_ARN"] == {"Ref": "SinkSigningSecret"}, name
        assert variables["CONVEX_SITE_URL"] == {"Ref": "ConvexSiteUrl"}, name
    for name in ("ExportSnapshotFunction", "TriggerFunction"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert not {"XATA2CONVEX_SINK_SECRET_ARN", "CONVEX_SITE_URL"} & set(variables), name


def test_the_postgres_source_is_a_choice_whose_secret_the_user_sets() -> None:
    parameter = TEMPLATE["Parameters"]["SourceKind"]
    assert parameter["Default"] == "xata-rest" and SOURCE_KINDS == ["xata-rest", "postgres"]
    assert TEMPLATE["Conditions"]["PostgresSource"] == {"Fn::Equals": [{"Ref": "SourceKind"}, "postgres"]}
    secret = RESOURCES["XataPostgresUrlSecret"]
    assert secret["Condition"] == "PostgresSource"
    assert not {"SecretString", "GenerateSecretString"} & set(secret["Properties"])  # the user sets it
    assert TEMPLATE["Outputs"]["XataPostgresUrlSecretArn"]["Condition"] == "PostgresSource"


@pytest.mark.parametrize(
    ("source_kind", "variable", "secret"),
    [
        ("xata-rest", "XATA_API_KEY_SECRET_ARN", "XataApiKeySecret"),
        ("postgres", "XATA_POSTGRES_URL_SECRET_ARN", "XataPostgresUrlSecret"),
    ],
)
def test_only_the_export_and_the_worker_are_told_the_source_secret(
    source_kind: str, variable: str, secret: str
) -> None:
    resources = deployed(source_kind)
    assert ("XataPostgresUrlSecret" in resources) == (source_kind == "postgres")
    for name in of_type("AWS::Serverless::Function"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        source = {k: v for k, v in variables.items() if k.startswith("XATA_") and k.endswith("_SECRET_ARN")}
        expected = (
            {variable: {"Ref": secret}} if name in ("ExportSnapshotFunction", "SyncWorkerFunction") else {}
        )
        assert source == expected, name


def test_the_bucket_is_private_versioned_encrypted_and_expires_old_snapshots() -> None:
    bucket = RESOURCES["SnapshotBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert rules[0]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "NoncurrentVersionRetentionDays"}
    }
    condition, snapshots, _ = rules[2]["Fn::If"]
    assert condition == "ExpireSnapshots"
    assert snapshots["ExpirationInDays"] == {"Ref": "SnapshotRetentionDays"}
    assert snapshots["Prefix"]["Fn::Sub"][0] == "${SnapshotPrefix}/${Database}/${Branch}/snapshots/"
    assert rules[1]["Prefix"]["Fn::Sub"][0].endswith("/triggers/")
    deny = RESOURCES["SnapshotBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_worker_reserves_one_execution_unless_told_not_to() -> None:
    parameter = TEMPLATE["Parameters"]["WorkerReservedConcurrency"]
    assert parameter["Default"] == 1 and parameter["AllowedValues"] == [0, 1]
    assert TEMPLATE["Conditions"]["ReserveWorkerConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerReservedConcurrency"}, 0]}]
    }
    reserved = RESOURCES["SyncWorkerFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert resolve([reserved], {"ReserveWorkerConcurrency": True}) == [{"Ref": "WorkerReservedConcurrency"}]
    # 0: AWS::NoValue leaves the property out (no reservation), so a deploy fits the default quota.
    assert resolve([reserved], {"ReserveWorkerConcurrency": False}) == []


def test_one_worker_at_a_time_with_failures_sent_to_sqs() -> None:
    worker = RESOURCES["SyncWorkerFunction"]["Properties"]
    invoke_config = worker["EventInvokeConfig"]
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert invoke_config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["RunFailureQueue", "Arn"]},
    }
    assert TEMPLATE["Globals"]["Function"]["Timeout"] == 900
    # The lease outlives the longest worker, so a crashed run's lock frees itself but a live one is kept.
    from xata2convex.lock import DEFAULT_LEASE_SECONDS

    assert DEFAULT_LEASE_SECONDS > 900
    trigger_env = RESOURCES["TriggerFunction"]["Properties"]["Environment"]["Variables"]
    assert trigger_env["WORKER_FUNCTION_NAME"] == {"Ref": "SyncWorkerFunction"}


# --- what the roles may do with S3, evaluated for one sample deploy ---------------------------------

SAMPLE = {
    "SnapshotBucket.Arn": "arn:aws:s3:::snapshot-bucket",
    "SnapshotPrefix": "xata2convex",
    "XataDatabaseUrl": "https://ws-1.us-east-1.xata.sh/db/shop:main",
}
BUCKET_ARN = SAMPLE["SnapshotBucket.Arn"]
FOLDER = "xata2convex/shop/main/"  # {SnapshotPrefix}/{database}/{branch}/ for SAMPLE


def evaluate(value: Any) -> Any:
    """The intrinsic functions our policies use, computed for SAMPLE."""
    if isinstance(value, str | int):
        return value
    if isinstance(value, list):
        return [evaluate(item) for item in value]
    ((function, argument),) = value.items()
    if function == "Ref":
        return SAMPLE[argument]
    if function == "Fn::GetAtt":
        return SAMPLE[".".join(argument)]
    if function == "Fn::Split":
        return evaluate(argument[1]).split(argument[0])
    if function == "Fn::Select":
        return evaluate(argument[1])[argument[0]]
    if function == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {**SAMPLE, **{name: evaluate(v) for name, v in variables.items()}}
        return re.sub(r"\$\{([^}]+)\}", lambda match: values[match[1]], text)
    raise AssertionError(f"unexpected intrinsic {function}")


def role_statements(role: str) -> list[dict[str, Any]]:
    """Every Allow statement a role gets: inline policies and the managed policies it attaches."""
    resources = deployed("xata-rest")
    attached = {arn["Ref"] for arn in resources[role]["Properties"].get("ManagedPolicyArns", [])}
    return [s for owner, s in allow_statements(resources) if owner == role or owner in attached]


def s3_allows(
    statements: list[dict[str, Any]], action: str, resource: str, prefix: str | None = None
) -> bool:
    """IAM's answer for an s3 action (Allow statements only; `prefix` is the request's s3:prefix)."""
    for statement in statements:
        if action not in as_list(statement["Action"]):
            continue
        if not any(fnmatchcase(resource, evaluate(r)) for r in as_list(statement["Resource"])):
            continue
        conditions = [
            (operator, as_list(evaluate(wanted)))
            for operator, keys in statement.get("Condition", {}).items()
            for wanted in keys.values()
        ]
        matches: dict[str, Callable[[str, str], bool]] = {
            "StringEquals": lambda value, wanted: value == wanted,
            "StringLike": fnmatchcase,
        }
        if all(
            prefix is not None and any(matches[operator](prefix, w) for w in wanted)
            for operator, wanted in conditions
        ):
            return True
    return False


def object_access(statements: list[dict[str, Any]], operation: str, key: str, *, exists: bool = True) -> bool:
    """May the role do `operation` ("get", "put", "delete") on the object `key` under SnapshotPrefix?"""
    full_key = f"{SAMPLE['SnapshotPrefix']}/{key}"
    action = {"get": "s3:GetObject", "put": "s3:PutObject", "delete": "s3:DeleteObject"}[operation]
    allowed = s3_allows(statements, action, f"{BUCKET_ARN}/{full_key}")
    if operation == "get" and not exists:
        # A missing key reads as 404 (not 403) only with s3:ListBucket, checked with the key as s3:prefix.
        allowed = allowed and s3_allows(statements, "s3:ListBucket", BUCKET_ARN, prefix=full_key)
    return allowed


class RecordingBlobStore:
    """A local blob store that notes each object operation, as the S3 request it would be."""

    def __init__(self, root: Path) -> None:
        self.inner = LocalBlobStore(root)
        self.operations: list[tuple[str, str, bool]] = []  # (operation, key, the object existed)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)

    def open_write(self, key: str) -> AbstractContextManager[IO[bytes]]:
        self.operations.append(("put", key, True))
        return self.inner.open_write(key)

    def open_read(self, key: str) -> IO[bytes]:
        self.operations.append(("get", key, True))
        return self.inner.open_read(key)

    def get(self, key: str) -> Blob | None:
        blob = self.inner.get(key)
        self.operations.append(("get", key, blob is not None))
        return blob

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        self.operations.append(("put", key, True))
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def list_dirs(self, prefix: str) -> list[str]:
        raise AssertionError(f"the trigger listed {prefix}")

    def delete(self, key: str) -> None:
        self.operations.append(("delete", key, True))
        self.inner.delete(key)


def admit_runs(blobs: RecordingBlobStore, start: Callable[[trigger.TriggerRequest], None]) -> list[str]:
    """What the Function URL handler does for a first run, a run during it and a replayed run id."""
    store = SnapshotStore(blobs, "shop", "main")
    secret = "s" * 32
    outcomes = []
    for run_id in ("run-1", "run-2", "run-1"):
        body = f'{{"runId": "{run_id}"}}'.encode()
        timestamp = str(int(time.time()))
        headers = {
            trigger.TIMESTAMP_HEADER: timestamp,
            trigger.SIGNATURE_HEADER: trigger.compute_signature(secret, timestamp, body),
        }
        try:
            trigger.accept_trigger(headers, body, secret=secret, store=store, start=start)
            outcomes.append("accepted")
        except trigger.TriggerRejected as exc:
            outcomes.append(exc.code)
        except RuntimeError:
            outcomes.append("start failed")
    return outcomes


def test_the_trigger_role_reaches_exactly_the_keys_admission_uses(tmp_path: Path) -> None:
    assert "ManagedPolicyArns" not in RESOURCES["TriggerRole"]["Properties"]
    statements = role_statements("TriggerRole")

    def fail_to_start(_: trigger.TriggerRequest) -> None:
        raise RuntimeError("the worker could not be invoked")

    admitted = RecordingBlobStore(tmp_path / "admitted")
    assert admit_runs(admitted, lambda _: None) == ["accepted", "run_in_progress", "replayed"]
    failed = RecordingBlobStore(tmp_path / "failed")
    assert admit_runs(failed, fail_to_start) == ["start failed", "start failed", "replayed"]
    operations = set(admitted.operations + failed.operations)
    touched = {(operation, key.split("/")[2]) for operation, key, _ in operations}
    assert touched == {("put", "triggers"), ("get", "state"), ("put", "state"), ("put", "runs")}
    for operation, key, exists in operations:
        assert object_access(statements, operation, key, exists=exists), (operation, key, exists)

    for operation in ("get", "put", "delete"):
        for key in (
            "shop/main/snapshots/20260101T000000Z-abc123/manifest.json",
            "shop/main/snapshots/20260101T000000Z-abc123/tables/users.csv",
            "shop/main/state/applied.json",
            "shop/main/state/progress.json",
            "other/main/state/lock.json",
            "shop/dev/triggers/run-9.json",
        ):
            assert not object_access(statements, operation, key), (operation, key)
    assert not object_access(statements, "delete", "shop/main/state/lock.json")
    assert not object_access(statements, "get", "shop/main/runs/run-1.json")
    assert not s3_allows(statements, "s3:ListBucket", BUCKET_ARN, prefix=f"{FOLDER}snapshots/")
    assert not s3_allows(statements, "s3:ListBucket", BUCKET_ARN)


@pytest.mark.parametrize("role", ["ExportSnapshotRole", "SyncConvexRole", "SyncWorkerRole"])
def test_the_other_roles_list_and_use_only_the_snapshot_prefix(role: str) -> None:
    statements = role_statements(role)
    assert s3_allows(statements, "s3:ListBucket", BUCKET_ARN, prefix=f"{FOLDER}snapshots/")
    assert object_access(statements, "get", "shop/main/state/applied.json", exists=False)
    assert object_access(statements, "put", "shop/main/snapshots/20260101T000000Z-abc123/manifest.json")
    assert not s3_allows(statements, "s3:ListBucket", BUCKET_ARN, prefix="")
    assert not s3_allows(statements, "s3:ListBucket", BUCKET_ARN, prefix="elsewhere/")
    assert not s3_allows(statements, "s3:GetObject", f"{BUCKET_ARN}/elsewhere/key")


def test_the_function_url_is_public_only_when_the_hmac_is_the_authentication() -> None:
    url = RESOURCES["TriggerFunctionUrl"]["Properties"]
    assert url["AuthType"] == {"Ref": "TriggerUrlAuthType"}
    assert TEMPLATE["Parameters"]["TriggerUrlAuthType"]["Default"] == "NONE"
    public = [r for r in of_type("AWS::Lambda::Permission").values() if r["Properties"]["Principal"] == "*"]
    assert len(public) == 2 and all(r["Condition"] == "PublicTriggerUrl" for r in public)
    assert RESOURCES["TriggerInvoker"]["Condition"] == "IamTriggerUrl"
    assert {"TriggerUrl", "SnapshotBucketName"} <= set(TEMPLATE["Outputs"])


def test_functions_layer_and_log_groups_fit_together() -> None:
    globals_ = TEMPLATE["Globals"]["Function"]
    layer = RESOURCES["XataToConvexLayer"]
    assert globals_["Runtime"] == layer["Metadata"]["BuildMethod"] == "python3.13"
    assert globals_["Architectures"] == [layer["Metadata"]["BuildArchitecture"]]
    assert globals_["Architectures"] == layer["Properties"]["CompatibleArchitectures"]
    assert globals_["Environment"]["Variables"]["SNAPSHOT_URI"] == {
        "Fn::Sub": "s3://${SnapshotBucket}/${SnapshotPrefix}"
    }
    functions = of_type("AWS::Serverless::Function")
    assert len(functions) == 4
    for name, function in functions.items():
        code = REPO / function["Properties"]["CodeUri"]
        assert "def lambda_handler" in (code / "app.py").read_text(), name
        assert (code / "requirements.txt").is_file(), name
        group = RESOURCES[function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    secrets = of_type("AWS::SecretsManager::Secret")
    assert set(secrets) == {
        "XataApiKeySecret", "SinkSigningSecret", "TriggerSigningSecret", "XataPostgresUrlSecret"
    }  # fmt: skip
    for generated in ("TriggerSigningSecret", "SinkSigningSecret"):
        assert secrets[generated]["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32


def test_samconfig_deploys_this_template_with_iam_capability() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["resolve_s3"] is True
    # Global, so `sam logs`, `sam delete` and the rest find the stack where `sam deploy` put it.
    assert config["default"]["global"]["parameters"]["region"]
    assert "region" not in deploy
    overrides = dict(pair.split("=", 1) for pair in shlex.split(deploy["parameter_overrides"]))
    assert set(overrides) <= set(TEMPLATE["Parameters"]) and overrides["SourceKind"] == "postgres"
    # No stand-in value for what only the user knows: an unedited `sam deploy` stops and names them,
    # where a placeholder would have passed the AllowedPattern and deployed a stack pointed at nothing.
    required = {name for name, p in TEMPLATE["Parameters"].items() if "Default" not in p}
    assert required == {"XataDatabaseUrl", "ConvexSiteUrl"} and not required & set(overrides)


def test_the_endpoint_overrides_are_declared_empty_and_an_empty_one_means_aws_and_xata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Declared so `sam local invoke --env-vars` can set them; empty in the stack, which then uses AWS
    and the xata SDK's own hosts."""
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == ""
    for name in ("ExportSnapshotFunction", "SyncWorkerFunction"):
        assert RESOURCES[name]["Properties"]["Environment"]["Variables"]["XATA_ENDPOINT_URL"] == "", name
    assert Config.from_env({"XATA_ENDPOINT_URL": ""}).xata_endpoint_url is None
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    client: Any = boto3.client("s3", region_name="us-east-1")
    assert client.meta.endpoint_url == "https://s3.amazonaws.com"

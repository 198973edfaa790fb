"""template.yaml: cfn-lint, least privilege and the settings the trigger relies on, and a real `sam build`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

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
            # Resources name our own resources; the one wildcard is "objects under the snapshot prefix".
            assert isinstance(resource, dict) and set(resource) <= {"Ref", "Fn::GetAtt", "Fn::Sub"}, owner
            if "Fn::Sub" in resource:
                assert resource["Fn::Sub"] == "${SnapshotBucket.Arn}/${SnapshotPrefix}/*", owner


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
    assert grants(resources, "SyncConvexRole", secrets) == [{"Ref": "ConvexDeployKeySecret"}]
    assert grants(resources, "SyncWorkerRole", secrets) == [
        {"Ref": source_secret},
        {"Ref": "ConvexDeployKeySecret"},
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


def test_one_worker_at_a_time_with_failures_sent_to_sqs() -> None:
    worker = RESOURCES["SyncWorkerFunction"]["Properties"]
    assert worker["ReservedConcurrentExecutions"] == 1
    invoke_config = worker["EventInvokeConfig"]
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert invoke_config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["RunFailureQueue", "Arn"]},
    }
    assert TEMPLATE["Globals"]["Function"]["Timeout"] == 900
    # The lease outlives the longest worker, so a crashed run's lock frees itself but a live one is kept.
    from xata2convex.trigger import DEFAULT_LEASE_SECONDS

    assert DEFAULT_LEASE_SECONDS > 900
    trigger_env = RESOURCES["TriggerFunction"]["Properties"]["Environment"]["Variables"]
    assert trigger_env["WORKER_FUNCTION_NAME"] == {"Ref": "SyncWorkerFunction"}


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
        "XataApiKeySecret", "ConvexDeployKeySecret", "TriggerSigningSecret", "XataPostgresUrlSecret"
    }  # fmt: skip
    assert secrets["TriggerSigningSecret"]["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32


def test_samconfig_deploys_this_template_with_iam_capability() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["resolve_s3"] is True
    overrides = deploy["parameter_overrides"]
    for parameter in ("XataDatabaseUrl", "ConvexUrl", "SourceKind"):
        assert parameter in overrides and parameter in TEMPLATE["Parameters"]


def python313_dir() -> str | None:
    """A directory holding a working python3.13 (a pyenv shim on PATH may not run)."""
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.13*/bin/python3.13"), reverse=True)
    candidates += [p for p in [shutil.which("python3.13")] if p]
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return str(Path(candidate).parent)
    return None


@pytest.mark.skipif(
    os.environ.get("XATA2CONVEX_SKIP_SAM_BUILD") == "1", reason="XATA2CONVEX_SKIP_SAM_BUILD=1"
)
def test_sam_build_produces_an_importable_layer(tmp_path: Path) -> None:
    runtime = python313_dir()
    assert runtime, "sam build needs python3.13 on PATH (the Lambda runtime); none found"
    env = {**os.environ, "PATH": f"{runtime}:{BIN}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    build = tmp_path / "build"
    result = subprocess.run(
        [str(BIN / "sam"), "build", "--template-file", "template.yaml", "--build-dir", str(build)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    layer = build / "XataToConvexLayer" / "python"
    assert (layer / "xata2convex" / "trigger.py").is_file()
    assert (layer / "aws_lambda_powertools").is_dir() and (layer / "xata").is_dir()
    for function in ("ExportSnapshotFunction", "SyncConvexFunction", "SyncWorkerFunction", "TriggerFunction"):
        assert (build / function / "app.py").is_file()
    # Each handler imports with the runtime's Python and only the layer on the path, as in Lambda.
    for function in ("ExportSnapshotFunction", "SyncConvexFunction", "SyncWorkerFunction", "TriggerFunction"):
        check = subprocess.run(
            [f"{runtime}/python3.13", "-I", "-c", "import sys; sys.path[:0] = sys.argv[1:]; import app",
             str(build / function), str(layer)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert check.returncode == 0, f"{function}: {check.stderr[-2000:]}"

"""`xata2convex local invoke`: a built function run as `sam local invoke` runs it, without Docker.

The function's configuration comes from the SAM CLI's own code, on the template `make build` wrote
(`.aws-sam/build/template.yaml`): its handler, timeout, memory, layers and environment, the template's
variables overridden by the shell's and then by the `--env-vars` file, exactly as `sam local invoke`
resolves them. Only the container differs: the function runs in a child process of the runtime's
Python (3.13) with that environment alone, in its own folder, with Lambda's path (the function, its
layers, then the libraries the runtime ships: boto3 and its dependencies) and a context that counts
down from the template's timeout. python-lambda-local (PyPI) was not used: it runs in the interpreter
it is installed in (not the runtime's), reads neither the template nor SAM's env-vars format, puts the
layer after everything already importable and its last release imports pkg_resources, which Python
3.13 environments no longer have.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click

from xata2convex import signing
from xata2convex.model import XataToConvexError

from .runtime import RUNTIME, runtime_python

DEFAULT_BUILD_DIR = Path(".aws-sam/build")
BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
# Besides the standard library, the python3.13 runtime ships these (in /var/runtime, after the layers).
RUNTIME_LIBRARIES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")


class LocalInvokeError(XataToConvexError):
    """The function cannot be run as asked; the message names the file, function or setting."""


@dataclass(frozen=True)
class BuiltFunction:
    name: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str] = field(repr=False)


@dataclass(frozen=True)
class Invocation:
    answer: Any  # the handler's return value, or Lambda's error object
    failed: bool


def read_env_vars(path: Path | None) -> dict[str, dict[str, str]]:
    """An `--env-vars` file: `{"<Function>": {"NAME": "value"}, "Parameters": {...}}`, as SAM reads it."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LocalInvokeError(f"cannot read the env-vars file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise LocalInvokeError(f'{path}: expected {{"<Function>": {{"NAME": "value"}}}}')
    return data


def parse_parameter_overrides(text: str | None) -> dict[str, str]:
    """`Name=Value Name2=Value2`, as `sam local invoke --parameter-overrides` takes them."""
    overrides = {}
    for pair in shlex.split(text or ""):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise LocalInvokeError(f"--parameter-overrides: expected Name=Value, got {pair!r}")
        overrides[name.removeprefix("ParameterKey=")] = value
    return overrides


def built_function(
    name: str,
    *,
    build_dir: Path = DEFAULT_BUILD_DIR,
    env_vars: dict[str, dict[str, str]] | None = None,
    parameter_overrides: dict[str, str] | None = None,
) -> BuiltFunction:
    """The function `name` of the built template, configured as `sam local invoke` configures it."""
    from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
    from samcli.local.lambdafn.exceptions import FunctionNotFound

    build_dir = build_dir.resolve()
    template = build_dir / "template.yaml"
    if not template.is_file():
        raise LocalInvokeError(f"{template} not found: run `make build` first")
    stacks, _ = SamLocalStackProvider.get_stacks(str(template), parameter_overrides=parameter_overrides)
    provider = SamFunctionProvider(stacks)
    runner = LocalLambdaRunner(
        local_runtime=None,  # never used: invoke() below is the runtime
        function_provider=provider,
        cwd=str(build_dir),
        real_path=str(build_dir),
        env_vars_values=env_vars,
    )
    try:
        function = runner.get_function(name)
    except FunctionNotFound:
        known = ", ".join(sorted(f.name for f in provider.get_all()))
        raise LocalInvokeError(f"no function {name} in {template}; its functions: {known}") from None
    config = runner.get_invoke_config(function)
    if config.runtime != RUNTIME:
        raise LocalInvokeError(f"{name} runs on {config.runtime}; this runner has {RUNTIME} only")
    return BuiltFunction(
        name=name,
        code_dir=Path(config.code_abs_path),
        layer_dirs=tuple(Path(layer.codeuri) for layer in config.layers),
        handler=config.handler,
        timeout_s=int(config.timeout),
        memory_mb=int(config.memory),
        environment=config.env_vars.resolve(),
    )


def _link_runtime_libraries(folder: Path) -> Path:
    """A folder standing for the runtime's /var/runtime: links to this install's copies."""
    folder.mkdir()
    for name in RUNTIME_LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (folder / source.name).symlink_to(source)
    return folder


def invoke(function: BuiltFunction, event: Any) -> Invocation:
    """Run one invocation in a fresh runtime process; a run past the timeout is stopped, as Lambda does."""
    python = runtime_python()
    with tempfile.TemporaryDirectory(prefix="xata2convex-invoke-") as tmp:
        runtime = _link_runtime_libraries(Path(tmp) / "runtime")
        path = [str(function.code_dir)]
        for layer in function.layer_dirs:
            path += [str(layer / "python" / "lib" / RUNTIME / "site-packages"), str(layer / "python")]
        spec = {
            "path": [*path, str(runtime)],
            "handler": function.handler,
            "function_name": function.name,
            "timeout_s": function.timeout_s,
            "memory_mb": function.memory_mb,
            "region": function.environment.get("AWS_REGION", "us-east-1"),
            "request_id": str(uuid.uuid4()),
        }
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        env = {
            **function.environment,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "_HANDLER": function.handler,
        }
        try:
            process = subprocess.run(
                [str(python), "-I", "-S", str(BOOTSTRAP), str(spec_file)],
                input=json.dumps(event).encode(),
                stdout=subprocess.PIPE,
                cwd=function.code_dir,
                env=env,
                timeout=function.timeout_s,
            )
        except subprocess.TimeoutExpired:
            message = f"Task timed out after {function.timeout_s:.2f} seconds"
            return Invocation({"errorMessage": message, "errorType": "Sandbox.Timedout"}, failed=True)
    try:
        answer = json.loads(process.stdout)
    except ValueError:
        message = f"the runtime exited with status {process.returncode} without an answer"
        return Invocation({"errorMessage": message, "errorType": "Runtime.ExitError"}, failed=True)
    return Invocation(answer, failed=process.returncode != 0)


def trigger_secret(environment: dict[str, str]) -> str:
    """The signing secret the trigger function will read: its …_ARN in (local) Secrets Manager, or plain."""
    arn = environment.get("XATA2CONVEX_TRIGGER_SECRET_ARN")
    if not arn:
        secret = environment.get("XATA2CONVEX_TRIGGER_SECRET", "").strip()
        if not secret:
            raise LocalInvokeError(
                "--sign needs the function's XATA2CONVEX_TRIGGER_SECRET_ARN or XATA2CONVEX_TRIGGER_SECRET"
            )
        return secret
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client: Any = boto3.client(
        "secretsmanager",
        endpoint_url=environment.get("AWS_ENDPOINT_URL") or None,
        region_name=environment.get("AWS_REGION") or None,
        aws_access_key_id=environment.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=environment.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=environment.get("AWS_SESSION_TOKEN") or None,
    )
    try:
        return str(client.get_secret_value(SecretId=arn)["SecretString"]).strip()
    except (BotoCoreError, ClientError, KeyError) as exc:
        raise LocalInvokeError(f"--sign: cannot read the trigger secret {arn}: {exc}") from None


def signed_event(event: dict[str, Any], secret: str, *, now: float | None = None) -> dict[str, Any]:
    """A Function URL event with its trigger headers signed again, for the current time."""
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    headers = {**(event.get("headers") or {}), **signing.signed_headers(secret, raw, now)}
    return {**event, "headers": headers}


def _read_event(stream: IO[bytes] | None) -> Any:
    if stream is None:
        return {}
    try:
        return json.loads(stream.read() or b"{}")
    except ValueError as exc:
        raise LocalInvokeError(f"the event {stream.name} is not JSON: {exc}") from None


_function_options = [
    click.argument("function_name", metavar="FUNCTION"),
    click.option(
        "-e", "--event", "event_file", type=click.File("rb"), help="The event, a JSON file ('-': stdin)."
    ),
    click.option(
        "--env-vars",
        type=click.Path(dir_okay=False, path_type=Path),
        help='Overrides of the variables the template declares: {"<Function>": {"NAME": "value"}}.',
    ),
    click.option(
        "--build-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_BUILD_DIR,
        show_default=True,
        help="What `make build` wrote.",
    ),
    click.option("--parameter-overrides", help="Template parameters: 'SourceKind=postgres …'."),
]


def function_options(func: Any) -> Any:
    for option in reversed(_function_options):
        func = option(func)
    return func


def _prepare(
    function_name: str,
    event_file: IO[bytes] | None,
    env_vars: Path | None,
    build_dir: Path,
    parameter_overrides: str | None,
) -> tuple[BuiltFunction, Any]:
    function = built_function(
        function_name,
        build_dir=build_dir,
        env_vars=read_env_vars(env_vars),
        parameter_overrides=parse_parameter_overrides(parameter_overrides),
    )
    return function, _read_event(event_file)


@click.command("invoke")
@function_options
@click.option(
    "--sign",
    is_flag=True,
    help="Sign the (Function URL) event again, now, with the trigger secret the function reads.",
)
def invoke_command(
    function_name: str,
    event_file: IO[bytes] | None,
    env_vars: Path | None,
    build_dir: Path,
    parameter_overrides: str | None,
    sign: bool,
) -> None:
    """Run a function of `make build`'s artifact as `sam local invoke` would, without Docker.

    Prints the function's answer (or Lambda's error object) as JSON; its log goes to stderr. Exit 1
    when the function failed.
    """
    try:
        function, event = _prepare(function_name, event_file, env_vars, build_dir, parameter_overrides)
        if sign:
            event = signed_event(event, trigger_secret(function.environment))
        invocation = invoke(function, event)
    except XataToConvexError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(invocation.answer))
    if invocation.failed:
        sys.exit(1)


@click.command("sign")
@function_options
def sign_command(
    function_name: str,
    event_file: IO[bytes] | None,
    env_vars: Path | None,
    build_dir: Path,
    parameter_overrides: str | None,
) -> None:
    """Print the (Function URL) event signed again, now, with the trigger secret FUNCTION reads.

    For `sam local invoke FUNCTION -e -`, which reads the event from stdin.
    """
    try:
        function, event = _prepare(function_name, event_file, env_vars, build_dir, parameter_overrides)
        click.echo(json.dumps(signed_event(event, trigger_secret(function.environment)), indent=2))
    except XataToConvexError as exc:
        raise click.ClickException(str(exc)) from None

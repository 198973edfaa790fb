"""One line for every failure a user can meet: what is wrong, which setting or URL, and the fix.

The stages raise their own errors (chained to the library error behind them) or let a library's
error through; `explain` turns either into the line the CLI prints. It looks through the chain of
causes for the library error (botocore, OSError, requests, psycopg), because that is what names the
real problem (a refused connection, a missing bucket), and names the setting that leads there from
the configuration in use. An exception it does not know is a bug: `explain` answers None and the
caller shows the traceback.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .config import SECRET_FIELDS, Config, ConfigError, env_name, scrub, secret_values
from .model import XataToConvexError

# Where a URL in an error leads back to: the settings that hold endpoints, most specific first.
URL_SETTINGS = ("xata_endpoint_url", "xata_database_url", "convex_url")
SERVICE = {"XATA_ENDPOINT_URL": "Xata", "XATA_DATABASE_URL": "Xata", "CONVEX_URL": "Convex"}


def explain(exc: BaseException, config: Config | None = None) -> str | None:
    """The one line to show for `exc` (secrets scrubbed), or None for an unexpected error."""
    line = None
    for cause in _causes(exc):
        line = _library_error(cause, config)
        if line:
            break
    if line is None and isinstance(exc, XataToConvexError):
        line = str(exc)
    if line is None:
        return None
    return scrub(" ".join(line.split()), secrets_of(config))


def secrets_of(config: Config | None) -> list[str]:
    """What must never be shown: the configured secrets, the Postgres URL and its password, and the
    environment's secret settings as given (also one refused at load, such as a key with a line break)."""
    try:
        config = config or Config.from_env()
    except ConfigError:
        config = Config()
    return config.secrets() + secret_values(os.environ.get(env_name(name)) for name in SECRET_FIELDS)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _library_error(exc: BaseException, config: Config | None) -> str | None:
    module = type(exc).__module__
    if module.startswith(("botocore", "boto3")):
        return _aws(exc, config)
    if module.startswith(("requests", "urllib3")):
        return _http(exc, config)
    if module.startswith("psycopg"):
        return _postgres(exc, config)
    if isinstance(exc, OSError) and exc.filename is not None:
        return _file(exc, config)
    return None


def transport_problem(exc: BaseException) -> str:
    """A requests failure in a few words, with the URL it was for (URLs carry no key here)."""
    text = str(exc)
    if "Connection refused" in text:
        reason = "connection refused"
    elif "Name or service not known" in text or "Failed to resolve" in text or "nodename" in text:
        reason = "host not found"
    elif "timed out" in text.lower() or "Timeout" in type(exc).__name__:
        reason = "timed out"
    else:
        reason = f"connection failed ({type(exc).__name__})"
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    return f"{reason}: {url}" if url else reason


def could_not_connect(exc: BaseException) -> bool:
    """True when requests never reached the server (refused, unknown host, connect timeout)."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = (
        getattr(exc.args[0], "reason", None)
        if isinstance(exc, requests.ConnectionError) and exc.args
        else None
    )
    return isinstance(reason, NewConnectionError)


def _http(exc: BaseException, config: Config | None) -> str | None:
    import requests

    if not isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return None
    request = exc.request
    url = str(request.url) if request is not None and request.url else ""
    reason = transport_problem(exc).split(": ")[0]
    setting = _url_setting(url, config)
    parsed = urlparse(url)
    where = f"{parsed.scheme}://{parsed.netloc}" if parsed.netloc else "the server"
    if setting is None:
        return f"cannot reach {where}: {reason}; check the URL and your network"
    return (
        f"cannot reach {SERVICE.get(setting, 'the server')} at {where} ({setting}): {reason}; "
        f"check {setting} and that the service is up"
    )


def _url_setting(url: str, config: Config | None) -> str | None:
    target = urlparse(url)
    for name in URL_SETTINGS:
        value = getattr(config, name, None) if config else None
        if value and _same_origin(urlparse(value), target):
            return env_name(name)
    if target.hostname and target.hostname.endswith(".xata.sh"):
        return "XATA_DATABASE_URL"
    return None


def _same_origin(a: Any, b: Any) -> bool:
    return bool(a.hostname) and (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _aws(exc: BaseException, config: Config | None) -> str | None:
    from botocore import exceptions as aws

    uri = config.snapshot_uri if config else os.environ.get("SNAPSHOT_URI", "")
    where = f"SNAPSHOT_URI={uri}"
    bucket = urlparse(uri).netloc
    if isinstance(exc, (aws.NoCredentialsError, aws.PartialCredentialsError)):
        return (
            f"no AWS credentials for {where}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or point SNAPSHOT_URI at a local folder)"
        )
    if isinstance(exc, aws.NoRegionError):
        return f"no AWS region for {where}: set AWS_REGION (e.g. AWS_REGION=us-east-1)"
    if isinstance(exc, (aws.EndpointConnectionError, aws.ConnectTimeoutError, aws.ReadTimeoutError)):
        endpoint = exc.kwargs.get("endpoint_url", "S3")
        override = " (AWS_ENDPOINT_URL)" if os.environ.get("AWS_ENDPOINT_URL") else ""
        return (
            f"cannot reach S3 at {endpoint}{override} for {where}: {type(exc).__name__}; "
            "check AWS_ENDPOINT_URL / AWS_REGION and your network"
        )
    if isinstance(exc, aws.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        bucket = str(error.get("BucketName") or bucket)
        if code == "NoSuchBucket":
            return (
                f"S3 bucket {bucket!r} does not exist ({where}): create it "
                f"(aws s3 mb s3://{bucket}) or fix SNAPSHOT_URI"
            )
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return (
                f"S3 denied access to {uri} ({code}): allow s3:GetObject, s3:PutObject, s3:DeleteObject "
                f"and s3:ListBucket on it for these credentials, or fix SNAPSHOT_URI"
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return (
                f"AWS rejected the credentials ({code}) for {where}: check AWS_PROFILE or AWS_ACCESS_KEY_ID"
            )
        return f"S3 refused a request for {where}: {code} {error.get('Message', '')}"
    if isinstance(exc, aws.BotoCoreError):
        return f"S3 ({where}): {exc}"
    return None


def _postgres(exc: BaseException, config: Config | None) -> str | None:
    import psycopg

    if not isinstance(exc, psycopg.OperationalError):
        return None
    url = urlparse(config.xata_postgres_url if config and config.xata_postgres_url else "")
    host = url.netloc.rpartition("@")[2]  # host[:port] as written, never the password (nor a bad port)
    where = f"{host if ':' in host else host + ':5432'}{url.path}" if url.hostname else "Postgres"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    reason = re.split(r"failed: ", first)[-1] if "connection" in first else first
    return (
        f"cannot connect to Postgres at {where} (XATA_POSTGRES_URL): {reason}; "
        "check XATA_POSTGRES_URL and that the server is up"
    )


def _file(exc: OSError, config: Config | None) -> str:
    path = Path(str(exc.filename))
    setting = _snapshot_setting(path, config)
    hint = f"set {setting} to another folder" if setting else "choose another path"
    if isinstance(exc, (NotADirectoryError, FileExistsError)) or exc.errno == errno.ENOTDIR:
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        return f"{blocker} is a file where a folder must be{_for(setting)}: move it away or {hint}"
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return f"cannot write {path}: {exc.strerror}{_for(setting)}; make it writable or {hint}"
    return f"{path}: {exc.strerror}{_for(setting)}"


def _for(setting: str | None) -> str:
    return f" ({setting})" if setting else ""


def _snapshot_setting(path: Path, config: Config | None) -> str | None:
    """SNAPSHOT_URI=… when `path` lies in the local snapshot folder."""
    uri = config.snapshot_uri if config else os.environ.get("SNAPSHOT_URI", "./snapshots")
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) != 1:
        return None
    root = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
    resolved = path.resolve()
    return f"SNAPSHOT_URI={uri}" if resolved == root or root in resolved.parents else None

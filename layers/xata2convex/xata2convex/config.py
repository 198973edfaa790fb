"""Settings from the environment; the CLI's flags override them.

In Lambda the keys come from Secrets Manager: `XATA_API_KEY_SECRET_ARN` and
`CONVEX_DEPLOY_KEY_SECRET_ARN` name the secrets, never plain environment values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlparse

from .model import XataToConvexError


class ConfigError(XataToConvexError):
    """A required setting is missing or malformed; the message names it (never a secret's value)."""


def setting(env: str, flag: str, help: str, **options: Any) -> Any:
    """A Config field and how users set it: its environment variable, its CLI flag and its help."""
    return field(metadata={"env": env, "flag": flag, "help": help}, **options)


@dataclass(frozen=True)
class Config:
    """Every setting, named once: `from_env` reads the `env` names below, the CLI derives its flags."""

    xata_postgres_url: str | None = setting(
        "XATA_POSTGRES_URL", "--source", "postgresql://…/{database}:{branch}: today's Xata (or any "
        "PostgreSQL)", default=None, repr=False,
    )  # fmt: skip
    xata_api_key: str | None = setting(
        "XATA_API_KEY", "--xata-api-key", "Xata API key (classic REST API)", default=None, repr=False
    )
    xata_database_url: str | None = setting(
        "XATA_DATABASE_URL", "--xata-database-url", "https://{workspace}.{region}.xata.sh/db/{db}:{branch}",
        default=None,
    )  # fmt: skip
    xata_endpoint_url: str | None = setting(
        "XATA_ENDPOINT_URL", "--xata-endpoint-url", "base URL replacing https://{workspace}.{region}.xata.sh",
        default=None,
    )  # fmt: skip
    snapshot_uri: str = setting(
        "SNAPSHOT_URI", "--snapshot-uri", "s3://bucket/prefix, file:///dir or a path", default="./snapshots"
    )
    convex_url: str | None = setting(
        "CONVEX_URL", "--convex-url", "https://<deployment>.convex.cloud", default=None
    )
    convex_deploy_key: str | None = setting(
        "CONVEX_DEPLOY_KEY", "--convex-deploy-key", "Convex deploy key", default=None, repr=False
    )
    concurrency: int = setting("XATA_CONCURRENCY", "--concurrency", "tables exported at once", default=4)
    requests_per_second: float = setting(
        "XATA_REQUESTS_PER_SECOND", "--requests-per-second", "Xata request budget", default=75.0
    )

    def __post_init__(self) -> None:
        """Malformed settings fail here, naming the variable, before anything is contacted."""
        for name in ("xata_database_url", "xata_endpoint_url", "convex_url"):
            _check_http_url(self, name)
        if self.xata_postgres_url and urlparse(self.xata_postgres_url).scheme not in POSTGRES_SCHEMES:
            raise ConfigError(
                f"{env_name('xata_postgres_url')} is not a postgresql:// URL; expected "
                "postgresql://USER:PASSWORD@HOST:5432/{database}:{branch}"
            )
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"{env_name('concurrency')}={self.concurrency!r}: expected a whole number >= 1")
        if not self.requests_per_second > 0:
            raise ConfigError(
                f"{env_name('requests_per_second')}={self.requests_per_second!r}: expected a number > 0"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name) or None
            if raw is None:
                continue
            values[f.name] = _parse(name, raw, f.default)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError("missing setting(s): " + ", ".join(env_name(n) for n in missing))

    def secrets(self) -> list[str]:
        """Values that must never appear in output (used to scrub error messages)."""
        return [s for s in (self.xata_api_key, self.convex_deploy_key, self.xata_postgres_url) if s]


POSTGRES_SCHEMES = ("postgres", "postgresql")


def env_name(field_name: str) -> str:
    """The environment variable of a Config field."""
    return str(next(f for f in fields(Config) if f.name == field_name).metadata["env"])


def _parse(name: str, raw: str, default: Any) -> Any:
    """An environment value as the field's type (the type of its default); ConfigError names the variable."""
    kind = type(default)
    if kind not in (int, float):
        return raw
    try:
        return kind(raw)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r}: expected {expected}") from None


def _check_http_url(config: Config, field_name: str) -> None:
    value = getattr(config, field_name)
    if value is None:
        return
    parsed = urlparse(value)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        example = {
            "convex_url": "https://<deployment>.convex.cloud",
            "xata_database_url": "https://{workspace}.{region}.xata.sh/db/{database}:{branch}",
            "xata_endpoint_url": "https://… or http://host:port",
        }[field_name]
        raise ConfigError(f"{env_name(field_name)}={value!r} is not an http(s) URL; expected {example}")


def load_lambda_config(env: Mapping[str, str] | None = None) -> Config:
    """Config for a Lambda: keys fetched from Secrets Manager (cached by Powertools)."""
    from aws_lambda_powertools.utilities import parameters

    env = os.environ if env is None else env
    config = Config.from_env(env)
    overrides: dict[str, Any] = {}
    for arn_var, attr in (
        ("XATA_API_KEY_SECRET_ARN", "xata_api_key"),
        ("CONVEX_DEPLOY_KEY_SECRET_ARN", "convex_deploy_key"),
        ("XATA_POSTGRES_URL_SECRET_ARN", "xata_postgres_url"),
    ):
        arn = env.get(arn_var)
        if arn:
            overrides[attr] = str(parameters.get_secret(arn))
    return config.with_overrides(**overrides)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text

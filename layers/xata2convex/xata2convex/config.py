"""Settings from the environment (DESIGN's names); the CLI's flags override them.

In Lambda the keys come from Secrets Manager: `XATA_API_KEY_SECRET_ARN` and
`CONVEX_DEPLOY_KEY_SECRET_ARN` name the secrets, never plain environment values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .model import XataToConvexError


class ConfigError(XataToConvexError):
    """A required setting is missing or malformed; the message names it (never its value)."""


@dataclass(frozen=True)
class Config:
    xata_api_key: str | None = field(default=None, repr=False)
    xata_database_url: str | None = None
    xata_endpoint_url: str | None = None
    xata_postgres_url: str | None = field(default=None, repr=False)
    snapshot_uri: str = "./snapshots"
    convex_url: str | None = None
    convex_deploy_key: str | None = field(default=None, repr=False)
    concurrency: int = 4
    requests_per_second: float = 75.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        return cls(
            xata_api_key=env.get("XATA_API_KEY") or None,
            xata_database_url=env.get("XATA_DATABASE_URL") or None,
            xata_endpoint_url=env.get("XATA_ENDPOINT_URL") or None,
            xata_postgres_url=env.get("XATA_POSTGRES_URL") or None,
            snapshot_uri=env.get("SNAPSHOT_URI") or "./snapshots",
            convex_url=env.get("CONVEX_URL") or None,
            convex_deploy_key=env.get("CONVEX_DEPLOY_KEY") or None,
            concurrency=int(env.get("XATA_CONCURRENCY") or 4),
            requests_per_second=float(env.get("XATA_REQUESTS_PER_SECOND") or 75),
        )

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError("missing setting(s): " + ", ".join(n.upper() for n in missing))

    def secrets(self) -> list[str]:
        """Values that must never appear in output (used to scrub error messages)."""
        return [s for s in (self.xata_api_key, self.convex_deploy_key, self.xata_postgres_url) if s]


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

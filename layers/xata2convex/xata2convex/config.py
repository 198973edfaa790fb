"""Settings from the environment; the CLI's flags override them.

Two ways into Convex: `CONVEX_URL` + `CONVEX_DEPLOY_KEY` (Convex's HTTP API, the CLI's way) and
`CONVEX_SITE_URL` + `XATA2CONVEX_SINK_SECRET` (the signed sink HTTP action, the Lambdas' way: no deploy
key). In Lambda the secrets come from Secrets Manager: `XATA_API_KEY_SECRET_ARN`,
`XATA_POSTGRES_URL_SECRET_ARN` and `XATA2CONVEX_SINK_SECRET_ARN` name them, never plain environment values.

Every secret, wherever it comes from (environment, flag, Secrets Manager), passes `load_secret`:
surrounding whitespace is dropped (a key stored with a trailing newline works), and a value with a
control character inside or shorter than MIN_SECRET_LENGTH is refused with an error naming the
setting, never the value. `scrub` removes every form a secret takes in a message.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlparse, urlsplit

from .model import XataToConvexError


class ConfigError(XataToConvexError):
    """A required setting is missing or malformed; the message names it (never a secret's value)."""


def setting(env: str, flag: str, help: str, **options: Any) -> Any:
    """A Config field and how users set it: its environment variable, its CLI flag and its help."""
    return field(metadata={"env": env, "flag": flag, "help": help}, **options)


# Keys and tokens are long random strings; a shorter one is a mistake (a truncated paste, a
# placeholder), and scrubbing a short string out of messages would mangle them.
MIN_SECRET_LENGTH = 16

# The Config fields that hold a secret, and those of them without a minimum length (a URL that
# carries a password is long; the password itself is scrubbed wherever a URL shows it).
SECRET_FIELDS = ("xata_api_key", "convex_deploy_key", "xata_postgres_url", "sink_secret")
_NO_MINIMUM = frozenset({"xata_postgres_url"})


def load_secret(setting: str, value: str | None, *, min_length: int = MIN_SECRET_LENGTH) -> str | None:
    """A secret as the code may use it: surrounding whitespace stripped, None when empty. Refused,
    naming `setting` and never the value, when a control character is left inside (a header built
    from it would be invalid, and libraries echo invalid headers in their errors) or when it is
    shorter than `min_length`."""
    if value is None:
        return None
    secret = value.strip()
    if not secret:
        return None
    if any(not c.isprintable() for c in secret):
        raise ConfigError(
            f"{setting} contains a control character (such as a line break) inside the value; "
            "store the secret again without it"
        )
    if len(secret) < min_length:
        raise ConfigError(
            f"{setting} is shorter than {min_length} characters, too short to be a real key; "
            "check that the whole value was stored"
        )
    return secret


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
    convex_site_url: str | None = setting(
        "CONVEX_SITE_URL", "--convex-site-url", "https://<deployment>.convex.site, for the signed sink",
        default=None,
    )  # fmt: skip
    sink_secret: str | None = setting(
        "XATA2CONVEX_SINK_SECRET", "--sink-secret", "the signed sink's HMAC secret", default=None, repr=False
    )
    concurrency: int = setting("XATA_CONCURRENCY", "--concurrency", "tables exported at once", default=4)
    requests_per_second: float = setting(
        "XATA_REQUESTS_PER_SECOND", "--requests-per-second", "Xata request budget", default=75.0
    )

    def __post_init__(self) -> None:
        """Malformed settings fail here, naming the variable, before anything is contacted."""
        for name in ("xata_database_url", "xata_endpoint_url", "convex_url", "convex_site_url"):
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
            values[f.name] = (
                _load_secret_field(f.name, raw) if f.name in SECRET_FIELDS else _parse(name, raw, f.default)
            )
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Config:
        """These settings replacing the current ones (None: keep); secrets pass `load_secret`."""
        values = {}
        for name, value in overrides.items():
            if name in SECRET_FIELDS and value is not None:
                value = _load_secret_field(name, str(value))
            if value is not None:
                values[name] = value
        return replace(self, **values)

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError("missing setting(s): " + ", ".join(env_name(n) for n in missing))

    def secrets(self) -> list[str]:
        """Values that must never appear in output (used to scrub error messages)."""
        return secret_values(getattr(self, name) for name in SECRET_FIELDS)


_ENV_NAMES: dict[str, str] = {f.name: str(f.metadata["env"]) for f in fields(Config)}
POSTGRES_SCHEMES = ("postgres", "postgresql")


def _load_secret_field(name: str, raw: str) -> str | None:
    minimum = 0 if name in _NO_MINIMUM else MIN_SECRET_LENGTH
    return load_secret(env_name(name), raw, min_length=minimum)


def env_name(field_name: str) -> str:
    """The environment variable of a Config field."""
    return _ENV_NAMES[field_name]


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
            "convex_site_url": "https://<deployment>.convex.site",
            "xata_database_url": "https://{workspace}.{region}.xata.sh/db/{database}:{branch}",
            "xata_endpoint_url": "https://… or http://host:port",
        }[field_name]
        raise ConfigError(f"{env_name(field_name)}={value!r} is not an http(s) URL; expected {example}")


def get_lambda_secret(arn: str, setting: str) -> str:
    """The value of the secret `arn` (cached by Powertools); ConfigError naming it and the fix when
    Secrets Manager has none to give, e.g. a secret the stack created and nobody filled yet."""
    from aws_lambda_powertools.utilities import parameters

    try:
        return str(parameters.get_secret(arn))
    except parameters.exceptions.GetParameterError as exc:
        if "AWSCURRENT" in str(exc):
            raise ConfigError(
                f"the secret {arn} ({setting}) has no value yet; set it: aws secretsmanager "
                f'put-secret-value --secret-id {arn} --secret-string "${setting}"'
            ) from None
        raise ConfigError(f"cannot read the secret {arn} ({setting}): {exc}") from None


def load_lambda_config(env: Mapping[str, str] | None = None) -> Config:
    """Config for a Lambda: keys fetched from Secrets Manager (cached by Powertools)."""
    env = os.environ if env is None else env
    config = Config.from_env(env)
    overrides: dict[str, Any] = {}
    for arn_var, attr in (
        ("XATA_API_KEY_SECRET_ARN", "xata_api_key"),
        ("XATA_POSTGRES_URL_SECRET_ARN", "xata_postgres_url"),
        ("XATA2CONVEX_SINK_SECRET_ARN", "sink_secret"),
    ):
        arn = env.get(arn_var)
        if arn:
            overrides[attr] = get_lambda_secret(arn, env_name(attr))
    return config.with_overrides(**overrides)


def secret_values(values: Iterable[Any]) -> list[str]:
    """The strings to scrub for these secret values (None skipped): each value as given and
    stripped, and a URL's password on its own (decoded)."""
    out: list[str] = []
    for value in values:
        if not value:
            continue
        text = str(value)
        out += [text, text.strip()]
        try:
            password = urlsplit(text.strip()).password
        except ValueError:
            password = None
        if password:
            out += [password, unquote(password)]
    return out


# A password in any URL (`scheme://user:password@host`) or libpq conninfo (`password=…`).
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)
_CONNINFO_PASSWORD = re.compile(r"\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def secret_forms(secret: str) -> set[str]:
    """The ways a secret can be written into a message: raw, repr- and JSON-escaped, URL-encoded
    and shell-quoted."""
    return {
        secret,
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        shlex.quote(secret),
    }


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret replaced by `***`, and any URL or conninfo password
    too. Strings shorter than MIN_SECRET_LENGTH are left alone (they are refused as secrets, and
    replacing them would mangle the message), except as URL or conninfo passwords."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _CONNINFO_PASSWORD.sub(r"\1***", text)
    given = {v for s in secrets for v in (s, s.strip()) if len(s.strip()) >= MIN_SECRET_LENGTH}
    forms = {form for secret in given for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text

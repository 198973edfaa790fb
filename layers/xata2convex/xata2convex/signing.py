"""The HMAC signature of the trigger request (Convex -> Function URL) and of the sink request (Lambda ->
Convex HTTP action): `v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>` in `x-xata2convex-signature`,
the unix-seconds timestamp in `x-xata2convex-timestamp`, valid for 300 s either way."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "x-xata2convex-signature"
TIMESTAMP_HEADER = "x-xata2convex-timestamp"
SIGNATURE_VERSION = "v1"
MAX_SKEW_SECONDS = 300


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`, the header value the signer sends."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers that sign `body` now (or at `now`, unix seconds)."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: compute_signature(secret, timestamp, body)}

"""Signing and checking webhook bodies (HMAC-SHA256, with a timestamp).

The header is ``Nudge-Signature: t=<unix seconds>,v1=<hex digest>`` where the
digest is HMAC-SHA256 over ``"<t>." + body`` with the endpoint's secret. A
receiver recomputes it, compares in constant time and refuses old timestamps,
which defeats replays. Pure; no I/O.
"""
from __future__ import annotations

import hashlib
import hmac

HEADER = "Nudge-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: int,
           tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is fresh."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))

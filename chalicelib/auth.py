"""Who is calling: write keys for ingestion, admin tokens for reading.

Write keys arrive the Segment way, as the HTTP Basic user name or as
``writeKey`` in the body; admin tokens as ``Authorization: Bearer``. Keys are
looked up by digest in the key store and remembered for a short while, so a
busy function does not read the table on every request.
"""
from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Mapping

from chalicelib.errors import Unauthorized
from chalicelib.ports import KeyStore

WRITE = "write"
ADMIN = "admin"
_NEGATIVE_CACHE_SECONDS = 5.0
_cache: dict[str, tuple[str | None, float]] = {}


def basic_user(headers: Mapping[str, str]) -> str | None:
    """The user name of an HTTP Basic Authorization header, if there is one."""
    value = headers.get("authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def write_key(headers: Mapping[str, str], body: Mapping[str, Any] | None) -> str | None:
    key = basic_user(headers)
    if key is None and body is not None and isinstance(body.get("writeKey"), str):
        key = body["writeKey"]
    return key


def require(kind: str, secret: str | None, store: KeyStore, ttl: float) -> None:
    """Raise Unauthorized unless ``secret`` is a known key of ``kind``."""
    if not secret:
        raise Unauthorized(f"a {kind} key is required")
    if _kind_of(secret, store, ttl) != kind:
        raise Unauthorized(f"the {kind} key is not valid")


def require_admin(headers: Mapping[str, str], store: KeyStore, ttl: float) -> str:
    """Raise Unauthorized unless the request carries a valid Bearer admin
    token; returns the token."""
    token = bearer_token(headers)
    require(ADMIN, token, store, ttl)
    return token or ""


def key_name(secret: str, store: KeyStore) -> str:
    """The name a key was created with, for audit records (who changed a
    trigger); ``admin`` when the store does not keep names."""
    name_of = getattr(store, "name_of", None)
    name = name_of(secret) if callable(name_of) else None
    return name if isinstance(name, str) and name else ADMIN


def _kind_of(secret: str, store: KeyStore, ttl: float) -> str | None:
    now = time.monotonic()
    cached = _cache.get(secret)
    if cached is not None and cached[1] > now:
        return cached[0]
    kind = store.kind_of(secret)
    _cache[secret] = (kind, now + (ttl if kind else min(ttl, _NEGATIVE_CACHE_SECONDS)))
    return kind


def forget_cached_keys() -> None:
    _cache.clear()

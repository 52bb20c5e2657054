"""Signed unsubscribe tokens: the authority behind the public unsubscribe and
preferences pages and the mailto unsubscribe. Pure: no AWS, no clock of its own.

A token says "this person may change their subscriptions on this channel
(and, if named, this topic)", and when it was issued. It travels in URLs and
in a mail subject, so it is URL-safe text of three dot-separated parts::

    <key id>.<payload>.<signature>

- ``payload`` is base64url (no padding) of compact JSON
  ``{"p": profile id, "c": channel, "t": topic or null, "i": issued at (epoch seconds)}``;
  a topic of null means all marketing on the channel;
- ``signature`` is base64url HMAC-SHA256 over ``<key id>.<payload>`` with the
  secret of that key id, so neither the claim nor the key id can be changed.

Keys come from NUDGE_UNSUBSCRIBE_KEYS as ``kid:secret,kid:secret``: the first
signs, all verify. To rotate, put a new key in front and drop the old one once
the links it signed have expired (``unsubscribe_token_days``).

This module must not decide what a token allows beyond what it says, nor read
settings itself: callers pass the keys and the time.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from chalicelib.consent import CHANNELS

#: Key ids are short and URL-safe, so the token's separator stays unambiguous.
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: Topic ids the token may carry (the catalogue's ids, or ``*`` written as null).
TOPIC_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: How far in the future an issue time may lie (clocks of two machines differ).
CLOCK_SKEW = timedelta(days=1)
#: Longer input is not a token Nudge made; refused before any decoding.
MAX_TOKEN_LENGTH = 1024


class InvalidToken(Exception):
    """The token is not one Nudge signed and still honours. ``rule`` says why,
    in the words of the JSON error shape (``{"field": "token", "rule": ...}``)."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"token: {rule}")
        self.rule = rule


@dataclass(frozen=True)
class Claim:
    """What a valid token says: whose subscriptions, on which channel, which
    topic (None: all marketing on the channel), issued when (UTC)."""

    profile_id: str
    channel: str
    topic: str | None
    issued_at: datetime


def parse_keys(keys: str) -> list[tuple[str, bytes]]:
    """``kid:secret,kid:secret`` as (key id, secret) pairs, the signing key
    first. ValueError names the entry that is wrong (never the secret)."""
    found: list[tuple[str, bytes]] = []
    for index, entry in enumerate(part.strip() for part in keys.split(",")):
        if not entry:
            continue
        kid, sep, secret = entry.partition(":")
        if not sep or not KEY_ID.fullmatch(kid) or not secret:
            raise ValueError(f"NUDGE_UNSUBSCRIBE_KEYS entry {index + 1} must be kid:secret "
                             "(kid: 1-32 characters A-Z, a-z, 0-9, '-' or '_')")
        if any(kid == known for known, _ in found):
            raise ValueError(f"NUDGE_UNSUBSCRIBE_KEYS names the key id {kid!r} twice")
        found.append((kid, secret.encode()))
    return found


def sign(keys: str, profile_id: str, channel: str, topic: str | None, now: datetime) -> str:
    """A token for ``profile_id`` on ``channel`` (``topic`` None: all marketing
    on the channel), issued ``now``, signed with the first key of ``keys``.
    ValueError when no key is configured or the claim is not one to sign."""
    parsed = parse_keys(keys)
    if not parsed:
        raise ValueError("NUDGE_UNSUBSCRIBE_KEYS is empty: no key to sign unsubscribe links with")
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    if topic is not None and not TOPIC_ID.fullmatch(topic):
        raise ValueError(f"topic {topic!r} is not a topic id")
    if not profile_id:
        raise ValueError("a token needs a profile id")
    kid, secret = parsed[0]
    claim = {"p": profile_id, "c": channel, "t": topic, "i": int(now.timestamp())}
    payload = _encode(json.dumps(claim, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{kid}.{payload}.{_signature(secret, kid, payload)}"


def verify(keys: str, token: str, now: datetime, valid_days: int) -> Claim:
    """The claim of a token signed by one of ``keys`` and issued less than
    at most ``valid_days`` days before ``now``. Raises InvalidToken otherwise
    (malformed, unknown key id, altered or forged, expired)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("is missing or is not a token from an unsubscribe link")
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidToken("is malformed: it is not a token from an unsubscribe link")
    kid, payload, signature = parts
    secrets = dict(parse_keys(keys))
    if kid not in secrets:
        raise InvalidToken("was signed with a key this service does not know (unknown key id)")
    expected = _signature(secrets[kid], kid, payload)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InvalidToken("has an invalid signature: it was altered or not issued by this service")
    claim = _claim(payload)
    if claim.issued_at > now + CLOCK_SKEW:
        raise InvalidToken("was issued in the future")
    expires = claim.issued_at + timedelta(days=valid_days)
    if now > expires:
        raise InvalidToken(f"has expired (links are valid for {valid_days} days; "
                           f"this one expired on {expires.date().isoformat()})")
    return claim


def _claim(payload: str) -> Claim:
    """The claim inside a payload whose signature was checked."""
    try:
        raw = json.loads(_decode(payload))
        profile_id, channel, topic, issued = raw["p"], raw["c"], raw["t"], raw["i"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidToken("is malformed: its content cannot be read") from None
    if (not isinstance(profile_id, str) or not profile_id or channel not in CHANNELS
            or not (topic is None or (isinstance(topic, str) and TOPIC_ID.fullmatch(topic)))
            or not isinstance(issued, int) or isinstance(issued, bool)):
        raise InvalidToken("is malformed: its content is not a subscription claim")
    try:
        issued_at = datetime.fromtimestamp(issued, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise InvalidToken("is malformed: its issue time is out of range") from None
    return Claim(profile_id=profile_id, channel=channel, topic=topic, issued_at=issued_at)


def _signature(secret: bytes, kid: str, payload: str) -> str:
    return _encode(hmac.new(secret, f"{kid}.{payload}".encode(), hashlib.sha256).digest())


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

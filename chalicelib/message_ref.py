"""The reference an email carries to the message it records.

Every email Nudge sends has the header ``X-Nudge-Message`` naming the person
and the send-ledger key of its message. SES repeats the original headers in
the events it publishes (bounce, complaint, delivery, open, click), so the
feedback handler finds the message without a lookup table or an index.
"""
from __future__ import annotations

import base64
import binascii

HEADER = "X-Nudge-Message"


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(text: str) -> str:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode()).decode()


def message_ref(profile_id: str, key: str) -> str:
    """The header value for the message ``key`` of ``profile_id``."""
    return f"{_encode(profile_id)}.{_encode(key)}"


def read_message_ref(value: str) -> tuple[str, str] | None:
    """(profile id, ledger key) from a header value; None if it is not one."""
    first, dot, second = value.strip().partition(".")
    if not dot or not first or not second:
        return None
    try:
        return _decode(first), _decode(second)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None

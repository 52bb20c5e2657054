"""The one clock. Everything that needs "now" asks here, so tests and local
time travel can move time without touching the code that reads it."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)

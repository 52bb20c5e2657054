"""The one clock. Everything that needs "now" asks here, so tests and local
time travel can move time without touching the code that reads it.

Time travel (``advance``) exists for the local stage only, where the API, the
sweep and every handler share one process: the admin API refuses it elsewhere.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

_offset = timedelta(0)
_lock = threading.Lock()


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (moved by any time travel)."""
    return datetime.now(timezone.utc) + _offset


def offset() -> timedelta:
    return _offset


def advance(by: timedelta) -> datetime:
    """Move this process's clock forward; returns the new now."""
    global _offset
    if by <= timedelta(0):
        raise ValueError("time only moves forward")
    with _lock:
        _offset += by
    return utcnow()


def reset() -> None:
    """Back to real time (tests)."""
    global _offset
    with _lock:
        _offset = timedelta(0)

"""The fatigue budget: at most N marketing messages per person and channel in a
sliding window, across all triggers. Pure: the state is a plain mapping kept
by the ConsentStore, ``now`` is a parameter.

Configuration (NUDGE_FATIGUE_BUDGET): ``"email=3/7d,sms=1/1d"``; a channel set
to ``off`` has no cap; channels not named keep the defaults below.

The state of one person on one channel::

    {"slots":   [{"at": <iso>, "key": <message>}],          # sends in the window
     "waiting": [{"key", "priority", "since", "expires"}]}  # messages held for a slot

``reserve`` grants a slot when one is free and no message with a higher
priority (or the same priority, waiting longer) is waiting for it. Otherwise
the message waits until the slot it is in line for frees (the oldest sends
leave the window first), or is dropped when that is past its trigger's expiry.
Granting the same message again is a no-op, so a redelivered decision never
takes two slots.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from chalicelib.segment import iso, parse_time

DEFAULT_BUDGET = "email=3/7d,sms=1/1d"
DEFAULT_PRIORITY = 5


@dataclass(frozen=True)
class Limit:
    count: int
    window: timedelta

    def __str__(self) -> str:
        return f"{self.count} per {_human(self.window)}"


@dataclass(frozen=True)
class Outcome:
    """``granted``, ``wait`` (until ``until``) or ``drop``; ``reason`` says why."""

    kind: str
    reason: str = ""
    until: datetime | None = None


def parse_budget(raw: str) -> dict[str, Limit | None]:
    """Limits per channel; None: no cap. ValueError names the bad part."""
    from chalicelib.durations import parse_duration

    limits: dict[str, Limit | None] = {}
    for text in (DEFAULT_BUDGET + "," + raw).split(","):
        if not text.strip():
            continue
        channel, equals, rule = text.partition("=")
        channel, rule = channel.strip(), rule.strip()
        if not equals or not channel:
            raise ValueError(f"fatigue budget {text!r}: expected channel=count/duration, e.g. email=3/7d")
        if rule == "off":
            limits[channel] = None
            continue
        count, slash, window = rule.partition("/")
        if not slash or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"fatigue budget {text!r}: expected channel=count/duration, e.g. email=3/7d")
        try:
            limits[channel] = Limit(int(count), parse_duration(window.strip()))
        except ValueError as exc:
            raise ValueError(f"fatigue budget {text!r}: {exc}") from None
    return limits


def reserve(state: Mapping[str, Any], limit: Limit, key: str, priority: int, expires: datetime | None,
            now: datetime) -> tuple[dict[str, Any], Outcome]:
    """Ask for a slot for message ``key``; returns the new state and the outcome."""
    slots = [s for s in state.get("slots", []) if parse_time(s["at"]) > now - limit.window]
    waiting = [w for w in state.get("waiting", [])
               if w["key"] == key or w.get("expires") is None or parse_time(w["expires"]) > now]
    if any(s["key"] == key for s in slots):
        return {"slots": slots, "waiting": waiting}, Outcome("granted", "already counted")
    mine = next((w for w in waiting if w["key"] == key), None)
    others = [w for w in waiting if w["key"] != key]
    if expires is not None and now >= expires:
        return {"slots": slots, "waiting": others}, Outcome(
            "drop", f"the budget ({limit}) stayed spent until the trigger's expiry at {iso(expires)}")
    since = mine["since"] if mine else iso(now)
    ahead = [w for w in others if (-int(w["priority"]), w["since"]) < (-priority, since)]
    free = limit.count - len(slots)
    if free > len(ahead):
        return {"slots": slots + [{"at": iso(now), "key": key}], "waiting": others}, Outcome("granted")
    frees = sorted(parse_time(s["at"]) + limit.window for s in slots)
    position = len(ahead) - free
    until = frees[position % len(frees)] + limit.window * (position // len(frees)) if frees else now + limit.window
    if expires is not None and until >= expires:
        return {"slots": slots, "waiting": others}, Outcome(
            "drop", f"the budget ({limit}) is spent until {iso(until)}, after the trigger's expiry at {iso(expires)}")
    entry = {"key": key, "priority": priority, "since": since, "expires": iso(expires) if expires else None}
    reason = f"the budget ({limit}) is spent; the next slot frees at {iso(until)}"
    if ahead:
        reason += f" ({len(ahead)} message(s) of higher or equal priority ahead)"
    return {"slots": slots, "waiting": others + [entry]}, Outcome("wait", reason, until)


def release(state: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Give a slot back (the message was not sent after all)."""
    return {"slots": [s for s in state.get("slots", []) if s["key"] != key],
            "waiting": [w for w in state.get("waiting", []) if w["key"] != key]}


def _human(window: timedelta) -> str:
    if window % timedelta(days=1) == timedelta(0):
        days = window.days
        return "day" if days == 1 else f"{days} days"
    hours = window / timedelta(hours=1)
    return "hour" if hours == 1 else f"{hours:g} hours"

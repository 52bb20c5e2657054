"""Quiet hours: when a message may go out, on the recipient's own clock.

Pure: no I/O, no clock of its own (``now`` is a parameter, timezone-aware, and
answers are UTC). It must not decide *whether* to send, only *when* sending is
allowed. It also holds the local-time rules :mod:`chalicelib.anniversaries`
shares, so the two agree on zones and daylight saving.

The rules
    * An :class:`AllowedWindow` is the part of the local day in which messages
      may go out: ``AllowedWindow(08:00, 21:00)`` allows 08:00 up to, not
      including, 21:00. A window whose start is after its end wraps midnight
      (``22:00-06:00``). No window (None) means always allowed.
    * Defaults per channel: SMS 08:00-21:00; email and every other channel
      always. ``window_for`` takes overrides, where None switches a window off.
    * The recipient's zone is their IANA zone name when it is one; a missing or
      unknown name falls back to the sender's configured ``fallback_tz``. An
      unknown ``fallback_tz`` is a configuration error (ValueError).
    * "Inside the window" is read on the wall clock: at the instant, the local
      time is in the window. So when clocks go back, a repeated hour inside the
      window is allowed both times; when they go forward, a window opening
      inside the skipped hour opens at the jump (02:30 -> 03:00), and a window
      lying wholly inside the skipped hour does not open that day.
    * :func:`next_allowed` answers ``now`` when it is inside the window, else
      the first instant after it that is. That is at most 24 hours away, plus
      the size of a clock change, for any window longer than that change.
    * :func:`local_to_utc` turns a local wall time into an instant: an
      ambiguous time (clocks going back) is its first occurrence; a time that
      does not exist (clocks going forward) becomes the first valid local time
      after it, the moment of the jump.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from types import MappingProxyType
from typing import Mapping
from zoneinfo import ZoneInfo

from chalicelib.profiles import valid_timezone

UTC = timezone.utc


@dataclass(frozen=True)
class AllowedWindow:
    """Local times at which messages may go out: ``start`` <= t < ``end``, wrapping midnight
    when ``start`` > ``end``. Whole minutes, no zone."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.tzinfo is not None or moment.second or moment.microsecond:
                raise ValueError(f"window {self}: times are local whole minutes, without a zone")
        if self.start == self.end:
            raise ValueError(f"window {self}: start and end are equal; use no window to always allow")

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @classmethod
    def parse(cls, text: str) -> AllowedWindow:
        """``"08:00-21:00"``, as settings write it."""
        start, dash, end = text.strip().partition("-")
        try:
            if not dash:
                raise ValueError("no dash")
            return cls(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))
        except ValueError as exc:
            raise ValueError(f"window {text!r}: expected HH:MM-HH:MM, e.g. 08:00-21:00 ({exc})") from None

    @classmethod
    def outside_quiet_hours(cls, quiet_start: time, quiet_end: time) -> AllowedWindow:
        """The window left by quiet hours: quiet 21:00-08:00 allows 08:00-21:00."""
        return cls(quiet_end, quiet_start)

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


DEFAULT_WINDOWS: Mapping[str, AllowedWindow | None] = MappingProxyType({
    "sms": AllowedWindow(time(8, 0), time(21, 0)),
    "email": None,
})


def window_for(channel: str, overrides: Mapping[str, AllowedWindow | None] | None = None) -> AllowedWindow | None:
    """The channel's window: ``overrides`` first, then the defaults; None means always."""
    windows = {**DEFAULT_WINDOWS, **(overrides or {})}
    return windows.get(channel)


def recipient_zone(tz_name: str | None, fallback_tz: str) -> ZoneInfo:
    """The recipient's zone, or ``fallback_tz`` when theirs is missing or unknown."""
    fallback = valid_timezone(fallback_tz)
    if fallback is None:
        raise ValueError(f"fallback time zone {fallback_tz!r} is not an IANA zone name")
    return ZoneInfo(valid_timezone(tz_name) or fallback)


def next_allowed(
    now_utc: datetime, tz_name: str | None, window: AllowedWindow | None, fallback_tz: str
) -> datetime:
    """``now_utc`` if it is inside the window in the recipient's zone, else the
    first instant after it that is (UTC)."""
    moment = _utc(now_utc)
    if window is None:
        return moment
    zone = recipient_zone(tz_name, fallback_tz)
    while True:
        local = moment.astimezone(zone)
        if window.contains(local.time()):
            return moment
        day = local.date() if local.time() < window.start else local.date() + timedelta(days=1)
        # The opening, if the clock keeps its present offset until then.
        opening = (datetime.combine(day, window.start) - local.utcoffset()).replace(tzinfo=UTC)
        if _offset(zone, opening) == local.utcoffset():
            return opening
        # The clock changes first: start again from the change.
        moment = _clock_change(zone, moment, opening)


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """The instant at which the wall clock in ``zone`` reads ``local`` (naive):
    the first when it reads it twice, the jump when it skips it."""
    if local.tzinfo is not None:
        raise ValueError(f"{local!r}: a local wall time has no zone of its own")
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return first
    # Skipped: fold=0 read it with the offset before the jump, fold=1 with the one after,
    # which lands before the jump.
    before_jump = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _clock_change(zone, before_jump, first)


def _clock_change(zone: ZoneInfo, after: datetime, until: datetime) -> datetime:
    """The instant in (after, until] at which the zone's UTC offset changes;
    the offsets at ``after`` and ``until`` differ. Clocks change on whole seconds."""
    before = _offset(zone, after)
    low, high = math.floor(after.timestamp()), math.ceil(until.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, datetime.fromtimestamp(middle, UTC)) == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r}: a timezone-aware datetime is required")
    return moment.astimezone(UTC)


def parse_windows(text: str) -> dict[str, AllowedWindow | None]:
    """Settings' per-channel windows: ``"sms=08:00-21:00,email=off"`` (``off``:
    no quiet hours for that channel). Empty text: no overrides."""
    windows: dict[str, AllowedWindow | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        channel, equals, value = part.partition("=")
        if not equals or not channel.strip():
            raise ValueError(f"quiet hours {part!r}: expected channel=HH:MM-HH:MM or channel=off")
        windows[channel.strip()] = None if value.strip() == "off" else AllowedWindow.parse(value)
    return windows

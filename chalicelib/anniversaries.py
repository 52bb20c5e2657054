"""Anniversaries: when "birthday at 09:00 local", "7 days before renewal_date" or
"6 months after last_service_date" next happens.

Pure: no I/O, no clock of its own (``after`` is a parameter, timezone-aware, and
answers are UTC). It reads a profile's date trait and does calendar arithmetic;
it must not know about triggers, profiles' storage or sending.

The rules
    * The date trait is ``YYYY-MM-DD``; a full ISO date-time counts as the date
      written in it (``1990-05-01T00:00:00+02:00`` is 1 May, whatever the
      offset); ``--MM-DD`` or ``--MMDD`` (vCard's year-less birthday) recurs
      every year. Anything else, or no value, raises :class:`InvalidDate`.
    * Occurrence k is the date plus ``months + k * every`` calendar months, at
      ``local_time`` in the recipient's zone, plus ``offset`` on the wall clock
      (``-7 days`` is a week before, at the same local time). k starts at 0: a
      date's anniversaries start on the date itself, never before it.
      ``every`` is ``"year"``, ``"month"``, a number of months, or None for a
      single occurrence (None once it is past). A year-less date recurs only
      every year (or every 1, 2, 3, 4 or 6 months).
    * Month arithmetic clamps to the end of the month: 31 January + 1 month is
      28 (or 29) February, and counting restarts from the original date each
      time, so monthly from 31 January gives 28 February, then 31 March.
    * So a 29 February birthday falls on 28 February in years without one:
      the common CRM convention, which keeps the birthday in its own month.
    * Zones and daylight saving as :mod:`chalicelib.quiet_hours` reads them: a
      missing or unknown zone falls back to ``fallback_tz``; a local time that
      does not exist (clocks going forward) becomes the first valid local time
      after it; one that happens twice is its first occurrence.
    * :func:`next_occurrence` is the first occurrence strictly after ``after``.
"""
from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time, timedelta

from chalicelib.quiet_hours import local_to_utc, recipient_zone

#: The year given to year-less dates: a leap year, so that --02-29 is a date.
YEARLESS_YEAR = 2000


class InvalidDate(ValueError):
    """The profile's date trait is missing or is not a date Nudge reads."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def next_occurrence(
    date_value: str | None,
    *,
    after: datetime,
    local_time: time,
    tz_name: str | None,
    fallback_tz: str,
    offset: timedelta = timedelta(0),
    months: int = 0,
    every: str | int | None = "year",
) -> datetime | None:
    """The first occurrence strictly after ``after`` (UTC), or None when a single
    occurrence (``every=None``) is not after it."""
    found = next_anniversary(date_value, after=after, local_time=local_time, tz_name=tz_name,
                             fallback_tz=fallback_tz, offset=offset, months=months, every=every)
    return found[1] if found is not None else None


def next_anniversary(
    date_value: str | None,
    *,
    after: datetime,
    local_time: time,
    tz_name: str | None,
    fallback_tz: str,
    offset: timedelta = timedelta(0),
    months: int = 0,
    every: str | int | None = "year",
) -> tuple[date, datetime] | None:
    """Like :func:`next_occurrence`, with the anniversary's own day (before the
    offset: the birthday itself for "7 days before the birthday"), which names
    the occurrence."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"{after!r}: a timezone-aware datetime is required")
    if local_time.tzinfo is not None:
        raise ValueError(f"{local_time!r}: the local time has no zone of its own")
    period = _period_months(every)
    base, has_year = parse_date(date_value)
    if not has_year and (period is None or 12 % period):
        raise InvalidDate(f"{date_value!r} has no year, so it can only recur every year")
    zone = recipient_zone(tz_name, fallback_tz)

    def occurrence(k: int) -> tuple[date, datetime]:
        day = add_months(base, months + k * (period or 0))
        return day, local_to_utc(datetime.combine(day, local_time) + offset, zone)

    if period is None:
        single = occurrence(0)
        return single if single[1] > after else None
    # Start a period or so early, then step forward: the offset and clocks shift things a little.
    target = (after.astimezone(zone).replace(tzinfo=None) - offset).date()
    k = ((target.year - base.year) * 12 + target.month - base.month - months) // period - 1
    k = max(k, 0) if has_year else k
    while (found := occurrence(k))[1] <= after:
        k += 1
    return found


def parse_date(value: object) -> tuple[date, bool]:
    """The date a trait holds, and whether it has a year (year-less dates get 2000)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidDate("no date")
    if not isinstance(value, str):
        raise InvalidDate(f"{value!r} is not a date: expected text such as 1990-05-01")
    text = value.strip()
    yearless = re.fullmatch(r"--(\d\d)-?(\d\d)", text)
    try:
        if yearless:
            return date(YEARLESS_YEAR, int(yearless.group(1)), int(yearless.group(2))), False
        try:
            return date.fromisoformat(text), True
        except ValueError:
            return datetime.fromisoformat(text).date(), True
    except ValueError as exc:
        raise InvalidDate(f"{value!r} is not a date: expected YYYY-MM-DD, an ISO date-time "
                          f"or --MM-DD ({exc})") from None


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, clamped to the end of the month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise InvalidDate(f"{day.isoformat()} + {months} months is outside the calendar")
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _period_months(every: str | int | None) -> int | None:
    if every is None:
        return None
    if every == "year":
        return 12
    if every == "month":
        return 1
    if isinstance(every, int) and not isinstance(every, bool) and every >= 1:
        return every
    raise ValueError(f"every {every!r}: expected 'year', 'month', a number of months or None")

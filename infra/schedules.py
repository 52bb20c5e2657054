"""Schedule expressions as EventBridge reads them: ``rate(...)`` and ``cron(...)``, in UTC.

Pure functions of time, used by the local event-source runtime to fire
``@app.schedule`` handlers. ``next_after`` gives the next run strictly after a
moment (None when there is none).
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Mapping


class UnsupportedSchedule(ValueError):
    pass


class Rate:
    """``rate(N minutes|hours|days)``: every period, counted from ``start``."""

    _UNITS = {"minute": 60, "hour": 3600, "day": 86400}

    def __init__(self, expression: str, start: datetime) -> None:
        match = re.fullmatch(r"rate\(\s*(\d+)\s+(minute|hour|day)s?\s*\)", expression.strip())
        if not match or int(match.group(1)) < 1:
            raise UnsupportedSchedule(f"not a rate expression: {expression!r}")
        self.period = timedelta(seconds=int(match.group(1)) * self._UNITS[match.group(2)])
        self.start = start

    def next_after(self, moment: datetime) -> datetime:
        periods = (moment - self.start) // self.period + 1
        return self.start + max(periods, 1) * self.period


_MONTHS = {name: number for number, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_WEEKDAYS = {name: number for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}


class Cron:
    """``cron(minutes hours day-of-month month day-of-week year)`` in UTC, as
    EventBridge reads it (day-of-week 1 = Sunday; one of the day fields is
    ``?``). Lists, ranges, steps, ``*`` and names are supported; ``L``, ``W``
    and ``#`` are not."""

    _HORIZON_DAYS = 366 * 8

    def __init__(self, expression: str) -> None:
        match = re.fullmatch(r"cron\((.*)\)", expression.strip())
        fields = match.group(1).split() if match else []
        if len(fields) != 6:
            raise UnsupportedSchedule(f"not a six-field cron expression: {expression!r}")
        self.minutes = _cron_field(fields[0], 0, 59, {})
        self.hours = _cron_field(fields[1], 0, 23, {})
        self.days = _cron_field(fields[2], 1, 31, {})
        self.months = _cron_field(fields[3], 1, 12, _MONTHS)
        self.weekdays = _cron_field(fields[4], 1, 7, _WEEKDAYS)
        self.years = _cron_field(fields[5], 1970, 2199, {})
        if (self.days is None) == (self.weekdays is None):
            raise UnsupportedSchedule(f"exactly one of day-of-month and day-of-week must be '?': {expression!r}")
        if None in (self.minutes, self.hours, self.months, self.years):
            raise UnsupportedSchedule(f"'?' is only allowed in the day fields: {expression!r}")

    def _day_matches(self, day: date) -> bool:
        if day.year not in self.years or day.month not in self.months:  # type: ignore[operator]
            return False
        if self.days is not None:
            return day.day in self.days
        return (day.weekday() + 1) % 7 + 1 in self.weekdays  # type: ignore[operator]

    def next_after(self, moment: datetime) -> datetime | None:
        start = (moment + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.date()
        for _ in range(self._HORIZON_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):  # type: ignore[arg-type]
                    for minute in sorted(self.minutes):  # type: ignore[arg-type]
                        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        return None


def _cron_field(text: str, low: int, high: int, names: Mapping[str, int]) -> frozenset[int] | None:
    if text == "?":
        return None
    without_names = re.sub("|".join(names), "", text.upper()) if names else text.upper()
    if re.search(r"[LW#]", without_names):
        raise UnsupportedSchedule(f"cron field {text!r}: L, W and # are not supported locally")

    def value(part: str) -> int:
        number = names.get(part.upper()) if not part.isdigit() else int(part)
        if number is None or not low <= number <= high:
            raise UnsupportedSchedule(f"cron field {text!r}: {part!r} is not in {low}-{high}")
        return number

    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        if step_text and (not step_text.isdigit() or int(step_text) < 1):
            raise UnsupportedSchedule(f"cron field {text!r}: bad step {step_text!r}")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (value(p) for p in base.split("-", 1))
        else:
            first = value(base)
            last = high if step_text else first
        if first > last:
            raise UnsupportedSchedule(f"cron field {text!r}: range {base!r} runs backwards")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse_schedule(expression: str, start: datetime) -> Rate | Cron:
    """A ``rate(...)`` or ``cron(...)`` expression; raises UnsupportedSchedule."""
    text = expression.strip()
    if text.startswith("rate("):
        return Rate(text, start)
    if text.startswith("cron("):
        return Cron(text)
    raise UnsupportedSchedule(f"not a schedule expression: {expression!r}")

"""Durations (``wait: 1h``, ``{"advance": "3d"}``) and broadcast schedules (``rate(...)``, ``cron(...)``).

Pure: no I/O, no clock of its own. Every "now" is a parameter, and times go in
and out as timezone-aware UTC datetimes. It must not know about triggers,
profiles or AWS: it only reads and writes the text of durations and schedules.

Durations
    * Short form: whole numbers with units ``s``, ``m``, ``h``, ``d``, ``w``
      (also ``sec``, ``min``, ``hr``, ``day``, ``week`` and their plurals, any
      case), combined in any order, with or without spaces: ``30s``, ``15m``,
      ``36h``, ``1h30m``, ``1d 12h``, ``2w``.
    * ISO-8601: ``PT1H``, ``PT1H30M``, ``P3D``, ``P1W``, ``P1DT12H``.
    * Refused, with the reason: empty text, zero, negative values, fractions
      (``1.5h``: write ``1h30m``), unknown units, a unit given twice, anything
      over 400 days, and months or years (``1mo``, ``1y``, ``P1M``, a capital
      ``M``), because their length varies: write days or weeks instead.
    * :func:`format_duration` writes the canonical short form, largest unit
      first, weeks only for a whole number of weeks (``2w``, ``10d``,
      ``1d12h``, ``1h30m``); parsing it gives the same duration back.

Schedules, as EventBridge reads them, always in UTC
    * ``rate(N unit)`` with unit ``minute``, ``hour`` or ``day``: singular for
      1, plural otherwise (``rate(1 hour)``, ``rate(5 minutes)``). It fires on
      the grid ``anchor + k * period``; the anchor defaults to the Unix epoch,
      so ``rate(1 hour)`` fires on the hour and ``rate(1 day)`` at midnight UTC.
    * ``cron(minutes hours day-of-month month day-of-week year)``: numbers,
      ``*``, ranges ``a-b``, lists ``a,b``, steps ``*/n`` and ``a/n`` (not in
      day-of-week), months ``JAN``-``DEC``, days ``SUN``-``SAT`` (1 = Sunday).
      Exactly one of day-of-month and day-of-week is ``?``. Day-of-month also
      takes ``L`` (last day), ``nW`` (weekday nearest day n, within the month)
      and ``LW`` (last weekday); day-of-week takes ``L`` (Saturday), ``nL``
      (last weekday n of the month, ``6L`` = last Friday) and ``n#k`` (k-th
      weekday n, ``2#1`` = first Monday). Errors name the field:
      ``cron day-of-week: ...``.
    * ``Schedule.next_after(moment)`` is the first run strictly after
      ``moment``, or None when the expression never runs again.
"""
from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DURATION = timedelta(days=400)
MAX_TEXT = 64

_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT_NAMES = {
    **{name: "s" for name in ("s", "sec", "secs", "second", "seconds")},
    **{name: "m" for name in ("m", "min", "mins", "minute", "minutes")},
    **{name: "h" for name in ("h", "hr", "hrs", "hour", "hours")},
    **{name: "d" for name in ("d", "day", "days")},
    **{name: "w" for name in ("w", "wk", "wks", "week", "weeks")},
}
_VARIABLE_UNITS = {"mo", "mos", "mon", "month", "months", "y", "yr", "yrs", "year", "years"}
_SHORT = re.compile(r"(?:\s*\d+\s*[A-Za-z]+)+\s*")
_ISO = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_EXAMPLES = "expected e.g. 30s, 15m, 1h, 1h30m, 3d, 2w or ISO-8601 PT1H, P3D"
_VARIABLE_REASON = ("months and years are not accepted: their length varies (28 to 31 days, "
                    "365 or 366); write days or weeks instead, e.g. 30d or 52w")


def parse_duration(text: str) -> timedelta:
    """The duration ``text`` names (``1h30m``, ``P3D``), or ValueError with the reason."""
    try:
        seconds = _seconds(text)
    except ValueError as exc:
        raise ValueError(f"duration {text!r}: {exc}") from None
    return timedelta(seconds=seconds)


def parse_advance(text: str) -> timedelta:
    """How far the time-travel endpoint moves the clock (``{"advance": "3d"}``):
    the same rule as :func:`parse_duration`."""
    return parse_duration(text)


def format_duration(duration: timedelta) -> str:
    """The canonical short form: ``2w``, ``10d``, ``1d12h``, ``1h30m``, ``45s``."""
    if duration <= timedelta(0) or duration.microseconds:
        raise ValueError(f"duration {duration!r}: only positive whole seconds have a short form")
    seconds = int(duration.total_seconds())
    if seconds % _UNIT_SECONDS["w"] == 0:
        return f"{seconds // _UNIT_SECONDS['w']}w"
    parts = []
    for unit in "dhms":
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _seconds(text: str) -> int:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"is empty; {_EXAMPLES}")
    clean = text.strip()
    if len(clean) > MAX_TEXT:
        raise ValueError(f"is longer than {MAX_TEXT} characters")
    if clean.startswith("-"):
        raise ValueError("must be positive")
    if re.search(r"\d[.,]\d", clean):
        raise ValueError("whole numbers only: write 1h30m rather than 1.5h")
    if clean[0] in "Pp":
        seconds = _iso_seconds(clean.upper())
    elif _SHORT.fullmatch(clean):
        seconds = _short_seconds(clean)
    else:
        raise ValueError(_EXAMPLES)
    if seconds == 0:
        raise ValueError("must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError("must be at most 400 days")
    return seconds


def _short_seconds(text: str) -> int:
    seen: set[str] = set()
    total = 0
    for number, raw_unit in re.findall(r"(\d+)\s*([A-Za-z]+)", text):
        if raw_unit == "M":
            raise ValueError(f"'M' could mean minutes or months: write m for minutes; {_VARIABLE_REASON}")
        if raw_unit.lower() in _VARIABLE_UNITS:
            raise ValueError(_VARIABLE_REASON)
        unit = _UNIT_NAMES.get(raw_unit.lower())
        if unit is None:
            raise ValueError(f"unknown unit {raw_unit!r}; use s, m, h, d or w")
        if unit in seen:
            raise ValueError(f"the unit {unit} is given twice")
        seen.add(unit)
        total += int(number) * _UNIT_SECONDS[unit]
    return total


def _iso_seconds(text: str) -> int:
    match = _ISO.fullmatch(text)
    if not match:
        if re.search(r"\d[YM]", text.partition("T")[0]):
            raise ValueError(_VARIABLE_REASON)
        raise ValueError(_EXAMPLES)
    if not any(match.groups()):
        raise ValueError("names no amount of time")
    weeks, days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return (weeks * _UNIT_SECONDS["w"] + days * _UNIT_SECONDS["d"] + hours * _UNIT_SECONDS["h"]
            + minutes * _UNIT_SECONDS["m"] + seconds)


# -- schedules -----------------------------------------------------------------------------------


class Schedule(ABC):
    """When a broadcast runs. ``expression`` is the text it was read from."""

    expression: str

    @abstractmethod
    def next_after(self, moment: datetime) -> datetime | None:
        """The first run strictly after ``moment`` (UTC), None if there is none."""


@dataclass(frozen=True)
class Rate(Schedule):
    """``rate(N unit)``: runs at ``anchor + k * period`` for every whole k."""

    expression: str
    period: timedelta
    anchor: datetime = EPOCH

    def next_after(self, moment: datetime) -> datetime:
        periods = (_utc(moment) - self.anchor) // self.period + 1
        return self.anchor + periods * self.period


#: Special days. In day-of-month: ``L`` is LAST, ``LW`` is LAST in ``nearest_weekdays``.
#: In day-of-week, ``(weekday, nth)``: nth 0 is every such day, 1-5 the nth, LAST the last.
LAST = -1


@dataclass(frozen=True)
class Cron(Schedule):
    """``cron(minutes hours day-of-month month day-of-week year)``, in UTC."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    month_days: frozenset[int]
    nearest_weekdays: frozenset[int]
    week_days: frozenset[tuple[int, int]]
    months: frozenset[int]
    years: frozenset[int]

    def next_after(self, moment: datetime) -> datetime | None:
        start = (_utc(moment) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        for year in sorted(y for y in self.years if y >= start.year):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                for day in self.days(year, month):
                    if date(year, month, day) < start.date():
                        continue
                    for hour in sorted(self.hours):
                        for minute in sorted(self.minutes):
                            candidate = datetime(year, month, day, hour, minute, tzinfo=UTC)
                            if candidate >= start:
                                return candidate
        return None

    def days(self, year: int, month: int) -> list[int]:
        """The days of this month on which the expression runs."""
        length = calendar.monthrange(year, month)[1]
        days = {length if day == LAST else day for day in self.month_days if day <= length}
        for day in self.nearest_weekdays:
            if day <= length:
                days.add(_nearest_weekday(year, month, length if day == LAST else day, length))
        for weekday, nth in self.week_days:
            matching = [d for d in range(1, length + 1) if _aws_weekday(date(year, month, d)) == weekday]
            if nth == 0:
                days.update(matching)
            elif nth == LAST:
                days.add(matching[-1])
            elif nth <= len(matching):
                days.add(matching[nth - 1])
        return sorted(days)


def parse_schedule(text: str, anchor: datetime = EPOCH) -> Schedule:
    """A ``rate(...)`` or ``cron(...)`` expression, or ValueError naming what is wrong.

    ``anchor`` places a rate's grid (a rule's creation time, say); cron ignores it.
    """
    clean = text.strip() if isinstance(text, str) else ""
    if clean.startswith("rate(") and clean.endswith(")"):
        return _rate(clean, _utc(anchor))
    if clean.startswith("cron(") and clean.endswith(")"):
        return _cron(clean)
    raise ValueError(f"schedule {text!r}: expected rate(5 minutes) or cron(0 9 ? * MON-FRI *)")


def _rate(text: str, anchor: datetime) -> Rate:
    match = re.fullmatch(r"rate\(\s*(\S+)\s+(\S+)\s*\)", text)
    if not match:
        raise ValueError(f"rate {text!r}: expected rate(value unit), e.g. rate(5 minutes)")
    value, unit = match.groups()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"rate value: {value!r} is not a positive whole number")
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in ("minute", "hour", "day"):
        raise ValueError(f"rate unit: {unit!r} is not minute(s), hour(s) or day(s)")
    if (int(value) == 1) != (unit == singular):
        wanted = singular if int(value) == 1 else singular + "s"
        raise ValueError(f"rate unit: write rate({int(value)} {wanted}); the unit is singular for 1, plural otherwise")
    return Rate(text, timedelta(seconds=int(value) * _UNIT_SECONDS[singular[0]]), anchor)


_MONTH_NAMES = {name: n for n, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_DAY_NAMES = {name: n for n, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}


def _cron(text: str) -> Cron:
    fields = text[len("cron("):-1].split()
    if len(fields) != 6:
        raise ValueError(f"cron {text!r}: expected six fields: minutes hours day-of-month month day-of-week year")
    minutes, hours, dom, month, dow, year = (field.upper() for field in fields)
    if (dom == "?") == (dow == "?"):
        raise ValueError("cron day-of-week: exactly one of day-of-month and day-of-week must be '?' "
                         "(e.g. cron(0 9 ? * MON *) or cron(0 9 1 * ? *))")
    month_days: set[int] = set()
    nearest: set[int] = set()
    week_days: set[tuple[int, int]] = set()
    for part in (dom.split(",") if dom != "?" else []):
        if part in ("L", "LW"):
            (month_days if part == "L" else nearest).add(LAST)
        elif part.endswith("W"):
            nearest.add(_number(part[:-1], "day-of-month", 1, 31, {}))
        else:
            month_days |= _values(part, "day-of-month", 1, 31, {})
    for part in (dow.split(",") if dow != "?" else []):
        if "/" in part:
            raise ValueError(f"cron day-of-week: {part!r}: steps are not allowed in day-of-week")
        if part == "L":
            week_days.add((7, 0))
        elif part.endswith("L"):
            week_days.add((_number(part[:-1], "day-of-week", 1, 7, _DAY_NAMES), LAST))
        elif "#" in part:
            weekday, _, nth = part.partition("#")
            week_days.add((_number(weekday, "day-of-week", 1, 7, _DAY_NAMES), _number(nth, "day-of-week", 1, 5, {})))
        else:
            week_days |= {(weekday, 0) for weekday in _values(part, "day-of-week", 1, 7, _DAY_NAMES)}
    return Cron(
        expression=text,
        minutes=_field(minutes, "minutes", 0, 59, {}),
        hours=_field(hours, "hours", 0, 23, {}),
        month_days=frozenset(month_days),
        nearest_weekdays=frozenset(nearest),
        week_days=frozenset(week_days),
        months=_field(month, "month", 1, 12, _MONTH_NAMES),
        years=_field(year, "year", 1970, 2199, {}),
    )


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        values |= _values(part, name, low, high, names)
    return frozenset(values)


def _values(part: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    """One list item: ``*``, ``n``, ``a-b``, each optionally ``/step``."""
    base, slash, step_text = part.partition("/")
    if slash and (not step_text.isdigit() or int(step_text) < 1):
        raise ValueError(f"cron {name}: {part!r}: the step must be a positive whole number")
    step = int(step_text) if slash else 1
    if base == "*":
        first, last = low, high
    elif "-" in base:
        first, last = (_number(end, name, low, high, names) for end in base.split("-", 1))
        if first > last:
            raise ValueError(f"cron {name}: {part!r}: the range runs backwards")
    else:
        first = _number(base, name, low, high, names)
        last = high if slash else first
    return frozenset(range(first, last + 1, step))


def _number(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    value = int(text) if text.isdigit() else names.get(text)
    if value is None or not low <= value <= high:
        allowed = f"{low}-{high}" + (f" or {min(names, key=names.get)}-{max(names, key=names.get)}" if names else "")
        raise ValueError(f"cron {name}: {text!r} is not {allowed}")
    return value


def _aws_weekday(day: date) -> int:
    """EventBridge numbering: 1 = Sunday ... 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int, length: int) -> int:
    """The Monday-to-Friday day nearest ``day``, never leaving the month."""
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: the Friday before, or Monday when day is the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or Friday when day is the month's last
        return day + 1 if day < length else day - 2
    return day


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r}: a timezone-aware datetime is required")
    return moment.astimezone(UTC)

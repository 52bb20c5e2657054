"""Anniversaries: birthdays, renewals and service reminders at a local hour."""
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from chalicelib.anniversaries import InvalidDate, add_months, next_occurrence, parse_date

UTC = timezone.utc
NINE = time(9, 0)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def birthday(value, after, tz_name="UTC", **rule):
    return next_occurrence(value, after=after, local_time=rule.pop("local_time", NINE), tz_name=tz_name,
                           fallback_tz="UTC", **rule)


def test_a_birthday_at_9_is_a_different_instant_in_berlin_and_new_york():
    # Given someone born on 1 May, asked about in June 2026
    after = utc(2026, 6, 1)
    # Then their next birthday greeting goes at 09:00 where they live
    assert birthday("1990-05-01", after, "Europe/Berlin") == utc(2027, 5, 1, 7, 0)
    assert birthday("1990-05-01", after, "America/New_York") == utc(2027, 5, 1, 13, 0)


def test_this_years_birthday_comes_first_when_it_is_still_ahead():
    assert birthday("1990-07-14", utc(2026, 6, 1)) == utc(2026, 7, 14, 9, 0)


def test_the_year_rolls_over_after_new_years_eve():
    # Given a 2 January birthday, asked about on 31 December
    assert birthday("1985-01-02", utc(2026, 12, 31, 12, 0)) == utc(2027, 1, 2, 9, 0)


def test_the_next_occurrence_is_strictly_after_the_moment():
    # Given the birthday greeting's own moment
    moment = utc(2026, 7, 14, 9, 0)
    # Then the next one is a year later, and a moment before it is that one
    assert birthday("1990-07-14", moment) == utc(2027, 7, 14, 9, 0)
    assert birthday("1990-07-14", moment - timedelta(microseconds=1)) == moment


@pytest.mark.parametrize("after, expected", [
    (utc(2026, 6, 1), utc(2027, 2, 28, 9, 0)),
    (utc(2027, 6, 1), utc(2028, 2, 29, 9, 0)),
])
def test_29_february_is_celebrated_on_28_february_in_other_years(after, expected):
    assert birthday("1992-02-29", after) == expected


@pytest.mark.parametrize("value", ["--02-29", "--0229"])
def test_a_year_less_birthday_as_vcard_writes_it(value):
    assert birthday(value, utc(2026, 6, 1)) == utc(2027, 2, 28, 9, 0)
    assert birthday(value, utc(2027, 6, 1)) == utc(2028, 2, 29, 9, 0)


@pytest.mark.parametrize("value", [
    "1990-05-01T00:00:00+02:00",  # still 30 April in UTC: the written date counts
    "1990-05-01T23:30:00-05:00",
    "1990-05-01T12:00:00Z",
    " 1990-05-01 ",
])
def test_a_date_time_trait_counts_as_the_date_written_in_it(value):
    assert parse_date(value) == (date(1990, 5, 1), True)


def test_reminders_can_come_days_before():
    # Given "7 days before renewal_date", with renewal on 10 March
    rule = {"offset": timedelta(days=-7)}
    assert birthday("2024-03-10", utc(2026, 1, 1), **rule) == utc(2026, 3, 3, 9, 0)
    # And once this year's reminder has passed, the next is next year's
    assert birthday("2024-03-10", utc(2026, 3, 5), **rule) == utc(2027, 3, 3, 9, 0)


def test_a_reminder_before_new_year_belongs_to_the_coming_years_date():
    # Given a reminder 7 days before a 3 January anniversary, asked about in mid December
    assert birthday("2020-01-03", utc(2026, 12, 15), offset=timedelta(days=-7)) == utc(2026, 12, 27, 9, 0)


def test_an_offset_counts_on_the_wall_clock():
    # Given "2 hours after" 09:00 in Berlin, a week before clocks change
    assert birthday("2020-10-18", utc(2026, 1, 1), "Europe/Berlin",
                    offset=timedelta(days=7, hours=2)) == utc(2026, 10, 25, 10, 0)  # 11:00 CET


def test_anniversaries_start_on_the_date_itself():
    # Given a subscription that starts in the future
    assert birthday("2027-04-01", utc(2026, 6, 1)) == utc(2027, 4, 1, 9, 0)


def test_six_months_after_the_last_service_happens_once():
    rule = {"months": 6, "every": None}
    # Given a car last serviced on 31 August 2026
    assert birthday("2026-08-31", utc(2026, 9, 1), **rule) == utc(2027, 2, 28, 9, 0)
    # Then once that moment has passed there is nothing more to send
    assert birthday("2026-08-31", utc(2027, 3, 1), **rule) is None


def test_monthly_anniversaries_count_from_the_original_day():
    # Given a plan started on 31 January, celebrated monthly
    after = utc(2026, 1, 31, 12, 0)
    first = birthday("2026-01-31", after, every="month")
    second = birthday("2026-01-31", first, every="month")
    # Then the end of the month is kept: 28 February, then 31 March again
    assert (first, second) == (utc(2026, 2, 28, 9, 0), utc(2026, 3, 31, 9, 0))


def test_every_few_months():
    assert birthday("2025-11-15", utc(2026, 1, 1), every=3) == utc(2026, 2, 15, 9, 0)


@pytest.mark.parametrize("start, months, expected", [
    (date(2026, 1, 31), 1, date(2026, 2, 28)),
    (date(2028, 1, 31), 1, date(2028, 2, 29)),
    (date(2026, 3, 31), 1, date(2026, 4, 30)),
    (date(2026, 8, 31), 6, date(2027, 2, 28)),
    (date(2026, 11, 15), 3, date(2027, 2, 15)),
    (date(2026, 3, 31), -1, date(2026, 2, 28)),
    (date(2028, 2, 29), 12, date(2029, 2, 28)),
])
def test_months_clamp_to_the_end_of_the_month(start, months, expected):
    assert add_months(start, months) == expected


def test_9_that_the_clock_skips_becomes_the_first_valid_time_after_it():
    # Given a greeting at 02:30 on the night Berlin's clocks jump from 02:00 to 03:00
    answer = birthday("1990-03-29", utc(2026, 3, 1), "Europe/Berlin", local_time=time(2, 30))
    # Then it goes at 03:00 summer time
    assert answer == utc(2026, 3, 29, 1, 0)
    assert answer.astimezone(ZoneInfo("Europe/Berlin")).time() == time(3, 0)


def test_a_time_the_clock_reads_twice_is_the_first():
    # Given 01:30 on the night New York's clocks go back from 02:00 to 01:00
    answer = birthday("1990-11-01", utc(2026, 10, 1), "America/New_York", local_time=time(1, 30))
    # Then it is the first 01:30, still summer time
    assert answer == utc(2026, 11, 1, 5, 30)


@pytest.mark.parametrize("tz_name", [None, "", "Atlantis/Capital"])
def test_a_missing_or_unknown_zone_falls_back_to_the_senders(tz_name):
    answer = next_occurrence("1990-05-01", after=utc(2026, 1, 1), local_time=NINE, tz_name=tz_name,
                             fallback_tz="Europe/Berlin")
    assert answer == utc(2026, 5, 1, 7, 0)


@pytest.mark.parametrize("value, reason", [
    (None, "no date"),
    ("", "no date"),
    ("tomorrow", "is not a date"),
    ("1990-02-30", "is not a date"),
    ("01/05/1990", "is not a date"),
    ("--13-01", "is not a date"),
    (19900501, "is not a date"),
])
def test_a_date_nudge_cannot_read_is_refused_with_the_reason(value, reason):
    with pytest.raises(InvalidDate) as exc:
        birthday(value, utc(2026, 1, 1))
    assert reason in exc.value.reason


def test_a_year_less_date_has_no_single_occurrence():
    with pytest.raises(InvalidDate, match="no year"):
        birthday("--05-01", utc(2026, 1, 1), months=6, every=None)


@pytest.mark.parametrize("every", ["week", 0, -1, True, 1.5])
def test_a_period_that_is_not_months_is_refused(every):
    with pytest.raises(ValueError, match="every"):
        birthday("1990-05-01", utc(2026, 1, 1), every=every)


def test_after_must_carry_a_zone():
    with pytest.raises(ValueError, match="timezone-aware"):
        birthday("1990-05-01", datetime(2026, 1, 1))


# -- properties --------------------------------------------------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@lru_cache(maxsize=None)
def clock_jumps(tz_name: str, year: int) -> tuple[date, ...]:
    """The local dates in ``year`` on which the zone's clocks jump forward."""
    zone, day, jumps = ZoneInfo(tz_name), date(year, 1, 1), []
    while day.year == year:
        tomorrow = day + timedelta(days=1)
        if datetime.combine(tomorrow, time(0), zone).utcoffset() > datetime.combine(day, time(0), zone).utcoffset():
            jumps.append(day)
        day = tomorrow
    return tuple(jumps)


@st.composite
def reminders(draw):
    """(date trait, after, local time, zone, days before): half of them set on a night the clocks jump."""
    tz_name = draw(st.sampled_from(ZONES))
    year = draw(st.integers(2026, 2035))
    days_before = draw(st.integers(0, 30))
    at = draw(st.builds(time, st.integers(0, 23), st.integers(0, 59)))
    born = draw(st.dates(min_value=date(1940, 1, 1), max_value=date(2025, 12, 31)))
    jumps = clock_jumps(tz_name, year)
    if jumps and draw(st.booleans()):
        jump = draw(st.sampled_from(jumps)) + timedelta(days=days_before)
        born = date(draw(st.integers(1940, 2025)), jump.month, jump.day)
        # 02:00-02:29 is skipped in all three zones; around it, the clock runs on either side
        at = draw(st.one_of(st.builds(time, st.just(2), st.integers(0, 29)),
                            st.builds(time, st.integers(1, 3), st.integers(0, 59))))
    after = draw(st.datetimes(min_value=datetime(year - 1, 10, 1), max_value=datetime(year, 1, 1),
                              timezones=st.just(UTC)))
    return born, after, at, tz_name, days_before


def is_anniversary(day: date, of: date) -> bool:
    if (day.month, day.day) == (of.month, of.day):
        return True
    return (of.month, of.day) == (2, 29) and (day.month, day.day) == (2, 28)


@settings(max_examples=300, deadline=None)
@given(reminders())
def test_a_yearly_reminder_is_the_next_anniversary_at_the_local_time(reminder):
    # Given "N days before <date trait>, at <local time>"
    born, after, at, tz_name, days_before = reminder
    offset = timedelta(days=-days_before)
    answer = next_occurrence(born.isoformat(), after=after, local_time=at, tz_name=tz_name,
                             fallback_tz="UTC", offset=offset)
    # Then it is after the moment, and within a year and a day of it
    assert after < answer <= after + timedelta(days=367)
    # And it falls on an anniversary, moved by the offset
    zone = ZoneInfo(tz_name)
    local = answer.astimezone(zone)
    assert is_anniversary((local - offset).date(), born)
    # And at the local time asked for, unless the clock skipped that time that day:
    # then it is the moment of the jump, the first valid local time after it
    if local.time() != at:
        event("the clock skipped the local time")
        intended = datetime.combine(local.date(), at)
        assert local.replace(tzinfo=None) > intended
        assert (answer - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) < intended


@settings(max_examples=100, deadline=None)
@given(
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31)),
    after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
    tz_name=st.sampled_from(ZONES),
    every=st.sampled_from(["year", "month", 3, 6]),
)
def test_no_occurrence_is_skipped(start, after, tz_name, every):
    # Given the first occurrence after a moment
    rule = {"local_time": NINE, "tz_name": tz_name, "fallback_tz": "UTC", "every": every}
    answer = next_occurrence(start.isoformat(), after=after, **rule)
    assert answer > after
    # Then walking the occurrences from a long way back reaches it, none of them after the moment
    walk = next_occurrence(start.isoformat(), after=after - timedelta(days=800), **rule)
    while walk < answer:
        assert walk <= after
        walk = next_occurrence(start.isoformat(), after=walk, **rule)
    assert walk == answer

"""Durations (``wait: 1h``) and broadcast schedules, as a marketer writes them."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.durations import (
    EPOCH, Cron, Rate, format_duration, parse_advance, parse_duration, parse_schedule,
)

UTC = timezone.utc
# A Wednesday.
NOW = datetime(2026, 3, 4, 10, 17, 30, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("30s", timedelta(seconds=30)),
    ("15m", timedelta(minutes=15)),
    ("1h", timedelta(hours=1)),
    ("36h", timedelta(hours=36)),
    ("3d", timedelta(days=3)),
    ("2w", timedelta(weeks=2)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1d 12h", timedelta(days=1, hours=12)),
    (" 2 hours 30 minutes ", timedelta(hours=2, minutes=30)),
    ("1H", timedelta(hours=1)),
    ("PT1H", timedelta(hours=1)),
    ("PT1H30M", timedelta(hours=1, minutes=30)),
    ("P3D", timedelta(days=3)),
    ("P1W", timedelta(weeks=1)),
    ("P1DT12H", timedelta(days=1, hours=12)),
    ("pt45s", timedelta(seconds=45)),
    ("400d", timedelta(days=400)),
])
def test_waits_are_written_short_or_in_iso_8601(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("0s", "longer than zero"),
    ("0h0m", "longer than zero"),
    ("P0D", "longer than zero"),
    ("-1h", "positive"),
    ("1x", "unknown unit 'x'"),
    ("soon", "expected e.g."),
    ("1h30", "expected e.g."),
    ("1.5h", "whole numbers only"),
    ("1h 1h", "given twice"),
    ("401d", "at most 400 days"),
    ("P58W", "at most 400 days"),
    ("PT", "expected e.g."),
    ("P", "no amount of time"),
    ("9" * 65 + "s", "longer than 64 characters"),
])
def test_a_wait_nudge_cannot_honour_is_refused_with_the_reason(text, reason):
    # When a trigger says wait: <text>
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    # Then the error quotes the text and says what is wrong
    assert reason in str(exc.value)
    assert repr(text) in str(exc.value)


@pytest.mark.parametrize("text", ["1mo", "2 months", "1y", "1 year", "P1M", "P1Y", "P1Y2M", "1M"])
def test_months_and_years_are_refused_because_their_length_varies(text):
    with pytest.raises(ValueError, match="months and years are not accepted: their length varies"):
        parse_duration(text)


def test_a_capital_m_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="'M' could mean minutes or months"):
        parse_duration("5M")


@pytest.mark.parametrize("duration, text", [
    (timedelta(seconds=45), "45s"),
    (timedelta(hours=1, minutes=30), "1h30m"),
    (timedelta(hours=36), "1d12h"),
    (timedelta(days=10), "10d"),
    (timedelta(weeks=2), "2w"),
    (timedelta(days=7, hours=12), "7d12h"),
    (timedelta(days=1, seconds=1), "1d1s"),
])
def test_durations_are_written_back_in_one_canonical_form(duration, text):
    assert format_duration(duration) == text


@pytest.mark.parametrize("duration", [timedelta(0), timedelta(seconds=-5), timedelta(milliseconds=1500)])
def test_only_positive_whole_seconds_have_a_short_form(duration):
    with pytest.raises(ValueError):
        format_duration(duration)


@given(st.integers(min_value=1, max_value=400 * 86400))
def test_the_canonical_form_reads_back_as_the_same_duration(seconds):
    duration = timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration


@given(st.fixed_dictionaries({}, optional={unit: st.integers(0, 50) for unit in "wdhms"}).filter(
    lambda parts: parts.get("w", 0) * 7 + parts.get("d", 0) < 400), st.sampled_from(["", " "]))
def test_combined_parts_add_up(parts, separator):
    # Given a wait written as parts, e.g. "1w 2d 3h"
    text = separator.join(f"{count}{unit}" for unit, count in parts.items())
    expected = timedelta(weeks=parts.get("w", 0), days=parts.get("d", 0), hours=parts.get("h", 0),
                         minutes=parts.get("m", 0), seconds=parts.get("s", 0))
    if not text or expected == timedelta(0):
        # Then a wait of nothing is refused
        with pytest.raises(ValueError):
            parse_duration(text)
    else:
        # Then it is the sum of its parts
        assert parse_duration(text) == expected


@given(st.text(max_size=12))
def test_the_time_travel_advance_follows_the_same_rule(text):
    try:
        expected = parse_duration(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_advance(text)
    else:
        assert parse_advance(text) == expected


# -- schedules -------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, expected", [
    ("rate(1 minute)", datetime(2026, 3, 4, 10, 18, tzinfo=UTC)),
    ("rate(5 minutes)", datetime(2026, 3, 4, 10, 20, tzinfo=UTC)),
    ("rate(1 hour)", datetime(2026, 3, 4, 11, 0, tzinfo=UTC)),
    ("rate(1 day)", datetime(2026, 3, 5, 0, 0, tzinfo=UTC)),
    ("rate(7 days)", datetime(2026, 3, 5, 0, 0, tzinfo=UTC)),  # the epoch was a Thursday
])
def test_rates_fire_on_a_grid_counted_from_the_epoch(expression, expected):
    assert parse_schedule(expression).next_after(NOW) == expected


def test_a_rate_may_be_anchored_at_its_rule_creation():
    # Given a rule created at 10:17:30
    schedule = parse_schedule("rate(5 minutes)", NOW)
    # Then it runs every five minutes from then, strictly after the moment asked about
    assert schedule.next_after(NOW) == NOW + timedelta(minutes=5)
    assert schedule.next_after(NOW + timedelta(minutes=5)) == NOW + timedelta(minutes=10)
    assert isinstance(schedule, Rate) and schedule.anchor == NOW


@pytest.mark.parametrize("expression, reason", [
    ("rate(1 minutes)", "write rate(1 minute)"),
    ("rate(5 minute)", "write rate(5 minutes)"),
    ("rate(0 minutes)", "rate value"),
    ("rate(-1 minutes)", "rate value"),
    ("rate(2 weeks)", "rate unit"),
    ("rate(5)", "expected rate(value unit)"),
    ("every day", "expected rate(5 minutes) or cron("),
])
def test_rates_follow_eventbridge_spelling(expression, reason):
    with pytest.raises(ValueError) as exc:
        parse_schedule(expression)
    assert reason in str(exc.value)


@pytest.mark.parametrize("expression, expected", [
    ("cron(0 9 * * ? *)", datetime(2026, 3, 5, 9, 0, tzinfo=UTC)),
    ("cron(30 10 * * ? *)", datetime(2026, 3, 4, 10, 30, tzinfo=UTC)),
    ("cron(*/15 * * * ? *)", datetime(2026, 3, 4, 10, 30, tzinfo=UTC)),
    ("cron(5/20 * * * ? *)", datetime(2026, 3, 4, 10, 25, tzinfo=UTC)),
    ("cron(0 8-10 * * ? *)", datetime(2026, 3, 5, 8, 0, tzinfo=UTC)),
    ("cron(0 9,18 * * ? *)", datetime(2026, 3, 4, 18, 0, tzinfo=UTC)),
    ("cron(0 9 ? * MON-FRI *)", datetime(2026, 3, 5, 9, 0, tzinfo=UTC)),
    ("cron(0 9 ? * SAT,SUN *)", datetime(2026, 3, 7, 9, 0, tzinfo=UTC)),
    ("cron(0 9 ? * 2 *)", datetime(2026, 3, 9, 9, 0, tzinfo=UTC)),  # 2 = Monday
    ("cron(0 9 1 * ? *)", datetime(2026, 4, 1, 9, 0, tzinfo=UTC)),
    ("cron(0 9 1 JAN ? *)", datetime(2027, 1, 1, 9, 0, tzinfo=UTC)),
    ("cron(0 9 1 jul-sep ? *)", datetime(2026, 7, 1, 9, 0, tzinfo=UTC)),
    ("cron(0 0 L * ? *)", datetime(2026, 3, 31, 0, 0, tzinfo=UTC)),
    ("cron(0 0 L FEB ? *)", datetime(2027, 2, 28, 0, 0, tzinfo=UTC)),
    ("cron(0 0 29 FEB ? *)", datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
    ("cron(0 0 15W * ? *)", datetime(2026, 3, 16, 0, 0, tzinfo=UTC)),  # the 15th is a Sunday
    ("cron(0 0 1W AUG ? *)", datetime(2026, 8, 3, 0, 0, tzinfo=UTC)),  # the 1st is a Saturday: not July
    ("cron(0 0 LW MAY ? *)", datetime(2026, 5, 29, 0, 0, tzinfo=UTC)),  # the 31st is a Sunday
    ("cron(0 0 ? * 6L *)", datetime(2026, 3, 27, 0, 0, tzinfo=UTC)),  # the last Friday
    ("cron(0 0 ? * 2#1 *)", datetime(2026, 4, 6, 0, 0, tzinfo=UTC)),  # the first Monday
    ("cron(0 0 ? * MON#5 *)", datetime(2026, 3, 30, 0, 0, tzinfo=UTC)),
    ("cron(0 0 ? * L *)", datetime(2026, 3, 7, 0, 0, tzinfo=UTC)),  # the last day of the week
    ("cron(0 12 1 1 ? 2030)", datetime(2030, 1, 1, 12, 0, tzinfo=UTC)),
    ("cron(0 12 1 1 ? 2020-2025)", None),
    ("cron(0 0 31 APR ? *)", None),
])
def test_cron_expressions_read_as_eventbridge_reads_them(expression, expected):
    # Given Wednesday 4 March 2026, 10:17:30 UTC
    # Then the next run is
    assert parse_schedule(expression).next_after(NOW) == expected


def test_a_cron_run_is_strictly_after_the_moment():
    schedule = parse_schedule("cron(0 9 * * ? *)")
    assert schedule.next_after(datetime(2026, 3, 4, 9, 0, tzinfo=UTC)) == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    assert schedule.next_after(datetime(2026, 3, 4, 8, 59, 59, tzinfo=UTC)) == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


def test_moments_in_other_zones_are_read_as_the_same_instant():
    # Given 11:17:30 in Berlin, which is 10:17:30 UTC
    berlin = NOW.astimezone(timezone(timedelta(hours=1)))
    assert parse_schedule("cron(30 10 * * ? *)").next_after(berlin) == datetime(2026, 3, 4, 10, 30, tzinfo=UTC)


def test_a_moment_without_a_zone_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("rate(1 hour)").next_after(datetime(2026, 3, 4, 10, 0))


@pytest.mark.parametrize("expression, field", [
    ("cron(0 9 * * *)", "cron 'cron(0 9 * * *)': expected six fields"),
    ("cron(60 9 * * ? *)", "cron minutes:"),
    ("cron(0 24 * * ? *)", "cron hours:"),
    ("cron(0 9 32 * ? *)", "cron day-of-month:"),
    ("cron(0 9 5-1 * ? *)", "cron day-of-month:"),
    ("cron(0 9 0W * ? *)", "cron day-of-month:"),
    ("cron(0 9 1 13 ? *)", "cron month:"),
    ("cron(0 9 1 FOO ? *)", "cron month:"),
    ("cron(0 9 ? * 8 *)", "cron day-of-week:"),
    ("cron(0 9 ? * FUNDAY *)", "cron day-of-week:"),
    ("cron(0 9 ? * MON/2 *)", "cron day-of-week:"),
    ("cron(0 9 ? * 2#6 *)", "cron day-of-week:"),
    ("cron(0 9 * * * *)", "cron day-of-week:"),
    ("cron(0 9 ? * ? *)", "cron day-of-week:"),
    ("cron(0 9 1 * ? 1969)", "cron year:"),
    ("cron(*/0 9 1 * ? *)", "cron minutes:"),
    ("cron(? 9 1 * ? *)", "cron minutes:"),
])
def test_a_broken_cron_expression_names_its_field(expression, field):
    with pytest.raises(ValueError) as exc:
        parse_schedule(expression)
    assert str(exc.value).startswith(field)


def test_one_of_the_day_fields_must_be_a_question_mark():
    with pytest.raises(ValueError, match="exactly one of day-of-month and day-of-week must be '\\?'"):
        parse_schedule("cron(0 9 * * MON *)")


WEEKDAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@settings(max_examples=40, deadline=None)
@given(
    minutes=st.sets(st.integers(0, 59), min_size=1, max_size=3),
    hours=st.sets(st.integers(0, 23), min_size=1, max_size=3),
    weekdays=st.sets(st.integers(1, 7), min_size=1, max_size=3),
    moment=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
)
def test_the_next_cron_run_is_the_first_matching_minute(minutes, hours, weekdays, moment):
    # Given a weekly broadcast, e.g. cron(5,35 9 ? * MON,THU *)
    expression = "cron({} {} ? * {} *)".format(
        ",".join(map(str, sorted(minutes))), ",".join(map(str, sorted(hours))),
        ",".join(WEEKDAY_NAMES[d - 1] for d in sorted(weekdays)))
    schedule = parse_schedule(expression)
    assert isinstance(schedule, Cron)

    def matches(at: datetime) -> bool:
        return at.minute in minutes and at.hour in hours and (at.weekday() + 1) % 7 + 1 in weekdays

    # When the next run is asked for
    run = schedule.next_after(moment)
    # Then it is the first whole minute after the moment that matches, minute by minute
    at = (moment + timedelta(minutes=1)).replace(second=0, microsecond=0)
    while not matches(at):
        at += timedelta(minutes=1)
    assert run == at


@given(st.integers(1, 60 * 24 * 10), st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                                                   timezones=st.just(UTC)))
def test_a_rate_runs_within_one_period_on_its_grid(minutes, moment):
    unit = "minute" if minutes == 1 else "minutes"
    run = parse_schedule(f"rate({minutes} {unit})").next_after(moment)
    assert moment < run <= moment + timedelta(minutes=minutes)
    assert (run - EPOCH) % timedelta(minutes=minutes) == timedelta(0)

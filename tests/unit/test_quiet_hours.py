"""Quiet hours: messages go out only when it is a decent hour where the recipient lives."""
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.quiet_hours import (
    DEFAULT_WINDOWS, AllowedWindow, local_to_utc, next_allowed, recipient_zone, window_for,
)

UTC = timezone.utc
SMS = DEFAULT_WINDOWS["sms"]
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_sms_may_go_out_between_8_and_21_and_email_at_any_time():
    assert window_for("sms") == AllowedWindow(time(8, 0), time(21, 0))
    assert window_for("email") is None
    assert window_for("webhook") is None


def test_windows_are_configurable_per_channel():
    # Given a sender whose SMS may go out 09:00-20:00 and whose emails respect quiet hours too
    overrides = {"sms": AllowedWindow.parse("09:00-20:00"), "email": AllowedWindow.parse("07:00-22:00")}
    assert window_for("sms", overrides) == AllowedWindow(time(9), time(20))
    assert window_for("email", overrides) == AllowedWindow(time(7), time(22))
    # And one who switches SMS quiet hours off
    assert window_for("sms", {"sms": None}) is None


def test_quiet_hours_can_be_written_as_the_time_to_keep_quiet():
    assert AllowedWindow.outside_quiet_hours(time(21), time(8)) == SMS


@pytest.mark.parametrize("start, end", [
    (time(8), time(8)),
    (time(8, 0, 30), time(21)),
    (time(8, tzinfo=UTC), time(21)),
])
def test_a_window_is_two_different_local_whole_minutes(start, end):
    with pytest.raises(ValueError):
        AllowedWindow(start, end)


@pytest.mark.parametrize("text", ["8-21", "08:00", "08:00-08:00", "morning-evening"])
def test_a_window_setting_that_cannot_be_read_is_refused(text):
    with pytest.raises(ValueError, match="expected HH:MM-HH:MM"):
        AllowedWindow.parse(text)


def test_a_message_inside_the_window_goes_now():
    # Given 12:00 in Berlin
    now = utc(2026, 6, 10, 10, 0)
    # Then an SMS may go out now
    assert next_allowed(now, "Europe/Berlin", SMS, "UTC") == now


def test_an_early_sms_waits_for_8_local():
    # Given 06:30 in Berlin (summer, UTC+2)
    now = utc(2026, 6, 10, 4, 30)
    # Then the SMS waits until 08:00 Berlin time
    assert next_allowed(now, "Europe/Berlin", SMS, "UTC") == utc(2026, 6, 10, 6, 0)


def test_a_late_sms_waits_for_8_the_next_morning():
    # Given 21:00 exactly in New York (summer, UTC-4): the window has closed
    now = utc(2026, 6, 11, 1, 0)
    assert next_allowed(now, "America/New_York", SMS, "UTC") == utc(2026, 6, 11, 12, 0)


def test_the_same_instant_is_allowed_in_one_zone_and_not_in_another():
    # Given 14:00 UTC: 16:00 in Berlin, midnight in Sydney
    now = utc(2026, 6, 10, 14, 0)
    assert next_allowed(now, "Europe/Berlin", SMS, "UTC") == now
    assert next_allowed(now, "Australia/Sydney", SMS, "UTC") == utc(2026, 6, 10, 22, 0)


def test_email_is_never_held_back():
    now = utc(2026, 6, 10, 1, 0)
    assert next_allowed(now, "Europe/Berlin", window_for("email"), "UTC") == now


def test_a_window_may_wrap_midnight():
    # Given a night-shift window 22:00-06:00 in UTC
    night = AllowedWindow(time(22), time(6))
    assert next_allowed(utc(2026, 6, 10, 23, 0), "UTC", night, "UTC") == utc(2026, 6, 10, 23, 0)
    assert next_allowed(utc(2026, 6, 10, 3, 0), "UTC", night, "UTC") == utc(2026, 6, 10, 3, 0)
    assert next_allowed(utc(2026, 6, 10, 6, 0), "UTC", night, "UTC") == utc(2026, 6, 10, 22, 0)


@pytest.mark.parametrize("tz_name", [None, "", "Mars/Olympus_Mons", "../etc/passwd", 42])
def test_a_missing_or_unknown_zone_falls_back_to_the_senders(tz_name):
    # Given 06:30 UTC, 07:30 in London (summer)
    now = utc(2026, 6, 10, 6, 30)
    # Then an unknown recipient zone is read as the fallback, London
    assert next_allowed(now, tz_name, SMS, "Europe/London") == utc(2026, 6, 10, 7, 0)


def test_an_unknown_fallback_zone_is_a_configuration_error():
    with pytest.raises(ValueError, match="fallback time zone"):
        recipient_zone("Europe/Berlin", "Nowhere/Special")


def test_now_must_carry_a_zone():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed(datetime(2026, 6, 10, 12, 0), "UTC", SMS, "UTC")


# -- daylight saving: Berlin 29 Mar / 25 Oct 2026 at 01:00 UTC; New York 8 Mar / 1 Nov 2026 ---------

@pytest.mark.parametrize("now, tz_name, expected", [
    # Berlin springs forward 02:00 -> 03:00: 08:00 is already summer time
    (utc(2026, 3, 29, 0, 30), "Europe/Berlin", utc(2026, 3, 29, 6, 0)),
    # Berlin falls back 03:00 -> 02:00: 08:00 is winter time again
    (utc(2026, 10, 25, 0, 30), "Europe/Berlin", utc(2026, 10, 25, 7, 0)),
    # New York springs forward 02:00 -> 03:00
    (utc(2026, 3, 8, 6, 0), "America/New_York", utc(2026, 3, 8, 12, 0)),
    # New York falls back 02:00 -> 01:00
    (utc(2026, 11, 1, 5, 30), "America/New_York", utc(2026, 11, 1, 13, 0)),
])
def test_on_the_days_clocks_change_sms_still_waits_for_8_local(now, tz_name, expected):
    assert next_allowed(now, tz_name, SMS, "UTC") == expected
    assert expected.astimezone(ZoneInfo(tz_name)).time() == time(8, 0)


def test_a_window_opening_in_the_skipped_hour_opens_at_the_jump():
    # Given a window from 02:30, and Berlin's clocks jumping from 02:00 to 03:00
    window = AllowedWindow(time(2, 30), time(9))
    # When asked at 23:00 the night before
    answer = next_allowed(utc(2026, 3, 28, 22, 0), "Europe/Berlin", window, "UTC")
    # Then it opens at 03:00 summer time, the first valid local time after 02:30
    assert answer == utc(2026, 3, 29, 1, 0)
    assert answer.astimezone(BERLIN).time() == time(3, 0)


def test_a_window_wholly_inside_the_skipped_hour_does_not_open_that_day():
    window = AllowedWindow(time(2, 10), time(2, 50))
    # Given 02:50 on the Saturday, just closed
    answer = next_allowed(utc(2026, 3, 28, 1, 50), "Europe/Berlin", window, "UTC")
    # Then Sunday has no 02:10 to 02:50, so the window opens again on Monday
    assert answer == utc(2026, 3, 30, 0, 10)


def test_a_repeated_hour_inside_the_window_is_allowed_both_times():
    # Given a window 00:30-01:30 and New York's clocks going back from 02:00 to 01:00
    window = AllowedWindow(time(0, 30), time(1, 30))
    # When asked at 01:45 summer time, outside the window
    answer = next_allowed(utc(2026, 11, 1, 5, 45), "America/New_York", window, "UTC")
    # Then the window opens again when the clocks read 01:00 for the second time
    assert answer == utc(2026, 11, 1, 6, 0)
    assert answer.astimezone(NEW_YORK).time() == time(1, 0)


@pytest.mark.parametrize("local, zone, expected", [
    (datetime(2026, 3, 29, 2, 30), BERLIN, utc(2026, 3, 29, 1, 0)),    # skipped: 03:00 CEST
    (datetime(2026, 10, 25, 2, 30), BERLIN, utc(2026, 10, 25, 0, 30)),  # twice: the first, CEST
    (datetime(2026, 3, 8, 2, 30), NEW_YORK, utc(2026, 3, 8, 7, 0)),     # skipped: 03:00 EDT
    (datetime(2026, 11, 1, 1, 30), NEW_YORK, utc(2026, 11, 1, 5, 30)),  # twice: the first, EDT
    (datetime(2026, 6, 10, 9, 0), BERLIN, utc(2026, 6, 10, 7, 0)),
    (datetime(2011, 12, 30, 9, 0), ZoneInfo("Pacific/Apia"), utc(2011, 12, 30, 10, 0)),  # a skipped day
])
def test_local_wall_times_become_instants(local, zone, expected):
    assert local_to_utc(local, zone) == expected


# -- properties --------------------------------------------------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
CLOCK_CHANGES = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6),
                 utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)]  # the last two: Lord Howe, half an hour
moments = st.one_of(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)),
    st.builds(lambda change, seconds: change + timedelta(seconds=seconds),
              st.sampled_from(CLOCK_CHANGES), st.integers(-2 * 86400, 2 * 86400)),
)


@st.composite
def windows(draw, min_minutes: int = 1) -> AllowedWindow:
    start = draw(st.integers(0, 1439))
    length = draw(st.integers(min_minutes, 1439))
    end = (start + length) % 1440
    return AllowedWindow(time(start // 60, start % 60), time(end // 60, end % 60))


def local_time(instant: datetime, tz_name: str) -> time:
    return instant.astimezone(ZoneInfo(tz_name)).time()


@settings(max_examples=300, deadline=None)
@given(now=moments, tz_name=st.sampled_from(ZONES), window=windows())
def test_the_answer_is_never_before_now_and_always_inside_the_window(now, tz_name, window):
    answer = next_allowed(now, tz_name, window, "UTC")
    assert answer >= now
    assert window.contains(local_time(answer, tz_name))
    if window.contains(local_time(now, tz_name)):
        assert answer == now


@settings(max_examples=300, deadline=None)
@given(now=moments, tz_name=st.sampled_from(ZONES), window=windows(min_minutes=61))
def test_a_window_longer_than_a_clock_change_opens_within_a_day_and_an_hour(now, tz_name, window):
    assert next_allowed(now, tz_name, window, "UTC") - now <= timedelta(hours=25)


@settings(max_examples=150, deadline=None)
@given(now=moments, tz_name=st.sampled_from(ZONES), window=windows())
def test_the_answer_is_the_first_allowed_minute_checked_minute_by_minute(now, tz_name, window):
    # Then walking the recipient's clock a minute at a time finds the same instant
    answer = next_allowed(now, tz_name, window, "UTC")
    if window.contains(local_time(now, tz_name)):
        assert answer == now
        return
    at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while not window.contains(local_time(at, tz_name)):
        at += timedelta(minutes=1)
    assert answer == at

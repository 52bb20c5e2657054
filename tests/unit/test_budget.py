"""The fatigue budget's rules: slots in a sliding window, priorities, expiry."""
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.budget import Limit, parse_budget, release, reserve

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
WEEK = Limit(3, timedelta(days=7))


def take(state, key, at, priority=5, expires=None, limit=WEEK):
    return reserve(state, limit, key, priority, expires, at)


def test_three_in_seven_days_then_the_fourth_waits_for_the_oldest_to_leave_the_window():
    state = {}
    for day, key in enumerate(("a", "b", "c")):
        state, outcome = take(state, key, T0 + timedelta(days=day))
        assert outcome.kind == "granted"
    state, outcome = take(state, "d", T0 + timedelta(days=3))
    assert outcome.kind == "wait" and outcome.until == T0 + timedelta(days=7)
    state, outcome = take(state, "d", T0 + timedelta(days=7))
    assert outcome.kind == "granted"


def test_asking_again_for_a_granted_message_takes_no_second_slot():
    state, _ = take({}, "a", T0)
    again, outcome = take(state, "a", T0 + timedelta(minutes=1))
    assert outcome.kind == "granted" and len(again["slots"]) == 1


def test_a_higher_priority_message_gets_the_freed_slot_first():
    limit = Limit(1, timedelta(days=1))
    state, _ = take({}, "sent", T0, limit=limit)
    state, low = take(state, "low", T0 + timedelta(hours=1), priority=2, limit=limit)
    state, high = take(state, "high", T0 + timedelta(hours=2), priority=9, limit=limit)
    assert low.kind == high.kind == "wait"
    # When the slot frees, the low-priority message finds the high one ahead of it
    state, low_again = take(state, "low", T0 + timedelta(days=1), priority=2, limit=limit)
    assert low_again.kind == "wait" and "ahead" in low_again.reason
    state, high_again = take(state, "high", T0 + timedelta(days=1), priority=9, limit=limit)
    assert high_again.kind == "granted"
    assert low_again.until == T0 + timedelta(days=2)


def test_a_message_whose_slot_frees_after_its_expiry_is_dropped():
    limit = Limit(1, timedelta(days=7))
    state, _ = take({}, "sent", T0, limit=limit)
    state, outcome = take(state, "late", T0 + timedelta(days=1), expires=T0 + timedelta(days=3), limit=limit)
    assert outcome.kind == "drop" and "expiry" in outcome.reason
    assert state["waiting"] == []


def test_released_slots_are_free_again():
    state, _ = take({}, "a", T0, limit=Limit(1, timedelta(days=1)))
    state = release(state, "a")
    _, outcome = take(state, "b", T0, limit=Limit(1, timedelta(days=1)))
    assert outcome.kind == "granted"


def test_configuration_names_channels_and_can_lift_a_cap():
    limits = parse_budget("email=5/1d,sms=off,push=2/12h")
    assert limits["email"] == Limit(5, timedelta(days=1))
    assert limits["sms"] is None
    assert limits["push"] == Limit(2, timedelta(hours=12))
    assert parse_budget("")["email"] == Limit(3, timedelta(days=7))


@pytest.mark.parametrize("raw", ["email", "email=0/1d", "email=3", "email=x/1d", "email=3/soon"])
def test_bad_configuration_is_refused_naming_the_part(raw):
    with pytest.raises(ValueError, match="fatigue budget"):
        parse_budget(raw)

"""How a person's profile is folded from their events."""
from datetime import datetime, timezone

from chalicelib.profiles import apply_events, merge, new_profile
from chalicelib.segment import parse_call

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def call(kind, body, minute=0):
    return parse_call(kind, {"timestamp": T0.replace(minute=minute).isoformat(), **body}, T0, 32 * 1024)


def test_traits_merge_and_later_identify_wins():
    profile = apply_events(new_profile("user:u1"), [
        call("identify", {"userId": "u1", "traits": {"plan": "free", "email": "a@x.io"}}, minute=1),
        call("identify", {"userId": "u1", "traits": {"plan": "pro"}}, minute=5),
    ])
    assert profile.traits == {"plan": "pro", "email": "a@x.io"}


def test_events_are_applied_in_time_order_even_if_they_arrive_out_of_order():
    late_first = [call("identify", {"userId": "u1", "traits": {"plan": "pro"}}, minute=5),
                  call("identify", {"userId": "u1", "traits": {"plan": "free"}}, minute=1)]
    assert apply_events(new_profile("user:u1"), late_first).traits["plan"] == "pro"


def test_counts_first_and_last_seen_per_event_name():
    profile = apply_events(new_profile("user:u1"), [
        call("track", {"userId": "u1", "event": "Viewed Pricing"}, minute=2),
        call("track", {"userId": "u1", "event": "Viewed Pricing"}, minute=7),
        call("page", {"userId": "u1", "name": "Home"}, minute=1),
    ])
    assert profile.counters["Viewed Pricing"].count == 2
    assert profile.counters["Viewed Pricing"].last == "2026-12-01T09:07:00.000Z"
    assert profile.counters["page"].count == 1
    assert profile.first_seen == "2026-12-01T09:01:00.000Z"
    assert profile.last_seen == "2026-12-01T09:07:00.000Z"


def test_time_zone_comes_from_traits_then_context_and_ignores_unknown_zones():
    from_context = apply_events(new_profile("user:u1"), [
        call("track", {"userId": "u1", "event": "A", "context": {"timezone": "America/Chicago"}})])
    assert from_context.timezone == "America/Chicago"
    from_traits = apply_events(from_context, [
        call("identify", {"userId": "u1", "traits": {"timezone": "Europe/Berlin"}})])
    assert from_traits.timezone == "Europe/Berlin"
    bogus = apply_events(from_traits, [
        call("track", {"userId": "u1", "event": "A", "context": {"timezone": "Mars/Olympus"}})])
    assert bogus.timezone == "Europe/Berlin"


def test_merging_an_anonymous_profile_keeps_user_traits_and_adds_counts():
    anonymous = apply_events(new_profile("anon:a1"), [
        call("page", {"anonymousId": "a1", "name": "Pricing"}, minute=1),
        call("identify", {"anonymousId": "a1", "traits": {"utm": "ad", "plan": "trial"}}, minute=2)])
    user = apply_events(new_profile("user:u1"), [
        call("page", {"userId": "u1", "name": "Pricing"}, minute=9),
        call("identify", {"userId": "u1", "traits": {"plan": "pro"}}, minute=9)])
    merged = merge(user, anonymous)
    assert merged.traits == {"utm": "ad", "plan": "pro"}
    assert merged.counters["page"].count == 2
    assert merged.first_seen == "2026-12-01T09:01:00.000Z"
    assert merged.anonymous_ids == ("a1",)
    assert merged.profile_id == "user:u1"


def test_group_calls_keep_traits_per_group():
    profile = apply_events(new_profile("user:u1"), [
        call("group", {"userId": "u1", "groupId": "acme", "traits": {"seats": 10}}),
        call("group", {"userId": "u1", "groupId": "acme", "traits": {"plan": "team"}}, minute=3)])
    assert profile.groups == {"acme": {"seats": 10, "plan": "team"}}

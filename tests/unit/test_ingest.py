"""The ingest use case over in-memory stores: stored once, folded once, per person."""
from datetime import datetime, timezone

from chalicelib.ingest import ingest
from chalicelib.segment import parse_batch, parse_call
from tests.fakes import MemoryEventLog, MemoryProfileStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
LIMIT = 32 * 1024


def track(user="u1", event="Order Completed", message_id=None, **extra):
    body = {"userId": user, "event": event, "timestamp": "2026-12-02T11:00:00Z", **extra}
    if message_id:
        body["messageId"] = message_id
    return parse_call("track", body, NOW, LIMIT)


def test_a_repeated_message_is_stored_and_counted_once():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    first = ingest([track(message_id="m1")], log, profiles)
    again = ingest([track(message_id="m1")], log, profiles)
    assert (first.accepted, again.accepted, again.duplicates) == (1, 0, 1)
    assert len(log.items) == 1
    assert profiles.get("user:u1").counters["Order Completed"].count == 1


def test_a_repeated_message_without_client_timestamp_is_still_stored_once():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    body = {"userId": "u1", "event": "X", "messageId": "m9"}
    ingest([parse_call("track", body, NOW, LIMIT)], log, profiles)
    later = NOW.replace(minute=5)
    result = ingest([parse_call("track", body, later, LIMIT)], log, profiles)
    assert result.duplicates == 1 and len(log.items) == 1


def test_a_batch_from_one_person_writes_their_profile_once():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    events = [track(message_id=f"m{i}") for i in range(100)]
    result = ingest(events, log, profiles)
    assert result.accepted == 100
    assert profiles.writes == 1
    assert profiles.get("user:u1").counters["Order Completed"].count == 100


def test_events_before_login_belong_to_the_person_afterwards():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    # Given an anonymous visitor who viewed pricing
    ingest([parse_call("page", {"anonymousId": "a1", "name": "Pricing"}, NOW, LIMIT)], log, profiles)
    assert profiles.get("anon:a1") is not None
    # When they sign in
    ingest([parse_call("identify", {"anonymousId": "a1", "userId": "u1", "traits": {"email": "p@x.io"}},
                       NOW, LIMIT)], log, profiles)
    # Then the pricing view is theirs and the anonymous profile is gone
    person = profiles.get("user:u1")
    assert person.counters["page"].count == 1 and person.traits["email"] == "p@x.io"
    assert profiles.get("anon:a1") is None
    # And later anonymous events from that device go to the person too
    ingest([parse_call("track", {"anonymousId": "a1", "event": "Cart Viewed"}, NOW, LIMIT)], log, profiles)
    assert profiles.get("user:u1").counters["Cart Viewed"].count == 1
    assert profiles.get("anon:a1") is None


def test_alias_links_the_previous_id():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    ingest([parse_call("track", {"anonymousId": "old", "event": "Visited"}, NOW, LIMIT)], log, profiles)
    ingest([parse_call("alias", {"previousId": "old", "userId": "u7"}, NOW, LIMIT)], log, profiles)
    assert profiles.get("user:u7").counters["Visited"].count == 1
    assert profiles.resolve(["old"]) == {"old": "u7"}


def test_a_batch_that_identifies_midway_sends_earlier_anonymous_calls_to_the_person():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    events = parse_batch({"batch": [
        {"type": "page", "anonymousId": "a2", "name": "Pricing"},
        {"type": "identify", "anonymousId": "a2", "userId": "u2"}]}, NOW, LIMIT)
    result = ingest(events, log, profiles)
    assert result.profiles == ("user:u2",)
    assert profiles.get("anon:a2") is None


def test_a_lost_race_on_the_profile_is_retried_without_losing_the_update():
    log, profiles = MemoryEventLog(), MemoryProfileStore()
    profiles.conflicts.append("user:u1")
    ingest([track(message_id="m1")], log, profiles)
    assert profiles.get("user:u1").counters["Order Completed"].count == 1

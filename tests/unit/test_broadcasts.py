"""Scheduled broadcasts: the definition's rules, the audience, when a run is due,
and a run carried out page by page through the sweep, one message per person."""
from datetime import datetime, timezone

import pytest

from chalicelib import broadcasts
from chalicelib.broadcasts import due_run, fire_page, occurrence, page_decisions, profile_shard, run_timers
from chalicelib.profiles import Profile
from chalicelib.sweep import sweep
from chalicelib.templates import InvalidDefinition
from chalicelib.triggers import BROADCAST_KEY, parse_trigger
from tests.fakes import (MemoryBroadcastRuns, MemoryDecisionLog, MemoryDefinitions, MemoryProfileStore,
                         MemorySendQueue, MemoryTimers)

UTC = timezone.utc
EMAIL = {"email": {"template": "offer", "from": "Shop <hello@example.com>"}}
HAS_EMAIL = {"profile": {"traits": {"email": [{"exists": True}]}}}


def broadcast(when=None, **extra):
    doc = {"id": extra.pop("id", "holiday"), "category": "marketing", "topic": "offers",
           "when": when or {"schedule": "cron(0 9 24 12 ? *)", "audience": HAS_EMAIL}, "then": [EMAIL], **extra}
    return parse_trigger(doc, templates=None, origin="test")


def problems(doc):
    with pytest.raises(InvalidDefinition) as caught:
        parse_trigger(doc, templates=None, origin="test")
    return {p.field: p.rule for p in caught.value.problems}


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def person(name, **traits):
    return Profile(profile_id=f"user:{name}", user_id=name, traits=traits)


def test_a_broadcast_is_indexed_under_its_reserved_key_with_its_schedule_and_audience():
    trigger = broadcast()
    assert trigger.event_key == BROADCAST_KEY == "@broadcast"
    assert trigger.schedule.next_after(utc(2026, 12, 2)) == utc(2026, 12, 24, 9)
    assert trigger.match_source == HAS_EMAIL
    assert broadcast({"schedule": "rate(7 days)"}).match is None  # no audience: everyone


@pytest.mark.parametrize("schedule, reason", [
    ("cron(0 9 24 12 * *)", "cron"),
    ("rate(0 days)", "rate"),
    ("every tuesday", "expected rate(5 minutes) or cron"),
    (7, "must be a schedule"),
])
def test_an_invalid_schedule_is_refused_with_the_field_and_reason(schedule, reason):
    found = problems({"id": "b", "category": "marketing", "topic": "offers", "when": {"schedule": schedule}, "then": [EMAIL]})
    assert list(found) == ["when.schedule"] and reason in found["when.schedule"]


def test_the_audience_is_a_pattern_over_the_profile_only():
    found = problems({"id": "b", "category": "marketing", "topic": "offers", "then": [EMAIL],
                      "when": {"schedule": "rate(1 day)", "audience": {"event": {"type": ["track"]}}}})
    assert list(found) == ["when.audience.event"] and "profile" in found["when.audience.event"]
    found = problems({"id": "b", "category": "marketing", "topic": "offers", "then": [EMAIL],
                      "when": {"schedule": "rate(1 day)", "audience": {"profile": {"traits": {"x": "bare"}}}}})
    assert list(found) == ["when.audience"]
    found = problems({"id": "b", "category": "marketing", "topic": "offers", "then": [EMAIL],
                      "when": {"event": "Signed Up", "audience": HAS_EMAIL}})
    assert list(found) == ["when.audience"]


@pytest.mark.parametrize("extra, field", [
    ({"wait": "1h"}, "wait"),
    ({"wait": "1h", "unless": {"event": "Order Completed"}}, "unless"),
    ({"exit": {"event": "Upgraded"}}, "exit"),
])
def test_waits_unless_and_exit_are_refused_for_broadcasts(extra, field):
    found = problems({"id": "b", "category": "marketing", "topic": "offers", "when": {"schedule": "rate(1 day)"}, "then": [EMAIL],
                      **extra})
    assert field in found and "broadcasts" in found[field]


def test_steps_and_counts_are_refused_for_broadcasts():
    found = problems({"id": "b", "category": "marketing", "topic": "offers", "when": {"schedule": "rate(1 day)"},
                      "steps": [{"then": [EMAIL]}]})
    assert "broadcasts" in found["steps"]
    found = problems({"id": "b", "category": "marketing", "topic": "offers", "then": [EMAIL],
                      "when": {"schedule": "rate(1 day)", "count": {"at_least": 2, "within": "1d"}}})
    assert "broadcasts" in found["when.count"]


def test_the_audience_matches_against_the_profile():
    trigger = broadcast()
    decisions, matched = page_decisions(trigger, "2026-12-24T09:00:00.000Z",
                                        [person("ana", email="ana@example.org"), person("bo"),
                                         person("cy", email="cy@example.org")])
    assert matched == 2 and [d.profile_id for d in decisions] == ["user:ana", "user:cy"]
    everyone, matched = page_decisions(broadcast({"schedule": "rate(1 day)"}), "2026-12-24T00:00:00.000Z",
                                       [person("ana"), person("bo")])
    assert matched == 2 and len(everyone) == 2


def test_a_run_is_one_occurrence_per_trigger_and_run_time():
    [decision] = page_decisions(broadcast(), "2026-12-24T09:00:00.000Z", [person("ana", email="a@example.org")])[0]
    assert decision.occurrence == occurrence("holiday", "2026-12-24T09:00:00.000Z") == "holiday@2026-12-24T09:00:00.000Z"
    assert decision.ledger_key == "holiday#holiday@2026-12-24T09:00:00.000Z#0"
    assert decision.event["type"] == "broadcast" and decision.event["timestamp"] == "2026-12-24T09:00:00.000Z"
    next_year = page_decisions(broadcast(), "2027-12-24T09:00:00.000Z", [person("ana", email="a@example.org")])[0]
    assert next_year[0].ledger_key != decision.ledger_key


def test_the_due_run_is_the_latest_after_the_last_one_and_not_after_now():
    trigger = broadcast()
    assert due_run(trigger, utc(2026, 12, 2), utc(2026, 12, 24, 8, 59)) is None
    assert due_run(trigger, utc(2026, 12, 2), utc(2026, 12, 24, 9)) == utc(2026, 12, 24, 9)
    assert due_run(trigger, utc(2026, 12, 24, 9), utc(2027, 1, 5)) is None  # ran this year already
    weekly = broadcast({"schedule": "rate(7 days)"})
    # Three weeks without a sweep: the latest run only, not three.
    start = weekly.schedule.next_after(utc(2026, 12, 2))
    assert due_run(weekly, utc(2026, 12, 2), start) == start
    assert due_run(weekly, start, start + (weekly.schedule.period * 3)) == start + weekly.schedule.period * 3


def test_profiles_have_a_fixed_shard_among_sixteen():
    shards = {profile_shard(f"user:{n}") for n in range(500)}
    assert shards == {str(n) for n in range(16)}
    assert profile_shard("user:ana") == profile_shard("user:ana")


def test_a_run_has_one_timer_per_shard_and_pages_until_the_shard_is_done():
    trigger = broadcast()
    timers = run_timers(trigger, "2026-12-24T09:00:00.000Z")
    assert [t.step for t in timers] == list(range(16)) and len({t.id for t in timers}) == 16
    store = MemoryProfileStore()
    names = [f"p{n}" for n in range(400)]
    for name in names:
        store.profiles[f"user:{name}"] = person(name, email=f"{name}@example.org")
    shard = profile_shard("user:p0")
    in_shard = sorted(p for p in store.profiles if profile_shard(p) == shard)
    timer = timers[int(shard)]
    seen = []
    while True:
        firing, tally = fire_page(timer, trigger, store, limit=10)
        seen += [d.profile_id for d in firing.decisions]
        if not firing.next_timers:
            assert tally.done == 1
            break
        assert tally.done == 0
        [timer] = firing.next_timers
        assert timer.due == "2026-12-24T09:00:00.000Z" and timer.cursor
    assert seen == in_shard


def test_the_sweep_starts_a_run_once_and_sends_once_per_person():
    trigger = broadcast()
    store = MemoryProfileStore()
    for name, traits in (("ana", {"email": "ana@example.org"}), ("bo", {}), ("cy", {"email": "cy@example.org"})):
        store.profiles[f"user:{name}"] = person(name, **traits)
    timers, queue, runs, log = MemoryTimers(), MemorySendQueue(), MemoryBroadcastRuns(), MemoryDecisionLog()
    definitions = MemoryDefinitions([trigger])

    def at(now):
        return sweep(now, timers=timers, profiles=store, triggers=definitions, decisions=log, queue=queue,
                     runs=runs)

    at(utc(2026, 12, 2))  # first seen
    assert at(utc(2026, 12, 24, 8, 59)).due == 0
    result = at(utc(2026, 12, 24, 9, 0, 30))
    assert result.due == 16
    assert sorted(d.profile_id for d in queue.decisions) == ["user:ana", "user:cy"]
    [run] = runs.runs("holiday", 10)
    assert run["counts"] == {"profiles": 3, "matched": 2, "queued": 2, "done": 16}
    assert at(utc(2026, 12, 25)).due == 0 and len(queue.decisions) == 2  # nothing more this year
    at(utc(2027, 12, 24, 9, 1))
    assert len(queue.decisions) == 4 and len(runs.runs("holiday", 10)) == 2


def test_a_deleted_or_disabled_broadcast_stops_its_run():
    [timer] = run_timers(broadcast(), "2026-12-24T09:00:00.000Z")[:1]
    firing, tally = fire_page(timer, None, MemoryProfileStore())
    assert not firing.decisions and tally is None and "deleted" in firing.reason
    firing, _ = fire_page(timer, broadcast(enabled=False), MemoryProfileStore())
    assert "disabled" in firing.reason


def test_shards_cover_what_the_module_says():
    assert broadcasts.SHARDS == 16 and broadcasts.PAGE == 100

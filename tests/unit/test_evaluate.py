"""Which triggers an event sets off, and the recorded reason for the others."""
from datetime import datetime, timezone

from chalicelib.arrivals import MAX_HOPS, on_arrival
from chalicelib.evaluate import evaluate
from chalicelib.profiles import new_profile
from chalicelib.segment import parse_call
from chalicelib.triggers import parse_trigger
from tests.fakes import MemoryDecisionLog, MemoryDefinitions, MemoryProfileStore, MemorySendQueue, MemoryTimers

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def trig(trigger_id, when, **extra):
    doc = {"id": trigger_id, "description": "", "category": "marketing", "topic": "offers", "when": when,
           "then": [{"update_profile": {"set": {"seen": True}}}], **extra}
    return parse_trigger(doc, templates=None, origin="test")


def order(total, **extra):
    return parse_call("track", {"userId": "ana", "event": "Order Completed", "messageId": "o1",
                                "properties": {"total": total}, **extra}, NOW, 32768)


def test_conditions_decide_and_each_verdict_says_why():
    big = trig("big-order", {"event": "Order Completed",
                             "match": {"event": {"properties": {"total": [{"numeric": [">=", 100]}]}}}})
    any_order = trig("any-order", {"event": "Order Completed"})
    off = trig("paused", {"event": "Order Completed"}, enabled=False)
    result = evaluate(order(40), new_profile("user:ana"), [big, any_order, off])
    verdicts = {v.trigger_id: (v.matched, v.reason) for v in result.verdicts}
    assert verdicts == {"any-order": (True, "matched"), "big-order": (False, "condition did not match"),
                        "paused": (False, "trigger is disabled")}
    assert [d.trigger_id for d in result.decisions] == ["any-order"]


def test_conditions_see_the_profile():
    vip = trig("vip", {"event": "Order Completed", "match": {"profile": {"traits": {"tier": ["gold"]}}}})
    profile = new_profile("user:ana")
    assert not evaluate(order(1), profile, [vip]).decisions
    from dataclasses import replace
    assert evaluate(order(1), replace(profile, traits={"tier": "gold"}), [vip]).decisions


def test_each_decision_has_a_stable_ledger_key():
    result = evaluate(order(1), new_profile("user:ana"), [trig("t", {"event": "Order Completed"})])
    again = evaluate(order(1), new_profile("user:ana"), [trig("t", {"event": "Order Completed"})])
    assert [d.ledger_key for d in result.decisions] == [d.ledger_key for d in again.decisions] == ["t#o1#0"]


def test_arrival_records_verdicts_and_queues_decisions_for_the_linked_person():
    profiles, log, queue = MemoryProfileStore(), MemoryDecisionLog(), MemorySendQueue()
    profiles.link("device-1", "ana")
    definitions = MemoryDefinitions(triggers=[trig("pricing", {"type": "page"})])
    page = parse_call("page", {"anonymousId": "device-1", "name": "Pricing"}, NOW, 32768)
    on_arrival([page], profiles=profiles, triggers=definitions, decisions=log, queue=queue, timers=MemoryTimers())
    assert [d.profile_id for d in queue.decisions] == ["user:ana"]
    assert log.evaluations[0][1].verdicts[0].matched


def test_events_no_trigger_listens_for_cost_one_lookup_and_record_nothing():
    profiles, log, queue = MemoryProfileStore(), MemoryDecisionLog(), MemorySendQueue()
    definitions = MemoryDefinitions(triggers=[trig("pricing", {"type": "page"})])
    on_arrival([order(5)], profiles=profiles, triggers=definitions, decisions=log, queue=queue,
               timers=MemoryTimers())
    # One lookup for the event's name, one for the inactivity triggers every event restarts (both cached).
    assert definitions.lookups == 2 and log.evaluations == [] and queue.decisions == []


def test_chains_of_emitted_events_stop():
    profiles, log, queue = MemoryProfileStore(), MemoryDecisionLog(), MemorySendQueue()
    definitions = MemoryDefinitions(triggers=[trig("loop", {"event": "Order Completed"})])
    looping = order(5, context={"nudge": {"hops": MAX_HOPS}})
    on_arrival([looping], profiles=profiles, triggers=definitions, decisions=log, queue=queue,
               timers=MemoryTimers())
    assert queue.decisions == []

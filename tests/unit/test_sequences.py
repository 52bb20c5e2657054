"""Sequences, counts within a window, and re-entry: the welcome series and the
lead who keeps coming back to the pricing page."""
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.arrivals import on_arrival
from chalicelib.errors import InvalidInput
from chalicelib.ingest import ingest
from chalicelib.segment import parse_call
from chalicelib.sweep import sweep
from chalicelib.triggers import parse_trigger
from tests.fakes import (MemoryDecisionLog, MemoryDefinitions, MemoryEventLog, MemoryLedger,
                         MemoryProfileStore, MemorySendQueue, MemoryTimers)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def email(n):
    return {"update_profile": {"set": {f"welcome_{n}": True}}}


WELCOME = {
    "id": "welcome", "description": "", "category": "marketing", "topic": "offers", "when": {"event": "Signed Up"},
    "exit": {"event": "Upgraded"}, "reentry": "once",
    "steps": [
        {"then": [email(1)]},
        {"wait": "2d", "then": [email(2)]},
        {"wait": "5d", "match": {"profile": {"traits": {"plan": ["free"]}}}, "then": [email(3)]},
    ],
}
PRICING = {
    "id": "hot-lead", "description": "", "category": "internal", "when": {
        "type": "page", "match": {"event": {"properties": {"path": [{"prefix": "/pricing"}]}}},
        "count": {"at_least": 3, "within": "7d"}},
    "then": [{"alert": {"topic": "sales", "text": "{{ traits.email }} keeps looking at pricing"}}],
}


class World:
    def __init__(self, *docs):
        self.triggers = [parse_trigger(doc, templates=None, origin="test") for doc in docs]
        self.log, self.profiles, self.ledger = MemoryEventLog(), MemoryProfileStore(), MemoryLedger()
        self.timers, self.queue, self.decisions = MemoryTimers(), MemorySendQueue(), MemoryDecisionLog()
        self.definitions = MemoryDefinitions(triggers=self.triggers)

    def send(self, call, body, days=0.0, message_id=None):
        when = T0 + timedelta(days=days)
        body = {"userId": "ana", "timestamp": when.isoformat(), **body}
        if message_id:
            body["messageId"] = message_id
        event = parse_call(call, body, when, 32768)
        ingest([event], self.log, self.profiles)
        on_arrival([event], profiles=self.profiles, triggers=self.definitions, decisions=self.decisions,
                   queue=self.queue, timers=self.timers, history=self.log, enrollments=self.ledger,
                   fallback_tz="UTC")

    def at(self, days):
        for _ in range(10):
            if not sweep(T0 + timedelta(days=days), timers=self.timers, profiles=self.profiles,
                         triggers=self.definitions, decisions=self.decisions, queue=self.queue).due:
                return

    def sent(self):
        return [d.action.params["set"] if d.action.kind == "update_profile" else d.action.kind
                for d in self.queue.decisions]


def test_the_welcome_series_sends_its_steps_over_a_week():
    world = World(WELCOME)
    world.send("identify", {"traits": {"plan": "free"}})
    world.send("track", {"event": "Signed Up"}, message_id="s1")
    assert world.sent() == [{"welcome_1": True}]
    world.at(1.9)
    assert len(world.sent()) == 1
    world.at(2)
    world.at(7)
    assert world.sent() == [{"welcome_1": True}, {"welcome_2": True}, {"welcome_3": True}]
    assert [d.ledger_key for d in world.queue.decisions] == ["welcome#s1#0", "welcome#s1#1", "welcome#s1#2"]
    assert world.timers.items == {}


def test_upgrading_leaves_the_series():
    world = World(WELCOME)
    world.send("track", {"event": "Signed Up"}, message_id="s1")
    world.send("track", {"event": "Upgraded"}, days=1)
    world.at(10)
    assert world.sent() == [{"welcome_1": True}]
    reasons = [v.reason for _, e in world.decisions.evaluations for v in e.verdicts]
    assert any(reason.startswith("left the sequence: 'Upgraded'") for reason in reasons)


def test_a_step_whose_condition_fails_is_skipped_and_the_series_goes_on():
    world = World(WELCOME)
    world.send("identify", {"traits": {"plan": "pro"}})
    world.send("track", {"event": "Signed Up"}, message_id="s1")
    world.at(10)
    assert world.sent() == [{"welcome_1": True}, {"welcome_2": True}]


def test_once_means_once_ever_even_if_they_sign_up_again():
    world = World(WELCOME)
    world.send("identify", {"traits": {"plan": "free"}})
    world.send("track", {"event": "Signed Up"}, message_id="s1")
    world.send("track", {"event": "Signed Up"}, days=20, message_id="s2")
    world.at(40)
    assert len(world.sent()) == 3
    # and a redelivered first event is still admitted (the ledger keeps it to one message each)
    world.send("track", {"event": "Signed Up"}, message_id="s1")
    reasons = [v.reason for _, e in world.decisions.evaluations for v in e.verdicts]
    assert "already entered (once)" in reasons


def test_three_pricing_views_within_a_week_alert_sales_once():
    world = World(PRICING)
    for day, n in ((0, 1), (2, 2)):
        world.send("page", {"name": "Pricing", "properties": {"path": "/pricing"}}, days=day, message_id=f"p{n}")
    assert world.sent() == []
    world.send("page", {"name": "Pricing", "properties": {"path": "/pricing/teams"}}, days=3, message_id="p3")
    assert world.sent() == ["alert"]
    world.send("page", {"name": "Pricing", "properties": {"path": "/pricing"}}, days=4, message_id="p4")
    assert world.sent() == ["alert"]  # once per window
    reasons = [v.reason for _, e in world.decisions.evaluations for v in e.verdicts]
    assert "1 of 3 within 1w" in reasons and "already entered (once per 1w)" in reasons


def test_views_spread_wider_than_the_window_do_not_count():
    world = World(PRICING)
    for n, day in enumerate((0, 5, 10)):
        world.send("page", {"name": "Pricing", "properties": {"path": "/pricing"}}, days=day, message_id=f"q{n}")
    assert world.sent() == []


@pytest.mark.parametrize("change, field", [
    ({"steps": [{"then": [email(1)]}, {"then": [email(2)]}]}, "steps[1].wait"),
    ({"then": [email(1)]}, "steps"),
    ({"reentry": "sometimes"}, "reentry"),
    ({"exit": {"event": "Signed Up"}}, "exit"),
    ({"steps": [{"then": [email(1)], "wait": "later"}]}, "steps[0].wait"),
])
def test_bad_sequences_name_the_field(change, field):
    with pytest.raises(InvalidInput) as exc:
        parse_trigger({**WELCOME, **change}, templates=None, origin="test")
    assert field in {p.field for p in exc.value.problems}


def test_bad_counts_name_the_field():
    doc = {**PRICING, "when": {**PRICING["when"], "count": {"at_least": 1, "within": "7d"}}}
    with pytest.raises(InvalidInput) as exc:
        parse_trigger(doc, templates=None, origin="test")
    assert {p.field for p in exc.value.problems} == {"when.count.at_least"}

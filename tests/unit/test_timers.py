"""Triggers that wait: when a due timer acts, and when it is called off."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.errors import InvalidInput
from chalicelib.evaluate import evaluate
from chalicelib.ingest import ingest
from chalicelib.segment import parse_call
from chalicelib.sweep import sweep
from chalicelib.timers import fire
from chalicelib.triggers import parse_trigger
from tests.fakes import (MemoryDecisionLog, MemoryDefinitions, MemoryEventLog, MemoryProfileStore,
                         MemorySendQueue, MemoryTimers)

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
CART = {"id": "abandoned-cart", "description": "", "category": "marketing", "topic": "offers", "when": {"event": "Product Added"},
        "wait": "1h", "unless": {"event": "Order Completed"},
        "then": [{"update_profile": {"add_tags": ["cart-reminded"]}}]}


class Shop:
    """One person's events through ingest and evaluation, with a fake clock."""

    def __init__(self, trigger=CART):
        self.trigger = parse_trigger(trigger, templates=None, origin="test")
        self.log, self.profiles = MemoryEventLog(), MemoryProfileStore()
        self.timers, self.queue, self.decisions = MemoryTimers(), MemorySendQueue(), MemoryDecisionLog()
        self.definitions = MemoryDefinitions(triggers=[self.trigger])

    def event(self, name, minutes, message_id):
        event = parse_call("track", {"userId": "ana", "event": name, "messageId": message_id,
                                     "timestamp": (T0 + timedelta(minutes=minutes)).isoformat()}, T0, 32768)
        ingest([event], self.log, self.profiles)
        evaluation = evaluate(event, self.profiles.get("user:ana"), self.definitions.triggers_for(name))
        for timer in evaluation.timers:
            self.timers.put(timer)

    def at(self, minutes):
        return sweep(T0 + timedelta(minutes=minutes), timers=self.timers, profiles=self.profiles,
                     triggers=self.definitions, decisions=self.decisions, queue=self.queue)


def test_an_abandoned_cart_is_reminded_an_hour_later():
    shop = Shop()
    shop.event("Product Added", 0, "add-1")
    assert shop.at(59).due == 0
    result = shop.at(60)
    assert (result.due, result.acted) == (1, 1)
    assert [d.ledger_key for d in shop.queue.decisions] == ["abandoned-cart#add-1#0"]
    assert shop.timers.items == {}  # cleared once fired


def test_an_order_within_the_hour_calls_the_reminder_off():
    shop = Shop()
    shop.event("Product Added", 0, "add-1")
    shop.event("Order Completed", 20, "order-1")
    result = shop.at(60)
    assert (result.due, result.acted) == (1, 0)
    assert shop.queue.decisions == []
    [(_, evaluation)] = shop.decisions.evaluations
    assert "called off: 'Order Completed'" in evaluation.verdicts[0].reason


def test_each_item_added_restarts_the_hour_and_one_reminder_goes_out():
    shop = Shop()
    shop.event("Product Added", 0, "add-1")
    shop.event("Product Added", 30, "add-2")
    assert shop.at(60).acted == 0  # the first wait was superseded
    assert shop.at(90).acted == 1
    assert [d.occurrence for d in shop.queue.decisions] == ["add-2"]


def test_a_trigger_deleted_or_disabled_during_the_wait_does_nothing():
    shop = Shop()
    shop.event("Product Added", 0, "add-1")
    [timer] = shop.timers.items.values()
    assert fire(timer, None, shop.profiles.get("user:ana")).reason == "the trigger was deleted during the wait"
    disabled = replace(shop.trigger, enabled=False)
    assert not fire(timer, disabled, shop.profiles.get("user:ana")).acted


def test_the_verdict_says_when_the_trigger_will_act():
    shop = Shop()
    event = parse_call("track", {"userId": "ana", "event": "Product Added", "messageId": "a",
                                 "timestamp": T0.isoformat()}, T0, 32768)
    ingest([event], shop.log, shop.profiles)
    evaluation = evaluate(event, shop.profiles.get("user:ana"), [shop.trigger])
    assert evaluation.decisions == ()
    assert evaluation.verdicts[0].reason == ("matched; acts at 2026-12-02T11:00:00.000Z unless Order Completed "
                                             "happens first")


@pytest.mark.parametrize("change, field", [
    ({"wait": "soon"}, "wait"),
    ({"wait": None, "unless": {"event": "Order Completed"}}, "unless"),
    ({"unless": {"event": "Product Added"}}, "unless"),
    ({"unless": [{"event": "Order Completed"}, {"type": "track"}]}, "unless[1].type"),
])
def test_bad_waits_are_refused_with_the_field(change, field):
    doc = {**CART, **change}
    if doc.get("wait") is None:
        doc.pop("wait")
    with pytest.raises(InvalidInput) as exc:
        parse_trigger(doc, templates=None, origin="test")
    assert field in {p.field for p in exc.value.problems}


def test_a_timer_of_a_person_erased_during_the_wait_does_nothing_and_records_nothing():
    shop = Shop()
    shop.event("Product Added", 0, "add-1")
    shop.profiles.delete("user:ana")
    result = shop.at(60)
    assert (result.due, result.acted) == (1, 0)
    assert shop.queue.decisions == [] and shop.decisions.evaluations == []
    assert shop.timers.items == {}


class BrokenLookup:
    """Definitions in which one trigger no longer reads (a bug, or a stored definition
    of a newer version), and, when asked, storage that refuses."""

    def __init__(self, definitions, broken, unavailable=False):
        self.definitions, self.broken, self.unavailable = definitions, broken, unavailable

    def get_trigger(self, trigger_id):
        from chalicelib.errors import StorageUnavailable

        if self.unavailable:
            raise StorageUnavailable("ProvisionedThroughputExceededException")
        if trigger_id == self.broken:
            raise KeyError("when")
        return self.definitions.get_trigger(trigger_id)

    def triggers_for(self, event_key):
        return self.definitions.triggers_for(event_key)


def test_a_timer_that_cannot_fire_stays_and_the_others_still_go():
    # Given two carts waiting, one of them on a trigger that no longer reads
    other = {**CART, "id": "cart-broken"}
    shop = Shop()
    shop.definitions = MemoryDefinitions(triggers=[shop.trigger, parse_trigger(other, templates=None, origin="test")])
    shop.event("Product Added", 0, "add-1")
    lookup = BrokenLookup(shop.definitions, broken="cart-broken")
    # When the hour is up
    result = sweep(T0 + timedelta(minutes=60), timers=shop.timers, profiles=shop.profiles, triggers=lookup,
                   decisions=shop.decisions, queue=shop.queue)
    # Then the good one fires and the broken one is named, left to be tried again
    assert (result.due, result.acted, result.called_off) == (2, 1, 0)
    assert [d.trigger_id for d in shop.queue.decisions] == ["abandoned-cart"]
    [(which, error)] = result.failed
    assert "cart-broken#add-1 of user:ana" in which and error == "KeyError: 'when'"
    assert [t.trigger_id for t in shop.timers.due(T0 + timedelta(minutes=61), 10)] == ["cart-broken"]
    # And once the trigger reads again, the next sweep fires it
    lookup.broken = None
    assert sweep(T0 + timedelta(minutes=61), timers=shop.timers, profiles=shop.profiles, triggers=lookup,
                 decisions=shop.decisions, queue=shop.queue).acted == 1
    assert shop.timers.items == {}


def test_unavailable_storage_stops_the_sweep_with_every_timer_still_due():
    from chalicelib.errors import StorageUnavailable

    shop = Shop()
    shop.event("Product Added", 0, "add-1")
    with pytest.raises(StorageUnavailable):
        sweep(T0 + timedelta(minutes=60), timers=shop.timers, profiles=shop.profiles,
              triggers=BrokenLookup(shop.definitions, broken=None, unavailable=True), decisions=shop.decisions,
              queue=shop.queue)
    assert len(shop.timers.items) == 1 and shop.queue.decisions == []

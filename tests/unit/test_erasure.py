"""Erasing a person, and exporting what is held about them, over the in-memory stores."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.arrivals import on_arrival
from chalicelib.broadcasts import RUN_OWNER
from chalicelib.consent import Consent
from chalicelib.erasure import PersonStores, erase, export
from chalicelib.errors import StorageUnavailable
from chalicelib.ingest import ingest
from chalicelib.ports import MessageRecord
from chalicelib.segment import iso, parse_call
from chalicelib.sweep import sweep
from chalicelib.timers import Timer
from chalicelib.triggers import parse_trigger
from tests.fakes import (MemoryConsentStore, MemoryDecisionLog, MemoryDefinitions, MemoryEventLog, MemoryLedger,
                         MemoryProfileStore, MemorySendQueue, MemoryTimers)

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
AT = iso(T0 + timedelta(days=1))
CART = parse_trigger({"id": "abandoned-cart", "description": "", "category": "marketing", "topic": "offers",
                      "when": {"event": "Product Added"}, "wait": "1h",
                      "then": [{"update_profile": {"add_tags": ["cart-reminded"]}}]}, templates=None, origin="test")
WELCOME = parse_trigger({"id": "welcome", "description": "", "category": "internal", "reentry": "once",
                         "when": {"event": "Signed Up"}, "then": [{"update_profile": {"add_tags": ["welcomed"]}}]},
                        templates=None, origin="test")


class World:
    """Ana (who browsed anonymously before signing up) and Bo, with everything Nudge keeps about people."""

    def __init__(self) -> None:
        self.events, self.profiles = MemoryEventLog(), MemoryProfileStore()
        self.ledger, self.decisions = MemoryLedger(), MemoryDecisionLog()
        self.timers, self.consent = MemoryTimers(), MemoryConsentStore()
        self.queue = MemorySendQueue()
        self.definitions = MemoryDefinitions(triggers=[CART, WELCOME])
        self.stores = PersonStores(events=self.events, profiles=self.profiles, ledger=self.ledger,
                                   decisions=self.decisions, timers=self.timers, consent=self.consent)
        self.minute = 0

    def send(self, call_type: str, body: dict) -> None:
        self.minute += 1
        when = T0 + timedelta(minutes=self.minute)
        event = parse_call(call_type, {"timestamp": when.isoformat(), **body}, when, 32768)
        ingest([event], self.events, self.profiles)
        on_arrival([event], profiles=self.profiles, triggers=self.definitions, decisions=self.decisions,
                   queue=self.queue, timers=self.timers, history=self.events, enrollments=self.ledger)

    def person(self, user: str, anonymous_id: str, email: str, phone: str | None = None) -> None:
        self.send("page", {"anonymousId": anonymous_id, "name": "Pricing", "messageId": f"{user}-page"})
        self.send("track", {"anonymousId": anonymous_id, "event": "Product Added", "messageId": f"{user}-anon-add"})
        traits = {"email": email, **({"phone": phone} if phone else {})}
        self.send("identify", {"anonymousId": anonymous_id, "userId": user, "traits": traits,
                               "messageId": f"{user}-identify"})
        self.send("track", {"userId": user, "event": "Signed Up", "messageId": f"{user}-signup"})
        self.send("track", {"userId": user, "event": "Product Added", "messageId": f"{user}-add"})
        self.ledger.claim(MessageRecord(f"user:{user}", f"thanks#{user}#0", "thanks", "email", "sent", iso(T0),
                                        to=email, subject="Thanks"))
        self.ledger.claim(MessageRecord(f"anon:{anonymous_id}", f"promo#{user}#0", "promo", "email", "skipped",
                                        iso(T0), reason="the person has no valid email address"))
        self.consent.set_preferences(f"user:{user}", {"email:offers": Consent(True, "api", iso(T0)),
                                                      "sms:offers": Consent(True, "api", iso(T0))})
        self.consent.save_budget(f"user:{user}", "email", {"sent": [iso(T0)]}, 0)

    def everything(self) -> str:
        """All that the stores hold, as text, to search for a person's traces."""
        return repr((self.events.items, self.events.message_ids, self.profiles.profiles, self.profiles.links,
                     self.ledger.records, self.ledger.enrollments, self.decisions.evaluations, self.decisions.notes,
                     self.timers.items, self.consent.states, self.consent.history, self.consent.budgets,
                     self.consent.suppressions, self.consent.erased_ids))


@pytest.fixture
def world() -> World:
    world = World()
    world.person("ana", "dev-ana", "Ana@Example.com", "+351912345678")
    world.person("bo", "dev-bo", "bo@example.com")
    return world


def test_a_person_has_data_in_every_store_before_erasure(world):
    # Given Ana's history (the other tests rely on it being there)
    held = world.everything()
    assert "dev-ana" in held and "user:ana" in held and "Ana@Example.com" in held
    assert world.timers.of_person("user:ana") and world.timers.of_person("anon:dev-ana")
    assert world.ledger.entered("user:ana")
    assert world.events.message_ids


def test_erasure_leaves_nothing_about_the_person_but_salted_hashes(world):
    bo_before = export("bo", world.stores, T0)

    result = erase("ana", world.stores, AT)

    assert result is not None and result.complete
    assert result.removed == {"events": 5, "profiles": 1, "links": 1, "messages": 2, "decisions": 3,
                              "enrollments": 1, "timers": 2, "subscriptions": 2, "consentChanges": 2}
    held = world.everything()
    for trace in ("ana", "Ana@Example.com", "ana@example.com", "+351912345678", "dev-ana"):
        assert trace not in held, trace
    # Only the hashes are left, and they are recognised.
    assert world.consent.erased("ana")
    email, phone = world.consent.suppression("ana@example.com"), world.consent.suppression("+351912345678")
    assert (email.scope, email.reason, email.at) == ("marketing", "erased", AT)
    assert (phone.scope, phone.reason) == ("marketing", "erased")
    assert result.suppressed == ("email", "phone")
    # Bo is untouched.
    assert export("bo", world.stores, T0) == bo_before


def test_a_returning_customer_gets_transactional_mail_but_no_marketing(world):
    erase("ana", world.stores, AT)
    suppression = world.consent.suppression("ana@example.com")
    assert suppression.stops("marketing")
    assert not suppression.stops("transactional")
    # Fresh consent lifts it (the subscriptions API does this).
    assert world.consent.lift("ana@example.com", ["erased"])
    assert world.consent.suppression("ana@example.com") is None


def test_a_hard_bounce_suppression_stays_of_scope_all(world):
    world.consent.suppress("bo@example.com", "all", "bounce", iso(T0))
    erase("bo", world.stores, AT)
    assert world.consent.suppression("bo@example.com").scope == "all"


def test_nothing_fires_for_the_person_after_erasure(world):
    erase("ana", world.stores, AT)
    queued_before = len(world.queue.decisions)
    result = sweep(T0 + timedelta(days=2), timers=world.timers, profiles=world.profiles, triggers=world.definitions,
                   decisions=world.decisions, queue=world.queue)
    assert result.due == 2  # Bo's two carts, none of Ana's
    assert [d.profile_id for d in world.queue.decisions[queued_before:]] == ["user:bo"]
    assert "ana" not in world.everything()


def test_an_unknown_person_and_a_second_erasure_find_nobody(world):
    assert erase("nobody", world.stores, AT) is None
    assert erase("ana", world.stores, AT).complete
    assert erase("ana", world.stores, AT) is None
    assert export("ana", world.stores, T0) is None


def test_broadcast_pages_and_other_peoples_timers_stay(world):
    page = Timer(profile_id=RUN_OWNER, trigger_id="holiday", occurrence="run-1", started=iso(T0), due=iso(T0),
                 kind="broadcast", step=3)
    world.timers.put(page)
    erase("ana", world.stores, AT)
    assert page.id in world.timers.items
    assert world.timers.of_person("user:bo")


def test_a_link_that_now_names_someone_else_is_kept(world):
    # A shared device: dev-ana was later linked to Bo.
    world.profiles.link("dev-ana", "bo")
    result = erase("ana", world.stores, AT)
    assert result.removed["links"] == 0
    assert world.profiles.resolve(["dev-ana"]) == {"dev-ana": "bo"}


def test_large_histories_are_erased_page_by_page(world):
    for index in range(7):
        world.send("track", {"userId": "ana", "event": f"Viewed {index}", "messageId": f"ana-view-{index}"})
    result = erase("ana", world.stores, AT, page=3)
    assert result.complete and result.removed["events"] == 12
    assert "ana" not in world.everything()


def _checks_of_a_full_erasure() -> int:
    world = World()
    world.person("ana", "dev-ana", "ana@example.com")
    asked = []
    erase("ana", world.stores, AT, out_of_time=lambda: asked.append(1) and False, page=2)
    return len(asked)


@pytest.mark.parametrize("stop_after", range(_checks_of_a_full_erasure()))
def test_an_erasure_stopped_anywhere_is_finished_by_repeating_it(world, stop_after):
    asked = []

    def out_of_time() -> bool:
        asked.append(1)
        return len(asked) > stop_after

    first = erase("ana", world.stores, AT, out_of_time=out_of_time, page=2)
    assert not first.complete
    assert world.profiles.get("user:ana") is not None  # the profile goes last: the repeat finds everything
    assert world.consent.erased("ana") and world.consent.suppression("ana@example.com").reason == "erased"
    second = erase("ana", world.stores, AT, page=2)
    assert second.complete
    assert "ana" not in world.everything()
    total = {kind: first.removed[kind] + second.removed[kind] for kind in first.removed}
    assert total["events"] == 5 and total["timers"] == 2 and total["profiles"] == 1


@pytest.mark.parametrize("failing", ["timers", "consent", "ledger", "decisions", "events", "profiles"])
def test_an_erasure_that_crashed_half_way_is_finished_by_repeating_it(world, failing, monkeypatch):
    store = getattr(world, failing)
    method = "unlink" if failing == "profiles" else "forget"
    original = getattr(store, method)
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise StorageUnavailable("throttled")
        return original(*args, **kwargs)

    monkeypatch.setattr(store, method, fails_once)
    with pytest.raises(StorageUnavailable):
        erase("ana", world.stores, AT)
    assert erase("ana", world.stores, AT).complete
    assert "ana" not in world.everything()


def test_the_export_holds_everything_about_the_person(world, monkeypatch):
    import chalicelib.erasure

    monkeypatch.setattr(chalicelib.erasure, "EXPORT_PAGE", 2)  # the history is read over several pages
    world.consent.suppress("Ana@Example.com", "marketing", "complaint", iso(T0))
    document = export("ana", world.stores, T0 + timedelta(days=1))

    assert document["userId"] == "ana"
    assert document["profile"]["traits"]["email"] == "Ana@Example.com"
    assert document["identities"] == ["user:ana", "anon:dev-ana"]
    assert [e["messageId"] for e in document["events"]] == [
        "ana-page", "ana-anon-add", "ana-identify", "ana-signup", "ana-add"]  # oldest first, every page
    assert {m["id"] for m in document["messages"]} == {"thanks#ana#0", "promo#ana#0"}
    assert len(document["decisions"]) == 3  # the events some trigger considered
    assert [e["trigger"] for e in document["enrollments"]] == ["welcome"]
    assert [(t["profileId"], t["trigger"]) for t in document["timers"]] == [
        ("anon:dev-ana", "abandoned-cart"), ("user:ana", "abandoned-cart")]  # soonest first
    assert document["subscriptions"]["sms:offers"] == {"subscribed": True, "source": "api", "at": iso(T0)}
    assert [c["key"] for c in document["consentHistory"]] == ["email:offers", "sms:offers"]
    assert document["budgets"] == {"email": {"sent": [iso(T0)]}}
    assert document["suppressions"]["email"] == {
        "address": "Ana@Example.com", "suppression": {"scope": "marketing", "reason": "complaint", "at": iso(T0)}}
    assert document["suppressions"]["phone"] == {"address": "+351912345678", "suppression": None}
    assert document["erasedBefore"] is False
    for trace in ("user:bo", "dev-bo", "bo@example.com"):
        assert trace not in repr(document)


def test_an_export_says_when_a_returning_person_was_erased_before(world):
    erase("ana", world.stores, AT)
    world.send("identify", {"userId": "ana", "traits": {"email": "ana@example.com"}, "messageId": "back"})
    document = export("ana", world.stores, T0)
    assert document["erasedBefore"] is True
    assert document["suppressions"]["email"]["suppression"]["reason"] == "erased"
    assert [e["messageId"] for e in document["events"]] == ["back"]

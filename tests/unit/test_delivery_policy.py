"""Delivery controls: categories, subscriptions, suppressions, SMS STOP, erasure,
the fatigue budget and the headers of marketing email (with in-memory fakes)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from chalicelib.consent import Consent
from chalicelib.deliver import deliver
from chalicelib.delivery_policy import DeliveryPolicy
from chalicelib.evaluate import evaluate
from chalicelib.message_ref import HEADER, read_message_ref
from chalicelib.profiles import apply_events, new_profile
from chalicelib.segment import parse_call
from chalicelib.templates import parse_template
from chalicelib.timers import fire
from chalicelib.triggers import parse_trigger
from tests.fakes import (
    MemoryChannels, MemoryConsentStore, MemoryDecisionLog, MemoryDefinitions, MemoryFeedbackStore, MemoryLedger,
    MemoryProfileStore, MemoryTimers,
)

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
NEWS = parse_template({"id": "news", "channel": "email", "subject": "News for {{ traits.name }}",
                       "html": "<p>Hello {{ traits.name }}</p>", "text": "Hello {{ traits.name }}"}, origin="test")


def trigger(trigger_id="promo", category="marketing", action=None, **extra):
    doc = {"id": trigger_id, "description": "test", "category": category, "when": {"event": "Promo"},
           "then": [action or {"email": {"template": "news", "from": "shop@example.com"}}], **extra}
    if category == "marketing" and "topic" not in doc:
        doc["topic"] = "offers"
    return parse_trigger(doc, templates={"news"}, origin="test")


def links(person, channel, topic):
    return {"unsubscribe_url": f"https://nudge.example.com/v1/unsubscribe?token=tok-{topic}",
            "preferences_url": "https://nudge.example.com/v1/preferences?token=tok",
            "mailto": "mailto:unsubscribe@example.com?subject=unsubscribe%20tok"}


class Person:
    def __init__(self, traits=None, budget="", user_id="ana"):
        self.profiles = MemoryProfileStore()
        self.ledger = MemoryLedger()
        self.channels = MemoryChannels()
        self.timers = MemoryTimers()
        self.reputation = MemoryFeedbackStore()
        self.consent = MemoryConsentStore(feedback=self.reputation)
        self.notes = MemoryDecisionLog()
        self.definitions = MemoryDefinitions(templates=[NEWS])
        self.user_id = user_id
        from chalicelib.budget import parse_budget

        self.policy = DeliveryPolicy(timers=self.timers, consent=self.consent, budget=parse_budget(budget),
                                     opted_out=self.channels.sms_opted_out)
        identify = parse_call("identify", {"userId": user_id, "traits": traits if traits is not None else {
            "email": "ana@example.com", "phone": "+15555550100", "name": "Ana"}}, NOON, 32768)
        self.profiles.save(apply_events(new_profile(f"user:{user_id}"), [identify]))
        self.count = 0

    def send(self, trig, at=NOON):
        self.count += 1
        event = parse_call("track", {"userId": self.user_id, "event": "Promo", "messageId": f"m{self.count}"},
                           at, 32768)
        [decision] = evaluate(event, self.profiles.get(f"user:{self.user_id}"), [trig]).decisions
        return self.deliver(decision, at)

    def deliver(self, decision, at):
        return deliver(decision, profiles=self.profiles, ledger=self.ledger, templates=self.definitions,
                       channels=self.channels, now=lambda: at, policy=self.policy, notes=self.notes, links=links)

    @property
    def emails(self):
        return [fields for channel, fields in self.channels.sent if channel == "email"]


def test_a_marketing_email_carries_one_click_unsubscribe_headers_and_a_footer():
    person = Person()
    assert person.send(trigger()).status == "sent"
    assert person.consent.standing_reads == 1  # the person's limits are one read
    [mail] = person.emails
    headers = mail["headers"]
    assert headers["List-Unsubscribe"] == ("<https://nudge.example.com/v1/unsubscribe?token=tok-offers>, "
                                           "<mailto:unsubscribe@example.com?subject=unsubscribe%20tok>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert read_message_ref(headers[HEADER]) == ("user:ana", "promo#m1#0")
    assert 'href="https://nudge.example.com/v1/unsubscribe?token=tok-offers"' in mail["html"]
    assert "Unsubscribe: https://nudge.example.com/v1/unsubscribe?token=tok-offers" in mail["text"]


def test_a_transactional_email_has_no_unsubscribe_but_is_still_traceable():
    person = Person()
    person.send(trigger("receipt", category="transactional"))
    [mail] = person.emails
    assert "List-Unsubscribe" not in mail["headers"] and HEADER in mail["headers"]
    assert "Unsubscribe" not in mail["text"]


def test_leaving_a_topic_stops_that_topic_only_and_never_transactional_mail():
    person = Person()
    person.consent.set_preferences("user:ana", {"email:offers": Consent(False, "one-click", "2026-12-01T00:00:00Z")})
    skipped = person.send(trigger())
    assert skipped.status == "skipped" and "left the topic email:offers (one-click" in skipped.reason
    assert person.send(trigger("tips", topic="news")).status == "sent"
    assert person.send(trigger("receipt", category="transactional")).status == "sent"
    [note] = [n for n in person.notes.notes if n[2]["outcome"] == "skipped"]
    assert note[2]["trigger"] == "promo" and "email:offers" in note[2]["reason"]


def test_leaving_all_marketing_email_stops_every_topic():
    person = Person()
    person.consent.set_preferences("user:ana", {"email:*": Consent(False, "preferences-page", "2026-12-01T00:00:00Z")})
    assert person.send(trigger(topic="news")).status == "skipped"
    assert person.send(trigger("receipt", category="transactional")).status == "sent"


def test_marketing_sms_needs_opt_in_first():
    sms = {"sms": {"text": "Sale today"}}
    person = Person()
    assert "needs the person's consent" in person.send(trigger(action=sms)).reason
    person.consent.set_preferences("user:ana", {"sms:offers": Consent(True, "api", "2026-12-01T00:00:00Z")})
    assert person.send(trigger("promo2", action=sms)).status == "sent"
    [(_, text)] = [(c, f["text"]) for c, f in person.channels.sent if c == "sms"]
    assert text.endswith("Reply STOP to opt out.")


def test_a_hard_bounce_stops_everything_and_a_complaint_stops_marketing():
    bounced, complained = Person(), Person()
    bounced.consent.suppress("ANA@example.com", "all", "hard bounce", "2026-12-01T00:00:00Z")
    complained.consent.suppress("ana@example.com", "marketing", "complaint", "2026-12-01T00:00:00Z")
    assert "hard bounce" in bounced.send(trigger("receipt", category="transactional")).reason
    assert complained.send(trigger()).status == "skipped"
    assert complained.send(trigger("receipt", category="transactional")).status == "sent"


def test_a_number_that_replied_stop_is_never_texted_and_stays_suppressed():
    person = Person()
    person.channels.opted_out.add("+15555550100")
    text = {"sms": {"text": "Your code is 1234"}}
    record = person.send(trigger("code", category="transactional", action=text))
    assert record.status == "skipped" and "STOP" in record.reason
    assert person.consent.suppression("+15555550100").scope == "all"
    assert [c for c, _ in person.channels.sent if c == "sms"] == []


def test_an_erased_person_who_comes_back_gets_no_marketing_until_they_consent_again():
    person = Person()
    person.consent.mark_erased("ana", "2026-11-01T00:00:00Z")
    assert "erased" in person.send(trigger()).reason
    assert person.send(trigger("receipt", category="transactional")).status == "sent"
    person.consent.set_preferences("user:ana", {"email:offers": Consent(True, "preferences-page", "2026-12-02T00:00:00Z")})
    assert person.send(trigger("promo2")).status == "sent"


def test_the_fourth_marketing_email_in_a_week_waits_for_a_free_slot_then_goes():
    person = Person(budget="email=3/7d")
    for day in range(3):
        assert person.send(trigger(f"p{day}"), NOON + timedelta(days=day)).status == "sent"
    fourth = trigger("p3")
    held = person.send(fourth, NOON + timedelta(days=3))
    assert held.status == "deferred" and "budget (3 per 7 days) is spent" in held.reason
    assert person.send(trigger("receipt", category="transactional"), NOON + timedelta(days=3)).status == "sent"
    [timer] = person.timers.items.values()
    assert timer.due == "2026-12-09T12:00:00.000Z"
    [again] = fire(timer, fourth, person.profiles.get("user:ana")).decisions
    assert person.deliver(again, NOON + timedelta(days=7)).status == "sent"
    assert len(person.emails) == 5
    assert [n[2]["outcome"] for n in person.notes.notes] == ["deferred"]


def test_a_held_message_past_its_trigger_expiry_is_dropped_with_the_reason():
    person = Person(budget="email=1/7d")
    person.send(trigger("first"))
    short = trigger("second", expires="2d")
    held = person.send(short, NOON + timedelta(hours=1))
    assert held.status == "skipped" and held.reason.startswith("dropped:")
    assert len(person.emails) == 1


def test_a_redelivered_decision_takes_one_budget_slot():
    person = Person(budget="email=2/7d")
    trig = trigger("once")
    event = parse_call("track", {"userId": "ana", "event": "Promo", "messageId": "m1"}, NOON, 32768)
    [decision] = evaluate(event, person.profiles.get("user:ana"), [trig]).decisions
    person.deliver(decision, NOON)
    person.deliver(decision, NOON)
    assert person.send(trigger("other")).status == "sent"


def test_while_marketing_email_is_paused_it_is_held_and_receipts_go_on():
    person = Person()
    person.reputation.trip("bounce rate 7.1% over 24 hours", "2026-03-02T12:00:00Z")
    held = person.send(trigger())
    assert held.status == "deferred" and "paused: bounce rate" in held.reason
    assert person.send(trigger("receipt", category="transactional")).status == "sent"
    assert person.consent.standing_reads == 2  # the flag comes with the person's standing, not in a read of its own
    person.reputation.resume()
    assert person.send(trigger("after")).status == "sent"


def test_a_failed_send_gives_its_budget_slot_back():
    from chalicelib.errors import SendRejected

    person = Person(budget="email=1/7d")
    person.channels.failures.append(SendRejected("MessageRejected"))
    assert person.send(trigger("broken")).status == "failed"
    assert person.send(trigger("next")).status == "sent"


def test_a_decision_for_an_erased_person_is_skipped_at_once():
    person = Person()
    event = parse_call("track", {"userId": "ana", "event": "Promo", "messageId": "m1"}, NOON, 32768)
    [decision] = evaluate(event, person.profiles.get("user:ana"), [trigger()]).decisions
    person.profiles.delete("user:ana")
    person.consent.mark_erased("ana", "2026-12-02T12:00:00Z")
    record = person.deliver(decision, NOON)
    assert record.status == "skipped" and "does not exist" in record.reason

"""Carrying out decisions: each message reaches the person once, or is
recorded with the reason it could not."""
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from chalicelib import webhook_signature
from chalicelib.delivery_policy import DeliveryPolicy
from chalicelib.deliver import deliver
from chalicelib.errors import SendRejected, SendRetryable
from chalicelib.evaluate import Decision, evaluate
from chalicelib.profiles import apply_events, new_profile
from chalicelib.segment import parse_call
from chalicelib.templates import parse_template
from chalicelib.triggers import parse_trigger
from tests.fakes import MemoryChannels, MemoryDefinitions, MemoryLedger, MemoryProfileStore, MemoryTimers

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)

THANKS = parse_template({
    "id": "thanks", "channel": "email", "subject": "Your copy of {{ properties.asset }}",
    "html": "<p>Hi {{ traits.name }}, here is <a href='{{ properties.url }}'>{{ properties.asset }}</a></p>",
    "text": "Hi {{ traits.name }}, here is {{ properties.url }}",
}, origin="test")


def trigger(*actions, event="Whitepaper Downloaded", category="transactional"):
    topic = {"topic": "offers"} if category == "marketing" else {}
    return parse_trigger({"id": "t1", "description": "test", "category": category, **topic,
                          "when": {"event": event}, "then": list(actions)},
                         templates={"thanks"}, origin="test")


class World:
    def __init__(self, traits=None):
        self.profiles = MemoryProfileStore()
        self.ledger = MemoryLedger()
        self.channels = MemoryChannels()
        self.definitions = MemoryDefinitions(templates=[THANKS])
        identify = parse_call("identify", {"userId": "ana", "traits": traits or {}}, NOW, 32768)
        self.profiles.save(apply_events(new_profile("user:ana"), [identify]))

    def decisions(self, trig, properties=None):
        event = parse_call("track", {"userId": "ana", "event": trig.event_key, "messageId": "m1",
                                     "properties": properties or {}}, NOW, 32768)
        return evaluate(event, self.profiles.get("user:ana"), [trig]).decisions

    def deliver(self, decision: Decision):
        return deliver(decision, profiles=self.profiles, ledger=self.ledger, templates=self.definitions,
                       channels=self.channels, now=lambda: NOW)


EMAIL = {"email": {"template": "thanks", "from": "hello@example.com"}}
ASSET = {"asset": "Guide", "url": "https://example.com/guide.pdf"}


def test_an_email_is_rendered_and_sent_once_however_often_the_decision_arrives():
    world = World({"email": "ana@example.com", "name": "Ana"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    first = world.deliver(decision)
    again = world.deliver(decision)
    assert first.status == again.status == "sent"
    assert len(world.channels.sent) == 1
    channel, mail = world.channels.sent[0]
    assert (channel, mail["to"], mail["subject"]) == ("email", "ana@example.com", "Your copy of Guide")
    assert "https://example.com/guide.pdf" in mail["text"]
    assert world.ledger.writes == 2  # the claim and the outcome; the repeat reads only


def test_traits_are_escaped_in_html_but_not_in_text():
    world = World({"email": "ana@example.com", "name": "<script>alert(1)</script>"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    world.deliver(decision)
    mail = world.channels.sent[0][1]
    assert "<script>" not in mail["html"] and "&lt;script&gt;" in mail["html"]
    assert "<script>" in mail["text"]


def test_no_email_address_is_recorded_as_skipped_with_the_reason():
    world = World({"name": "Ana"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    record = world.deliver(decision)
    assert record.status == "skipped" and "email address" in record.reason
    assert world.channels.sent == []


def test_a_missing_template_variable_fails_for_good_without_sending():
    world = World({"email": "ana@example.com", "name": "Ana"})
    [decision] = world.decisions(trigger(EMAIL), {"asset": "Guide"})  # no url
    record = world.deliver(decision)
    assert record.status == "failed" and "url" in record.reason
    assert world.deliver(decision).status == "failed"
    assert world.channels.sent == []


def test_throttling_releases_the_claim_so_the_retry_sends_once():
    world = World({"email": "ana@example.com", "name": "Ana"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    world.channels.failures.append(SendRetryable("Throttling"))
    with pytest.raises(SendRetryable):
        world.deliver(decision)
    assert world.deliver(decision).status == "sent"
    assert len(world.channels.sent) == 1


def test_a_rejected_send_is_recorded_as_failed_and_not_retried():
    world = World({"email": "ana@example.com", "name": "Ana"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    world.channels.failures.append(SendRejected("MessageRejected: Email address is not verified."))
    record = world.deliver(decision)
    assert record.status == "failed" and "not verified" in record.reason
    assert world.deliver(decision).status == "failed"
    assert world.channels.sent == []


def test_an_unknown_outcome_is_not_sent_again():
    world = World({"email": "ana@example.com", "name": "Ana"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    world.channels.failures.append(KeyboardInterrupt())  # the process dies mid-send
    with pytest.raises(KeyboardInterrupt):
        world.deliver(decision)
    assert world.deliver(decision).status == "sending"
    assert world.channels.sent == []


def test_sms_needs_an_e164_phone():
    sms = {"sms": {"text": "Your order has shipped, {{ traits.name }}"}}
    world = World({"phone": "+15555550100", "name": "Ana"})
    [decision] = world.decisions(trigger(sms, event="Order Shipped"))
    assert world.deliver(decision).status == "sent"
    assert world.channels.sent[0][1] == {"to": "+15555550100", "text": "Your order has shipped, Ana"}
    local = World({"phone": "555-0100"})
    [decision] = local.decisions(trigger(sms, event="Order Shipped"))
    assert local.deliver(decision).status == "skipped"


def test_alerts_go_to_the_team_topic():
    alert = {"alert": {"topic": "sales", "text": "{{ traits.email }} viewed {{ properties.path }}"}}
    world = World({"email": "lead@example.com"})
    [decision] = world.decisions(trigger(alert, event="Pricing Viewed", category="internal"), {"path": "/pricing"})
    world.deliver(decision)
    assert world.channels.sent[0][1]["to"] == "sales"
    assert world.channels.sent[0][1]["text"] == "lead@example.com viewed /pricing"


def test_webhooks_are_signed(monkeypatch):
    monkeypatch.setenv("NUDGE_WEBHOOK_SECRET", "s3cret")
    hook = {"webhook": {"url": "https://crm.example.com/hooks/nudge"}}
    world = World({"email": "ana@example.com"})
    [decision] = world.decisions(trigger(hook, event="Trial Started", category="internal"))
    world.deliver(decision)
    sent = world.channels.sent[0][1]
    signature = sent["headers"][webhook_signature.HEADER]
    assert webhook_signature.verify("s3cret", sent["body"], signature, now=int(NOW.timestamp()))
    assert not webhook_signature.verify("s3cret", sent["body"] + b" ", signature, now=int(NOW.timestamp()))
    assert sent["headers"]["Nudge-Delivery"] == decision.ledger_key


def test_a_profile_update_applies_once():
    update = {"update_profile": {"increment": {"lead_score": 10}, "add_tags": ["pricing"]}}
    world = World({"lead_score": 5})
    [decision] = world.decisions(trigger(update, event="Pricing Viewed", category="internal"))
    world.deliver(decision)
    world.deliver(decision)
    traits = world.profiles.get("user:ana").traits
    assert traits["lead_score"] == 15 and traits["tags"] == ["pricing"]


def test_emitted_events_count_their_hops():
    emit = {"emit": {"event": "Lead Qualified", "properties": {"score": 50}}}
    world = World()
    [decision] = world.decisions(trigger(emit, event="Pricing Viewed", category="internal"))
    world.deliver(decision)
    detail = world.channels.sent[0][1]["detail"]
    assert detail["event"] == "Lead Qualified" and detail["userId"] == "ana"
    assert detail["context"]["nudge"]["hops"] == 1


def test_a_decision_that_outruns_the_profile_write_is_retried_not_skipped():
    world = World({"email": "ana@example.com", "name": "Ana"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    early = replace(decision, profile_id="user:not-yet-written")
    with pytest.raises(SendRetryable):
        world.deliver(early)
    assert world.ledger.records == {}


def quiet_world(zone):
    world = World({"phone": "+15555550100", "name": "Ana", "timezone": zone})
    world.timers = MemoryTimers()
    return world


SMS = {"sms": {"text": "{{ traits.name }}, the boots are back"}}


def deliver_at(world, decision, moment):
    return deliver(decision, profiles=world.profiles, ledger=world.ledger, templates=world.definitions,
                   channels=world.channels, now=lambda: moment, policy=DeliveryPolicy(timers=world.timers))


def test_marketing_sms_inside_quiet_hours_waits_for_the_morning_in_the_recipients_zone():
    # Given a marketing text decided at 04:00 UTC: 20:00 in Los Angeles, 05:00 in Berlin
    late = datetime(2026, 12, 2, 4, 0, tzinfo=timezone.utc)
    california, berlin = quiet_world("America/Los_Angeles"), quiet_world("Europe/Berlin")
    [to_california] = california.decisions(trigger(SMS, event="Back In Stock", category="marketing"))
    [to_berlin] = berlin.decisions(trigger(SMS, event="Back In Stock", category="marketing"))
    # When it is delivered
    sent = deliver_at(california, to_california, late)
    held = deliver_at(berlin, to_berlin, late)
    # Then California gets it now, Berlin at 08:00 local (07:00 UTC), and nothing is lost
    assert sent.status == "sent" and len(california.channels.sent) == 1
    assert held.status == "deferred" and berlin.channels.sent == []
    [timer] = berlin.timers.items.values()
    assert timer.due == "2026-12-02T07:00:00.000Z" and timer.kind == "deferred"
    [shown] = berlin.ledger.records.values()
    assert shown.status == "deferred" and "sends at 2026-12-02T07:00:00.000Z" in shown.reason


def test_a_deferred_message_is_sent_when_its_timer_hands_it_back():
    from chalicelib.timers import fire

    world = quiet_world("Europe/Berlin")
    [decision] = world.decisions(trigger(SMS, event="Back In Stock", category="marketing"))
    deliver_at(world, decision, datetime(2026, 12, 2, 4, 0, tzinfo=timezone.utc))
    [timer] = world.timers.items.values()
    firing = fire(timer, trigger(SMS, event="Back In Stock", category="marketing"), world.profiles.get("user:ana"))
    [again] = firing.decisions
    assert deliver_at(world, again, datetime(2026, 12, 2, 7, 0, tzinfo=timezone.utc)).status == "sent"
    assert len(world.channels.sent) == 1


def test_transactional_texts_are_never_held():
    world = quiet_world("Europe/Berlin")
    [decision] = world.decisions(trigger(SMS, event="Order Shipped", category="transactional"))
    assert deliver_at(world, decision, datetime(2026, 12, 2, 2, 0, tzinfo=timezone.utc)).status == "sent"


def test_a_decision_for_a_visitor_who_has_since_signed_in_reaches_the_person():
    world = World({"email": "ana@example.com", "name": "Ana"})
    world.profiles.link("device-1", "ana")
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    anonymous = replace(decision, profile_id="anon:device-1")
    assert world.deliver(anonymous).status == "sent"
    assert world.channels.sent[0][1]["to"] == "ana@example.com"


def test_a_profile_that_never_appears_is_skipped_after_a_few_tries():
    world = World({"email": "ana@example.com"})
    [decision] = world.decisions(trigger(EMAIL), ASSET)
    ghost = replace(decision, profile_id="user:ghost")
    record = deliver(ghost, profiles=world.profiles, ledger=world.ledger, templates=world.definitions,
                     channels=world.channels, now=lambda: NOW, attempt=4)
    assert record.status == "skipped" and "does not exist" in record.reason

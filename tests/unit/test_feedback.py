"""SES feedback: what each report from SES changes for the person, the message,
the trigger's numbers and the sending reputation."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.errors import SendRetryable, StorageUnavailable
from chalicelib.feedback import Feedback, Limits, Totals, Unreadable, breach, decide, parse, record, trigger_stats
from chalicelib.message_ref import message_ref
from chalicelib.ports import MessageRecord
from infra.ses_events import event, events_for, mail_object
from tests.fakes import MemoryChannels, MemoryConsentStore, MemoryFeedbackStore, MemoryLedger

NOW = datetime(2026, 12, 2, 12, 30, tzinfo=timezone.utc)
AT = "2026-12-02T12:29:00.000Z"
PROFILE, KEY = "user:ana", "order-confirmation#m1#0"
ADDRESS = "ana@example.org"


def mail(to=ADDRESS, ref=(PROFILE, KEY), trigger="order-confirmation", message_id="ses-1", headers=None, at=AT):
    header_list = [{"name": "From", "value": "Shop <orders@example.com>"}, {"name": "To", "value": to}]
    if ref is not None:
        header_list.append({"name": "X-Nudge-Message", "value": message_ref(*ref)})
    return mail_object(message_id=message_id, source="orders@example.com", destination=[to],
                       headers=headers if headers is not None else header_list, common_headers={"subject": "Hi"},
                       tags={"trigger": [trigger]} if trigger else {}, timestamp=at, account="123456789012",
                       region="us-east-1")


def publish(event_type, recipients=(ADDRESS,), **kwargs):
    """The SNS message text of one SES event."""
    details = {k: kwargs.pop(k) for k in list(kwargs) if k in ("bounceType", "bounceSubType")}
    return json.dumps(event(event_type, mail(**kwargs), AT, list(recipients), **details))


# An identity notification, as SES sends it to a bounce topic set on the identity (no eventType).
LEGACY_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "\"Ana\" <ana@example.org>", "action": "failed", "status": "5.1.1",
                               "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
        "timestamp": "2026-12-02T12:29:05.000Z", "feedbackId": "0100-abc", "reportingMTA": "dsn; a8-70.smtp-out",
    },
    "mail": {
        "timestamp": "2026-12-02T12:29:00.000Z", "source": "orders@example.com", "messageId": "ses-legacy",
        "destination": ["ana@example.org"], "headersTruncated": False,
        "headers": [{"name": "x-nudge-message", "value": message_ref(PROFILE, KEY)}],
    },
}


def paused(world):
    """The pause flag's reason, or None."""
    return (world.store.pause_state() or {}).get("reason")


class World:
    def __init__(self, status="sent", limits=Limits(min_sends=10)):
        self.ledger = MemoryLedger()
        self.consent = MemoryConsentStore()
        self.store = MemoryFeedbackStore()
        self.channels = MemoryChannels()
        self.limits = limits
        self.ledger.claim(MessageRecord(PROFILE, KEY, "order-confirmation", "email", status, AT, to=ADDRESS))

    def receive(self, message):
        return record(parse(message), ledger=self.ledger, consent=self.consent, store=self.store,
                      alert=self.channels.send_alert, limits=self.limits, now=lambda: NOW)

    @property
    def message(self):
        return self.ledger.get(PROFILE, KEY)

    def day(self, trigger="order-confirmation"):
        return trigger_stats(self.store, trigger, 1, NOW)["totals"]


# --- reading SES's notifications ------------------------------------------------------------------


@pytest.mark.parametrize("event_type, kind", [
    ("Send", "send"), ("Delivery", "delivery"), ("Bounce", "bounce"), ("Complaint", "complaint"),
    ("Open", "open"), ("Click", "click"), ("Reject", "reject"), ("DeliveryDelay", "delivery_delay"),
    ("Rendering Failure", "rendering_failure"),
])
def test_every_event_type_ses_publishes_is_read_with_the_message_it_is_about(event_type, kind):
    feedback = parse(publish(event_type))
    assert feedback.kind == kind
    assert feedback.message == (PROFILE, KEY)
    assert feedback.message_id == "ses-1" and feedback.trigger == "order-confirmation"
    assert feedback.at == AT and not feedback.legacy


def test_a_bounce_names_its_recipients_type_and_diagnostic():
    feedback = parse(publish("Bounce", recipients=("a@example.org", "b@example.org"), bounceType="Transient",
                             bounceSubType="MailboxFull"))
    assert feedback.recipients == ("a@example.org", "b@example.org")
    assert (feedback.bounce_type, feedback.bounce_subtype) == ("Transient", "MailboxFull")
    assert feedback.detail == "smtp; 550 5.1.1 user unknown"


def test_the_older_identity_notifications_are_read_too():
    feedback = parse(json.dumps(LEGACY_BOUNCE))
    assert feedback.kind == "bounce" and feedback.legacy
    assert feedback.recipients == ("ana@example.org",)  # the display name is dropped
    assert feedback.message == (PROFILE, KEY)  # header names are matched whatever their case
    assert feedback.at == "2026-12-02T12:29:05.000Z"
    for kind, section in (("Complaint", {"complainedRecipients": [{"emailAddress": ADDRESS}],
                                         "timestamp": AT}),
                          ("Delivery", {"recipients": [ADDRESS], "timestamp": AT})):
        body = {"notificationType": kind, kind.lower(): section, "mail": LEGACY_BOUNCE["mail"]}
        assert parse(json.dumps(body)).kind == kind.lower()


@pytest.mark.parametrize("message, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"hello": "world"}), "neither eventType nor notificationType"),
    (json.dumps({"eventType": "Teleport", "mail": {"messageId": "x"}}), "unknown eventType"),
    (json.dumps({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}), "not feedback"),
    (json.dumps({"eventType": "Delivery"}), "no mail object"),
    (json.dumps({"eventType": "Delivery", "mail": {"timestamp": AT}}), "messageId"),
    (json.dumps({"eventType": "Bounce", "mail": {"messageId": "x", "timestamp": AT}}), "without its bounce"),
    (json.dumps({"eventType": "Bounce", "mail": {"messageId": "x", "timestamp": AT},
                 "bounce": {"bounceType": "Permanent", "bouncedRecipients": []}}), "names no recipient"),
    (json.dumps({"eventType": "Open", "mail": {"messageId": "x"}, "open": {}}), "timestamp"),
])
def test_what_is_not_usable_feedback_is_refused_with_the_reason(message, reason):
    with pytest.raises(Unreadable, match=reason):
        parse(message)


def test_an_email_without_the_header_or_with_a_foreign_one_is_still_read():
    assert parse(publish("Delivery", ref=None)).message is None
    foreign = mail(headers=[{"name": "X-Nudge-Message", "value": "not-a-reference"}])
    feedback = parse(json.dumps(event("Delivery", foreign, AT, [ADDRESS])))
    assert feedback.message is None and feedback.unknown_reference == "not-a-reference"


def test_a_long_reference_folded_or_encoded_by_the_mime_writer_is_still_found():
    long_key = "order-confirmation#" + "m" * 60 + "#0"
    ref = message_ref(PROFILE, long_key)
    encoded = "=?utf-8?q?" + ref[:40] + "?=\r\n =?utf-8?q?" + ref[40:] + "?="
    for value in (ref[:30] + "\r\n " + ref[30:], encoded):
        body = mail(headers=[{"name": "X-Nudge-Message", "value": value}])
        assert parse(json.dumps(event("Delivery", body, AT, [ADDRESS]))).message == (PROFILE, long_key)


# --- what each kind of feedback changes -----------------------------------------------------------


def test_a_hard_bounce_stops_every_email_to_the_address():
    world = World()
    world.receive(publish("Bounce"))
    suppression = world.consent.suppression(ADDRESS)
    assert (suppression.scope, suppression.reason) == ("all", "hard bounce")
    assert suppression.stops("transactional") and suppression.stops("marketing")
    assert world.message.status == "bounced" and world.message.feedback == {"bounce": AT}


def test_a_soft_bounce_suppresses_nothing():
    world = World()
    world.receive(publish("Bounce", bounceType="Transient", bounceSubType="MailboxFull"))
    assert world.consent.suppression(ADDRESS) is None
    assert world.message.status == "bounced"


def test_a_complaint_stops_marketing_but_not_receipts():
    world = World()
    world.receive(publish("Complaint"))
    suppression = world.consent.suppression(ADDRESS)
    assert (suppression.scope, suppression.reason) == ("marketing", "complaint")
    assert suppression.stops("marketing") and not suppression.stops("transactional")
    assert world.message.status == "complained"


def test_a_complaint_does_not_narrow_an_earlier_hard_bounce():
    world = World()
    world.receive(publish("Bounce"))
    world.receive(publish("Complaint"))
    assert world.consent.suppression(ADDRESS).scope == "all"


def test_a_delivery_reported_after_a_bounce_or_complaint_does_not_hide_it():
    for first, status in (("Bounce", "bounced"), ("Complaint", "complained")):
        world = World()
        world.receive(publish(first))
        world.receive(publish("Delivery"))
        assert world.message.status == status
        assert "delivery" in world.message.feedback  # the time is still kept


def test_delivery_then_open_and_click_keep_their_first_times_on_the_message():
    world = World()
    world.receive(publish("Delivery"))
    world.receive(publish("Open"))
    later = json.dumps(event("Open", mail(), "2026-12-02T12:29:59.000Z"))
    world.receive(later)
    world.receive(publish("Click"))
    assert world.message.status == "delivered"
    assert world.message.feedback == {"delivery": AT, "open": AT, "click": AT}
    assert world.message.as_dict()["feedback"] == {"delivery": AT, "open": AT, "click": AT}


def test_the_trigger_counts_each_email_once_per_kind_however_often_ses_reports_it():
    world = World()
    for event_type in ("Send", "Delivery", "Open", "Open", "Click", "Send", "Delivery"):
        world.receive(publish(event_type))
    assert world.day() == {"sent": 1, "delivered": 1, "bounced": 0, "complained": 0, "opened": 1, "clicked": 1}


def test_an_email_without_a_trigger_tag_is_counted_for_the_trigger_of_its_message():
    world = World()
    outcome = world.receive(publish("Send", trigger=None))
    assert outcome.trigger == "order-confirmation" and world.day()["sent"] == 1


def test_identity_notifications_count_the_send_they_imply():
    world = World()
    world.receive(json.dumps(LEGACY_BOUNCE))
    assert world.day()["sent"] == 1 and world.day()["bounced"] == 1
    assert world.store.totals("2026-12-02T00", "2026-12-02T23") == Totals(sent=1, bounced=1)


def test_only_hard_bounces_count_against_the_reputation():
    world = World()
    world.receive(publish("Bounce", bounceType="Transient", bounceSubType="General"))
    assert world.day()["bounced"] == 1
    assert world.store.totals("2026-12-02T00", "2026-12-02T23").bounced == 0


@pytest.mark.parametrize("message", [
    publish("Delivery", ref=None),
    json.dumps(event("Delivery", mail(headers=[{"name": "X-Nudge-Message", "value": "garbage"}]), AT, [ADDRESS])),
    publish("Delivery", ref=("user:nobody", "gone#1#0")),
])
def test_feedback_about_a_message_nudge_does_not_know_is_applied_as_far_as_it_can(message):
    world = World()
    outcome = world.receive(message)
    assert outcome.problems and outcome.record is None
    assert world.message.status == "sent"  # no other message was touched
    assert world.day()["delivered"] == 1  # the trigger's tag still counts it


def test_a_bounce_for_an_unknown_message_still_suppresses_the_address():
    world = World()
    world.receive(publish("Bounce", ref=None, trigger=None))
    assert world.consent.suppression(ADDRESS).reason == "hard bounce"


def test_reject_delay_and_rendering_failure_change_nothing():
    for event_type in ("Reject", "DeliveryDelay", "Rendering Failure"):
        plan = decide(parse(publish(event_type)))
        assert not plan.suppress and plan.ledger is None and not plan.counts


def test_a_storage_failure_is_raised_for_the_retry():
    world = World()

    def unavailable(*args):
        raise StorageUnavailable("throttled")

    world.consent.suppress = unavailable
    with pytest.raises(StorageUnavailable):
        world.receive(publish("Bounce"))


# --- the reputation guard -------------------------------------------------------------------------


def test_the_limits_are_the_levels_at_which_ses_reviews_an_account():
    limits = Limits()
    assert (limits.bounce_rate, limits.complaint_rate, limits.window_hours) == (0.05, 0.001, 24)
    assert breach(Totals(sent=1000, bounced=50), limits) is None  # at 5%: not past it
    assert "hard-bounce rate 5.1%" in breach(Totals(sent=1000, bounced=51), limits)
    assert breach(Totals(sent=1000, complained=1), limits) is None
    assert "complaint rate 0.2%" in breach(Totals(sent=1000, complained=2), limits)


def test_too_few_sends_never_pause():
    assert breach(Totals(sent=99, bounced=99), Limits(min_sends=100)) is None
    assert breach(Totals(sent=100, bounced=99), Limits(min_sends=100)) is not None


def sends(world, count, start=0):
    for number in range(start, start + count):
        world.receive(publish("Send", message_id=f"ses-{number}", ref=None))


def test_passing_the_bounce_limit_pauses_marketing_once_and_alerts_the_team_once():
    world = World(limits=Limits(min_sends=20))
    sends(world, 20)
    world.receive(publish("Bounce", message_id="ses-0", ref=None))  # 1 of 20: 5%, not past
    assert paused(world) is None and not world.channels.sent
    world.receive(publish("Bounce", message_id="ses-1", ref=None))  # 2 of 20: 10%
    world.receive(publish("Bounce", message_id="ses-2", ref=None))
    world.receive(publish("Bounce", message_id="ses-1", ref=None))  # SNS delivers one twice
    assert "hard-bounce rate 10%" in paused(world)
    alerts = [fields for channel, fields in world.channels.sent if channel == "alert"]
    assert len(alerts) == 1 and alerts[0]["to"] == "deliverability"
    assert "POST /v1/reputation/resume" in alerts[0]["text"]


def test_a_complaint_rate_past_the_limit_pauses_too():
    world = World(limits=Limits(min_sends=10, complaint_rate=0.1))
    sends(world, 10)
    world.receive(publish("Complaint", message_id="ses-3", ref=None))
    assert paused(world) is None
    world.receive(publish("Complaint", message_id="ses-4", ref=None))
    assert "complaint rate 20%" in paused(world)


def test_bounces_older_than_the_window_do_not_count():
    world = World(limits=Limits(min_sends=10, window_hours=2))
    old = (NOW - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for number in range(10):
        world.receive(json.dumps(event("Send", mail(message_id=f"old-{number}", ref=None, at=old), old)))
    for number in range(3):
        world.receive(json.dumps(event("Bounce", mail(message_id=f"old-{number}", ref=None, at=old), old, [ADDRESS])))
    assert paused(world) is None  # 30% three hours ago: outside the window when it was counted
    sends(world, 20)
    world.receive(publish("Bounce", message_id="ses-1", ref=None))
    assert paused(world) is None  # 1 of the 20 in the window: 5%
    world.receive(publish("Bounce", message_id="ses-2", ref=None))
    assert paused(world) is not None


def test_an_alert_that_cannot_be_sent_leaves_the_guard_to_try_again():
    world = World(limits=Limits(min_sends=10))
    sends(world, 10)
    world.channels.failures.append(SendRetryable("Throttling"))
    with pytest.raises(SendRetryable):
        world.receive(publish("Bounce", message_id="ses-1", ref=None))
    assert paused(world) is None
    world.receive(publish("Bounce", message_id="ses-1", ref=None))  # the retry
    assert paused(world) is not None
    assert len([1 for channel, _ in world.channels.sent if channel == "alert"]) == 1


def test_after_resuming_a_new_breach_pauses_and_alerts_again():
    world = World(limits=Limits(min_sends=10))
    sends(world, 10)
    world.receive(publish("Bounce", message_id="ses-1", ref=None))
    assert world.store.resume() is not None and paused(world) is None
    world.receive(publish("Bounce", message_id="ses-2", ref=None))
    assert paused(world) is not None and world.store.trips == 2


def test_the_window_setting_is_kept_within_what_is_stored():
    class Settings:
        bounce_rate_limit, complaint_rate_limit, reputation_window_hours, reputation_min_sends = 0.1, 0.01, 10_000, 0

    limits = Limits.from_settings(Settings())
    assert limits.window_hours == 14 * 24 and limits.min_sends == 1


def test_the_simulated_events_of_the_local_stack_are_what_the_parser_reads():
    """infra/ses_events.py (the local stand-in for SES) and the parser agree on the shape."""
    simulated = mail(to="bounce+x@simulator.amazonses.com")
    [send, bounce] = [parse(json.dumps(e)) for e in events_for(simulated, AT)]
    assert (send.kind, bounce.kind, bounce.bounce_type) == ("send", "bounce", "Permanent")
    kinds = [parse(json.dumps(e)).kind for e in events_for(mail(to="complaint@simulator.amazonses.com"), AT)]
    assert kinds == ["send", "delivery", "complaint"]
    assert isinstance(send, Feedback) and send.message == (PROFILE, KEY)

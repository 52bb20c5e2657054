"""The example triggers (triggers/*.yaml, templates/*.yaml) on the running local
stack: events go in over real HTTP (Segment's own library, plain requests) or
onto the EventBridge bus with boto3; what comes out is checked twice, in
Nudge's message history (the admin API) and in the emulator's own record of
what SES and SNS sent (tests.e2e.moto_records).

Every test uses its own people and addresses, so they share the session's stack.
"""
from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
import requests
import segment.analytics as analytics

from tests.e2e.conftest import SENT, Stack, eventually
from tests.e2e.moto_records import MotoRecords

#: How long one event may take from the API to SES or SNS here.
TIMEOUT = 20.0
FINAL = (*SENT, "skipped", "failed")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def address(user: str) -> str:
    return f"{user}@example.org"


@dataclass(frozen=True)
class Engine:
    """The stack, the resources its template made, and the emulator's record."""

    stack: Stack
    records: MotoRecords
    alerts_topic_arn: str
    send_queue_url: str

    def messages(self, user: str) -> list[dict[str, Any]]:
        return self.stack.messages(user)

    def decisions(self, user: str) -> list[dict[str, Any]]:
        return self.stack.decisions(user)

    def messages_when(self, user: str, count: int) -> list[dict[str, Any]]:
        """The person's messages once ``count`` of them have a final status."""
        def done() -> list[dict[str, Any]] | None:
            messages = [m for m in self.messages(user) if m["status"] in FINAL]
            return messages if len(messages) >= count else None

        return eventually(done, timeout=TIMEOUT, what=f"{count} message(s) to {user} being carried out")

    def send_queue_is_empty(self) -> bool:
        attributes = self.stack.aws_client("sqs").get_queue_attributes(
            QueueUrl=self.send_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return all(value == "0" for value in attributes.values())

    def settle(self, user: str) -> None:
        """Wait until everything already sent about ``user`` has been carried out.

        The events table's stream is read in order, so when a later checkpoint
        event of the same person has been evaluated (its verdict is in the
        decision log), every earlier one has been evaluated and its decisions
        queued; when the send queue is then empty, they have all been delivered.
        The checkpoint is a whitepaper download without an asset: it is
        evaluated but matches nothing.
        """
        checkpoint = str(uuid.uuid4())
        response = self.stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded",
                                                 "messageId": checkpoint, "properties": {"checkpoint": True}})
        assert response.status_code == 200, response.text
        eventually(lambda: any(d.get("event", {}).get("messageId") == checkpoint for d in self.decisions(user)),
                   timeout=TIMEOUT, what=f"the checkpoint event of {user} being evaluated")
        eventually(self.send_queue_is_empty, timeout=TIMEOUT, what="the send queue emptying")


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[Engine]:
    yield Engine(stack=stack, records=MotoRecords(stack.endpoint_url),
                 alerts_topic_arn=stack.physical_id("AlertsTopic"), send_queue_url=stack.physical_id("SendQueue"))


def segment_client(stack: Stack) -> analytics.Client:
    return analytics.Client(write_key=stack.write_key, host=stack.url, sync_mode=True)


def ok(response: requests.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


def at_once(count: int, call: Callable[[], requests.Response]) -> list[requests.Response]:
    """Make ``call`` from ``count`` threads released together."""
    barrier = threading.Barrier(count)
    answers: list[Any] = [None] * count

    def run(slot: int) -> None:
        barrier.wait()
        try:
            answers[slot] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            answers[slot] = exc

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(isinstance(answer, requests.Response) for answer in answers), answers
    return answers


def stored(stack: Stack, user: str, kind: str | None = None) -> list[str]:
    """The messageIds of the person's stored events (of one type), without settle()'s checkpoints."""
    return [e["messageId"] for e in stack.history(user)
            if (kind is None or e["type"] == kind) and not (e.get("properties") or {}).get("checkpoint")]


def by_trigger(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        grouped.setdefault(message["trigger"], []).append(message)
    return grouped


# 1. Whitepaper thank-you, from Segment's own library --------------------------------------------

def test_a_whitepaper_download_through_the_segment_library_sends_one_thank_you_email(engine: Engine) -> None:
    # Given a person identified with an email address by Segment's Python library
    client = segment_client(engine.stack)
    user = unique("reader")
    ok_identify, _ = client.identify(user_id=user, traits={"email": address(user), "firstName": "Rae"})
    assert ok_identify

    # When they download a whitepaper, naming the asset
    ok_track, _ = client.track(user_id=user, event="Whitepaper Downloaded",
                               properties={"asset": "pricing guide.pdf", "title": "The Pricing Guide"})
    assert ok_track

    # Then exactly one thank-you email is sent to them, with the asset's link
    engine.messages_when(user, 1)
    engine.settle(user)
    [message] = engine.messages(user)
    assert message["trigger"] == "whitepaper-thank-you"
    assert message["channel"] == "email" and message["status"] in SENT
    assert message["to"] == address(user)
    assert message["subject"] == "Your copy of The Pricing Guide"
    assert message["providerMessageId"]

    [email] = engine.records.emails(to=address(user))
    assert email.id == message["providerMessageId"]
    assert email.to == (address(user),)
    assert email.source == "Nudge Demo <hello@example.com>"
    assert email.subject == "Your copy of The Pricing Guide"
    assert "https://example.com/assets/pricing%20guide.pdf" in email.body
    assert "Hi Rae," in email.body


# 2. Order Completed: confirmation and cross-sell ------------------------------------------------

def test_an_order_sends_a_confirmation_and_a_cross_sell_email(engine: Engine) -> None:
    # Given a customer with an email address
    stack = engine.stack
    user = unique("buyer")
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"email": address(user), "firstName": "Bo"}}))

    # When they complete an order that lists its products
    ok(stack.post("/v1/track", {"userId": user, "event": "Order Completed", "properties": {
        "order_id": "O-1001", "total": 129.5, "currency": "EUR",
        "products": [{"product_id": "boots-7", "name": "Trail Boots", "price": 129.5, "quantity": 1}]}}))

    # Then they get the order confirmation (transactional) and a cross-sell email (marketing)
    engine.messages_when(user, 2)
    engine.settle(user)
    messages = by_trigger(engine.messages(user))
    assert sorted(messages) == ["order-confirmation", "order-cross-sell"]
    [confirmation], [cross_sell] = messages["order-confirmation"], messages["order-cross-sell"]
    assert confirmation["status"] == cross_sell["status"] in SENT
    assert confirmation["subject"] == "Your order O-1001 is confirmed"
    assert cross_sell["subject"] == "Bo, you might also like these"

    emails = {email.id: email for email in engine.records.emails(to=address(user))}
    assert set(emails) == {confirmation["providerMessageId"], cross_sell["providerMessageId"]}
    confirmation_email = emails[confirmation["providerMessageId"]]
    assert confirmation_email.source == "Example Shop <orders@example.com>"
    assert "O-1001" in confirmation_email.body and "Trail Boots" in confirmation_email.body
    assert "129.5 EUR" in confirmation_email.body
    cross_sell_email = emails[cross_sell["providerMessageId"]]
    assert cross_sell_email.source == "Example Shop <hello@example.com>"
    assert "https://example.com/products/boots-7/related" in cross_sell_email.body


def test_an_order_without_products_sends_only_the_confirmation(engine: Engine) -> None:
    # Given a customer with an email address
    stack = engine.stack
    user = unique("buyer")
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"email": address(user)}}))

    # When their completed order lists no products
    ok(stack.post("/v1/track", {"userId": user, "event": "Order Completed",
                                "properties": {"order_id": "O-2002", "total": 10}}))

    # Then only the confirmation is sent; the cross-sell's condition did not match
    engine.messages_when(user, 1)
    engine.settle(user)
    [message] = engine.messages(user)
    assert message["trigger"] == "order-confirmation" and message["status"] in SENT
    [email] = engine.records.emails(to=address(user))
    assert email.id == message["providerMessageId"]
    [verdicts] = [d.get("triggers") for d in engine.decisions(user) if d.get("event", {}).get("event") == "Order Completed"]
    assert sorted(verdicts, key=lambda v: v["trigger"]) == [
        {"trigger": "order-confirmation", "matched": True, "reason": "matched"},
        {"trigger": "order-cross-sell", "matched": False, "reason": "condition did not match"}]


# 3. Pricing page: an alert to sales and a higher lead score ------------------------------------

def test_a_pricing_page_view_alerts_sales_and_raises_the_lead_score_by_ten(engine: Engine) -> None:
    # Given a lead with a score of 5
    client = segment_client(engine.stack)
    user = unique("lead")
    assert client.identify(user_id=user, traits={"email": address(user), "name": "Lee", "lead_score": 5})[0]

    # When they view a pricing page
    assert client.page(user_id=user, name="Pricing", properties={"path": "/pricing/teams"})[0]

    # Then sales get an alert on the alerts topic, and the lead score goes up by 10, once
    engine.messages_when(user, 2)
    engine.settle(user)
    messages = by_trigger(engine.messages(user))
    assert list(messages) == ["pricing-page-alert"]
    channels = {m["channel"]: m for m in messages["pricing-page-alert"]}
    assert sorted(channels) == ["alert", "update_profile"]
    alert = channels["alert"]
    assert alert["status"] in SENT and alert["to"] == "sales"
    assert alert["subject"] == f"Pricing page visit: {address(user)}"

    [notification] = [n for n in engine.records.notifications(topic_arn=engine.alerts_topic_arn)
                      if n.message_id == alert["providerMessageId"]]
    assert notification.subject == f"Pricing page visit: {address(user)}"
    assert notification.attributes == {"team": "sales"}
    assert "Lee is looking at pricing." in notification.message
    assert "/pricing/teams" in notification.message
    assert "Lead score:  5 (before this visit)" in notification.message

    assert channels["update_profile"]["status"] == "sent"
    profile = engine.stack.profile(user).json()
    assert profile["traits"]["lead_score"] == 15


# 4. No address: skipped, with the reason --------------------------------------------------------

def test_a_support_request_from_a_person_without_an_email_is_skipped_with_the_reason(engine: Engine) -> None:
    # Given a person Nudge has no email address for
    stack = engine.stack
    user, ticket = unique("caller"), unique("T")
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"name": "Cal", "phone": "+14155550100"}}))

    # When they submit a support request
    ok(stack.post("/v1/track", {"userId": user, "event": "Support Request Submitted",
                                "properties": {"ticket_id": ticket, "subject": "Login fails"}}))

    # Then the acknowledgement is recorded as skipped, saying why, and nothing reaches SES
    engine.messages_when(user, 1)
    engine.settle(user)
    [message] = engine.messages(user)
    assert message["trigger"] == "support-acknowledgement" and message["channel"] == "email"
    assert message["status"] == "skipped"
    assert message["reason"] == "the person has no valid email address"
    assert message["to"] is None and message["providerMessageId"] is None
    assert [e for e in engine.records.emails() if ticket in e.subject or ticket in e.body] == []


# 5. Duplicate delivery -----------------------------------------------------------------------------

def test_events_sent_twice_in_sequence_send_each_message_once(engine: Engine) -> None:
    # Given a person, and events that each carry a messageId (some with a client timestamp, some without)
    stack = engine.stack
    user = unique("twice")
    events = [
        ("/v1/identify", {"userId": user, "traits": {"email": address(user)}}),
        ("/v1/track", {"userId": user, "event": "Whitepaper Downloaded", "timestamp": "2026-12-01T10:00:00Z",
                       "properties": {"asset": "guide.pdf"}}),
        ("/v1/track", {"userId": user, "event": "Order Completed",
                       "properties": {"order_id": "O-3003", "products": [{"product_id": "p-1"}]}}),
        ("/v1/track", {"userId": user, "event": "Support Request Submitted", "timestamp": "2026-12-01T10:05:00Z",
                       "properties": {"ticket_id": "T-3003"}}),
    ]

    # When every event is sent, and then sent again with the same messageId
    for path, body in events:
        body["messageId"] = str(uuid.uuid4())
        ok(stack.post(path, body))
        ok(stack.post(path, body))

    # Then each event is stored once and each message is sent once
    engine.messages_when(user, 4)
    engine.settle(user)
    messages = engine.messages(user)
    assert sorted(m["trigger"] for m in messages) == [
        "order-confirmation", "order-cross-sell", "support-acknowledgement", "whitepaper-thank-you"]
    assert all(m["status"] in SENT for m in messages)
    emails = engine.records.emails(to=address(user))
    assert len(emails) == 4, [e.subject for e in emails]
    assert sorted(e.id for e in emails) == sorted(m["providerMessageId"] for m in messages)
    assert sorted(stored(stack, user)) == sorted(body["messageId"] for _, body in events)


@pytest.mark.parametrize("with_timestamp", [True, False], ids=["client-timestamp", "no-timestamp"])
def test_the_same_request_posted_twice_at_once_sends_one_message(engine: Engine, with_timestamp: bool) -> None:
    # Given a person with an email address, and one support request with a messageId
    stack = engine.stack
    user = unique("race")
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"email": address(user)}}))
    request = {"userId": user, "event": "Support Request Submitted", "messageId": str(uuid.uuid4()),
               "properties": {"ticket_id": "T-4004"}}
    if with_timestamp:
        request["timestamp"] = "2026-12-01T11:00:00Z"

    # When two clients post the identical request at the same moment
    for answer in at_once(2, lambda: stack.post("/v1/track", request)):
        ok(answer)

    # Then one acknowledgement is sent: one in the history, one in SES
    engine.messages_when(user, 1)
    engine.settle(user)
    [message] = engine.messages(user)
    assert message["trigger"] == "support-acknowledgement" and message["status"] in SENT
    [email] = engine.records.emails(to=address(user))
    assert email.id == message["providerMessageId"]
    assert stored(stack, user, "track") == [request["messageId"]]


def test_a_batch_and_its_retries_posted_at_once_send_each_message_once(engine: Engine) -> None:
    # Given a person with an email address
    stack = engine.stack
    user = unique("batch")
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"email": address(user)}}))
    batch = {"batch": [
        {"type": "track", "userId": user, "event": "Order Completed", "messageId": str(uuid.uuid4()),
         "properties": {"order_id": "O-5005", "products": [{"product_id": "p-5", "name": "Lamp"}]}},
        {"type": "track", "userId": user, "event": "Whitepaper Downloaded", "messageId": str(uuid.uuid4()),
         "timestamp": "2026-12-01T12:00:00Z", "properties": {"asset": "lamps.pdf"}},
        {"type": "track", "userId": user, "event": "Support Request Submitted", "messageId": str(uuid.uuid4()),
         "properties": {"ticket_id": "T-5005"}},
    ]}

    # When the batch and two retries of it are posted at the same moment
    for answer in at_once(3, lambda: stack.post("/v1/batch", batch)):
        ok(answer)

    # Then every message of the batch is sent once
    engine.messages_when(user, 4)
    engine.settle(user)
    messages = engine.messages(user)
    assert sorted(m["trigger"] for m in messages) == [
        "order-confirmation", "order-cross-sell", "support-acknowledgement", "whitepaper-thank-you"]
    assert all(m["status"] in SENT for m in messages)
    emails = engine.records.emails(to=address(user))
    assert len(emails) == 4, [e.subject for e in emails]
    assert sorted(e.id for e in emails) == sorted(m["providerMessageId"] for m in messages)
    assert sorted(stored(stack, user, "track")) == sorted(event["messageId"] for event in batch["batch"])


# 6. Decisions explain a non-match ------------------------------------------------------------------

def test_the_decisions_say_why_a_download_without_an_asset_sent_nothing(engine: Engine) -> None:
    # Given a person with an email address
    stack = engine.stack
    user = unique("noasset")
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"email": address(user)}}))

    # When they download a whitepaper but the event does not say which asset
    download = str(uuid.uuid4())
    ok(stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded", "messageId": download,
                                "properties": {"title": "Untitled"}}))

    # Then the decision log says the trigger's condition did not match, and nothing is sent
    [decision] = eventually(lambda: [d for d in engine.decisions(user) if d.get("event", {}).get("messageId") == download],
                            timeout=TIMEOUT, what="the download being evaluated")
    assert decision["event"]["event"] == "Whitepaper Downloaded"
    assert decision["triggers"] == [{"trigger": "whitepaper-thank-you", "matched": False,
                                     "reason": "condition did not match"}]
    assert decision["actions"] == 0
    engine.settle(user)
    assert engine.messages(user) == []
    assert engine.records.emails(to=address(user)) == []


# 7. From the EventBridge bus ----------------------------------------------------------------------

def test_an_event_put_on_the_bus_that_matches_a_trigger_sends_its_message(engine: Engine) -> None:
    # Given a person with an email address
    stack = engine.stack
    user, ticket = unique("busy"), unique("T")
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"email": address(user), "firstName": "Bea"}}))

    # When another service puts their support request on the EventBridge bus
    answer = stack.aws_client("events").put_events(Entries=[{
        "EventBusName": stack.bus, "Source": "helpdesk", "DetailType": "track",
        "Detail": json.dumps({"userId": user, "event": "Support Request Submitted", "messageId": str(uuid.uuid4()),
                              "properties": {"ticket_id": ticket, "subject": "Invoice copy"}}),
    }])
    assert answer["FailedEntryCount"] == 0, answer

    # Then the acknowledgement is sent to them, naming the ticket
    engine.messages_when(user, 1)
    engine.settle(user)
    [message] = engine.messages(user)
    assert message["trigger"] == "support-acknowledgement" and message["status"] in SENT
    assert message["subject"] == f"We received your request (#{ticket})"
    [email] = engine.records.emails(to=address(user))
    assert email.id == message["providerMessageId"]
    assert email.source == "Example Support <support@example.com>"
    assert ticket in email.body and "Invoice copy" in email.body and "Hi Bea," in email.body

"""SES feedback on the running local stack: email to the SES mailbox simulator's
addresses comes back as SES would report it (infra/ses_events.py publishes the
events to the feedback topic; the local runtime hands them to on_feedback), and
the result is read over HTTP: the message history, the trigger's stats, what
later email to the address does. Opens and clicks are published to the topic
with boto3, as SES publishes them when the person opens the email.

Each test uses its own person and a ``+label`` simulator address, so the
suppressions they cause touch no other test.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest

from chalicelib.message_ref import message_ref
from chalicelib.segment import iso
from infra.local_stack import STACK_NAME
from infra.ses_events import event, mail_object
from tests.e2e.conftest import Stack, eventually

TIMEOUT = 30.0
TRIGGER = "order-confirmation"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def feedback_topic(stack: Stack) -> Iterator[str]:
    resources = stack.aws_client("cloudformation").describe_stack_resources(StackName=STACK_NAME)["StackResources"]
    [arn] = [r["PhysicalResourceId"] for r in resources if r.get("LogicalResourceId") == "FeedbackTopic"]
    yield arn


def identify(stack: Stack, user: str, email: str) -> None:
    response = stack.post("/v1/identify", {"userId": user, "traits": {"email": email, "firstName": "Sam"}})
    assert response.status_code == 200, response.text


def track(stack: Stack, user: str, name: str, properties: dict[str, Any]) -> None:
    response = stack.post("/v1/track", {"userId": user, "event": name, "messageId": unique("m"),
                                        "properties": properties})
    assert response.status_code == 200, response.text


def order(stack: Stack, user: str) -> None:
    track(stack, user, "Order Completed", {"order_id": unique("o"), "total": 25})


def message_when(stack: Stack, user: str, count: int, trigger: str = TRIGGER,
                 statuses: tuple[str, ...] = ("sent", "skipped", "failed", "delivered", "bounced", "complained"),
                 ) -> list[dict[str, Any]]:
    """The person's messages of ``trigger``, oldest first, once ``count`` have a status in ``statuses``."""
    def found() -> list[dict[str, Any]] | None:
        mine = [m for m in stack.messages(user) if m["trigger"] == trigger and m["status"] in statuses]
        return sorted(mine, key=lambda m: m["createdAt"]) if len(mine) >= count else None

    return eventually(found, timeout=TIMEOUT, what=f"{count} {trigger} message(s) of {user} in {statuses}")


def status_becomes(stack: Stack, user: str, message_id: str, status: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        [message] = [m for m in stack.messages(user) if m["id"] == message_id]
        return message if message["status"] == status else None

    return eventually(found, timeout=TIMEOUT, what=f"message {message_id} of {user} becoming {status}")


def stats(stack: Stack, trigger: str = TRIGGER) -> dict[str, int]:
    response = stack.admin_get(f"/v1/triggers/{trigger}/stats?days=2")
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def test_a_hard_bounce_marks_the_message_suppresses_the_address_and_counts_for_the_trigger(stack: Stack) -> None:
    # Given a person whose address bounces for good
    user, before = unique("bouncer"), stats(stack)
    identify(stack, user, f"bounce+{user}@simulator.amazonses.com")

    # When they complete an order, and SES reports the confirmation bounced
    order(stack, user)
    [first] = message_when(stack, user, 1)

    # Then the confirmation shows as bounced, and the trigger's numbers count it
    bounced = status_becomes(stack, user, first["id"], "bounced")
    assert bounced["feedback"]["bounce"]
    eventually(lambda: stats(stack)["bounced"] >= before["bounced"] + 1, timeout=TIMEOUT,
               what="the bounce being counted for the trigger")
    after = stats(stack)
    assert after["bounced"] == before["bounced"] + 1 and after["sent"] >= before["sent"] + 1

    # And the next confirmation to that address is not sent, with the reason
    order(stack, user)
    [_, second] = message_when(stack, user, 2)
    assert second["status"] == "skipped"
    assert "suppressed" in second["reason"] and "hard bounce" in second["reason"]


def test_a_complaint_marks_the_message_and_stops_marketing_but_not_receipts(stack: Stack) -> None:
    # Given a person who marks the email as spam
    user = unique("complainer")
    identify(stack, user, f"complaint+{user}@simulator.amazonses.com")

    # When their order confirmation is delivered and they complain about it
    order(stack, user)
    [first] = message_when(stack, user, 1)
    complained = status_becomes(stack, user, first["id"], "complained")
    assert set(complained["feedback"]) >= {"delivery", "complaint"}

    # Then marketing email to them is not sent, with the reason
    track(stack, user, "Whitepaper Downloaded", {"asset": "guide.pdf"})
    [offer] = message_when(stack, user, 1, trigger="whitepaper-thank-you")
    assert offer["status"] == "skipped" and "complaint" in offer["reason"]

    # But their next receipt still is
    order(stack, user)
    [_, second] = message_when(stack, user, 2)
    assert second["status"] != "skipped", second


def test_opens_and_clicks_are_kept_on_the_message_and_counted_once(stack: Stack, feedback_topic: str) -> None:
    # Given a confirmation SES delivered
    user, before = unique("reader"), stats(stack)
    identify(stack, user, f"success+{user}@simulator.amazonses.com")
    order(stack, user)
    [message] = message_when(stack, user, 1)
    delivered = status_becomes(stack, user, message["id"], "delivered")
    assert delivered["feedback"]["delivery"]

    # When the person opens it twice and clicks a link (SES publishes each)
    address = f"success+{user}@simulator.amazonses.com"
    mail = mail_object(message_id=message["providerMessageId"], source="orders@example.com", destination=[address],
                       headers=[{"name": "X-Nudge-Message", "value": message_ref(f"user:{user}", message["id"])}],
                       common_headers={}, tags={"trigger": [TRIGGER]}, timestamp=message["createdAt"],
                       account="123456789012", region="us-east-1")
    sns = stack.aws_client("sns")
    for event_type in ("Open", "Open", "Click"):
        record = event(event_type, mail, iso(datetime.now(timezone.utc)))
        sns.publish(TopicArn=feedback_topic, Message=json.dumps(record))

    # Then the message shows when it was opened and clicked, still delivered
    def engaged() -> dict[str, Any] | None:
        [shown] = [m for m in stack.messages(user) if m["id"] == message["id"]]
        return shown if {"open", "click"} <= set(shown["feedback"] or {}) else None

    shown = eventually(engaged, timeout=TIMEOUT, what="the open and the click reaching the message")
    assert shown["status"] == "delivered"
    # And the trigger counts one open and one click for it
    eventually(lambda: stats(stack)["clicked"] >= before["clicked"] + 1, timeout=TIMEOUT, what="the click counted")
    after = stats(stack)
    assert after["opened"] == before["opened"] + 1 and after["clicked"] == before["clicked"] + 1


def test_the_reputation_is_shown_to_the_operator(stack: Stack) -> None:
    response = stack.admin_get("/v1/reputation")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["paused"] is None  # a few simulator bounces are far below the minimum volume
    assert body["limits"] == {"bounceRate": 0.05, "complaintRate": 0.001, "windowHours": 24, "minSends": 100}
    assert stack.admin_get("/v1/reputation", headers={}).status_code == 401

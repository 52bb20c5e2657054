"""Delivery controls on a running local stack: the unsubscribe headers of
marketing email, one-click unsubscribe, the fatigue budget across triggers,
SMS STOP, the compliance lint of the admin API, and the reputation guard.

This module runs its own stack (time travel moves a process-wide clock) with a
small budget, ``email=2/1d``, so that the third marketing email of a day waits
for the next, and a reputation guard that judges from the first send, so that
one complaint pauses marketing email (the last test; it resumes sending).
Emails are checked in moto's own record, headers included.
"""
from __future__ import annotations

import uuid
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.e2e.conftest import SENT, Stack, eventually, running_stack
from tests.e2e.moto_records import MotoRecords
from tests.e2e.test_time_e2e import TIMEOUT, Engine

SHOP = "Example Shop <hello@example.com>"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with running_stack(tmp_path_factory.mktemp("controls-stack"), "the delivery-controls stack",
                       {"NUDGE_FATIGUE_BUDGET": "email=2/1d,sms=1/1d", "NUDGE_QUIET_HOURS": "sms=off",
                        "NUDGE_FALLBACK_TIMEZONE": "UTC", "NUDGE_REPUTATION_MIN_SENDS": "1"}) as stack:
        requests.delete(f"{stack.url}/v1/triggers/holiday-offer", headers=stack.admin_auth(), timeout=10)
        queue_url = stack.physical_id("SendQueue")
        yield Engine(stack=stack, records=MotoRecords(stack.endpoint_url), send_queue_url=queue_url)


def put(stack: Stack, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.put(stack.url + path, json=body, headers=stack.admin_auth(), timeout=10)


def person(engine: Engine, **traits: Any) -> str:
    user = f"ctl-{uuid.uuid4().hex[:10]}"
    response = engine.stack.post("/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.org",
                                                                              **traits}})
    assert response.status_code == 200, response.text
    return user


def track(engine: Engine, user: str, event: str) -> None:
    response = engine.stack.post("/v1/track", {"userId": user, "event": event, "properties": {}})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def promos(engine: Engine) -> list[str]:
    """Three marketing triggers on one event, each sending its own email."""
    stack = engine.stack
    assert put(stack, "/v1/templates/ctl-promo", {
        "id": "ctl-promo", "channel": "email", "subject": "A deal for {{ traits.email }}",
        "html": "<p>Deal</p>", "text": "Deal"}).status_code in (200, 201)
    ids = []
    for priority, name in ((9, "ctl-first"), (5, "ctl-second"), (1, "ctl-third")):
        response = put(stack, f"/v1/triggers/{name}", {
            "id": name, "description": "a promotion", "category": "marketing", "topic": "offers",
            "priority": priority, "when": {"event": "Deal Viewed"},
            "then": [{"email": {"template": "ctl-promo", "from": SHOP}}]})
        assert response.status_code in (200, 201), response.text
        ids.append(name)
    return ids


def sent_to(engine: Engine, user: str) -> list[Any]:
    return engine.records.emails(to=f"{user}@example.org")


def test_a_marketing_email_carries_one_click_unsubscribe_and_the_click_stops_the_topic(engine: Engine) -> None:
    # Given a person who gets a marketing email (the whitepaper thank-you, topic news)
    user = person(engine)
    engine.stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded",
                                    "properties": {"asset": "guide.pdf", "title": "The Guide"}})
    [mail] = eventually(lambda: sent_to(engine, user), timeout=TIMEOUT, what="the thank-you email")
    # Then moto's SES holds it with RFC 8058 headers and a footer link
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [part.strip(" <>") for part in mail.headers["List-Unsubscribe"].split(",")]
    assert https.startswith(engine.stack.url + "/v1/unsubscribe?token=")
    assert mailto.startswith("mailto:")
    assert https in mail.text and "Manage preferences" in mail.body
    # When the mailbox provider posts the one-click unsubscribe
    token = parse_qs(urlsplit(https).query)["token"][0]
    answer = requests.post(https, data="List-Unsubscribe=One-Click", timeout=10,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    # Then the person has left the topic, with the source and time kept
    subscriptions = engine.stack.admin_get(f"/v1/profiles/{user}/subscriptions").json()
    [news] = [t for t in subscriptions["topics"] if t["channel"] == "email" and t["id"] == "news"]
    assert news["subscribed"] is False and news["consent"]["source"] == "one-click"
    # And the next one of that topic is skipped with the reason; nothing more reaches SES
    engine.stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded",
                                    "properties": {"asset": "other.pdf", "title": "Another"}})
    skipped = eventually(lambda: [m for m in engine.messages(user) if m["status"] == "skipped"],
                         timeout=TIMEOUT, what="the second thank-you being skipped")
    assert "left the topic email:news (one-click" in skipped[0]["reason"]
    assert len(sent_to(engine, user)) == 1
    # And an altered token is refused, changing nothing
    forged = requests.post(https.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),
                           data="List-Unsubscribe=One-Click", timeout=10,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert forged.status_code == 400 and forged.json()["error"]["problems"][0]["field"] == "token"


def test_the_third_marketing_email_of_a_day_waits_for_the_next_and_the_highest_priority_goes_first(
        engine: Engine, promos: list[str]) -> None:
    # Given a budget of two marketing emails a day, and three promotions on one event
    user = person(engine)
    track(engine, user, "Deal Viewed")
    engine.settle(user)
    # Then two go out now and the lowest-priority one is held with the reason
    statuses = eventually(lambda: (lambda m: m if len(m) == 3 and all(x["status"] != "sending" for x in m) else None)(
        engine.messages(user)), timeout=TIMEOUT, what="three decisions carried out")
    by_trigger = {m["trigger"]: m for m in statuses}
    held = [m for m in statuses if m["status"] == "deferred"]
    assert len(held) == 1 and "budget (2 per day) is spent" in held[0]["reason"]
    assert len(sent_to(engine, user)) == 2
    assert by_trigger["ctl-first"]["status"] in SENT
    notes = [d["delivery"] for d in engine.decisions(user) if "delivery" in d]
    assert [n["outcome"] for n in notes] == ["deferred"] and notes[0]["trigger"] == held[0]["trigger"]
    # And a receipt is never held by the budget
    track(engine, user, "Order Completed")
    # When a day passes
    engine.advance("1441m")
    engine.settle(user)
    # Then the held one is sent, once; three marketing emails in moto's SES
    eventually(lambda: all(m["status"] in SENT for m in engine.messages(user)
                           if m["trigger"].startswith("ctl-")) or None, timeout=TIMEOUT,
               what="the held promotion being sent")
    promo_mail = [m for m in sent_to(engine, user) if m.subject.startswith("A deal")]
    assert len(promo_mail) == 3


def test_a_number_that_replied_stop_gets_no_text_not_even_transactional(engine: Engine) -> None:
    # moto's SNS treats numbers ending in 99 as opted out (STOP)
    stopped = f"+1555{uuid.uuid4().int % 10**5:05d}99"
    user = person(engine, phone=stopped)
    response = put(engine.stack, "/v1/triggers/ctl-code", {
        "id": "ctl-code", "description": "a sign-in code by text", "category": "transactional",
        "when": {"event": "Code Requested"}, "then": [{"sms": {"text": "Your code is 123456"}}]})
    assert response.status_code in (200, 201), response.text
    track(engine, user, "Code Requested")
    [message] = eventually(lambda: [m for m in engine.messages(user) if m["status"] != "sending"] or None,
                           timeout=TIMEOUT, what="the text being decided")
    assert message["status"] == "skipped" and "STOP" in message["reason"]
    assert engine.records.sms(stopped) == []


def test_the_admin_api_refuses_a_marketing_email_without_a_topic(engine: Engine) -> None:
    response = put(engine.stack, "/v1/triggers/ctl-untopical", {
        "id": "ctl-untopical", "description": "no topic", "category": "marketing",
        "when": {"event": "Deal Viewed"}, "then": [{"email": {"template": "ctl-promo", "from": SHOP}}]})
    assert response.status_code == 400
    [problem] = response.json()["error"]["problems"]
    assert problem["field"] == "topic" and "subscription topic" in problem["rule"]
    assert engine.stack.admin_get("/v1/triggers/ctl-untopical").status_code == 404


def test_a_complaint_rate_past_the_limit_holds_marketing_email_until_resumed_while_receipts_go_on(
        engine: Engine) -> None:
    stack = engine.stack
    # Given a person whose mailbox reports their receipt as spam (the SES mailbox simulator)
    complainer = f"ctl-{uuid.uuid4().hex[:10]}"
    assert stack.post("/v1/identify", {"userId": complainer, "traits": {
        "email": f"complaint+{complainer}@simulator.amazonses.com"}}).status_code == 200
    track(engine, complainer, "Order Completed")
    # Then the complaint rate passes 0.1% and marketing email pauses
    paused = eventually(lambda: stack.admin_get("/v1/reputation").json()["paused"], timeout=TIMEOUT,
                        what="the reputation guard pausing marketing email")
    assert "complaint rate" in paused["reason"]
    try:
        # When another person downloads a whitepaper and then orders
        user = person(engine)
        stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded",
                                 "properties": {"asset": "guide.pdf", "title": "The Guide"}})
        track(engine, user, "Order Completed")
        engine.settle(user)
        # Then the thank-you is held with the reason, and the receipt is sent
        done = eventually(lambda: (lambda m: m if len(m) == 2 and all(x["status"] != "sending" for x in m) else None)(
            engine.messages(user)), timeout=TIMEOUT, what="both decisions carried out")
        by_trigger = {m["trigger"]: m for m in done}
        assert by_trigger["whitepaper-thank-you"]["status"] == "deferred"
        assert "marketing email is paused: complaint rate" in by_trigger["whitepaper-thank-you"]["reason"]
        assert by_trigger["order-confirmation"]["status"] in SENT
        assert [m.subject for m in sent_to(engine, user)] == ["Your order is confirmed"]
    finally:
        # When the operator resumes sending
        resumed = requests.post(stack.url + "/v1/reputation/resume", headers=stack.admin_auth(), timeout=10)
        assert resumed.status_code == 200 and resumed.json()["resumed"] is True
    # Then the held thank-you goes out when it looks again, once
    engine.advance("31m")
    engine.settle(user)
    eventually(lambda: all(m["status"] in SENT for m in engine.messages(user)) or None, timeout=TIMEOUT,
               what="the held thank-you being sent")
    assert sorted(m.subject for m in sent_to(engine, user)) == ["Your copy of The Guide", "Your order is confirmed"]

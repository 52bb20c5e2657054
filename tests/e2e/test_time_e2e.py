"""Triggers that wait, and quiet hours, on a running local stack with time travel.

The local stage's clock moves with ``POST /v1/clock {"advance": ...}`` (admin),
which also sweeps every timer that falls due at once. That clock is
process-wide and only moves forward, so this module runs its OWN stack (started
like the session's one, by tests.e2e.conftest's helpers): moving it cannot make
another module's messages fall into quiet hours or fire anyone else's timers
(the win-back trigger, for one, acts after 30 days of silence), and the other
modules cannot move it under these tests.

Events go in through Segment's Python library (whose ``sentAt`` makes the
engine store them at the engine's time, not the laptop's), admin calls through
``requests``. What comes out is checked twice: in the message history and the
decision log (admin API), and in moto server's own record of what SES and SNS
sent (tests.e2e.moto_records). Every advance is computed from the engine's clock
as read from ``GET /v1/clock``; no assertion depends on wall-clock durations.
"""
from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest
import requests
import segment.analytics as analytics

from tests.e2e.conftest import SENT, Stack, eventually, running_stack
from tests.e2e.moto_records import MotoRecords

#: How long one step of the pipeline (API -> stream -> queue -> SES/SNS) may take here.
TIMEOUT = 20.0
UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
SHOP = "Example Shop <hello@example.com>"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def address(user: str) -> str:
    return f"{user}@example.org"


def phone_number(country_code: str) -> str:
    """A fresh E.164 number, so this module's texts are told apart in moto's record
    (never ending in 99: moto's SNS treats those as having replied STOP)."""
    return f"+{country_code}{random.randrange(10**7, 10**8)}{random.randrange(0, 99):02d}"


def opt_in(stack: Stack, user: str, key: str) -> None:
    """The person consents to a subscription topic (marketing texts are opt-in)."""
    response = requests.put(f"{stack.url}/v1/profiles/{user}/subscriptions", timeout=10, headers=stack.admin_auth(),
                            json={"topics": {key: True}, "source": "api"})
    assert response.status_code == 200, response.text


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(moment: datetime) -> str:
    """The engine's way of writing an instant (chalicelib.segment.iso): UTC, milliseconds, Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


# -- the module's own stack ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def time_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A local stack for this module alone (see the module docstring)."""
    # Quiet hours at their defaults (SMS 08:00-21:00; email never held), UTC for unknown zones.
    with running_stack(tmp_path_factory.mktemp("time-stack"), "the time-travel stack",
                       {"NUDGE_QUIET_HOURS": "", "NUDGE_FALLBACK_TIMEZONE": "UTC"}) as running:
        yield running


@dataclass(frozen=True)
class Engine:
    """The module's stack, its send queue, and the emulator's record."""

    stack: Stack
    records: MotoRecords
    send_queue_url: str

    # -- admin reads ------------------------------------------------------------------------------

    def messages(self, user: str) -> list[dict[str, Any]]:
        return self.stack.messages(user)

    def decisions(self, user: str) -> list[dict[str, Any]]:
        return self.stack.decisions(user)

    def verdicts(self, user: str, trigger: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(event, verdict) for every evaluation of ``trigger`` about the person, newest first."""
        return [(d.get("event", {}), v) for d in self.decisions(user) for v in d.get("triggers", []) if v["trigger"] == trigger]

    # -- the clock --------------------------------------------------------------------------------

    def now(self) -> datetime:
        response = self.stack.admin_get("/v1/clock")
        assert response.status_code == 200, response.text
        return parse_iso(response.json()["now"])

    def advance(self, by: str) -> dict[str, Any]:
        """Move the engine's clock by ``by`` (which sweeps what fell due), then
        wait until the messages that sweep queued have been carried out."""
        before = self.now()
        response = requests.post(self.stack.url + "/v1/clock", json={"advance": by}, timeout=30,
                                 headers=self.stack.admin_auth())
        assert response.status_code == 200, response.text
        answer = response.json()
        assert parse_iso(answer["now"]) >= before, answer
        assert set(answer["swept"]) == {"due", "acted", "calledOff", "failed"}, answer
        assert answer["swept"]["failed"] == 0, answer
        eventually(self.send_queue_is_empty, timeout=TIMEOUT, what=f"the send queue emptying after advancing {by}")
        return answer

    def advance_to(self, moment: datetime) -> dict[str, Any]:
        """Advance to the first whole minute at or after ``moment``."""
        minutes = math.ceil((moment - self.now()).total_seconds() / 60)
        assert minutes > 0, f"{moment} is not in the engine's future"
        return self.advance(f"{minutes}m")

    # -- settling ---------------------------------------------------------------------------------

    def send_queue_is_empty(self) -> bool:
        attributes = self.stack.aws_client("sqs").get_queue_attributes(
            QueueUrl=self.send_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return all(value == "0" for value in attributes.values())

    def settle(self, user: str) -> None:
        """Wait until every event already sent about ``user`` has been evaluated
        (its timers set, its decisions queued) and the send queue is empty.

        The events table's stream is read in order, so once a later checkpoint
        event of the same person has its verdict in the decision log, every
        earlier event has been evaluated. The checkpoint is a whitepaper download
        without an asset: evaluated, matched by nothing, unrelated to carts.
        """
        checkpoint = str(uuid.uuid4())
        response = self.stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded",
                                                 "messageId": checkpoint, "properties": {"checkpoint": True}})
        assert response.status_code == 200, response.text
        eventually(lambda: any(d.get("event", {}).get("messageId") == checkpoint for d in self.decisions(user)),
                   timeout=TIMEOUT, what=f"the checkpoint event of {user} being evaluated")
        eventually(self.send_queue_is_empty, timeout=TIMEOUT, what="the send queue emptying")


@pytest.fixture(scope="module")
def engine(time_stack: Stack) -> Engine:
    # The shipped holiday-offer broadcast would greet every person here if a test
    # moved the clock past 24 December: these tests are about other triggers.
    response = requests.delete(f"{time_stack.url}/v1/triggers/holiday-offer", headers=time_stack.admin_auth())
    assert response.status_code in (204, 404), response.text
    queue_url = time_stack.physical_id("SendQueue")
    return Engine(stack=time_stack, records=MotoRecords(time_stack.endpoint_url), send_queue_url=queue_url)


def segment_client(stack: Stack) -> analytics.Client:
    return analytics.Client(write_key=stack.write_key, host=stack.url, sync_mode=True)


def sent(call: Any, **fields: Any) -> dict[str, Any]:
    """Make a Segment library call; return the message it sent."""
    ok, message = call(**fields)
    assert ok, message
    return message


def reminders(engine: Engine, user: str) -> list[Any]:
    """Abandoned-cart emails moto's SES accepted for the person."""
    return [email for email in engine.records.emails(to=address(user)) if "still in your cart" in email.subject]


def add_to_cart(engine: Engine, client: analytics.Client, user: str, product: str) -> dict[str, Any]:
    """A "Product Added", once evaluated: (the stored event, the abandoned-cart verdict on it)."""
    message_id = sent(client.track, user_id=user, event="Product Added",
                      properties={"name": product, "price": 120})["messageId"]

    def evaluated() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(e, v) for e, v in engine.verdicts(user, "abandoned-cart") if e.get("messageId") == message_id]

    [(event, verdict)] = eventually(evaluated, timeout=TIMEOUT, what=f"{user}'s {product} being evaluated")
    # The wait starts at the event's time on the engine's clock and lasts the trigger's hour.
    due = parse_iso(event["timestamp"]) + timedelta(hours=1)
    assert verdict == {"trigger": "abandoned-cart", "matched": True,
                       "reason": f"matched; acts at {iso(due)} unless Order Completed happens first"}
    return event


def shopper(engine: Engine, name: str) -> tuple[analytics.Client, str]:
    client = segment_client(engine.stack)
    user = unique(name)
    sent(client.identify, user_id=user, traits={"email": address(user), "firstName": "Cy"})
    return client, user


# 1. An abandoned cart gets one reminder after an hour ---------------------------------------------

def test_a_cart_left_for_an_hour_gets_exactly_one_reminder_email(engine: Engine) -> None:
    # Given a shopper with an email address who adds an item to their cart
    client, user = shopper(engine, "cart")
    added = add_to_cart(engine, client, user, "Trail Boots")
    engine.settle(user)

    # Then nothing is sent right away
    assert engine.messages(user) == []
    assert reminders(engine, user) == []

    # When 59 minutes pass
    assert engine.advance("59m")["swept"]["acted"] == 0
    engine.settle(user)
    # Then still nothing
    assert engine.messages(user) == []
    assert reminders(engine, user) == []

    # When two more minutes pass (the hour is up)
    engine.advance("2m")
    engine.settle(user)

    # Then exactly one reminder is sent, about the item, and moto's SES has exactly that email
    [message] = eventually(lambda: [m for m in engine.messages(user) if m["status"] in SENT], timeout=TIMEOUT,
                           what="the reminder being sent")
    assert len(engine.messages(user)) == 1
    assert message["trigger"] == "abandoned-cart" and message["channel"] == "email"
    assert message["to"] == address(user)
    assert message["subject"] == "Cy, your Trail Boots is still in your cart"
    assert message["createdAt"] >= iso(parse_iso(added["timestamp"]) + timedelta(hours=1))
    [email] = engine.records.emails(to=address(user))
    assert email.id == message["providerMessageId"]
    assert email.source == SHOP and email.to == (address(user),)
    assert email.subject == "Cy, your Trail Boots is still in your cart"
    assert "Trail Boots" in email.body and "https://example.com/cart" in email.body

    # When two more hours pass
    assert engine.advance("2h")["swept"]["due"] == 0  # the timer fired once and was cleared
    engine.settle(user)

    # Then nothing more is sent
    assert [m["id"] for m in engine.messages(user)] == [message["id"]]
    assert [e.id for e in engine.records.emails(to=address(user))] == [email.id]


# 2. An order within the hour calls the reminder off -----------------------------------------------

def test_an_order_within_the_hour_calls_the_reminder_off(engine: Engine) -> None:
    # Given a shopper who added an item to their cart
    client, user = shopper(engine, "buyer")
    add_to_cart(engine, client, user, "Trail Boots")
    engine.settle(user)

    # When 20 minutes later they complete an order, and an hour passes after that
    engine.advance("20m")
    order = sent(client.track, user_id=user, event="Order Completed", properties={"order_id": "O-7007", "total": 120})
    engine.settle(user)
    swept = engine.advance("1h")["swept"]
    engine.settle(user)

    # Then only the order confirmation is sent; no reminder, in the history or in SES
    messages = engine.messages(user)
    assert [m["trigger"] for m in messages] == ["order-confirmation"] and messages[0]["status"] in SENT
    [email] = engine.records.emails(to=address(user))
    assert email.id == messages[0]["providerMessageId"]
    assert email.subject == "Your order O-7007 is confirmed"
    assert reminders(engine, user) == []
    assert swept["acted"] == 0

    # And the decision log says the reminder was called off by the order
    fired = [v for e, v in engine.verdicts(user, "abandoned-cart") if e.get("event") == "Product Added"
             and not v["reason"].startswith("matched")]
    assert len(fired) == 1, fired
    assert fired[0]["matched"] is False
    assert fired[0]["reason"].startswith("called off: 'Order Completed' happened at ")
    order_time = [e["timestamp"] for e in engine.stack.history(user) if e.get("messageId") == order["messageId"]]
    assert fired[0]["reason"] == f"called off: 'Order Completed' happened at {order_time[0]}"


# 3. Each item added restarts the hour ---------------------------------------------------------------

def test_two_items_added_half_an_hour_apart_get_one_reminder_an_hour_after_the_second(engine: Engine) -> None:
    # Given a shopper who adds one item, and another 30 minutes later
    client, user = shopper(engine, "twice")
    first = add_to_cart(engine, client, user, "Trail Boots")
    engine.settle(user)
    engine.advance("30m")
    second = add_to_cart(engine, client, user, "Rain Jacket")
    engine.settle(user)

    # When 59 minutes pass after the second (the first item's hour is over)
    swept = engine.advance("59m")["swept"]
    engine.settle(user)

    # Then nothing is sent: the first wait was restarted by the second item
    assert swept["acted"] == 0
    assert engine.messages(user) == []
    assert reminders(engine, user) == []
    [restarted] = [v for e, v in engine.verdicts(user, "abandoned-cart")
                   if e.get("messageId") == f"{first['messageId']}~abandoned-cart"]
    assert restarted == {"trigger": "abandoned-cart", "matched": False,
                         "reason": "a newer 'Product Added' restarted the wait"}

    # When the hour after the second item is up
    engine.advance("2m")
    engine.settle(user)

    # Then exactly one reminder is sent, about the second item
    [message] = eventually(lambda: [m for m in engine.messages(user) if m["status"] in SENT], timeout=TIMEOUT,
                           what="the reminder being sent")
    assert len(engine.messages(user)) == 1
    assert message["trigger"] == "abandoned-cart"
    assert message["subject"] == "Cy, your Rain Jacket is still in your cart"
    assert message["createdAt"] >= iso(parse_iso(second["timestamp"]) + timedelta(hours=1))
    [email] = engine.records.emails(to=address(user))
    assert email.id == message["providerMessageId"] and "Rain Jacket" in email.body
    [acted] = [v for e, v in engine.verdicts(user, "abandoned-cart")
               if e.get("messageId") == f"{second['messageId']}~abandoned-cart"]
    assert acted == {"trigger": "abandoned-cart", "matched": True, "reason": "the wait is over"}


# 4. Quiet hours: a marketing text at night waits for the morning -----------------------------------

def next_local(after: datetime, zone: ZoneInfo, hour: int) -> datetime:
    """The first ``hour``:00 on the wall clock of ``zone`` after ``after`` (UTC)."""
    day = after.astimezone(zone).date()
    while True:
        candidate = datetime(day.year, day.month, day.day, hour, tzinfo=zone).astimezone(UTC)
        if candidate > after:
            return candidate
        day += timedelta(days=1)


def test_a_back_in_stock_text_at_night_in_berlin_waits_until_eight_while_los_angeles_gets_it_at_once(
        engine: Engine) -> None:
    client = segment_client(engine.stack)
    berliner, angeleno = unique("berlin"), unique("la")
    berlin_phone, la_phone = phone_number("49151"), phone_number("1")
    sent(client.identify, user_id=berliner, traits={"phone": berlin_phone, "timezone": "Europe/Berlin"})
    sent(client.identify, user_id=angeleno, traits={"phone": la_phone, "timezone": "America/Los_Angeles"})
    engine.settle(berliner)
    engine.settle(angeleno)
    opt_in(engine.stack, berliner, "sms:offers")
    opt_in(engine.stack, angeleno, "sms:offers")

    # Given it is 03:00 at night in Berlin on the engine's clock (early evening in Los Angeles)
    engine.advance_to(next_local(engine.now() + timedelta(minutes=2), BERLIN, 3))
    now = engine.now()
    assert 3 <= now.astimezone(BERLIN).hour < 8, now
    assert 8 <= now.astimezone(LOS_ANGELES).hour < 21, now
    opening = next_local(now, BERLIN, 8)

    # When a product the Berliner wanted is back in stock
    sent(client.track, user_id=berliner, event="Back In Stock", properties={"name": "Trail Boots", "sku": "B1"})

    # Then the text is held, visibly, with the reason and the time it will go out; nothing reaches SNS
    [held] = eventually(lambda: [m for m in engine.messages(berliner) if m["status"] == "deferred"],
                        timeout=TIMEOUT, what="the Berliner's text being deferred")
    engine.settle(berliner)
    assert len(engine.messages(berliner)) == 1
    assert held["trigger"] == "back-in-stock-sms" and held["channel"] == "sms"
    assert held["to"] == berlin_phone and held["providerMessageId"] is None
    assert held["reason"] == f"quiet hours in Europe/Berlin; sends at {iso(opening)}"
    assert engine.records.sms(berlin_phone) == []

    # When the same happens, at the same moment, to a person in Los Angeles
    sent(client.track, user_id=angeleno, event="Back In Stock", properties={"name": "Rain Jacket", "sku": "J2"})

    # Then their text goes out at once
    [la_message] = eventually(lambda: [m for m in engine.messages(angeleno) if m["status"] in SENT],
                              timeout=TIMEOUT, what="the Angeleno's text being sent")
    engine.settle(angeleno)
    [la_text] = engine.records.sms(la_phone)
    assert la_text.message_id == la_message["providerMessageId"]
    assert la_text.message == "Rain Jacket is back in stock: https://example.com/p/J2 Reply STOP to opt out."
    assert engine.records.sms(berlin_phone) == []

    # When the clock reaches a minute or two before 08:00 in Berlin
    engine.advance_to(opening - timedelta(minutes=2))
    assert engine.now() < opening
    engine.settle(berliner)
    # Then the text is still held
    assert [m["status"] for m in engine.messages(berliner)] == ["deferred"]
    assert engine.records.sms(berlin_phone) == []

    # When it is past 08:00 in Berlin
    engine.advance("3m")
    engine.settle(berliner)

    # Then exactly one text is sent, with the expected words, and recorded sent after 08:00 Berlin time
    [message] = eventually(lambda: [m for m in engine.messages(berliner) if m["status"] in SENT],
                           timeout=TIMEOUT, what="the Berliner's text being sent")
    assert len(engine.messages(berliner)) == 1
    assert message["id"] == held["id"] and message["to"] == berlin_phone
    assert message["updatedAt"] >= iso(opening)
    [text] = engine.records.sms(berlin_phone)
    assert text.message_id == message["providerMessageId"]
    assert text.message == "Trail Boots is back in stock: https://example.com/p/B1 Reply STOP to opt out."
    [handed_back] = [v for _, v in engine.verdicts(berliner, "back-in-stock-sms")
                     if v["reason"] == "quiet hours are over"]
    assert handed_back["matched"] is True

    # And a day later nothing more has gone to either person
    engine.advance("1d")
    engine.settle(berliner)
    assert [t.message_id for t in engine.records.sms(berlin_phone)] == [text.message_id]
    assert [t.message_id for t in engine.records.sms(la_phone)] == [la_text.message_id]


# 5. A welcome series over a week, left by whoever upgrades -----------------------------------------

WELCOME_SUBJECTS = ("Welcome, Ada", "Three things people love in their first week", "Ready for more, Ada?")


def stored_event(engine: Engine, user: str, message_id: str) -> dict[str, Any]:
    """The person's stored event with this messageId (its timestamp is on the engine's clock)."""
    [event] = [e for e in engine.stack.history(user) if e.get("messageId") == message_id]
    return event


def welcome_messages(engine: Engine, user: str) -> list[dict[str, Any]]:
    """The person's welcome-series messages, oldest first."""
    return sorted((m for m in engine.messages(user) if m["trigger"] == "welcome-series"), key=lambda m: m["id"])


def assert_welcome_emails(engine: Engine, user: str, steps: int) -> None:
    """The person has exactly ``steps`` welcome messages, each sent, one per step,
    and moto's SES holds exactly those emails and no other for the person."""
    messages = welcome_messages(engine, user)
    assert [(m["id"].rsplit("#", 1)[1], m["channel"], m["to"]) for m in messages] == [
        (str(step), "email", address(user)) for step in range(steps)], messages
    assert all(m["status"] in SENT for m in messages), messages
    assert [m["subject"] for m in messages] == list(WELCOME_SUBJECTS[:steps])
    assert len(engine.messages(user)) == steps  # nothing else was sent to the person
    emails = {email.id: email for email in engine.records.emails(to=address(user))}
    assert len(emails) == steps == len(engine.records.emails(to=address(user)))
    for message in messages:
        email = emails[message["providerMessageId"]]
        assert email.source == "Example <hello@example.com>" and email.to == (address(user),)
        assert email.subject == message["subject"]


def test_the_welcome_series_sends_three_emails_over_a_week_and_stops_for_whoever_upgrades(engine: Engine) -> None:
    # Given two people on the free plan who sign up
    client = segment_client(engine.stack)
    stayer, upgrader = unique("welcome"), unique("upgrader")
    signed_up: dict[str, datetime] = {}
    for user in (stayer, upgrader):
        sent(client.identify, user_id=user, traits={"email": address(user), "firstName": "Ada", "plan": "free"})
        message_id = sent(client.track, user_id=user, event="Signed Up", properties={"plan": "free"})["messageId"]
        engine.settle(user)
        signed_up[user] = parse_iso(stored_event(engine, user, message_id)["timestamp"])
        assert [v for e, v in engine.verdicts(user, "welcome-series") if e.get("messageId") == message_id] == [
            {"trigger": "welcome-series", "matched": True, "reason": "entered the sequence; step 1 of 3"}]

    # Then the first welcome email goes to both at once, once each
    for user in (stayer, upgrader):
        assert_welcome_emails(engine, user, 1)

    # When the clock reaches a minute or two before two days after the first signup
    engine.advance_to(min(signed_up.values()) + timedelta(days=2) - timedelta(minutes=2))
    engine.settle(stayer)
    # Then nothing more has gone out
    for user in (stayer, upgrader):
        assert_welcome_emails(engine, user, 1)

    # When two days have passed since both signups
    engine.advance_to(max(signed_up.values()) + timedelta(days=2))
    for user in (stayer, upgrader):
        engine.settle(user)

    # Then both have the second email, sent no earlier than two days after their signup
    for user in (stayer, upgrader):
        assert_welcome_emails(engine, user, 2)
        assert welcome_messages(engine, user)[1]["createdAt"] >= iso(signed_up[user] + timedelta(days=2))

    # When, on day 3, one of them upgrades
    engine.advance_to(max(signed_up.values()) + timedelta(days=3))
    upgraded_id = sent(client.track, user_id=upgrader, event="Upgraded", properties={"plan": "pro"})["messageId"]
    engine.settle(upgrader)
    upgraded_at = stored_event(engine, upgrader, upgraded_id)["timestamp"]
    assert upgraded_at > iso(signed_up[upgrader] + timedelta(days=2))

    # And the clock reaches a minute or two before a week after the first signup
    engine.advance_to(min(signed_up.values()) + timedelta(days=7) - timedelta(minutes=2))
    engine.settle(stayer)
    # Then nothing more has gone out yet
    assert_welcome_emails(engine, stayer, 2)
    assert_welcome_emails(engine, upgrader, 2)

    # When a week has passed since both signups
    engine.advance_to(max(signed_up.values()) + timedelta(days=7))
    for user in (stayer, upgrader):
        engine.settle(user)

    # Then the one still on the free plan has the third email, and the upgrader does not
    assert_welcome_emails(engine, stayer, 3)
    assert welcome_messages(engine, stayer)[2]["createdAt"] >= iso(signed_up[stayer] + timedelta(days=7))
    assert_welcome_emails(engine, upgrader, 2)

    # And the decision log says why, step by step
    def steps(user: str) -> list[tuple[bool, str]]:
        return sorted((v["matched"], v["reason"]) for e, v in engine.verdicts(user, "welcome-series")
                      if e.get("messageId", "").endswith("~welcome-series"))

    assert steps(stayer) == [(True, "step 2 of 3"), (True, "step 3 of 3")]
    assert steps(upgrader) == [(False, f"left the sequence: 'Upgraded' happened at {upgraded_at}"),
                               (True, "step 2 of 3")]

    # And a day later nothing more has gone to either
    engine.advance("1d")
    engine.settle(stayer)
    assert_welcome_emails(engine, stayer, 3)
    assert_welcome_emails(engine, upgrader, 2)


# 6. A birthday at 09:00 on each person's own wall clock -------------------------------------------

BIRTHDAY_SUBJECT = "Happy birthday, Io! A gift inside"


def nine_on(day: date, zone: ZoneInfo) -> datetime:
    """09:00 on ``day`` on the wall clock of ``zone``, in UTC."""
    return datetime(day.year, day.month, day.day, 9, tzinfo=zone).astimezone(UTC)


def greetings(engine: Engine, user: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The person's messages in the history, and the emails moto's SES accepted for them."""
    return engine.messages(user), engine.records.emails(to=address(user))


def test_a_birthday_is_greeted_at_nine_in_berlin_hours_before_los_angeles(engine: Engine) -> None:
    # Given a birthday whose 09:00 in Berlin is still ahead on the engine's clock: today's or tomorrow's (Berlin)
    now = engine.now()
    day = now.astimezone(BERLIN).date()
    if nine_on(day, BERLIN) < now + timedelta(minutes=30):
        day += timedelta(days=1)
    berlin_nine, la_nine = nine_on(day, BERLIN), nine_on(day, LOS_ANGELES)
    assert now < berlin_nine < la_nine

    # And two people born on that day, one in Berlin (year-less date), one in Los Angeles (full date)
    client = segment_client(engine.stack)
    berliner, angeleno = unique("bday-berlin"), unique("bday-la")
    people = ((berliner, "Europe/Berlin", f"--{day:%m-%d}", berlin_nine),
              (angeleno, "America/Los_Angeles", f"1992-{day:%m-%d}", la_nine))
    for user, zone, birthday, nine in people:
        message_id = sent(client.identify, user_id=user, traits={
            "email": address(user), "firstName": "Io", "birthday": birthday, "timezone": zone})["messageId"]
        engine.settle(user)
        assert [v for e, v in engine.verdicts(user, "birthday") if e.get("messageId") == message_id] == [
            {"trigger": "birthday", "matched": True,
             "reason": f"scheduled for {day} 09:00 {zone} ({iso(nine)}), birthday {day}"}]
        assert greetings(engine, user) == ([], [])

    # When the clock reaches a minute or two before 09:00 in Berlin
    engine.advance_to(berlin_nine - timedelta(minutes=2))
    assert engine.now() < berlin_nine
    engine.settle(berliner)
    # Then nobody is greeted yet
    assert greetings(engine, berliner) == ([], [])
    assert greetings(engine, angeleno) == ([], [])

    # When it is past 09:00 in Berlin, while it is still before 09:00 in Los Angeles
    engine.advance("3m")
    now = engine.now()
    assert berlin_nine <= now < la_nine, now
    assert now.astimezone(BERLIN).hour >= 9 and now.astimezone(LOS_ANGELES).hour < 9, now
    engine.settle(berliner)
    engine.settle(angeleno)

    # Then the Berliner has exactly one birthday email, in the history and in SES
    [message], [email] = greetings(engine, berliner)
    assert (message["trigger"], message["channel"]) == ("birthday", "email") and message["status"] in SENT
    assert message["to"] == address(berliner) and message["subject"] == BIRTHDAY_SUBJECT
    assert message["createdAt"] >= iso(berlin_nine)
    assert email.id == message["providerMessageId"] and email.to == (address(berliner),)
    assert email.source == SHOP and email.subject == BIRTHDAY_SUBJECT and "BDAY20" in email.body
    assert [v for _, v in engine.verdicts(berliner, "birthday") if v["reason"] == f"birthday on {day}"] == [
        {"trigger": "birthday", "matched": True, "reason": f"birthday on {day}"}]
    # And the Angeleno, for whom it is still night, has nothing
    assert greetings(engine, angeleno) == ([], [])

    # When the clock reaches a minute or two before 09:00 in Los Angeles
    engine.advance_to(la_nine - timedelta(minutes=2))
    assert engine.now() < la_nine
    engine.settle(angeleno)
    # Then the Angeleno still has nothing
    assert greetings(engine, angeleno) == ([], [])

    # When it is past 09:00 in Los Angeles
    engine.advance("3m")
    engine.settle(angeleno)

    # Then the Angeleno has exactly one birthday email too, and the Berliner still just the one
    [la_message], [la_email] = greetings(engine, angeleno)
    assert (la_message["trigger"], la_message["subject"]) == ("birthday", BIRTHDAY_SUBJECT)
    assert la_message["status"] in SENT
    assert la_message["createdAt"] >= iso(la_nine)
    assert la_email.id == la_message["providerMessageId"] and la_email.to == (address(angeleno),)
    assert la_email.subject == BIRTHDAY_SUBJECT
    assert [m["id"] for m in greetings(engine, berliner)[0]] == [message["id"]]
    assert [e.id for e in greetings(engine, berliner)[1]] == [email.id]

    # And a day later nothing more has gone to either
    engine.advance("1d")
    engine.settle(berliner)
    engine.settle(angeleno)
    assert [e.id for e in engine.records.emails(to=address(berliner))] == [email.id]
    assert [e.id for e in engine.records.emails(to=address(angeleno))] == [la_email.id]

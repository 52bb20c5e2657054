"""At-least-once delivery: every stream record and every send-queue message
arrives two or three times, in shuffled batches, the copies later in other
batches; every timer sweep runs twice; clients retry requests. Each person
still gets each message once, as moto's own record of sent email, texts and
notifications shows, and each profile update is applied once."""
from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from chalicelib import clock
from chalicelib.message_ref import HEADER, read_message_ref
from infra.faults import Redelivery
from tests import sent_mail
from tests.integration.conftest import admin_headers, get_json, opt_in, post
from tests.integration.pipeline import AtLeastOncePipeline

ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = ("order-confirmation", "support-acknowledgement", "whitepaper-thank-you", "abandoned-cart",
            "welcome-series", "pricing-page-alert", "back-in-stock-sms")
TEMPLATES = ("order-confirmation", "support-acknowledgement", "whitepaper-thank-you", "abandoned-cart",
             "welcome-1", "welcome-2", "welcome-3", "pricing-page-alert")


@pytest.fixture
def everything_twice(client, stack, monkeypatch):
    monkeypatch.setenv("NUDGE_QUIET_HOURS", "sms=off")  # the test must not depend on the hour it runs at
    headers = {**admin_headers(), "Content-Type": "application/json"}
    for kind, ids in (("templates", TEMPLATES), ("triggers", TRIGGERS)):
        for definition_id in ids:
            definition = yaml.safe_load((ROOT / kind / f"{definition_id}.yaml").read_text())
            response = client.http.put(f"/v1/{kind}/{definition_id}", body=json.dumps(definition), headers=headers)
            assert response.status_code < 300, response.body
    return AtLeastOncePipeline(client, stack, redelivery=Redelivery(1.0, seed=3), stream_batch=4)


def send(client, call, body, times=1):
    """A client call, repeated ``times`` (a library retrying after a lost answer)."""
    for _ in range(times):
        assert post(client, f"/v1/{call}", body).status_code == 200


def track(client, user, event, message_id, times=1, **properties):
    send(client, "track", {"userId": user, "event": event, "messageId": message_id, "properties": properties}, times)


def later(pipeline, by):
    """Time passes; the sweep schedule fires twice (an overlapping run)."""
    clock.advance(by)
    pipeline.sweep()
    pipeline.sweep()
    pipeline.run()


def emails():
    return Counter(read_message_ref(mail.headers[HEADER]) for mail in sent_mail.in_backend())


def test_every_person_gets_each_message_once_however_often_it_is_delivered(client, stack, everything_twice):
    pipeline = everything_twice
    for user, traits in {"ana": {}, "ben": {"phone": "+4915112345678"}, "cy": {}, "dee": {},
                         "eve": {"plan": "free"}, "fay": {"plan": "pro"}, "gus": {}}.items():
        send(client, "identify", {"userId": user, "messageId": f"id-{user}",
                                  "traits": {"email": f"{user}@example.org", "firstName": user.title(), **traits}},
             times=2)
    opt_in(client, "ben", "sms:offers")
    # Given a day of shopping, support, downloads, sign-ups and pricing visits
    track(client, "ana", "Order Completed", "o1", times=2, order_id="1", total=10)
    track(client, "ana", "Order Completed", "o2", order_id="2", total=20)
    track(client, "ana", "Support Request Submitted", "t1", times=3, ticket_id="T-1", subject="Help")
    track(client, "ana", "Whitepaper Downloaded", "wp-ana", asset="guide.pdf", title="Guide")
    track(client, "ben", "Back In Stock", "bis-ben", name="Trail Boots", sku="TB1")
    track(client, "cy", "Product Added", "cart-cy-1", name="Socks")
    track(client, "cy", "Product Added", "cart-cy-2", times=2, name="Hat")
    track(client, "dee", "Product Added", "cart-dee", name="Scarf")
    track(client, "eve", "Signed Up", "su-eve", times=2)
    track(client, "fay", "Signed Up", "su-fay")
    track(client, "fay", "Whitepaper Downloaded", "wp-fay", asset="guide.pdf", title="Guide")
    for visit in ("pv-1", "pv-2"):
        send(client, "page", {"userId": "gus", "name": "Pricing", "messageId": visit,
                              "properties": {"path": f"/pricing/{visit}"}}, times=2)
    pipeline.run()
    clock.advance(timedelta(minutes=20))
    track(client, "dee", "Order Completed", "o-dee", times=2, order_id="3", total=30)
    pipeline.run()
    # When the hour, two days and a week go by
    later(pipeline, timedelta(minutes=45))
    later(pipeline, timedelta(days=2))
    later(pipeline, timedelta(days=5, hours=1))

    # Then every stream record and queue message was handed over at least twice
    assert pipeline.delivered["on_event_logged"] >= 2 * 20
    assert pipeline.redelivery.extra >= pipeline.delivered["on_send"] // 3
    # And each email went out once: receipts, the support answer, downloads (fay's third
    # marketing email this week still fits her budget of three), the cart left alone
    # (cy's, for the last item; dee ordered), and the welcome series (no third for pro fay)
    assert emails() == Counter({
        ("user:ana", "order-confirmation#o1#0"): 1, ("user:ana", "order-confirmation#o2#0"): 1,
        ("user:ana", "support-acknowledgement#t1#0"): 1, ("user:ana", "whitepaper-thank-you#wp-ana#0"): 1,
        ("user:cy", "abandoned-cart#cart-cy-2#0"): 1, ("user:dee", "order-confirmation#o-dee#0"): 1,
        ("user:eve", "welcome-series#su-eve#0"): 1, ("user:eve", "welcome-series#su-eve#1"): 1,
        ("user:eve", "welcome-series#su-eve#2"): 1,
        ("user:fay", "welcome-series#su-fay#0"): 1, ("user:fay", "welcome-series#su-fay#1"): 1,
        ("user:fay", "whitepaper-thank-you#wp-fay#0"): 1,
    })
    sns = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    # And ben got one text, sales one alert per pricing visit
    assert [(phone, "Trail Boots" in text) for phone, text in sns.sms_messages.values()] == [("+4915112345678", True)]
    alerts = sns.topics[stack["NUDGE_ALERTS_TOPIC_ARN"]].sent_notifications
    assert sorted(text.split("Page:")[1].split()[0] for _, text, *_ in alerts) == ["/pricing/pv-1", "/pricing/pv-2"]
    # And the lead score went up once per visit
    status, gus = get_json(client, "/v1/profiles/gus")
    assert gus["traits"]["lead_score"] == 20
    # And the message history agrees with what was sent
    for user, count in (("ana", 4), ("eve", 3), ("fay", 3)):
        status, body = get_json(client, f"/v1/profiles/{user}/messages")
        assert [m["status"] for m in body["messages"]] == ["sent"] * count


def test_a_decision_delivered_many_times_at_once_sends_one_email(client, stack, everything_twice):
    pipeline = everything_twice
    send(client, "identify", {"userId": "hal", "traits": {"email": "hal@example.org"}})
    track(client, "hal", "Order Completed", "o-hal", order_id="9")
    pipeline.arrivals()
    [decision] = [d for d in pipeline.queued() if d["profileId"] == "user:hal"]
    import boto3

    # Ten more copies of the same decision on the queue, besides the pipeline's own
    boto3.client("sqs").send_message_batch(QueueUrl=stack["NUDGE_SEND_QUEUE_URL"], Entries=[
        {"Id": str(i), "MessageBody": json.dumps(decision)} for i in range(10)])
    pipeline.run()
    assert emails() == Counter({("user:hal", "order-confirmation#o-hal#0"): 1})


def test_the_local_runtime_delivers_each_queue_message_two_or_three_times_in_at_least_once_mode():
    import threading
    import time

    import boto3
    from chalice import Chalice
    from moto import mock_aws

    from infra.event_sources import DeliveryPolicy, EventSourceRuntime

    seen: Counter = Counter()
    lock = threading.Lock()
    toy = Chalice(app_name="toy")

    @toy.on_sqs_message(queue="toy-queue", batch_size=5, name="on_toy")
    def on_toy(event):
        with lock:
            seen.update(record.body for record in event)

    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="toy-queue")["QueueUrl"]
        runtime = EventSourceRuntime(toy, boto3.client, bus_name="default", redelivery=Redelivery(1.0, seed=4),
                                     policy=DeliveryPolicy(wait_seconds=1, retry_seconds=0))
        with runtime:
            for n in range(8):
                sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if len(seen) == 8 and sum(seen.values()) == 8 + runtime.redelivery.extra:
                        break
                time.sleep(0.2)
    assert set(seen) == {f"m{n}" for n in range(8)}
    assert set(seen.values()) <= {2, 3}

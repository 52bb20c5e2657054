"""Events in, messages out: the stream, the evaluator, the send queue and the
delivery handler, through chalice.test.Client against moto."""
import json
from pathlib import Path

import boto3
import pytest
import yaml
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from tests import sent_mail
from tests.integration.conftest import admin_headers, get_json, post
from tests.integration.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pipeline(client, stack):
    for kind in ("templates", "triggers"):
        for path in sorted((ROOT / kind).glob("*.yaml")):
            definition = yaml.safe_load(path.read_text())
            if "schedule" in (definition.get("when") or {}):
                continue  # broadcasts go to everyone once the clock passes their date: tests put them
            response = client.http.put(f"/v1/{kind}/{definition['id']}", body=json.dumps(definition),
                                       headers={**admin_headers(), "Content-Type": "application/json"})
            assert response.status_code < 300, response.body
    return Pipeline(client, stack)


def sent_emails():
    return sent_mail.in_backend()


def messages(client, user_id):
    status, body = get_json(client, f"/v1/profiles/{user_id}/messages")
    assert status == 200, body
    return body["messages"]


def test_a_whitepaper_download_sends_one_thank_you_email(client, pipeline):
    post(client, "/v1/identify", {"userId": "wp1", "traits": {"email": "reader@example.org", "firstName": "Rae"}})
    download = {"userId": "wp1", "event": "Whitepaper Downloaded", "messageId": "dl-1",
                "properties": {"asset": "pricing guide.pdf", "title": "The Pricing Guide"}}
    post(client, "/v1/track", download)
    post(client, "/v1/track", download)  # a retried request
    pipeline.run()
    [message] = messages(client, "wp1")
    assert message["status"] == "sent" and message["channel"] == "email"
    assert message["subject"] == "Your copy of The Pricing Guide"
    assert message["providerMessageId"]
    [email] = [m for m in sent_emails() if m.to == ("reader@example.org",)]
    assert "https://example.com/assets/pricing%20guide.pdf" in email.body
    assert pipeline.failures == []


def test_decisions_say_which_triggers_matched_and_why_others_did_not(client, pipeline):
    post(client, "/v1/identify", {"userId": "wp2", "traits": {"email": "b@example.org"}})
    post(client, "/v1/track", {"userId": "wp2", "event": "Whitepaper Downloaded", "properties": {}})
    pipeline.run()
    status, body = get_json(client, "/v1/profiles/wp2/decisions")
    [decision] = body["decisions"]
    assert decision["triggers"] == [{"trigger": "whitepaper-thank-you", "matched": False,
                                     "reason": "condition did not match"}]
    assert messages(client, "wp2") == []


def test_a_pricing_visit_alerts_sales_and_raises_the_lead_score_once(client, pipeline, stack):
    post(client, "/v1/identify", {"userId": "lead1", "traits": {"email": "lead@example.org", "lead_score": 5}})
    visit = {"userId": "lead1", "name": "Pricing", "messageId": "pv-1", "properties": {"path": "/pricing/teams"}}
    post(client, "/v1/page", visit)
    pipeline.run()
    # The same decisions delivered again change nothing.
    for decision in [m for m in messages(client, "lead1")]:
        assert decision["status"] == "sent"
    status, profile = get_json(client, "/v1/profiles/lead1")
    assert profile["traits"]["lead_score"] == 15
    topic = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[stack["NUDGE_ALERTS_TOPIC_ARN"]]
    assert topic.sent_notifications, "no alert was published"
    assert {m["channel"] for m in messages(client, "lead1")} == {"alert", "update_profile"}


def test_redelivered_decisions_send_nothing_more(client, pipeline, stack):
    post(client, "/v1/identify", {"userId": "oc1", "traits": {"email": "buyer@example.org", "firstName": "Bo"}})
    order = {"userId": "oc1", "event": "Order Completed", "messageId": "order-9",
             "properties": {"order_id": "9", "total": 42.5, "currency": "EUR",
                            "products": [{"name": "Boots", "price": 42.5, "quantity": 1, "sku": "B1"}]}}
    post(client, "/v1/track", order)
    pipeline.arrivals()
    queued = pipeline.queued()
    assert queued, "no decision was queued"
    # Every decision arrives twice (SQS is at-least-once).
    sqs = boto3.client("sqs")
    for body in queued:
        sqs.send_message(QueueUrl=stack["NUDGE_SEND_QUEUE_URL"], MessageBody=json.dumps(body))
    before = len(sent_emails())
    pipeline.run()
    sent = [m for m in messages(client, "oc1") if m["status"] == "sent"]
    assert len(sent) == len({m["id"] for m in sent}) == len(sent_emails()) - before


def test_no_address_is_a_skipped_message_with_its_reason(client, pipeline):
    post(client, "/v1/track", {"userId": "nomail", "event": "Support Request Submitted",
                               "properties": {"ticket_id": "T-1", "subject": "Help"}})
    pipeline.run()
    [message] = messages(client, "nomail")
    assert message["status"] == "skipped" and "email" in message["reason"]


def test_an_unverified_sender_fails_for_good(client, pipeline):
    trigger = yaml.safe_load((ROOT / "triggers" / "support-acknowledgement.yaml").read_text())
    trigger["then"][0]["email"]["from"] = "support@unverified.example.net"
    client.http.put("/v1/triggers/support-acknowledgement", body=json.dumps(trigger),
                    headers={**admin_headers(), "Content-Type": "application/json"})
    post(client, "/v1/identify", {"userId": "uv1", "traits": {"email": "u@example.org"}})
    post(client, "/v1/track", {"userId": "uv1", "event": "Support Request Submitted",
                               "properties": {"ticket_id": "T-2", "subject": "Help"}})
    pipeline.run()
    [message] = messages(client, "uv1")
    assert message["status"] == "failed" and message["reason"].startswith("MessageRejected")

"""SES feedback through the feedback handler and the admin API, with chalice.test.Client
against the tables moto creates from infra/template.yaml.

SES's events are built by infra/ses_events.py (the local stand-in for SES event
publishing) from what moto recorded as sent, or from a ledger record, and handed
to ``on_feedback`` in the shape SNS gives Lambda.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from chalice.test import Client
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

from chalicelib import dependencies
from chalicelib.errors import StorageUnavailable
from chalicelib.message_ref import message_ref
from chalicelib.settings import get_settings
from infra.ses_events import SendRequests, event, events_for, mail_object, mail_of
from tests.integration.conftest import admin_headers, get_json, post
from tests.integration.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
AT = "2026-12-02T10:00:00.000Z"


@pytest.fixture
def requests_noted() -> Iterator[SendRequests]:
    """The SendEmail requests' tags and configuration set, as the local stack notes them."""
    noted = SendRequests()
    noted.install()
    yield noted
    noted.uninstall()


@pytest.fixture
def pipeline(client: Client, stack: dict[str, str], requests_noted: SendRequests) -> Pipeline:
    for kind, name in (("templates", "order-confirmation"), ("triggers", "order-confirmation")):
        definition = yaml.safe_load((ROOT / kind / f"{name}.yaml").read_text())
        response = client.http.put(f"/v1/{kind}/{name}", body=json.dumps(definition),
                                   headers={**admin_headers(), "Content-Type": "application/json"})
        assert response.status_code < 300, response.body
    return Pipeline(client, stack)


def deliver_feedback(client: Client, record: dict[str, Any]) -> Any:
    """One SES event to on_feedback, as SNS invokes it."""
    return client.lambda_.invoke("on_feedback", client.events.generate_sns_event(message=json.dumps(record)))


def order(client: Client, pipeline: Pipeline, user_id: str, address: str, order_id: str) -> dict[str, Any]:
    post(client, "/v1/identify", {"userId": user_id, "traits": {"email": address}})
    post(client, "/v1/track", {"userId": user_id, "event": "Order Completed", "messageId": f"order-{order_id}",
                               "properties": {"order_id": order_id, "total": 42, "products": []}})
    pipeline.run()
    return messages(client, user_id)[0]


def messages(client: Client, user_id: str) -> list[dict[str, Any]]:
    status, body = get_json(client, f"/v1/profiles/{user_id}/messages")
    assert status == 200, body
    return body["messages"]


def ses_events_of(provider_id: str, noted: SendRequests) -> list[dict[str, Any]]:
    """SES's events for an email moto accepted (what the local stack publishes)."""
    [sent] = [m for m in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages if m.id == provider_id]
    mail = mail_of(sent, noted.by_id.get(provider_id), get_settings().ses_configuration_set, AT,
                   DEFAULT_ACCOUNT_ID, "us-east-1")
    return events_for(mail, AT)


def stats(client: Client, trigger: str = "order-confirmation", days: int = 400) -> dict[str, Any]:
    status, body = get_json(client, f"/v1/triggers/{trigger}/stats?days={days}")
    assert status == 200, body
    return body


def test_a_hard_bounce_marks_the_message_suppresses_the_address_and_counts_for_the_trigger(
        client, pipeline, requests_noted):
    address = "bounce+order@simulator.amazonses.com"
    message = order(client, pipeline, "bo1", address, "1")
    assert message["status"] == "sent"
    before = stats(client)["totals"]
    for record in ses_events_of(message["providerMessageId"], requests_noted):
        deliver_feedback(client, record)
    [bounced] = messages(client, "bo1")
    assert bounced["status"] == "bounced" and set(bounced["feedback"]) == {"bounce"}
    suppression = dependencies.consent_store().suppression(address)
    assert (suppression.scope, suppression.reason) == ("all", "hard bounce")
    after = stats(client)["totals"]
    assert after["bounced"] == before["bounced"] + 1 and after["sent"] == before["sent"] + 1


def test_a_complaint_marks_the_message_and_stops_marketing_to_the_address(client, pipeline, requests_noted):
    address = "complaint@simulator.amazonses.com"
    message = order(client, pipeline, "co1", address, "2")
    for record in ses_events_of(message["providerMessageId"], requests_noted):
        deliver_feedback(client, record)
    [complained] = messages(client, "co1")
    assert complained["status"] == "complained"
    assert set(complained["feedback"]) == {"delivery", "complaint"}
    suppression = dependencies.consent_store().suppression(address)
    assert (suppression.scope, suppression.reason) == ("marketing", "complaint")
    # The delivery SNS redelivers late does not hide the complaint.
    deliver_feedback(client, ses_events_of(message["providerMessageId"], requests_noted)[1])
    assert messages(client, "co1")[0]["status"] == "complained"


def ledger_mail(user_id: str, key: str, message_id: str, address: str = "reader@example.org") -> dict[str, Any]:
    return mail_object(message_id=message_id, source="orders@example.com", destination=[address],
                       headers=[{"name": "X-Nudge-Message", "value": message_ref(f"user:{user_id}", key)}],
                       common_headers={}, tags={"trigger": ["order-confirmation"]}, timestamp=AT,
                       account=DEFAULT_ACCOUNT_ID, region="us-east-1")


def test_deliveries_opens_and_clicks_are_counted_once_per_email_and_shown_per_day(client, pipeline):
    message = order(client, pipeline, "oc1", "reader@example.org", "3")
    mail = ledger_mail("oc1", message["id"], message["providerMessageId"])
    for event_type in ("Send", "Delivery", "Open", "Open", "Click", "Click"):
        deliver_feedback(client, event(event_type, mail, AT, ["reader@example.org"]))
    deliver_feedback(client, event("Delivery", mail, AT, ["reader@example.org"]))  # SNS delivers twice
    [shown] = messages(client, "oc1")
    assert shown["status"] == "delivered"
    assert shown["feedback"] == {"delivery": AT, "open": AT, "click": AT}
    body = stats(client)
    assert body["trigger"] == "order-confirmation"
    [day] = [row for row in body["perDay"] if row["day"] == "2026-12-02"]
    assert day == {"day": "2026-12-02", "sent": 1, "delivered": 1, "bounced": 0, "complained": 0,
                   "opened": 1, "clicked": 1}
    assert body["totals"]["opened"] >= 1


def test_the_stats_route_needs_an_admin_token_and_a_sensible_number_of_days(client, stack):
    response = client.http.get("/v1/triggers/order-confirmation/stats")
    assert response.status_code == 401
    for days in ("0", "401", "x"):
        status, body = get_json(client, f"/v1/triggers/order-confirmation/stats?days={days}")
        assert status == 400 and body["error"]["problems"][0]["field"] == "days"
    body = stats(client, "never-sent", days=7)
    assert body["totals"] == dict.fromkeys(("sent", "delivered", "bounced", "complained", "opened", "clicked"), 0)


@pytest.mark.parametrize("message", [
    "not json at all",
    json.dumps({"eventType": "Teleport", "mail": {"messageId": "x", "timestamp": AT}}),
    json.dumps({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}),
    json.dumps(event("Delivery", mail_object(message_id="m-x", source="a@example.com", destination=["b@example.org"],
                                             headers=[], common_headers={}, tags={}, timestamp=AT,
                                             account=DEFAULT_ACCOUNT_ID, region="us-east-1"), AT)),
    json.dumps(event("Bounce", ledger_mail("nobody", "gone#1#0", "m-y", "gone@example.org"), AT,
                     ["gone@example.org"])),
], ids=["not-json", "unknown-event-type", "not-feedback", "no-header", "unknown-message"])
def test_unusable_or_unknown_feedback_is_acknowledged_not_retried(client, stack, message):
    response = client.lambda_.invoke("on_feedback", client.events.generate_sns_event(message=message))
    assert response.payload is None  # no exception: SNS and Lambda will not retry it


def test_a_storage_failure_is_raised_so_lambda_retries(client, stack):
    class Unavailable:
        def suppress(self, *args: Any) -> None:
            raise StorageUnavailable("ProvisionedThroughputExceededException")

    dependencies.override(consent=Unavailable())
    record = event("Bounce", ledger_mail("u", "k#1#0", "m-z"), AT, ["reader@example.org"])
    with pytest.raises(StorageUnavailable):
        deliver_feedback(client, record)


def alerts(stack: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    topic = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[stack["NUDGE_ALERTS_TOPIC_ARN"]]
    return [(message, attributes) for _, message, _, attributes, _ in topic.sent_notifications]


def test_the_reputation_guard_pauses_marketing_alerts_once_and_is_resumed(client, stack, monkeypatch):
    from chalicelib.clock import utcnow
    from chalicelib.segment import iso

    monkeypatch.setenv("NUDGE_REPUTATION_MIN_SENDS", "20")
    monkeypatch.setenv("NUDGE_COMPLAINT_RATE_LIMIT", "0.06")
    now = iso(utcnow())
    status, body = get_json(client, "/v1/reputation")
    assert status == 200 and body["paused"] is None
    assert body["limits"] == {"bounceRate": 0.05, "complaintRate": 0.06, "windowHours": 24, "minSends": 20}

    def mail(number: int) -> dict[str, Any]:
        return mail_object(message_id=f"rep-{number}", source="news@example.com", destination=["x@example.org"],
                           headers=[], common_headers={}, tags={"trigger": ["holiday-offer"]}, timestamp=now,
                           account=DEFAULT_ACCOUNT_ID, region="us-east-1")

    for number in range(20):
        deliver_feedback(client, event("Send", mail(number), now))
    deliver_feedback(client, event("Bounce", mail(0), now, ["gone0@example.org"]))  # 1 of 20: 5%, not past
    deliver_feedback(client, event("Complaint", mail(1), now, ["angry@example.org"]))  # 5%, under 6%
    assert dependencies.feedback_store().pause_state() is None
    assert not alerts(stack)
    deliver_feedback(client, event("Complaint", mail(2), now, ["angrier@example.org"]))  # 10%: past
    reason = (dependencies.feedback_store().pause_state() or {}).get("reason")
    assert reason and "complaint rate 10%" in reason
    deliver_feedback(client, event("Complaint", mail(3), now, ["angriest@example.org"]))
    [(text, attributes)] = alerts(stack)
    assert attributes["team"]["Value"] == "deliverability" and "POST /v1/reputation/resume" in text

    status, body = get_json(client, "/v1/reputation")
    assert body["sent"] == 20 and body["bounced"] == 1 and body["complained"] == 3
    assert body["complaintRate"] == pytest.approx(0.15) and body["paused"]["reason"] == reason

    response = client.http.post("/v1/reputation/resume", headers=admin_headers())
    assert response.status_code == 200 and json.loads(response.body)["resumed"] is True
    assert dependencies.feedback_store().pause_state() is None
    assert client.http.post("/v1/reputation/resume").status_code == 401

"""Erasure and export of a person through the admin API, against the tables moto
creates from infra/template.yaml, after the stream and send queue handlers
have given the person messages, decisions and timers."""
from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import boto3
import pytest

from tests.integration.conftest import admin_headers, get_json, post, write_headers
from tests.integration.pipeline import record_calls, tick
from tests.integration.test_pipeline import messages, pipeline  # noqa: F401 (fixture)

TABLES = ("NUDGE_EVENTS_TABLE", "NUDGE_PROFILES_TABLE", "NUDGE_DELIVERIES_TABLE", "NUDGE_TIMERS_TABLE",
          "NUDGE_CONSENT_TABLE")


def customer(client, user: str) -> dict[str, str]:
    """A visitor who looks at pricing, signs up, orders and leaves a cart; their traces."""
    device, email, phone = f"dev-{user}", f"{user}@example.org", f"+1555{sum(map(ord, user)):07d}"
    post(client, "/v1/page", {"anonymousId": device, "name": "Pricing", "properties": {"path": "/pricing"},
                              "timestamp": "2026-12-01T09:00:00Z"})
    post(client, "/v1/identify", {"anonymousId": device, "userId": user, "traits": {"email": email, "phone": phone},
                                  "timestamp": "2026-12-01T09:05:00Z"})
    post(client, "/v1/track", {"userId": user, "event": "Order Completed", "timestamp": "2026-12-01T09:10:00Z",
                               "properties": {"order_id": "o-1", "total": 10, "products": []}})
    # No client timestamp: the event also claims a deduplication marker.
    post(client, "/v1/track", {"userId": user, "event": "Product Added", "messageId": f"{user}-add",
                               "properties": {"name": "Boots"}})
    return {"user": f"user:{user}", "device": device, "email": email, "phone": phone}


def erase(client, user: str) -> tuple[int, Any]:
    response = client.http.delete(f"/v1/profiles/{user}", headers=admin_headers())
    return response.status_code, json.loads(response.body)


def everything_held() -> str:
    """Every item of every table that holds people, as text (a test may scan; Nudge never does)."""
    dynamodb = boto3.client("dynamodb")
    items = []
    for variable in TABLES:
        for page in dynamodb.get_paginator("scan").paginate(TableName=os.environ[variable]):
            items.extend(page["Items"])
    return json.dumps(items)


def test_the_export_holds_the_persons_events_messages_and_timers(client, pipeline):  # noqa: F811
    traces = customer(client, "ex1")
    pipeline.run()

    status, document = get_json(client, "/v1/profiles/ex1/export")

    assert status == 200, document
    assert document["identities"] == ["user:ex1", "anon:dev-ex1"]
    assert document["profile"]["traits"]["email"] == "ex1@example.org"
    assert [(e["type"], e.get("event")) for e in document["events"]] == [
        ("page", None), ("identify", None), ("track", "Order Completed"), ("track", "Product Added")]
    sent = {(m["trigger"], m["status"]) for m in document["messages"]}
    assert ("order-confirmation", "sent") in sent
    assert ("pricing-page-alert", "sent") in sent  # decided while they were still anonymous
    assert "abandoned-cart" in [t["trigger"] for t in document["timers"]]
    assert all(d["at"] for d in document["decisions"])
    assert document["suppressions"] == {"email": {"address": "ex1@example.org", "suppression": None},
                                        "phone": {"address": traces["phone"], "suppression": None}}
    assert document["erasedBefore"] is False


def test_erasure_leaves_no_trace_of_the_person_in_any_table(client, pipeline):  # noqa: F811
    traces = customer(client, "er1")
    customer(client, "er2")  # someone else, who stays
    pipeline.run()
    held = everything_held()
    assert all(trace in held for trace in traces.values())  # there was something to erase

    status, summary = erase(client, "er1")

    assert status == 200, summary
    assert summary["complete"] is True
    removed = summary["removed"]
    assert removed["events"] == 4 and removed["profiles"] == 1 and removed["links"] == 1
    assert removed["timers"] >= 1 and removed["messages"] >= 2 and removed["decisions"] >= 3
    assert summary["suppressed"] == ["email", "phone"]
    held = everything_held()
    for trace in (*traces.values(), "er1"):
        assert trace not in held, trace
    assert "er2@example.org" in held and "dev-er2" in held
    assert get_json(client, "/v1/profiles/er1")[0] == 404
    assert get_json(client, "/v1/profiles/er1/events")[0] == 404
    assert get_json(client, "/v1/profiles/er1/export")[0] == 404
    assert get_json(client, "/v1/profiles/er2/export")[0] == 200


def test_erasing_again_answers_404_saying_the_person_was_erased(client, pipeline):  # noqa: F811
    customer(client, "er3")
    pipeline.run()
    assert erase(client, "er3")[0] == 200
    status, body = erase(client, "er3")
    assert status == 404
    assert body["error"]["problems"][0]["field"] == "userId"
    assert "was erased" in body["error"]["message"]
    status, body = erase(client, "never-seen")
    assert status == 404 and "no profile" in body["error"]["message"]


def test_nothing_fires_for_an_erased_person(client, pipeline):  # noqa: F811
    from chalicelib import clock

    customer(client, "er4")
    pipeline.run()
    assert erase(client, "er4")[0] == 200
    clock.advance(timedelta(days=40))  # past the cart's hour and the win-back's silence
    tick(client)
    pipeline.run()
    assert "er4" not in everything_held()


def test_an_erasure_out_of_time_answers_202_and_a_repeat_finishes_it(client, pipeline, monkeypatch):  # noqa: F811
    import functions.admin

    traces = customer(client, "er5")
    pipeline.run()
    monkeypatch.setattr(functions.admin, "ERASE_SECONDS", 0.0)  # every request stops after one step
    answers = []
    while not answers or answers[-1][0] == 202:
        answers.append(erase(client, "er5"))
        assert len(answers) < 30, answers
    assert answers[0][0] == 202 and answers[0][1]["complete"] is False
    assert answers[-1][0] == 200 and answers[-1][1]["complete"] is True
    assert sum(body["removed"]["events"] for _, body in answers) == 4
    held = everything_held()
    assert not any(trace in held for trace in traces.values())


def test_erasure_and_export_read_by_query_and_never_scan(client, pipeline, monkeypatch):  # noqa: F811
    customer(client, "er6")
    pipeline.run()
    calls = record_calls(monkeypatch)
    assert get_json(client, "/v1/profiles/er6/export")[0] == 200
    assert erase(client, "er6")[0] == 200
    operations = {operation for operation, _ in calls}
    assert "Scan" not in operations
    assert ("Query", "by_person") in calls and "BatchWriteItem" in operations


def test_only_an_admin_may_export_or_erase(client):
    post(client, "/v1/identify", {"userId": "er7", "traits": {"email": "er7@example.org"}})
    for headers in ({}, admin_headers("test-write-key"), write_headers()):
        response = client.http.delete("/v1/profiles/er7", headers=headers)
        assert response.status_code == 401
        assert get_json(client, "/v1/profiles/er7/export", headers=headers)[0] == 401
    assert get_json(client, "/v1/profiles/er7")[0] == 200  # still there
    status, body = get_json(client, "/v1/profiles/nobody/export")
    assert status == 404 and body["error"]["problems"][0]["field"] == "userId"


def test_a_returning_customer_gets_transactional_mail_but_no_marketing(client, pipeline):  # noqa: F811
    customer(client, "er8")
    pipeline.run()
    assert erase(client, "er8")[0] == 200
    # They come back with the same address, and download a whitepaper (marketing) and order (transactional).
    post(client, "/v1/identify", {"userId": "er8", "traits": {"email": "er8@example.org"}})
    post(client, "/v1/track", {"userId": "er8", "event": "Whitepaper Downloaded", "messageId": "er8-wp",
                               "properties": {"asset": "guide.pdf"}})
    post(client, "/v1/track", {"userId": "er8", "event": "Order Completed", "messageId": "er8-order",
                               "properties": {"order_id": "o-2", "total": 5, "products": []}})
    pipeline.run()
    by_trigger = {m["trigger"]: m for m in messages(client, "er8")}
    assert by_trigger["order-confirmation"]["status"] == "sent"
    thanks = by_trigger["whitepaper-thank-you"]
    assert thanks["status"] == "skipped" and "erased" in thanks["reason"], thanks
    status, document = get_json(client, "/v1/profiles/er8/export")
    assert document["erasedBefore"] is True
    assert document["suppressions"]["email"]["suppression"]["reason"] == "erased"


@pytest.fixture(autouse=True)
def _real_time():
    from chalicelib import clock

    yield
    clock.reset()

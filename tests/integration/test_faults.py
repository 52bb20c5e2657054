"""Nudge's promises under faults: one AWS call in ten failing (throttling or
5xx), one delivery process in a hundred dying after a send, and three
deliveries in ten repeated out of order. No accepted event is lost, no person
gets a message twice, and every message owed is sent, or sent once and
recorded with an unknown outcome when its process died."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from chalicelib.aws_clients import client as aws_client
from chalicelib.dynamodb import DynamoProfileStore
from chalicelib.errors import StorageUnavailable
from chalicelib.settings import get_settings
from infra.faults import FaultInjector, FaultPlan
from tests.integration.conftest import admin_headers, get_json, post


@pytest.fixture(scope="module")
def week_under_faults():
    from bench import reliability

    # About 500 events from 50 people over a week: six triggers, a one-hour
    # wait called off by orders, a three-step welcome series with an exit.
    return reliability.run(people=50, seed=7, fault_rate=0.1, die_after_send=0.01, duplicates=0.3, workers=1)


def test_faults_were_injected_and_clients_had_to_retry(week_under_faults):
    report = week_under_faults
    assert report.faults >= 0.08 * report.calls_armed
    assert report.answers.get(503, 0) > 0, "no request met a storage fault"
    assert report.extra_deliveries > 0 and report.stream_deliveries > report.to_evaluate


def test_no_accepted_event_is_lost_and_every_one_is_evaluated(week_under_faults):
    report = week_under_faults
    assert report.events_sent >= 300
    assert report.events_accepted == report.events_sent  # the clients' retries got through
    assert report.events_stored == report.events_accepted
    assert report.events_lost == 0
    assert report.evaluated == report.to_evaluate > 0


def test_every_message_owed_is_sent_once_or_recorded_unknown_and_nothing_else_goes_out(week_under_faults):
    report = week_under_faults
    assert report.messages_expected > 100
    assert report.lost_keys == []
    assert report.duplicated == 0
    assert report.unexpected_keys == []
    assert report.delivered + report.unknown == report.messages_expected
    assert report.sent_moto == report.messages_expected
    assert report.sent_not_recorded == 0


def test_profile_updates_are_applied_once_each(week_under_faults):
    report = week_under_faults
    assert report.updates_applied == report.updates_expected > 0
    assert report.lead_scores_wrong == 0


# -- single faults, by hand -------------------------------------------------------------------------


def test_both_the_boto3_clients_and_pynamodbs_own_client_fail_when_armed(stack):
    profiles = DynamoProfileStore(get_settings())
    sqs = aws_client("sqs")
    with FaultInjector(FaultPlan(rate=1.0, seed=1)) as faults:
        assert profiles.get("user:nobody") is None  # not armed: a verification read
        with faults.armed():
            with pytest.raises(StorageUnavailable):
                profiles.get("user:nobody")
            with pytest.raises(ClientError):
                sqs.get_queue_attributes(QueueUrl=stack["NUDGE_SEND_QUEUE_URL"], AttributeNames=["All"])
    assert {service for service, _ in faults.stats.faults} == {"dynamodb", "sqs"}


def test_storage_failing_after_validation_answers_503_and_the_retry_is_stored_once(client):
    body = {"userId": "flaky", "event": "Order Completed", "messageId": "order-503",
            "timestamp": "2026-12-02T10:00:00Z", "properties": {"order_id": "503"}}
    assert post(client, "/v1/identify", {"userId": "flaky", "traits": {"email": "f@example.org"}}).status_code == 200
    with FaultInjector(FaultPlan(rate=1.0, seed=2)) as faults, faults.armed():
        refused = post(client, "/v1/track", {"userId": "flaky"})  # invalid: refused before storage
        unavailable = post(client, "/v1/track", body)
    assert refused.status_code == 400
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "1"
    assert json.loads(unavailable.body)["error"]["code"] == "unavailable"
    retried = post(client, "/v1/track", body)
    again = post(client, "/v1/track", body)
    assert (retried.status_code, again.status_code) == (200, 200)
    status, page = get_json(client, "/v1/profiles/flaky/events", admin_headers())
    assert [e["messageId"] for e in page["events"]].count("order-503") == 1
    status, profile = get_json(client, "/v1/profiles/flaky", admin_headers())
    assert profile["events"]["Order Completed"]["count"] == 1


def test_an_identify_whose_profile_write_failed_brings_its_email_on_the_retry(client, monkeypatch):
    original = DynamoProfileStore.save
    failures = iter([StorageUnavailable("throttled")])

    def save_failing_once(self, profile):
        for failure in failures:
            raise failure
        return original(self, profile)

    monkeypatch.setattr(DynamoProfileStore, "save", save_failing_once)
    body = {"userId": "late", "messageId": "id-late", "timestamp": "2026-12-02T10:00:00Z",
            "sentAt": "2026-12-02T10:00:01Z", "traits": {"email": "late@example.org"}}
    assert post(client, "/v1/identify", body).status_code == 503  # logged, profile not written
    assert get_json(client, "/v1/profiles/late")[0] == 404
    retry = {**body, "sentAt": "2026-12-02T10:00:04Z"}  # the library stamps each attempt
    assert post(client, "/v1/identify", retry).status_code == 200
    status, profile = get_json(client, "/v1/profiles/late")
    assert profile["traits"]["email"] == "late@example.org"
    assert profile["events"]["identify"]["count"] == 1
    status, page = get_json(client, "/v1/profiles/late/events")
    assert [e["messageId"] for e in page["events"]] == ["id-late"]
    assert profile["events"]["identify"]["last"] == page["events"][0]["timestamp"]

"""The tracking API through Chalice's test client, against moto tables built from infra/."""
import json

import boto3

from tests.integration.conftest import get_json, post, write_headers


def stored_events(client, user_id):
    status, body = get_json(client, f"/v1/profiles/{user_id}/events?limit=500")
    return body["events"] if status == 200 else []


def test_each_call_type_is_accepted_like_segment(client):
    calls = {
        "identify": {"userId": "u1", "traits": {"email": "u1@example.com"}},
        "track": {"userId": "u1", "event": "Whitepaper Downloaded", "properties": {"asset": "guide.pdf"}},
        "page": {"userId": "u1", "name": "Pricing", "properties": {"path": "/pricing"}},
        "screen": {"userId": "u1", "name": "Home"},
        "group": {"userId": "u1", "groupId": "acme", "traits": {"plan": "team"}},
        "alias": {"userId": "u1", "previousId": "anon-1"},
    }
    for call, body in calls.items():
        response = post(client, f"/v1/{call}", body)
        assert response.status_code == 200, (call, response.body)
        assert json.loads(response.body) == {"success": True}
    assert sorted(e["type"] for e in stored_events(client, "u1")) == sorted(calls)


def test_missing_or_wrong_write_key_is_401_and_stores_nothing(client):
    body = {"userId": "u2", "event": "Signed Up"}
    for headers in ({"Content-Type": "application/json"}, write_headers("wrong-key")):
        response = post(client, "/v1/track", body, headers=headers)
        assert response.status_code == 401
        assert json.loads(response.body)["error"]["code"] == "unauthorized"
        assert "WWW-Authenticate" in response.headers
    status, _ = get_json(client, "/v1/profiles/u2")
    assert status == 404


def test_write_key_may_come_in_the_body(client):
    body = {"userId": "u3", "event": "Signed Up", "writeKey": "test-write-key"}
    response = post(client, "/v1/track", body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200


def test_bad_input_names_the_field_and_the_rule_and_stores_nothing(client):
    response = post(client, "/v1/batch", {"batch": [
        {"type": "track", "userId": "u4", "event": "Fine"},
        {"type": "track", "userId": "u4"}]})
    assert response.status_code == 400
    error = json.loads(response.body)["error"]
    assert error["problems"] == [{"field": "batch[1].event",
                                  "rule": "is required for track calls and must be a non-empty string"}]
    status, _ = get_json(client, "/v1/profiles/u4")
    assert status == 404


def test_malformed_json_and_oversize_bodies_are_400(client):
    assert post(client, "/v1/track", "{oops").status_code == 400
    big = {"userId": "u5", "event": "Big", "properties": {"blob": "x" * 33_000}}
    response = post(client, "/v1/track", big)
    assert response.status_code == 400
    assert json.loads(response.body)["error"]["problems"][0]["field"] == "body"
    huge = {"batch": [{"type": "track", "userId": "u5", "event": "E", "properties": {"b": "x" * 20_000}}] * 30}
    assert post(client, "/v1/batch", huge).status_code == 400


def test_a_retried_message_is_accepted_and_stored_once(client):
    body = {"userId": "u6", "event": "Order Completed", "messageId": "order-1",
            "timestamp": "2026-12-01T10:00:00Z"}
    for _ in range(3):
        assert post(client, "/v1/track", body).status_code == 200
    assert [e["messageId"] for e in stored_events(client, "u6")] == ["order-1"]
    status, profile = get_json(client, "/v1/profiles/u6")
    assert profile["events"]["Order Completed"]["count"] == 1


def test_stored_timestamp_is_corrected_for_client_clock_skew(client):
    body = {"userId": "u7", "event": "Skewed", "timestamp": "2030-01-01T00:00:00Z",
            "sentAt": "2030-01-01T00:00:30Z"}
    post(client, "/v1/track", body)
    [event] = stored_events(client, "u7")
    assert event["originalTimestamp"] == "2030-01-01T00:00:00.000Z"
    assert event["timestamp"] < "2027"  # thirty seconds before it was received, not in 2030


def test_cors_lets_browsers_call_the_local_stage(client):
    # The local stage allows every origin (NUDGE_CORS_ORIGINS="*" in .chalice/config.json).
    preflight = client.http.request("OPTIONS", "/v1/track", headers={"origin": "https://shop.example.com"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    response = client.http.post("/v1/track", headers={**write_headers(), "origin": "https://shop.example.com"},
                                body=json.dumps({"anonymousId": "b1", "event": "Clicked"}))
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_prod_stage_allows_no_browser_origin_by_default(stack):
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="prod") as prod:
        preflight = prod.http.request("OPTIONS", "/v1/track", headers={"origin": "https://shop.example.com"})
        assert preflight.status_code == 403
        assert "Access-Control-Allow-Origin" not in preflight.headers


def test_storage_outage_is_a_json_503_that_may_be_retried(client, stack):
    boto3.client("dynamodb").delete_table(TableName=stack["NUDGE_EVENTS_TABLE"])
    response = post(client, "/v1/track", {"userId": "u8", "event": "Lost?"})
    assert response.status_code == 503
    assert json.loads(response.body)["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"


def test_events_from_the_bus_are_stored(client):
    event = client.events.generate_cw_event(
        source="billing", detail_type="track", resources=[],
        detail={"userId": "u9", "event": "Invoice Paid", "properties": {"amount": 49}})
    client.lambda_.invoke("on_bus_event", event)
    client.lambda_.invoke("on_bus_event", event)  # EventBridge may deliver twice
    assert [e["event"] for e in stored_events(client, "u9")] == ["Invoice Paid"]


def test_invalid_bus_events_are_dropped_not_retried(client):
    event = client.events.generate_cw_event(source="billing", detail_type="track", resources=[],
                                            detail={"event": "No Person"})
    result = client.lambda_.invoke("on_bus_event", event)
    assert result.payload == {"accepted": 0, "duplicates": 0}


def test_unsupported_content_type_is_a_json_415_naming_the_header(client):
    response = client.http.post("/v1/track", headers={**write_headers(), "Content-Type": "application/xml"},
                                body="<track/>")
    assert response.status_code == 415
    error = json.loads(response.body)["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["problems"][0]["field"] == "Content-Type"


def test_beacons_sent_as_text_plain_are_accepted(client):
    body = json.dumps({"anonymousId": "beacon-1", "event": "Tab Closed", "writeKey": "test-write-key"})
    response = client.http.post("/v1/track", headers={"Content-Type": "text/plain"}, body=body)
    assert response.status_code == 200


def test_gzipped_batches_from_segment_libraries_are_accepted(client):
    import gzip

    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "gz", "event": "Zipped"}]}).encode())
    response = client.http.post("/v1/batch", headers={**write_headers(), "Content-Encoding": "gzip"}, body=body)
    assert response.status_code == 200, response.body
    assert [e["event"] for e in stored_events(client, "gz")] == ["Zipped"]

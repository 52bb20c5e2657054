import json

from tests.integration.conftest import admin_headers, get_json, post


def test_track_then_read_back(client):
    r = post(client, "/v1/track", {"userId": "u1", "event": "Order Completed", "messageId": "m1",
                                   "timestamp": "2026-12-01T10:00:00Z", "sentAt": "2026-12-01T10:00:05Z"})
    assert r.status_code == 200, r.body
    r = post(client, "/v1/batch", {"batch": [
        {"type": "page", "anonymousId": "a1", "name": "Pricing", "properties": {"path": "/pricing"}},
        {"type": "identify", "anonymousId": "a1", "userId": "u1", "traits": {"email": "x@y.com", "timezone": "Europe/Paris"}}]})
    assert r.status_code == 200, r.body
    status, profile = get_json(client, "/v1/profiles/u1")
    print(json.dumps(profile, indent=1))
    status, events = get_json(client, "/v1/profiles/u1/events?limit=2")
    print(json.dumps(events, indent=1))
    assert status == 200

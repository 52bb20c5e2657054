"""Reading people back: profiles and their event history, for admins only."""
from tests.integration.conftest import admin_headers, get_json, post


def test_profile_merges_anonymous_history_after_identify(client):
    post(client, "/v1/page", {"anonymousId": "dev-1", "name": "Pricing", "timestamp": "2026-11-01T10:00:00Z"})
    post(client, "/v1/identify", {"anonymousId": "dev-1", "userId": "ana",
                                  "traits": {"email": "ana@example.com", "timezone": "Europe/Lisbon"},
                                  "timestamp": "2026-11-01T10:05:00Z"})
    status, profile = get_json(client, "/v1/profiles/ana")
    assert status == 200
    assert profile["traits"]["email"] == "ana@example.com"
    assert profile["timezone"] == "Europe/Lisbon"
    assert profile["anonymousIds"] == ["dev-1"]
    assert profile["firstSeen"] == "2026-11-01T10:00:00.000Z"
    status, history = get_json(client, "/v1/profiles/ana/events")
    assert [e["type"] for e in history["events"]] == ["identify", "page"]


def test_history_pages_newest_first_without_gaps_or_repeats(client):
    batch = [{"type": "track", "userId": "bo", "event": f"Step {i}", "messageId": f"s{i}",
              "timestamp": f"2026-11-02T10:{i:02d}:00Z"} for i in range(7)]
    post(client, "/v1/batch", {"batch": batch})
    seen, cursor = [], None
    while True:
        path = "/v1/profiles/bo/events?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = get_json(client, path)
        assert status == 200 and len(page["events"]) <= 3
        seen += [e["messageId"] for e in page["events"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"s{i}" for i in reversed(range(7))]


def test_admin_routes_refuse_the_write_key_and_wrong_tokens(client):
    post(client, "/v1/identify", {"userId": "cy"})
    for headers in ({}, admin_headers("test-write-key"), admin_headers("guess"),
                    {"Authorization": "Basic dGVzdC13cml0ZS1rZXk6"}):
        for path in ("/v1/profiles/cy", "/v1/profiles/cy/events"):
            status, body = get_json(client, path, headers=headers)
            assert status == 401, (path, headers)
            assert body["error"]["code"] == "unauthorized"


def test_unknown_people_bad_limits_and_bad_cursors(client):
    post(client, "/v1/identify", {"userId": "di"})
    status, body = get_json(client, "/v1/profiles/nobody")
    assert status == 404 and body["error"]["problems"][0]["field"] == "userId"
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit"), ("limit=501", "limit"),
                         ("cursor=%%%", "cursor")):
        status, body = get_json(client, f"/v1/profiles/di/events?{query}")
        assert status == 400, query
        assert body["error"]["problems"][0]["field"] == field


def test_health_needs_no_credential(client):
    assert client.http.get("/health").status_code == 200

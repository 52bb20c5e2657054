"""The HTTP API over a real socket: retries are stored once, keys are checked."""
from __future__ import annotations

import uuid

import pytest
import requests

from tests.e2e.conftest import PROJECT_DIR, Stack, free_port, start_stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_json_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def test_health(stack: Stack) -> None:
    response = requests.get(stack.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("with_timestamp", [True, False], ids=["client-timestamp", "no-timestamp"])
def test_the_same_message_sent_twice_is_stored_once(stack: Stack, with_timestamp: bool) -> None:
    user = unique("retry")
    body = {"userId": user, "event": "Checkout Started", "messageId": str(uuid.uuid4()),
            "properties": {"cart": 3}}
    if with_timestamp:
        body["timestamp"] = "2026-12-01T10:00:00Z"
    for _ in range(2):
        response = stack.post("/v1/track", body)
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}

    assert [e["messageId"] for e in stack.history(user)] == [body["messageId"]]
    assert stack.profile(user).json()["events"]["Checkout Started"]["count"] == 1


def test_a_batch_retried_after_a_partial_send_adds_only_the_new_calls(stack: Stack) -> None:
    user = unique("batch-retry")
    first = {"type": "track", "userId": user, "event": "A", "messageId": str(uuid.uuid4())}
    second = {"type": "track", "userId": user, "event": "B", "messageId": str(uuid.uuid4())}
    assert stack.post("/v1/batch", {"batch": [first]}).status_code == 200
    assert stack.post("/v1/batch", {"batch": [first, second, second]}).status_code == 200

    assert sorted(e["event"] for e in stack.history(user)) == ["A", "B"]
    counts = stack.profile(user).json()["events"]
    assert counts["A"]["count"] == 1 and counts["B"]["count"] == 1


@pytest.mark.parametrize("credential", ["missing", "empty-basic", "wrong-key", "admin-token-as-write-key"])
def test_ingestion_without_a_valid_write_key_is_401(stack: Stack, credential: str) -> None:
    headers = {
        "missing": {},
        "empty-basic": {"Authorization": "Basic"},
        "wrong-key": stack.write_auth("not-a-key"),
        "admin-token-as-write-key": stack.write_auth(stack.admin_token),
    }[credential]
    user = unique("intruder")
    response = stack.post("/v1/track", {"userId": user, "event": "Signed Up"}, headers=headers)
    assert_json_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert stack.profile(user).status_code == 404, "nothing was written"


def test_a_wrong_write_key_in_the_body_is_401(stack: Stack) -> None:
    response = stack.post("/v1/track", {"writeKey": "not-a-key", "userId": "x", "event": "E"}, headers={})
    assert_json_error(response, 401, "unauthorized")


def test_a_write_key_in_the_body_is_accepted(stack: Stack) -> None:
    user = unique("body-key")
    response = stack.post("/v1/track", {"writeKey": stack.write_key, "userId": user, "event": "E"}, headers={})
    assert response.status_code == 200, response.text
    assert stack.profile(user).status_code == 200


@pytest.mark.parametrize("how", ["bearer", "basic", "none"])
def test_admin_reads_need_the_admin_token(stack: Stack, how: str) -> None:
    user = unique("private")
    assert stack.post("/v1/identify", {"userId": user, "traits": {"email": "p@example.com"}}).status_code == 200
    headers = {"bearer": stack.admin_auth(stack.write_key), "basic": stack.write_auth(), "none": {}}[how]
    for path in (f"/v1/profiles/{user}", f"/v1/profiles/{user}/events"):
        response = stack.admin_get(path, headers=headers)
        assert_json_error(response, 401, "unauthorized")
        assert "p@example.com" not in response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_call_is_a_400_naming_the_field(stack: Stack) -> None:
    user = unique("bad")
    response = stack.post("/v1/track", {"userId": user, "properties": []})
    error = assert_json_error(response, 400, "invalid_request")
    fields = {problem["field"] for problem in error["problems"]}
    assert {"event", "properties"} <= fields
    assert stack.profile(user).status_code == 404


def test_an_unknown_person_is_a_404(stack: Stack) -> None:
    error = assert_json_error(stack.profile(unique("nobody")), 404, "not_found")
    assert error["problems"][0]["field"] == "userId"


@pytest.mark.parametrize("taken", ["PORT", "AWS_PORT"])
def test_a_second_stack_on_a_taken_port_exits_with_a_clear_error(stack: Stack, tmp_path, taken: str) -> None:
    ports = {"PORT": str(free_port()), "AWS_PORT": str(free_port())}
    ports[taken] = stack.url.rsplit(":", 1)[1] if taken == "PORT" else stack.endpoint_url.rsplit(":", 1)[1]
    log_path = tmp_path / "second.log"
    process = start_stack(ports, log_path)
    try:
        assert process.wait(timeout=60) == 1
    finally:
        if process.poll() is None:
            process.kill()
    log = log_path.read_text()
    assert f"127.0.0.1:{ports[taken]}" in log or "Address already in use" in log, log
    assert "Traceback" not in log, log
    assert requests.get(stack.url + "/health", timeout=10).status_code == 200, "the first stack is unharmed"


def test_the_example_triggers_are_applied_at_start(stack: Stack) -> None:
    shipped = {path.stem for path in (PROJECT_DIR / "triggers").glob("*.yaml")}
    response = stack.admin_get("/v1/triggers")
    assert response.status_code == 200, response.text
    assert shipped <= {row["id"] for row in response.json()["triggers"]}

"""Segment's own Python library, pointed at the local stack, builds one profile."""
from __future__ import annotations

import uuid

import pytest
import segment.analytics as analytics
from segment.analytics.request import APIError

from tests.e2e.conftest import Stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sync_client(stack: Stack, write_key: str | None = None) -> analytics.Client:
    return analytics.Client(write_key=write_key or stack.write_key, host=stack.url, sync_mode=True)


def test_identify_track_and_alias_build_one_profile(stack: Stack) -> None:
    client = sync_client(stack)
    user, browser, phone = unique("user"), unique("browser"), unique("phone")
    sent: list[dict] = []

    def send(call, **fields) -> None:
        ok, message = call(**fields)
        assert ok
        sent.append(message)

    # Anonymous browsing, then sign-up on the same browser.
    send(client.page, anonymous_id=browser, name="Docs", properties={"path": "/docs"})
    send(client.track, anonymous_id=browser, event="Viewed Plan", properties={"plan": "pro"})
    send(client.identify, user_id=user, anonymous_id=browser,
         traits={"email": f"{user}@example.com", "plan": "free", "timezone": "Europe/Paris"})
    send(client.identify, user_id=user, traits={"plan": "pro", "name": "Ada"})
    # A second device, anonymous until aliased to the same person.
    send(client.track, anonymous_id=phone, event="Opened App")
    send(client.alias, previous_id=phone, user_id=user)
    send(client.track, user_id=user, event="Order Completed", properties={"total": 42.5})

    response = stack.profile(user)
    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["userId"] == user
    assert profile["traits"] == {"email": f"{user}@example.com", "plan": "pro", "name": "Ada",
                                 "timezone": "Europe/Paris"}
    assert profile["timezone"] == "Europe/Paris"
    assert set(profile["anonymousIds"]) == {browser, phone}
    counts = {name: counter["count"] for name, counter in profile["events"].items()}
    assert counts["Viewed Plan"] == 1
    assert counts["Opened App"] == 1
    assert counts["Order Completed"] == 1
    assert counts["identify"] == 2

    history = stack.history(user)
    assert sorted(e["messageId"] for e in history) == sorted(m["messageId"] for m in sent)
    by_id = {e["messageId"]: e for e in history}
    viewed = by_id[sent[1]["messageId"]]
    assert viewed["anonymousId"] == browser and "userId" not in viewed
    assert viewed["event"] == "Viewed Plan" and viewed["properties"] == {"plan": "pro"}
    assert by_id[sent[0]["messageId"]]["name"] == "Docs"
    assert by_id[sent[5]["messageId"]]["previousId"] == phone
    assert by_id[sent[6]["messageId"]]["properties"] == {"total": 42.5}
    times = [e["timestamp"] for e in history]
    assert times == sorted(times, reverse=True), "history is newest first"


def test_history_pages_follow_the_cursor(stack: Stack) -> None:
    client = sync_client(stack)
    user = unique("pager")
    sent = [client.track(user_id=user, event=f"Step {n}")[1]["messageId"] for n in range(7)]

    pages = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = stack.admin_get(f"/v1/profiles/{user}/events{query}").json()
        pages.append([e["messageId"] for e in body["events"]])
        cursor = body["next"]
        if not cursor:
            break
    assert [len(page) for page in pages] == [3, 3, 1]
    seen = [message_id for page in pages for message_id in page]
    assert sorted(seen) == sorted(sent) and len(set(seen)) == len(seen)


def test_batched_mode_with_flush(stack: Stack) -> None:
    errors: list[Exception] = []
    client = analytics.Client(write_key=stack.write_key, host=stack.url, upload_size=10,
                              on_error=lambda error, batch: errors.append(error))
    user = unique("batched")
    try:
        for n in range(25):
            client.track(user_id=user, event="Clicked", properties={"n": n})
        client.identify(user_id=user, traits={"plan": "team"})
        client.flush()
    finally:
        client.join()
    assert errors == []

    profile = stack.profile(user).json()
    assert profile["events"]["Clicked"]["count"] == 25
    assert profile["traits"] == {"plan": "team"}
    assert sorted(e["properties"]["n"] for e in stack.history(user) if e["type"] == "track") == list(range(25))


def test_a_wrong_write_key_is_refused_to_the_library(stack: Stack) -> None:
    client = sync_client(stack, write_key="not-a-key")
    with pytest.raises(APIError) as refused:
        client.track(user_id=unique("nobody"), event="Signed Up")
    assert refused.value.status == 401

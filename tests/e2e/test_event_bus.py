"""Events other services put on the EventBridge bus reach the store, as in AWS."""
from __future__ import annotations

import json
import uuid
from typing import Any

from tests.e2e.conftest import Stack, eventually


def put(stack: Stack, detail_type: str, detail: dict[str, Any]) -> str:
    response = stack.aws_client("events").put_events(Entries=[{
        "EventBusName": stack.bus,
        "Source": "tests.e2e",
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
    }])
    assert response["FailedEntryCount"] == 0, response
    return response["Entries"][0]["EventId"]


def stored(stack: Stack, user_id: str, count: int = 1) -> list[dict[str, Any]] | None:
    events = stack.history(user_id)
    return events if len(events) >= count else None


def test_a_track_put_on_the_bus_is_stored(stack: Stack) -> None:
    user, message_id = f"bus-{uuid.uuid4().hex[:10]}", str(uuid.uuid4())
    put(stack, "track", {"userId": user, "event": "Invoice Paid", "messageId": message_id,
                         "timestamp": "2026-11-30T09:00:00Z", "properties": {"amount": 120}})

    [event] = eventually(lambda: stored(stack, user), what="the bus event being stored")
    assert event["messageId"] == message_id
    assert event["type"] == "track" and event["event"] == "Invoice Paid"
    assert event["properties"] == {"amount": 120}
    assert event["originalTimestamp"] == "2026-11-30T09:00:00.000Z"
    assert stack.profile(user).json()["events"]["Invoice Paid"]["count"] == 1


def test_an_identify_and_a_batch_from_the_bus_update_the_profile(stack: Stack) -> None:
    user, anonymous = f"bus-{uuid.uuid4().hex[:10]}", f"anon-{uuid.uuid4().hex[:10]}"
    put(stack, "batch", {"batch": [
        {"type": "track", "anonymousId": anonymous, "event": "Trial Started", "messageId": str(uuid.uuid4())},
        {"type": "identify", "anonymousId": anonymous, "userId": user, "messageId": str(uuid.uuid4()),
         "traits": {"company": "Initech"}},
    ]})
    put(stack, "identify", {"userId": user, "traits": {"seats": 12}})

    def merged() -> dict[str, Any] | None:
        response = stack.profile(user)
        body = response.json() if response.status_code == 200 else {}
        return body if body.get("traits", {}).get("seats") == 12 and "Trial Started" in body.get("events", {}) else None

    profile = eventually(merged, what="the profile being updated from the bus")
    assert profile["traits"] == {"company": "Initech", "seats": 12}
    assert profile["anonymousIds"] == [anonymous]
    assert len(stack.history(user)) == 3


def test_an_event_put_twice_on_the_bus_is_stored_once(stack: Stack) -> None:
    user = f"bus-{uuid.uuid4().hex[:10]}"
    detail = {"userId": user, "event": "Plan Changed", "messageId": str(uuid.uuid4())}
    put(stack, "track", detail)
    put(stack, "track", detail)
    # The bus delivers in order on one queue: once the marker is stored, both
    # copies have been handled.
    put(stack, "track", {"userId": user, "event": "Marker", "messageId": str(uuid.uuid4())})

    events = eventually(lambda: [e for e in stack.history(user) if e["event"] == "Marker"] and stack.history(user),
                        what="the marker event being stored")
    assert sorted(e["event"] for e in events) == ["Marker", "Plan Changed"]
    assert stack.profile(user).json()["events"]["Plan Changed"]["count"] == 1

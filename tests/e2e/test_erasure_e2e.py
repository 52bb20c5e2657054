"""Export and erasure of a person on the running local stack, over real HTTP.

A visitor browses anonymously, signs up, orders (a confirmation email is
sent) and leaves a cart (the reminder's timer waits an hour). Their export
shows all of it; after DELETE nothing about them is left in the emulator's
tables, the admin API no longer knows them, and when they come back with the
same address a marketing email is withheld while an order confirmation still
goes out.
"""
from __future__ import annotations

import uuid
from typing import Any

import requests

from infra.local_stack import STACK_NAME
from tests.e2e.conftest import SENT, Stack, eventually
from tests.e2e.moto_records import MotoRecords

TIMEOUT = 20.0
FINAL = (*SENT, "skipped", "failed")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ok(response: requests.Response) -> None:
    assert response.status_code == 200, response.text


#: The template's tables by the environment variable that names each to the functions.
TABLE_VARIABLES = {"EventsTable": "NUDGE_EVENTS_TABLE", "DeliveriesTable": "NUDGE_DELIVERIES_TABLE",
                   "TimersTable": "NUDGE_TIMERS_TABLE", "ProfilesTable": "NUDGE_PROFILES_TABLE"}


def table(stack: Stack, logical_id: str) -> str:
    """The physical name of one of the local stack's tables (from the stack's outputs)."""
    from infra.template import stack_environment

    return stack_environment(stack.aws_client("cloudformation"), STACK_NAME)[TABLE_VARIABLES[logical_id]]


def items_keyed_by(stack: Stack, identities: list[str]) -> dict[str, int]:
    """How many items the emulator's tables hold under each of these keys (and the timers index)."""
    dynamodb = stack.aws_client("dynamodb")
    counts = {}
    for logical_id in ("EventsTable", "DeliveriesTable"):
        name = table(stack, logical_id)
        for identity in identities:
            counts[f"{logical_id} {identity}"] = dynamodb.query(
                TableName=name, KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": identity}}, Select="COUNT")["Count"]
    timers = table(stack, "TimersTable")
    for identity in identities:
        counts[f"timers of {identity}"] = dynamodb.query(
            TableName=timers, IndexName="by_person", KeyConditionExpression="person = :p",
            ExpressionAttributeValues={":p": {"S": identity}}, Select="COUNT")["Count"]
    profiles = table(stack, "ProfilesTable")
    for key in (identities[0], *(f"alias:{i.removeprefix('anon:')}" for i in identities[1:]), *identities[1:]):
        found = dynamodb.get_item(TableName=profiles, Key={"pk": {"S": key}}, ConsistentRead=True)
        counts[f"ProfilesTable {key}"] = int("Item" in found)
    return counts


def export(stack: Stack, user: str) -> requests.Response:
    return stack.admin_get(f"/v1/profiles/{user}/export")


def final_messages(stack: Stack, user: str, trigger: str) -> list[dict[str, Any]]:
    return [m for m in stack.messages(user) if m["trigger"] == trigger and m["status"] in FINAL]


def test_a_person_is_exported_then_erased_and_marketing_stays_off_when_they_return(stack: Stack) -> None:
    user, device = unique("erased"), unique("device")
    email = f"{user}@example.org"
    records = MotoRecords(stack.endpoint_url)

    # Given a visitor who browsed anonymously, signed up, ordered and left a cart
    ok(stack.post("/v1/page", {"anonymousId": device, "name": "Home", "properties": {"path": "/"}}))
    ok(stack.post("/v1/identify", {"anonymousId": device, "userId": user,
                                   "traits": {"email": email, "firstName": "Eve"}}))
    ok(stack.post("/v1/track", {"userId": user, "event": "Order Completed",
                                "properties": {"order_id": "E-1", "total": 20, "currency": "EUR", "products": []}}))
    ok(stack.post("/v1/track", {"userId": user, "event": "Product Added",
                                "properties": {"name": "Rain Jacket", "price": 80}}))
    eventually(lambda: final_messages(stack, user, "order-confirmation"), timeout=TIMEOUT,
               what="the order confirmation")

    # Then the export shows their profile, identities, events, message and waiting timer
    def exported() -> dict[str, Any] | None:
        response = export(stack, user)
        assert response.status_code == 200, response.text
        document = response.json()
        return document if any(t["trigger"] == "abandoned-cart" for t in document["timers"]) else None

    document = eventually(exported, timeout=TIMEOUT, what="the cart reminder's timer in the export")
    assert document["profile"]["traits"]["email"] == email
    assert document["identities"] == [f"user:{user}", f"anon:{device}"]
    assert [(e["type"], e.get("event") or e.get("name")) for e in document["events"]] == [
        ("page", "Home"), ("identify", None), ("track", "Order Completed"), ("track", "Product Added")]
    [confirmation] = [m for m in document["messages"] if m["trigger"] == "order-confirmation"]
    assert confirmation["status"] in SENT and confirmation["to"] == email
    [cart] = [t for t in document["timers"] if t["trigger"] == "abandoned-cart"]
    assert cart["profileId"] == f"user:{user}" and cart["due"] > cart["started"]
    assert document["suppressions"]["email"] == {"address": email, "suppression": None}
    identities = [f"user:{user}", f"anon:{device}"]
    assert items_keyed_by(stack, identities)[f"timers of user:{user}"] >= 1

    # When an admin erases them
    response = requests.delete(f"{stack.url}/v1/profiles/{user}", headers=stack.admin_auth(), timeout=30)

    # Then the answer counts what went, and nothing keyed by them is left
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["complete"] is True and summary["suppressed"] == ["email"]
    removed = summary["removed"]
    assert removed["events"] == 4 and removed["links"] == 1 and removed["profiles"] == 1
    assert removed["timers"] >= 1 and removed["messages"] >= 1
    left = items_keyed_by(stack, identities)
    assert not any(left.values()), left
    assert stack.profile(user).status_code == 404
    assert stack.history(user) == []
    gone = export(stack, user)
    assert gone.status_code == 404 and gone.json()["error"]["problems"][0]["field"] == "userId"
    again = requests.delete(f"{stack.url}/v1/profiles/{user}", headers=stack.admin_auth(), timeout=30)
    assert again.status_code == 404 and "was erased" in again.json()["error"]["message"]

    # When they come back with the same address, download a whitepaper (marketing) and order (transactional)
    ok(stack.post("/v1/identify", {"userId": user, "traits": {"email": email, "firstName": "Eve"}}))
    ok(stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded",
                                "properties": {"asset": "guide.pdf", "title": "The Guide"}}))
    ok(stack.post("/v1/track", {"userId": user, "event": "Order Completed",
                                "properties": {"order_id": "E-2", "total": 5, "currency": "EUR", "products": []}}))

    # Then the confirmation goes out, and the marketing email does not
    [thanks] = eventually(lambda: final_messages(stack, user, "whitepaper-thank-you"), timeout=TIMEOUT,
                          what="the whitepaper decision being carried out")
    [again_confirmed] = eventually(lambda: final_messages(stack, user, "order-confirmation"), timeout=TIMEOUT,
                                   what="the second order confirmation")
    assert again_confirmed["status"] in SENT
    assert thanks["status"] == "skipped", thanks
    subjects = [mail.subject for mail in records.emails(to=email)]
    assert "Your copy of The Guide" not in subjects, subjects
    assert subjects.count("Your order E-2 is confirmed") == 1, subjects

"""Unsubscribing on the running local stack, over real HTTP: a mailbox
provider's one-click POST, a forged link, the links a message carries, and
mail to the unsubscribe address delivered through SNS as SES would."""
from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from chalicelib.unsubscribe_tokens import sign
from infra.local_stack import LOCAL_UNSUBSCRIBE_KEYS, STACK_NAME
from tests.e2e.conftest import Stack, eventually

#: The keys the local stack signs with (infra.local_stack.local_parameters).
KEYS = os.environ.get("NUDGE_UNSUBSCRIBE_KEYS", LOCAL_UNSUBSCRIBE_KEYS)


def person(stack: Stack, **traits: Any) -> str:
    user_id = f"sub-{uuid.uuid4().hex[:10]}"
    response = stack.post("/v1/identify", {"userId": user_id, "traits": {"email": f"{user_id}@example.com", **traits}})
    assert response.status_code == 200, response.text
    return user_id


def token(user_id: str, topic: str | None = "offers", keys: str = KEYS) -> str:
    return sign(keys, f"user:{user_id}", "email", topic, datetime.now(timezone.utc))


def subscriptions(stack: Stack, user_id: str) -> dict[str, Any]:
    response = stack.admin_get(f"/v1/profiles/{user_id}/subscriptions")
    assert response.status_code == 200, response.text
    return response.json()


def topic_row(body: dict[str, Any], channel: str, topic: str) -> dict[str, Any]:
    return next(r for r in body["topics"] if (r["channel"], r["id"]) == (channel, topic))


def test_a_one_click_post_unsubscribes_and_the_api_shows_it(stack: Stack) -> None:
    user_id = person(stack)

    # What a mailbox provider sends for List-Unsubscribe-Post: List-Unsubscribe=One-Click
    response = requests.post(f"{stack.url}/v1/unsubscribe", params={"token": token(user_id)},
                             data={"List-Unsubscribe": "One-Click"}, timeout=10, allow_redirects=False)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<p role="status">' in response.text
    shown = subscriptions(stack, user_id)
    assert topic_row(shown, "email", "offers")["subscribed"] is False
    assert topic_row(shown, "email", "offers")["consent"]["source"] == "one-click"
    assert topic_row(shown, "email", "news")["subscribed"] is True


def test_a_forged_token_is_400_and_nothing_changes(stack: Stack) -> None:
    user_id = person(stack)
    forged = token(user_id, keys="local:a-secret-nobody-deployed")

    for method in ("get", "post"):
        response = requests.request(method, f"{stack.url}/v1/unsubscribe", params={"token": forged},
                                    data={"List-Unsubscribe": "One-Click"} if method == "post" else None, timeout=10)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["problems"][0]["field"] == "token"
        assert "signature" in error["problems"][0]["rule"]
        assert response.headers["Cache-Control"] == "no-store"

    shown = subscriptions(stack, user_id)
    assert shown["history"] == []
    assert all(r["subscribed"] for r in shown["topics"] if r["channel"] == "email")


def test_the_links_a_message_carries_open_the_pages(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.preferences import links
    from chalicelib.settings import get_settings

    monkeypatch.setenv("NUDGE_PUBLIC_URL", stack.url)
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEYS", KEYS)
    user_id = person(stack)

    made = links(get_settings(), f"user:{user_id}", "email", "news", datetime.now(timezone.utc))

    confirm = requests.get(made["unsubscribe_url"], timeout=10)
    assert confirm.status_code == 200 and "Product news" in confirm.text
    page = requests.get(made["preferences_url"], timeout=10)
    assert page.status_code == 200 and '<form id="preferences" method="post">' in page.text
    assert requests.post(made["unsubscribe_url"], data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 200
    assert topic_row(subscriptions(stack, user_id), "email", "news")["subscribed"] is False


def test_mail_to_the_unsubscribe_address_unsubscribes_through_sns(stack: Stack) -> None:
    user_id = person(stack)
    resources = stack.aws_client("cloudformation").describe_stack_resources(StackName=STACK_NAME)["StackResources"]
    topic_arn = next(r["PhysicalResourceId"] for r in resources if r.get("LogicalResourceId") == "UnsubscribeMailTopic")
    notification = {
        "notificationType": "Received",
        "mail": {"source": f"{user_id}@example.com", "messageId": uuid.uuid4().hex,
                 "commonHeaders": {"from": [f"{user_id}@example.com"], "to": ["unsubscribe@example.com"],
                                   "subject": f"unsubscribe {token(user_id, topic=None)}"}},
        "receipt": {"action": {"type": "SNS", "topicArn": topic_arn, "encoding": "UTF8"}},
    }

    stack.aws_client("sns").publish(TopicArn=topic_arn, Message=json.dumps(notification),
                                    Subject="Amazon SES Email Receipt Notification")

    def left_all_email() -> dict[str, Any] | None:
        shown = subscriptions(stack, user_id)
        return shown if shown["history"] else None

    shown = eventually(left_all_email, what="the unsubscribe by mail")
    assert shown["history"][0]["key"] == "email:*" and shown["history"][0]["source"] == "mailto"
    assert not any(r["subscribed"] for r in shown["topics"] if r["channel"] == "email")

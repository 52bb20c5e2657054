"""Subscriptions through the handlers (chalice.test.Client, moto): the
unsubscribe link and one-click POST, the preferences page, the admin
subscriptions API and mail to the unsubscribe address."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from chalice.test import Client

from chalicelib import dependencies
from chalicelib.clock import utcnow
from chalicelib.settings import get_settings
from chalicelib.unsubscribe_tokens import sign
from tests.integration.conftest import admin_headers, get_json, post

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_CLICK = "List-Unsubscribe=One-Click"
XSS = '<img src=x onerror="alert(1)">'


def identify(client: Client, user_id: str, **traits: Any) -> None:
    response = post(client, "/v1/identify", {"userId": user_id, "traits": {"email": f"{user_id}@example.com",
                                                                            **traits}})
    assert response.status_code == 200, response.body


def token(user_id: str, topic: str | None = "offers", channel: str = "email", days_ago: float = 0) -> str:
    return sign(get_settings().unsubscribe_keys, f"user:{user_id}", channel, topic,
                utcnow() - timedelta(days=days_ago))


def subscriptions(client: Client, user_id: str) -> dict[str, Any]:
    status, body = get_json(client, f"/v1/profiles/{user_id}/subscriptions")
    assert status == 200, body
    return body


def row(body: dict[str, Any], key: str) -> dict[str, Any]:
    channel, _, topic = key.partition(":")
    return next(r for r in body["topics"] if (r["channel"], r["id"]) == (channel, topic))


def text(response: Any) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else response.body


def assert_page(response: Any) -> str:
    assert response.status_code == 200, response.body
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "form-action 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    return text(response)


def assert_token_refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == "invalid_request"
    assert error["problems"][0]["field"] == "token"
    assert error["problems"][0]["rule"]
    return error


# --- the unsubscribe link ------------------------------------------------------------------


def test_the_unsubscribe_link_asks_before_it_changes_anything(client: Client) -> None:
    identify(client, "ana")
    t = token("ana")

    page = assert_page(client.http.get(f"/v1/unsubscribe?token={t}"))

    assert '<form id="unsubscribe" method="post">' in page
    assert '<button id="confirm" type="submit">' in page
    assert "Offers and promotions" in page
    assert f'href="preferences?token={t}"' in page
    assert row(subscriptions(client, "ana"), "email:offers")["subscribed"] is True


def test_a_one_click_post_unsubscribes_at_once_and_answers_200(client: Client) -> None:
    identify(client, "ana")
    t = token("ana")

    page = assert_page(client.http.post(f"/v1/unsubscribe?token={t}", headers=FORM, body=ONE_CLICK))

    assert '<p role="status">You are unsubscribed from Offers and promotions emails.</p>' in page
    shown = subscriptions(client, "ana")
    assert row(shown, "email:offers")["subscribed"] is False
    assert row(shown, "email:offers")["consent"]["source"] == "one-click"
    assert row(shown, "email:news")["subscribed"] is True


def test_a_repeated_one_click_post_is_harmless(client: Client) -> None:
    identify(client, "ana")
    t = token("ana")
    for _ in range(3):
        assert_page(client.http.post(f"/v1/unsubscribe?token={t}", headers=FORM, body=ONE_CLICK))

    assert [h["key"] for h in subscriptions(client, "ana")["history"]] == ["email:offers"]


def test_a_one_click_post_as_multipart_form_data_counts_as_one_click(client: Client) -> None:
    identify(client, "ana")
    body = ('--b0undary\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            'One-Click\r\n--b0undary--\r\n')

    assert_page(client.http.post(f"/v1/unsubscribe?token={token('ana')}",
                                 headers={"Content-Type": "multipart/form-data; boundary=b0undary"}, body=body))

    assert row(subscriptions(client, "ana"), "email:offers")["consent"]["source"] == "one-click"


def test_confirming_on_the_page_is_recorded_as_the_unsubscribe_page(client: Client) -> None:
    identify(client, "ana")

    assert_page(client.http.post(f"/v1/unsubscribe?token={token('ana', topic=None)}", headers=FORM,
                                 body="confirm=unsubscribe"))

    shown = subscriptions(client, "ana")
    assert not any(r["subscribed"] for r in shown["topics"] if r["channel"] == "email")
    assert shown["history"][0]["key"] == "email:*"
    assert shown["history"][0]["source"] == "unsubscribe-page"


def test_a_link_for_a_person_no_longer_known_still_answers_200_and_writes_nothing(client: Client) -> None:
    page = assert_page(client.http.post(f"/v1/unsubscribe?token={token('gone')}", headers=FORM, body=ONE_CLICK))

    assert 'role="status"' in page
    assert dependencies.consent_store().consent_history("user:gone") == []


def forged_tokens(valid: str) -> dict[str, str]:
    kid, payload, signature = valid.split(".")
    flipped = "A" if payload[5] != "A" else "B"
    return {
        "other key": sign("local:somebody-elses-secret", "user:ana", "email", "offers", utcnow()),
        "unknown key id": sign("rogue:secret", "user:ana", "email", "offers", utcnow()),
        "altered": f"{kid}.{payload[:5]}{flipped}{payload[6:]}.{signature}",
        "expired": token("ana", days_ago=91),
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("kind", ["other key", "unknown key id", "altered", "expired", "garbage"])
def test_a_bad_token_is_refused_naming_the_token_and_nothing_changes(client: Client, kind: str) -> None:
    identify(client, "ana")
    bad = forged_tokens(token("ana"))[kind]

    for response in (client.http.get(f"/v1/unsubscribe?token={bad}"),
                     client.http.post(f"/v1/unsubscribe?token={bad}", headers=FORM, body=ONE_CLICK),
                     client.http.get(f"/v1/preferences?token={bad}"),
                     client.http.post(f"/v1/preferences?token={bad}", headers=FORM, body="all=email")):
        assert_token_refused(response)
    assert subscriptions(client, "ana")["history"] == []


def test_a_missing_token_is_refused(client: Client) -> None:
    error = assert_token_refused(client.http.get("/v1/unsubscribe"))
    assert "required" in error["problems"][0]["rule"]


def test_an_expired_token_says_it_expired(client: Client) -> None:
    identify(client, "ana")
    error = assert_token_refused(client.http.get(f"/v1/unsubscribe?token={token('ana', days_ago=91)}"))
    assert "expired" in error["problems"][0]["rule"]


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_browser_opening_an_expired_link_gets_a_page_saying_so_with_the_same_400(client: Client) -> None:
    identify(client, "ana")
    expired = token("ana", days_ago=91)
    for response in (client.http.get(f"/v1/unsubscribe?token={expired}", headers=BROWSER),
                     client.http.post(f"/v1/unsubscribe?token={expired}", headers={**FORM, **BROWSER},
                                      body="confirm=unsubscribe")):
        assert response.status_code == 400
        headers = {k.lower(): v for k, v in response.headers.items()}
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in headers["content-security-policy"]
        page = text(response)
        assert "<h1>This link cannot be used</h1>" in page
        assert "token has expired (links are valid for" in page
    assert subscriptions(client, "ana")["history"] == []


def test_a_browser_opening_the_page_of_a_person_no_longer_known_gets_a_404_page(client: Client) -> None:
    response = client.http.get(f"/v1/preferences?token={token('gone')}", headers=BROWSER)
    assert response.status_code == 404 and "<h1>We no longer hold your details</h1>" in text(response)


def test_a_browser_unsubscribing_while_storage_is_unavailable_is_told_to_retry_and_nothing_changes(
        client: Client) -> None:
    from chalicelib.errors import StorageUnavailable

    identify(client, "ana")

    class Unavailable:
        def __getattr__(self, name: str) -> Any:
            def refuse(*args: Any, **kwargs: Any) -> None:
                raise StorageUnavailable("ProvisionedThroughputExceededException")
            return refuse

    dependencies.override(consent=Unavailable())
    response = client.http.post(f"/v1/unsubscribe?token={token('ana')}", headers={**FORM, **BROWSER},
                                body="confirm=unsubscribe")
    dependencies.override()
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "<h1>Please try again in a moment</h1>" in text(response)
    assert row(subscriptions(client, "ana"), "email:offers")["subscribed"] is True


def test_a_30_day_old_link_still_works(client: Client) -> None:
    identify(client, "ana")
    assert_page(client.http.post(f"/v1/unsubscribe?token={token('ana', days_ago=30)}", headers=FORM, body=ONE_CLICK))
    assert row(subscriptions(client, "ana"), "email:offers")["subscribed"] is False


# --- the preferences page -----------------------------------------------------------------


def test_the_preferences_page_shows_each_topic_of_the_channel_as_it_is_now(client: Client) -> None:
    identify(client, "ana")
    assert_page(client.http.post(f"/v1/unsubscribe?token={token('ana', 'news')}", headers=FORM, body=ONE_CLICK))

    page = assert_page(client.http.get(f"/v1/preferences?token={token('ana')}"))

    assert '<form id="preferences" method="post">' in page
    assert '<input type="checkbox" name="topic" value="email:offers" checked>' in page
    assert '<input type="checkbox" name="topic" value="email:news">' in page
    assert '<input type="checkbox" name="topic" value="email:lifecycle" checked>' in page
    assert "Product news" in page and "Offers and promotions" in page
    assert '<input type="checkbox" name="all" value="email">' in page
    assert "Unsubscribe from all marketing email" in page
    assert '<button id="save" type="submit">' in page
    assert "sms:offers" not in page
    assert 'role="status"' not in page


def test_saving_the_preferences_page_leaves_unchecked_topics_and_joins_checked_ones(client: Client) -> None:
    identify(client, "ana")
    t = token("ana")
    form = urlencode([("topic", "email:news"), ("topic", "email:lifecycle")])

    page = assert_page(client.http.post(f"/v1/preferences?token={t}", headers=FORM, body=form))

    assert '<p role="status">Your preferences are saved.</p>' in page
    assert '<input type="checkbox" name="topic" value="email:offers">' in page
    shown = subscriptions(client, "ana")
    assert row(shown, "email:offers")["subscribed"] is False
    assert row(shown, "email:offers")["consent"]["source"] == "preferences-page"
    assert row(shown, "email:news")["subscribed"] is True


def test_ticking_all_on_the_page_leaves_all_marketing_email(client: Client) -> None:
    identify(client, "ana")
    form = urlencode([("topic", "email:news"), ("all", "email")])

    page = assert_page(client.http.post(f"/v1/preferences?token={token('ana')}", headers=FORM, body=form))

    assert '<input type="checkbox" name="all" value="email" checked>' in page
    shown = subscriptions(client, "ana")
    assert not any(r["subscribed"] for r in shown["topics"] if r["channel"] == "email")
    assert {"key": "email:*", "subscribed": False, "source": "preferences-page"}.items() <= \
        next(h for h in shown["history"] if h["key"] == "email:*").items()


def test_data_on_the_page_is_escaped(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_TOPICS", json.dumps([{"id": "offers", "channel": "email", "label": XSS}]))
    identify(client, "ana")
    response = post(client, "/v1/identify", {"userId": "ana", "traits": {"email": f"{XSS}@example.com"}})
    assert response.status_code == 200

    for path in (f"/v1/preferences?token={token('ana')}", f"/v1/unsubscribe?token={token('ana')}"):
        page = assert_page(client.http.get(path))
        assert "<img" not in page
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page


def test_the_page_refuses_a_topic_it_does_not_offer(client: Client) -> None:
    identify(client, "ana")
    response = client.http.post(f"/v1/preferences?token={token('ana')}", headers=FORM, body="topic=sms:offers")

    assert response.status_code == 400
    assert json.loads(response.body)["error"]["problems"][0]["field"] == "topic"
    assert subscriptions(client, "ana")["history"] == []


def test_the_preferences_page_of_a_person_no_longer_known_is_404(client: Client) -> None:
    response = client.http.get(f"/v1/preferences?token={token('gone')}")

    assert response.status_code == 404
    assert json.loads(response.body)["error"]["problems"][0]["field"] == "token"


def test_saving_the_page_after_an_erasure_is_fresh_consent(client: Client) -> None:
    identify(client, "ana")
    store = dependencies.consent_store()
    store.suppress("ana@example.com", "marketing", "erased", "2026-01-01T00:00:00.000Z")

    assert_page(client.http.post(f"/v1/preferences?token={token('ana')}", headers=FORM, body="topic=email:offers"))

    assert store.suppression("ana@example.com") is None


# --- the admin API ---------------------------------------------------------------------------


def test_the_topic_catalogue(client: Client) -> None:
    status, body = get_json(client, "/v1/topics")

    assert status == 200
    assert {"id": "offers", "channel": "sms", "label": "Offers by text message", "default": "unsubscribed",
            "key": "sms:offers"} in body["topics"]


@pytest.mark.parametrize("path", ["/v1/topics", "/v1/profiles/ana/subscriptions"])
def test_the_admin_routes_need_the_admin_token(client: Client, path: str) -> None:
    identify(client, "ana")
    status, body = get_json(client, path, headers={})
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_an_unknown_person_is_404(client: Client) -> None:
    status, body = get_json(client, "/v1/profiles/nobody/subscriptions")
    assert status == 404
    assert body["error"]["problems"] == [{"field": "userId", "rule": "must name a known person"}]
    response = client.http.put("/v1/profiles/nobody/subscriptions", headers={**admin_headers(), "Content-Type":
                               "application/json"}, body=json.dumps({"topics": {"email:offers": False}}))
    assert response.status_code == 404


def put(client: Client, user_id: str, body: Any) -> tuple[int, Any]:
    response = client.http.put(f"/v1/profiles/{user_id}/subscriptions",
                               headers={**admin_headers(), "Content-Type": "application/json"}, body=json.dumps(body))
    return response.status_code, json.loads(response.body)


def test_putting_subscriptions_saves_them_and_answers_like_get(client: Client) -> None:
    identify(client, "ana")

    status, body = put(client, "ana", {"topics": {"email:offers": False, "sms:offers": True}, "source": "import"})

    assert status == 200
    assert body == subscriptions(client, "ana")
    assert body["userId"] == "ana"
    assert row(body, "email:offers")["subscribed"] is False
    assert row(body, "sms:offers") == {"id": "offers", "channel": "sms", "label": "Offers by text message",
                                       "default": "unsubscribed", "subscribed": True,
                                       "consent": {"subscribed": True, "source": "import",
                                                   "at": row(body, "sms:offers")["consent"]["at"]}}
    assert sorted(h["key"] for h in body["history"]) == ["email:offers", "sms:offers"]


def test_leaving_all_email_through_the_api(client: Client) -> None:
    identify(client, "ana")
    status, body = put(client, "ana", {"topics": {"email:*": False}})
    assert status == 200
    assert not any(r["subscribed"] for r in body["topics"] if r["channel"] == "email")
    assert body["history"][0]["source"] == "api"


@pytest.mark.parametrize("body, field", [
    ({"topics": {"fax:offers": True}}, "topics.fax:offers"),
    ({"topics": {"emailoffers": True}}, "topics.emailoffers"),
    ({"topics": {"email:offers": "false"}}, "topics.email:offers"),
    ({"topics": {"email:offers": True}, "source": "mailto"}, "source"),
    ({"source": "api"}, "topics"),
])
def test_a_bad_change_is_400_naming_the_field_and_nothing_is_saved(client: Client, body: Any, field: str) -> None:
    identify(client, "ana")

    status, answer = put(client, "ana", body)

    assert status == 400
    assert field in [p["field"] for p in answer["error"]["problems"]]
    assert subscriptions(client, "ana")["history"] == []


def test_subscribing_through_the_api_after_an_erasure_lifts_the_suppression(client: Client) -> None:
    identify(client, "ana")
    store = dependencies.consent_store()
    store.suppress("ana@example.com", "marketing", "erased", "2026-01-01T00:00:00.000Z")

    status, _ = put(client, "ana", {"topics": {"email:news": True}})

    assert status == 200
    assert store.suppression("ANA@example.com") is None


# --- mail to the unsubscribe address -----------------------------------------------------


def ses_received(subject: str) -> str:
    return json.dumps({
        "notificationType": "Received",
        "mail": {"timestamp": "2026-03-01T12:00:00.000Z", "source": "ana@example.com", "messageId": "m-1",
                 "destination": ["unsubscribe@example.com"],
                 "commonHeaders": {"from": ["Ana <ana@example.com>"], "to": ["unsubscribe@example.com"],
                                   "subject": subject}},
        "receipt": {"recipients": ["unsubscribe@example.com"], "spamVerdict": {"status": "PASS"},
                    "action": {"type": "SNS", "topicArn": "arn:aws:sns:us-east-1:123456789012:mail",
                               "encoding": "UTF8"}},
        "content": "...",
    })


def test_mail_to_the_unsubscribe_address_unsubscribes_with_source_mailto(client: Client) -> None:
    identify(client, "ana")
    event = client.events.generate_sns_event(message=ses_received(f"unsubscribe {token('ana', 'news')}"))

    result = client.lambda_.invoke("on_unsubscribe_mail", event).payload

    assert result["unsubscribed"] is True
    assert row(subscriptions(client, "ana"), "email:news")["consent"]["source"] == "mailto"


@pytest.mark.parametrize("message", ["{not json", json.dumps({"notificationType": "Bounce"}),
                                     "ses", "forged"])
def test_mail_without_a_valid_token_is_acknowledged_and_changes_nothing(client: Client, message: str) -> None:
    identify(client, "ana")
    if message == "ses":
        message = ses_received("hello, please remove me")
    elif message == "forged":
        message = ses_received("unsubscribe " + sign("local:wrong-secret", "user:ana", "email", "news", utcnow()))

    result = client.lambda_.invoke("on_unsubscribe_mail", client.events.generate_sns_event(message=message)).payload

    assert result["unsubscribed"] is False and result["reason"]
    assert subscriptions(client, "ana")["history"] == []

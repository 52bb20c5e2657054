"""Who may do what, and what data can do, on a running local stack.

- Every admin operation refuses a request with no credential, with the write
  key, and with a wrong token, in the JSON error shape, and does nothing. The
  list comes from the OpenAPI description, whose own test
  (tests/unit/test_openapi.py) makes every route an admin route unless it is
  named public, so a new route is covered here without touching this file.
- Every tracking operation refuses a wrong write key (as HTTP Basic or in the
  body), the admin token, and no key at all, and stores nothing.
- Script, markup and template syntax in traits and event properties come out
  as text in the email Nudge sends and on the preferences page.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any, Iterator

import pytest
import requests

from chalicelib.segment import parse_time
from chalicelib.unsubscribe_tokens import sign
from functions.docs import description
from infra.local_stack import LOCAL_UNSUBSCRIBE_KEYS
from tests.e2e.conftest import Stack, eventually
from tests.e2e.moto_records import MotoRecords
from tests.unit.test_escaping import PAGE_TAGS, PAYLOADS, assert_inert

DOC = description()
METHODS = ("get", "put", "post", "delete", "options", "patch")


def operations(scheme: str) -> list[tuple[str, str]]:
    """(method, path) of every described operation that needs ``scheme``."""
    found = []
    for path, item in DOC["paths"].items():
        for method in METHODS:
            if method in item and item[method].get("security", DOC["security"]) == [{scheme: []}]:
                found.append((method.upper(), path))
    return found


ADMIN = operations("adminToken")
WRITE = operations("writeKey")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_refused(response: requests.Response, challenge: str) -> dict[str, Any]:
    assert response.status_code in (401, 403), f"{response.status_code}: {response.text[:300]}"
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "problems"} and error["code"] and error["message"]
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith(challenge)
    return error


@pytest.fixture(scope="module")
def person(stack: Stack) -> str:
    """A person who exists, so a refusal cannot be a 404 in disguise."""
    user = unique("guarded")
    response = stack.post("/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.com"}})
    assert response.status_code == 200, response.text
    return user


def filled(path: str, user: str) -> str:
    """The path with real names: the person, and the shipped order-confirmation definitions."""
    return (path.replace("{user_id}", user).replace("{trigger_id}", "order-confirmation")
            .replace("{template_id}", "order-confirmation"))


def admin_state(stack: Stack, user: str) -> dict[str, Any]:
    """What a refused admin request could have changed, as the admin sees it."""
    reads = {"profile": f"/v1/profiles/{user}", "subscriptions": f"/v1/profiles/{user}/subscriptions",
             "trigger": "/v1/triggers/order-confirmation?versions=true",
             "template": "/v1/templates/order-confirmation?versions=true", "reputation": "/v1/reputation"}
    state = {}
    for name, path in reads.items():
        response = stack.admin_get(path)
        assert response.status_code == 200, response.text
        state[name] = response.json()
    state["reputation"].pop("window")  # the time it was read
    state["clock"] = stack.admin_get("/v1/clock").json()["offset"]
    return state


def test_the_description_names_admin_and_write_operations() -> None:
    assert len(ADMIN) >= 20 and ("DELETE", "/v1/profiles/{user_id}") in ADMIN
    assert sorted(path for _, path in WRITE) == sorted(f"/v1/{call}" for call in
                                                       ("track", "identify", "page", "screen", "group", "alias",
                                                        "batch"))


@pytest.mark.parametrize("credential", ["none", "write-key-as-basic", "write-key-as-bearer", "wrong-token",
                                        "admin-token-as-basic", "empty-bearer"])
def test_every_admin_operation_refuses_anything_but_the_admin_token(stack: Stack, person: str,
                                                                   credential: str) -> None:
    headers = {
        "none": {},
        "write-key-as-basic": stack.write_auth(),
        "write-key-as-bearer": stack.admin_auth(stack.write_key),
        "wrong-token": stack.admin_auth("not-the-admin-token"),
        "admin-token-as-basic": stack.write_auth(stack.admin_token),
        "empty-bearer": {"Authorization": "Bearer "},
    }[credential]
    before = admin_state(stack, person)
    for method, path in ADMIN:
        body = json.dumps({"advance": "1d", "topics": {"email:*": False}, "category": "transactional",
                           "EventPattern": "{}", "Event": "{}"})
        response = requests.request(method, stack.url + filled(path, person), timeout=10, data=body,
                                    headers={**headers, "Content-Type": "application/json"})
        error = assert_refused(response, "Bearer")
        assert person not in response.text, f"{method} {path} leaked data in its refusal: {error}"
    assert admin_state(stack, person) == before, "a refused request changed something"


@pytest.mark.parametrize("credential", ["none", "wrong-key", "wrong-key-in-body", "admin-token-as-basic",
                                        "admin-token-as-bearer"])
def test_every_tracking_operation_refuses_a_wrong_write_key(stack: Stack, credential: str) -> None:
    headers = {
        "none": {},
        "wrong-key": stack.write_auth("not-a-write-key"),
        "wrong-key-in-body": {},
        "admin-token-as-basic": stack.write_auth(stack.admin_token),
        "admin-token-as-bearer": stack.admin_auth(),
    }[credential]
    for _, path in WRITE:
        user = unique("intruder")
        call = {"userId": user, "anonymousId": f"anon-{user}", "event": "Signed Up", "groupId": "g",
                "previousId": f"anon-{user}", "traits": {"email": f"{user}@example.com"}}
        if credential == "wrong-key-in-body":
            call["writeKey"] = "not-a-write-key"
        body = {"batch": [{**call, "type": "track"}]} if path == "/v1/batch" else call
        if credential == "wrong-key-in-body" and path == "/v1/batch":
            body["writeKey"] = "not-a-write-key"
        response = stack.post(path, body, headers=headers)
        assert_refused(response, "Basic")
        assert stack.profile(user).status_code == 404, f"POST {path} stored the refused call"


# --- data in HTML -------------------------------------------------------------------------------


def engine_now(stack: Stack) -> datetime:
    return parse_time(stack.admin_get("/v1/clock").json()["now"])


@pytest.fixture(scope="module")
def records(stack: Stack) -> Iterator[MotoRecords]:
    yield MotoRecords(stack.endpoint_url)


def test_payloads_in_traits_and_properties_are_text_in_a_transactional_email(stack: Stack,
                                                                            records: MotoRecords) -> None:
    user = unique("xss-mail")
    address = f"{user}@example.com"
    payload = " | ".join(PAYLOADS)
    assert stack.post("/v1/identify", {"userId": user, "traits": {"email": address, "firstName": payload}}
                      ).status_code == 200
    # The ticket number goes into the subject line: a line break there must not add a header.
    ticket = "42\r\nBcc: thief@example.com"
    assert stack.post("/v1/track", {"userId": user, "event": "Support Request Submitted",
                                    "properties": {"subject": payload, "ticket_id": ticket}}).status_code == 200

    [email] = eventually(lambda: records.emails(to=address), what="the support acknowledgement")
    assert_inert(email.body, [f"Hi {payload},", payload], {"html", "head", "body", "meta", "p", "em", "strong"})
    assert email.recipients == (address,)
    assert "thief@example.com" not in json.dumps(email.headers).lower().replace(email.subject.lower(), "")
    assert "bcc" not in {name.lower() for name in email.headers}


def test_a_link_from_an_event_is_used_only_when_it_is_https(stack: Stack, records: MotoRecords) -> None:
    user = unique("xss-link")
    address = f"{user}@example.com"
    assert stack.post("/v1/identify", {"userId": user, "traits": {"email": address}}).status_code == 200
    assert stack.post("/v1/track", {"userId": user, "event": "Whitepaper Downloaded", "properties": {
        "asset": "pricing guide.pdf", "asset_url": "javascript:alert(document.cookie)",
        "title": PAYLOADS[1]}}).status_code == 200

    [email] = eventually(lambda: records.emails(to=address), what="the whitepaper email")
    links = re.findall(r'href="([^"]*)"', email.body)
    assert "https://example.com/assets/pricing%20guide.pdf" in links, links
    assert all(link.startswith(("https://", stack.url)) for link in links), links  # and the unsubscribe link
    assert_inert(email.body, [PAYLOADS[1]], {"html", "head", "body", "meta", "p", "a"})


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_a_persons_address_are_text_on_the_preferences_page(stack: Stack, payload: str) -> None:
    user = unique("xss-page")
    address = f"{payload}@example.com"
    assert stack.post("/v1/identify", {"userId": user, "traits": {"email": address}}).status_code == 200
    token = sign(LOCAL_UNSUBSCRIBE_KEYS, f"user:{user}", "email", None, engine_now(stack))

    response = requests.get(stack.url + "/v1/preferences", params={"token": token}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert_inert(response.text, [address], PAGE_TAGS)

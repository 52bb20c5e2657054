"""Real answers of the app match its OpenAPI description.

One tour calls every described operation through chalice.test.Client (a
success and the usual refusals), and checks each answer: its status is one
the operation describes, its body validates against the described schema for
that status and content type, and the headers it describes are well formed.
"""
from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
import yaml
from chalice.test import Client
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chalicelib.clock import utcnow
from chalicelib.settings import get_settings
from chalicelib.unsubscribe_tokens import sign
from functions.docs import description
from tests.integration.conftest import admin_headers, write_headers
from tests.integration.pipeline import Pipeline

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
METHODS = ("get", "put", "post", "delete", "options")


class Answers:
    """Calls the app and checks every answer against the description."""

    def __init__(self, client: Client, doc: dict[str, Any]) -> None:
        self.client = client
        self.doc = doc
        self.registry = Registry().with_resource("urn:nudge:openapi", Resource.from_contents(
            doc, default_specification=DRAFT202012))
        self.seen: set[tuple[str, str]] = set()

    def call(self, method: str, route: str, status: int, path: str | None = None,
             headers: dict[str, str] | None = None, body: Any = None) -> Any:
        """``method`` on ``path`` (the route with its parameters filled in),
        expecting ``status``; returns the parsed JSON body, or the text."""
        raw = body if body is None or isinstance(body, (str, bytes)) else json.dumps(body)
        response = self.client.http.request(method, path or route, headers=headers or {}, body=raw or b"")
        text = response.body.decode() if isinstance(response.body, bytes) else response.body
        where = f"{method} {path or route} -> {response.status_code}"
        assert response.status_code == status, f"{where}: expected {status}: {text[:500]}"
        self.seen.add((method, route))
        described = self._response(method, route, status, where)
        received = {k.lower(): v for k, v in response.headers.items()}
        for name, header in described.get("headers", {}).items():
            if name.lower() in received:
                self._validate(received[name.lower()], self._resolved(header)["schema"], f"{where}: header {name}")
        content = described.get("content")
        if not content:
            assert not text, f"{where}: described without a body, answered {text[:200]!r}"
            return None
        media = received.get("content-type", JSON).split(";")[0].strip()
        assert media in content, f"{where}: answered {media}, described {sorted(content)}"
        value = json.loads(text) if media == JSON else text
        pointer = (f"paths/{_escape(route)}/{method.lower()}/responses/{self._status_key(method, route, status)}"
                   f"/content/{_escape(media)}/schema")
        if "$ref" in self._operation(method, route)["responses"][self._status_key(method, route, status)]:
            ref = self._operation(method, route)["responses"][self._status_key(method, route, status)]["$ref"]
            pointer = f"{ref.removeprefix('#/')}/content/{_escape(media)}/schema"
        self._validate(value, {"$ref": f"urn:nudge:openapi#/{pointer}"}, where)
        return value

    def _operation(self, method: str, route: str) -> dict[str, Any]:
        assert route in self.doc["paths"], f"{route} is not described"
        assert method.lower() in self.doc["paths"][route], f"{method} {route} is not described"
        return self.doc["paths"][route][method.lower()]

    def _status_key(self, method: str, route: str, status: int) -> str:
        responses = self._operation(method, route)["responses"]
        for key in (str(status), f"{str(status)[0]}XX"):
            if key in responses:
                return key
        raise AssertionError(f"{method} {route} answered {status}, which it does not describe")

    def _response(self, method: str, route: str, status: int, where: str) -> dict[str, Any]:
        return self._resolved(self._operation(method, route)["responses"][self._status_key(method, route, status)])

    def _resolved(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def _validate(self, value: Any, schema: dict[str, Any], where: str) -> None:
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry,
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        problems = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                    for e in validator.iter_errors(value)]
        assert not problems, f"{where} does not match the description: {problems[:5]}"


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(), "Content-Type": JSON}


@pytest.fixture
def answers(client: Client) -> Answers:
    return Answers(client, description())


def test_the_served_description_is_the_packaged_one_with_its_server(client: Client) -> None:
    response = client.http.get("/openapi.json")
    assert response.status_code == 200
    served = json.loads(response.body)
    assert served.pop("servers") == [{"url": "/"}]
    assert served == description()
    assert served == yaml.safe_load(open("chalicelib/openapi.yaml", encoding="utf-8"))


def test_every_operation_answers_as_described(client: Client, stack: dict[str, str], answers: Answers) -> None:
    admin = {**admin_headers(), "Content-Type": JSON}
    write = write_headers()
    call = answers.call

    # --- operations
    call("GET", "/health", 200)
    call("GET", "/openapi.json", 200)

    # --- tracking
    bodies = {
        "track": {"userId": "ana", "event": "Support Request Submitted",
                  "properties": {"ticket_id": "T-1", "subject": "Refund"}},
        "identify": {"userId": "ana", "traits": {"email": "ana@example.com", "firstName": "Ana"}},
        "page": {"anonymousId": "anon-1", "name": "Pricing", "properties": {"path": "/pricing"}},
        "screen": {"userId": "ana", "name": "Home"},
        "group": {"userId": "ana", "groupId": "acme", "traits": {"plan": "pro"}},
        "alias": {"userId": "ana", "previousId": "anon-1"},
    }
    for definition in ("support-acknowledgement",):
        template = yaml.safe_load(open(f"templates/{definition}.yaml", encoding="utf-8"))
        trigger = yaml.safe_load(open(f"triggers/{definition}.yaml", encoding="utf-8"))
        call("PUT", "/v1/templates/{template_id}", 201, f"/v1/templates/{definition}", admin, template)
        call("PUT", "/v1/triggers/{trigger_id}", 201, f"/v1/triggers/{definition}", admin, trigger)
    for name in ("identify", "track", "page", "screen", "group", "alias"):
        route = f"/v1/{name}"
        call("POST", route, 200, headers=write, body=bodies[name])
        call("POST", route, 400, headers=write, body={"traits": "not an object"})
        call("POST", route, 401, headers=_basic("not-a-key"), body=bodies[name])
        call("OPTIONS", route, 204, headers={"Origin": "https://shop.example.com"})
        call("OPTIONS", route, 403)
    call("POST", "/v1/track", 200, headers={**write, "Content-Type": "text/plain"},
         body={**bodies["track"], "event": "Beacon Sent"})
    call("POST", "/v1/track", 415, headers={**write, "Content-Type": "application/xml"}, body="<track/>")
    call("POST", "/v1/track", 401, headers={"Content-Type": JSON}, body=bodies["track"])
    call("POST", "/v1/batch", 200, headers=write,
         body={"batch": [{"type": "track", "userId": "ana", "event": "Viewed"},
                         {"type": "identify", "anonymousId": "anon-2", "traits": {"plan": "free"}}]})
    refused = call("POST", "/v1/batch", 400, headers=write, body={"batch": [{"type": "track", "userId": "ana"}]})
    assert refused["error"]["problems"][0]["field"] == "batch[0].event"
    call("POST", "/v1/batch", 401, headers=_basic("not-a-key"), body={"batch": []})
    call("OPTIONS", "/v1/batch", 204, headers={"Origin": "https://shop.example.com"})
    call("OPTIONS", "/v1/batch", 403)
    Pipeline(client, stack).run()

    # --- profiles
    profile = "/v1/profiles/ana"
    call("GET", "/v1/profiles/{user_id}", 200, profile, admin)
    call("GET", "/v1/profiles/{user_id}", 401, profile, write)
    call("GET", "/v1/profiles/{user_id}", 404, "/v1/profiles/nobody", admin)
    page = call("GET", "/v1/profiles/{user_id}/events", 200, f"{profile}/events?limit=1", admin)
    assert page["next"], "a first page of one event has a next page"
    call("GET", "/v1/profiles/{user_id}/events", 200, f"{profile}/events?limit=500&cursor={page['next']}", admin)
    call("GET", "/v1/profiles/{user_id}/events", 400, f"{profile}/events?limit=0", admin)
    call("GET", "/v1/profiles/{user_id}/events", 400, f"{profile}/events?cursor=forged", admin)
    messages = call("GET", "/v1/profiles/{user_id}/messages", 200, f"{profile}/messages", admin)
    assert messages["messages"], "the support acknowledgement is in the history"
    call("GET", "/v1/profiles/{user_id}/messages", 404, "/v1/profiles/nobody/messages", admin)
    decisions = call("GET", "/v1/profiles/{user_id}/decisions", 200, f"{profile}/decisions", admin)
    assert decisions["decisions"]
    call("GET", "/v1/profiles/{user_id}/decisions", 401, f"{profile}/decisions")
    call("GET", "/v1/profiles/{user_id}/export", 200, f"{profile}/export", admin)
    call("GET", "/v1/profiles/{user_id}/export", 404, "/v1/profiles/nobody/export", admin)

    # --- subscriptions and pages
    call("GET", "/v1/topics", 200, headers=admin)
    call("GET", "/v1/topics", 401, headers=write)
    call("GET", "/v1/profiles/{user_id}/subscriptions", 200, f"{profile}/subscriptions", admin)
    call("PUT", "/v1/profiles/{user_id}/subscriptions", 200, f"{profile}/subscriptions", admin,
         {"topics": {"sms:offers": True}, "source": "api"})
    call("PUT", "/v1/profiles/{user_id}/subscriptions", 400, f"{profile}/subscriptions", admin,
         {"topics": {"fax:offers": True}})
    call("PUT", "/v1/profiles/{user_id}/subscriptions", 404, "/v1/profiles/nobody/subscriptions", admin,
         {"topics": {"sms:offers": True}})
    token = sign(get_settings().unsubscribe_keys, "user:ana", "email", "offers", utcnow())
    call("GET", "/v1/unsubscribe", 200, f"/v1/unsubscribe?token={token}")
    call("GET", "/v1/unsubscribe", 400, "/v1/unsubscribe?token=forged.token.here")
    call("GET", "/v1/unsubscribe", 400)
    call("POST", "/v1/unsubscribe", 200, f"/v1/unsubscribe?token={token}", {"Content-Type": FORM},
         "List-Unsubscribe=One-Click")
    call("POST", "/v1/unsubscribe", 400, "/v1/unsubscribe?token=x", {"Content-Type": FORM}, "")
    call("POST", "/v1/unsubscribe", 415, f"/v1/unsubscribe?token={token}", {"Content-Type": JSON}, "{}")
    channel_token = sign(get_settings().unsubscribe_keys, "user:ana", "email", None, utcnow())
    call("GET", "/v1/preferences", 200, f"/v1/preferences?token={channel_token}")
    call("GET", "/v1/preferences", 404, "/v1/preferences?token="
         + sign(get_settings().unsubscribe_keys, "user:nobody", "email", None, utcnow()))
    call("GET", "/v1/preferences", 400)
    browser = {"Accept": "text/html"}
    call("GET", "/v1/unsubscribe", 400, "/v1/unsubscribe?token=forged.token.here", browser)
    call("POST", "/v1/unsubscribe", 400, "/v1/unsubscribe?token=x", {"Content-Type": FORM, **browser}, "")
    call("GET", "/v1/preferences", 404, "/v1/preferences?token="
         + sign(get_settings().unsubscribe_keys, "user:nobody", "email", None, utcnow()), browser)
    call("POST", "/v1/preferences", 200, f"/v1/preferences?token={channel_token}", {"Content-Type": FORM},
         "topic=email%3Anews")
    call("POST", "/v1/preferences", 400, f"/v1/preferences?token={channel_token}", {"Content-Type": FORM},
         "all=sms")
    call("POST", "/v1/preferences", 415, f"/v1/preferences?token={channel_token}", {"Content-Type": JSON}, "{}")

    # --- definitions
    template = {"channel": "email", "subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"}
    call("PUT", "/v1/templates/{template_id}", 201, "/v1/templates/hello", admin, template)
    call("PUT", "/v1/templates/{template_id}", 200, "/v1/templates/hello", admin, template)
    call("PUT", "/v1/templates/{template_id}", 409, "/v1/templates/hello", {**admin, "If-Match": "7"},
         {**template, "subject": "Hello"})
    call("PUT", "/v1/templates/{template_id}", 400, "/v1/templates/hello", admin, {**template, "channel": "sms"})
    call("PUT", "/v1/templates/{template_id}", 413, "/v1/templates/hello", admin,
         {**template, "text": "x" * 300_000})
    call("PUT", "/v1/templates/{template_id}", 401, "/v1/templates/hello", write, template)
    call("GET", "/v1/templates/{template_id}", 200, "/v1/templates/hello?versions=true", admin)
    call("GET", "/v1/templates/{template_id}", 404, "/v1/templates/nothing", admin)
    call("GET", "/v1/templates/{template_id}", 400, "/v1/templates/hello?versions=maybe", admin)
    call("GET", "/v1/templates", 200, headers=admin)
    call("GET", "/v1/templates", 401)
    trigger = {"category": "transactional", "when": {"event": "Hello Said"}, "then": [{"email": {
        "template": "hello", "from": "Example <hello@example.com>"}}]}
    call("PUT", "/v1/triggers/{trigger_id}", 201, "/v1/triggers/hello", admin, trigger)
    call("PUT", "/v1/triggers/{trigger_id}", 409, "/v1/triggers/hello", {**admin, "If-Match": "0"}, trigger)
    call("PUT", "/v1/triggers/{trigger_id}", 400, "/v1/triggers/hello", admin, {**trigger, "when": {}})
    call("PUT", "/v1/triggers/{trigger_id}", 413, "/v1/triggers/hello", admin,
         {**trigger, "description": "x" * 300_000})
    call("PUT", "/v1/triggers/{trigger_id}", 401, "/v1/triggers/hello", write, trigger)
    call("GET", "/v1/triggers/{trigger_id}", 200, "/v1/triggers/hello", admin)
    call("GET", "/v1/triggers", 200, headers=admin)
    call("GET", "/v1/triggers", 401, headers=write)
    call("GET", "/v1/triggers/{trigger_id}/stats", 200, "/v1/triggers/support-acknowledgement/stats?days=7", admin)
    call("GET", "/v1/triggers/{trigger_id}/stats", 400, "/v1/triggers/hello/stats?days=0", admin)
    call("GET", "/v1/triggers/{trigger_id}/stats", 401, "/v1/triggers/hello/stats")
    call("DELETE", "/v1/triggers/{trigger_id}", 204, "/v1/triggers/hello", admin)
    call("DELETE", "/v1/triggers/{trigger_id}", 404, "/v1/triggers/hello", admin)
    call("GET", "/v1/triggers/{trigger_id}", 404, "/v1/triggers/hello", admin)
    call("GET", "/v1/triggers/{trigger_id}", 200, "/v1/triggers/hello?versions=true", admin)
    call("GET", "/v1/broadcasts/{trigger_id}/runs", 200, "/v1/broadcasts/holiday-offer/runs", admin)
    call("GET", "/v1/broadcasts/{trigger_id}/runs", 400, "/v1/broadcasts/holiday-offer/runs?limit=501", admin)
    call("GET", "/v1/broadcasts/{trigger_id}/runs", 401, "/v1/broadcasts/holiday-offer/runs", write)

    # --- feedback
    call("GET", "/v1/reputation", 200, headers=admin)
    call("GET", "/v1/reputation", 401)
    call("POST", "/v1/reputation/resume", 200, headers=admin)
    call("POST", "/v1/reputation/resume", 401, headers=write)

    # --- operations
    pattern = {"EventPattern": json.dumps({"event": {"event": ["Signed Up"]}}),
               "Event": json.dumps({"event": {"event": "Signed Up"}})}
    assert call("POST", "/v1/test-event-pattern", 200, headers=admin, body=pattern) == {"Result": True}
    call("POST", "/v1/test-event-pattern", 400, headers=admin, body={"EventPattern": "{"})
    call("POST", "/v1/test-event-pattern", 401, headers=write, body=pattern)
    call("GET", "/v1/clock", 200, headers=admin)
    call("GET", "/v1/clock", 401, headers=write)
    call("POST", "/v1/clock", 200, headers=admin, body={"advance": "1m"})
    call("POST", "/v1/clock", 400, headers=admin, body={"advance": "soon"})
    call("POST", "/v1/clock", 401, headers=write, body={"advance": "1m"})

    # --- erasure, last
    call("DELETE", "/v1/profiles/{user_id}", 401, profile, write)
    call("DELETE", "/v1/profiles/{user_id}", 200, profile, admin)
    call("DELETE", "/v1/profiles/{user_id}", 404, profile, admin)

    described = {(method.upper(), path) for path, item in answers.doc["paths"].items()
                 for method in METHODS if method in item}
    assert described - answers.seen == set(), "operations the tour did not call"

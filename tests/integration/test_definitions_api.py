"""Defining triggers and templates over the admin API, with every version kept."""
import io
import json
from pathlib import Path

import pytest

from chalicelib import cli
from chalicelib.definitions import DynamoDefinitions
from chalicelib.errors import ConcurrentUpdate
from chalicelib.settings import get_settings
from chalicelib.triggers import parse_trigger
from tests.integration.conftest import admin_headers, get_json, write_headers

THANKS = {"id": "thanks", "channel": "email", "subject": "Thanks, {{ profile.traits.firstName | default: 'there' }}",
          "html": "<p>Your copy: {{ event.properties.asset }}</p>"}
TRIGGER = {"id": "whitepaper", "description": "Thank people for downloading", "category": "marketing", "topic": "offers",
           "when": {"event": "Whitepaper Downloaded"},
           "then": [{"email": {"template": "thanks", "from": "Demo <hello@example.com>"}}]}


def put(client, path, body, headers=None, **extra_headers):
    headers = {**(headers if headers is not None else admin_headers()), "Content-Type": "application/json",
               **extra_headers}
    response = client.http.put(path, headers=headers, body=body if isinstance(body, str) else json.dumps(body))
    return response.status_code, json.loads(response.body) if response.body else None


def test_put_then_get_a_trigger_and_its_template(client):
    # Given a template, When a trigger using it is saved
    assert put(client, "/v1/templates/thanks", THANKS) == (201, {"id": "thanks", "version": 1, "outcome": "created"})
    status, body = put(client, "/v1/triggers/whitepaper", TRIGGER)
    # Then it is created at version 1 and reads back as written, with who saved it
    assert (status, body["version"], body["outcome"]) == (201, 1, "created")
    status, shown = get_json(client, "/v1/triggers/whitepaper")
    assert status == 200
    assert shown["definition"] == TRIGGER
    assert shown["version"] == 1 and shown["updatedBy"] and shown["updatedAt"].endswith("Z")
    status, template = get_json(client, "/v1/templates/thanks")
    assert status == 200 and template["definition"] == THANKS


def test_each_change_is_a_version_and_the_same_definition_is_not(client):
    put(client, "/v1/templates/thanks", THANKS)
    put(client, "/v1/triggers/whitepaper", TRIGGER)
    assert put(client, "/v1/triggers/whitepaper", TRIGGER)[1] == {"id": "whitepaper", "version": 1,
                                                                  "outcome": "unchanged"}
    status, body = put(client, "/v1/triggers/whitepaper", {**TRIGGER, "enabled": False})
    assert (status, body["version"], body["outcome"]) == (200, 2, "updated")
    status, shown = get_json(client, "/v1/triggers/whitepaper?versions=true")
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    assert shown["versions"][0]["definition"]["enabled"] is False
    assert shown["versions"][1]["definition"] == TRIGGER
    assert {v["via"] for v in shown["versions"]} == {"api"}


def test_list_shows_each_trigger_with_its_event_and_state(client):
    put(client, "/v1/templates/thanks", THANKS)
    put(client, "/v1/triggers/whitepaper", TRIGGER)
    alert = {"id": "pricing", "category": "internal", "when": {"type": "page"},
             "then": [{"alert": {"topic": "sales", "text": "{{ profile.userId }} is on pricing"}}], "enabled": False}
    put(client, "/v1/triggers/pricing", alert)
    status, listed = get_json(client, "/v1/triggers")
    assert status == 200
    rows = {row["id"]: row for row in listed["triggers"]}
    assert rows["whitepaper"]["event"] == "Whitepaper Downloaded" and rows["whitepaper"]["enabled"] is True
    assert rows["pricing"]["event"] == "page" and rows["pricing"]["enabled"] is False
    assert rows["pricing"]["category"] == "internal" and rows["pricing"]["actions"] == ["alert"]
    status, templates = get_json(client, "/v1/templates")
    assert [t["id"] for t in templates["templates"]] == ["thanks"]
    assert templates["templates"][0]["channel"] == "email"


def test_delete_keeps_history_and_the_evaluator_stops_seeing_it(client):
    put(client, "/v1/templates/thanks", THANKS)
    put(client, "/v1/triggers/whitepaper", TRIGGER)
    evaluator = DynamoDefinitions(get_settings(), cache_seconds=0)  # another function's view
    assert [t.id for t in evaluator.triggers_for("Whitepaper Downloaded")] == ["whitepaper"]
    assert client.http.delete("/v1/triggers/whitepaper", headers=admin_headers()).status_code == 204
    assert evaluator.triggers_for("Whitepaper Downloaded") == []
    assert get_json(client, "/v1/triggers/whitepaper")[0] == 404
    assert get_json(client, "/v1/triggers")[1] == {"triggers": []}
    status, shown = get_json(client, "/v1/triggers/whitepaper?versions=true")
    assert status == 200 and shown["deleted"] is True
    assert [(v["version"], v["deleted"]) for v in shown["versions"]] == [(2, True), (1, False)]
    assert client.http.delete("/v1/triggers/whitepaper", headers=admin_headers()).status_code == 404
    # Saving it again continues the numbering
    assert put(client, "/v1/triggers/whitepaper", TRIGGER)[1] == {"id": "whitepaper", "version": 3,
                                                                  "outcome": "created"}


def test_invalid_definitions_are_refused_naming_the_field_and_change_nothing(client):
    put(client, "/v1/templates/thanks", THANKS)
    put(client, "/v1/triggers/whitepaper", TRIGGER)
    cases = [
        ({**TRIGGER, "then": [{"email": {"template": "nope", "from": "hello@example.com"}}]},
         "then[0].email.template"),
        ({**TRIGGER, "when": {"event": "Whitepaper Downloaded", "match": {"event": {"properties": {"x": "y"}}}}},
         "when.match"),
        ({**TRIGGER, "id": "other"}, "id"),
        ({**TRIGGER, "then": [{"push": {}}]}, "then[0].push"),
        ("not json", "body"),
    ]
    for body, field in cases:
        status, answer = put(client, "/v1/triggers/whitepaper", body)
        assert status == 400, field
        assert answer["error"]["problems"][0]["field"] == field
    status, answer = put(client, "/v1/templates/thanks", {**THANKS, "html": "{% if %}"})
    assert status == 400 and answer["error"]["problems"][0] == {
        "field": "html", "rule": "is not valid Liquid: missing expression (line 1, column 4)"}
    status, answer = put(client, "/v1/templates/thanks", {"id": "thanks", "channel": "sms", "text": "hi"})
    assert status == 400 and answer["error"]["problems"][0]["field"] == "channel"
    assert get_json(client, "/v1/triggers/whitepaper?versions=true")[1]["version"] == 1
    assert get_json(client, "/v1/templates/thanks?versions=true")[1]["version"] == 1


def test_a_template_must_fit_the_channel_of_its_action(client):
    put(client, "/v1/templates/sms-hi", {"id": "sms-hi", "channel": "sms", "text": "Hi"})
    status, answer = put(client, "/v1/triggers/whitepaper",
                         {**TRIGGER, "then": [{"email": {"template": "sms-hi", "from": "hello@example.com"}}]})
    assert status == 400
    assert answer["error"]["problems"][0] == {"field": "then[0].email.template",
                                              "rule": "is an sms template, but email needs an email template"}


def test_if_match_makes_a_write_conditional(client):
    put(client, "/v1/templates/thanks", THANKS)
    put(client, "/v1/triggers/whitepaper", TRIGGER)
    status, answer = put(client, "/v1/triggers/whitepaper", {**TRIGGER, "enabled": False}, **{"If-Match": "0"})
    assert status == 409 and answer["error"]["code"] == "conflict"
    status, answer = put(client, "/v1/triggers/whitepaper", {**TRIGGER, "enabled": False}, **{"If-Match": '"1"'})
    assert (status, answer["version"]) == (200, 2)


def test_the_write_key_and_bad_tokens_open_nothing(client):
    put(client, "/v1/templates/thanks", THANKS)
    for headers in ({}, write_headers(), admin_headers("guess")):
        assert put(client, "/v1/triggers/whitepaper", TRIGGER, headers=headers)[0] == 401
        assert put(client, "/v1/templates/thanks", {**THANKS, "subject": "x"}, headers=headers)[0] == 401
        for path in ("/v1/triggers", "/v1/triggers/whitepaper", "/v1/templates", "/v1/templates/thanks"):
            status, body = get_json(client, path, headers=headers)
            assert status == 401 and body["error"]["code"] == "unauthorized", path
        assert client.http.delete("/v1/triggers/whitepaper", headers=headers).status_code == 401
    assert get_json(client, "/v1/triggers/whitepaper")[0] == 404
    assert get_json(client, "/v1/templates/thanks")[1]["version"] == 1


def test_unknown_ids_and_bad_queries(client):
    status, body = get_json(client, "/v1/triggers/nobody")
    assert status == 404 and body["error"]["problems"][0]["field"] == "id"
    assert get_json(client, "/v1/templates/nobody")[0] == 404
    status, body = get_json(client, "/v1/triggers/nobody?versions=yes")
    assert status == 400 and body["error"]["problems"][0]["field"] == "versions"


def test_the_evaluator_reuses_its_lookup_for_a_few_seconds(client):
    # Given an evaluating function that looked up "Order Completed" at t=0
    now = [0.0]
    evaluator = DynamoDefinitions(get_settings(), cache_seconds=5, clock=lambda: now[0])
    assert evaluator.triggers_for("Order Completed") == []
    # When an admin defines a trigger for it
    put(client, "/v1/templates/thanks", THANKS)
    put(client, "/v1/triggers/orders", {**TRIGGER, "id": "orders", "when": {"event": "Order Completed"}})
    # Then the function sees it once its cached answer is older than the cache time
    now[0] = 4.9
    assert evaluator.triggers_for("Order Completed") == []
    now[0] = 5.1
    (found,) = evaluator.triggers_for("Order Completed")
    assert (found.id, found.version, found.event_key) == ("orders", 1, "Order Completed")


def test_a_save_that_loses_a_race_writes_nothing(stack, monkeypatch):
    # Given two admins who both read version 1
    store = DynamoDefinitions(get_settings())
    store.put_trigger(parse_trigger(TRIGGER, templates=None, origin="test"), "ana")
    read_by_bo = DynamoDefinitions._current("trigger", "whitepaper")
    # When Ana saves version 2 first
    paused = parse_trigger({**TRIGGER, "enabled": False}, templates=None, origin="test")
    assert store.put_trigger(paused, "ana") == 2
    # Then Bo's save, based on version 1, is refused whole
    monkeypatch.setattr(DynamoDefinitions, "_current", staticmethod(lambda kind, definition_id: read_by_bo))
    renamed = parse_trigger({**TRIGGER, "description": "Bo's"}, templates=None, origin="test")
    with pytest.raises(ConcurrentUpdate):
        store.put_trigger(renamed, "bo")
    monkeypatch.undo()
    assert [(v.version, v.who) for v in store.trigger_versions("whitepaper")] == [(1, "ana"), (2, "ana")]
    assert store.get_trigger("whitepaper").enabled is False


def chalice_transport(client):
    """The nudge CLI's calls, made through the Chalice test client."""
    def send(method, path, body=None):
        headers = {**admin_headers(), "Content-Type": "application/json", "User-Agent": "nudge-cli/1"}
        response = getattr(client.http, method.lower())(path, headers=headers,
                                                        body=json.dumps(body) if body is not None else b"")
        return response.status_code, json.loads(response.body) if response.body else None
    return send


def test_nudge_apply_saves_the_shipped_examples_and_reports_what_changed(client, tmp_path):
    # Given the repository's example triggers and templates
    root = Path(__file__).resolve().parents[2]
    out = io.StringIO()
    # When they are applied twice
    assert cli.main(["apply", str(root)], transport=chalice_transport(client), out=out, err=io.StringIO()) == 0
    first = out.getvalue().splitlines()
    out = io.StringIO()
    assert cli.main(["apply", str(root)], transport=chalice_transport(client), out=out, err=io.StringIO()) == 0
    # Then templates go first, everything is created once, and the second run changes nothing
    assert first[0].startswith("template ") and first[-1].startswith("trigger ")
    assert all(line.endswith("created (version 1)") for line in first), first
    assert all(line.endswith("unchanged (version 1)") for line in out.getvalue().splitlines())
    shipped = [p for kind in ("templates", "triggers") for p in (root / kind).glob("*.yaml")]
    assert len(first) == len(shipped)
    status, shown = get_json(client, "/v1/triggers/pricing-page-alert?versions=true")
    assert shown["versions"][0]["via"] == "cli"
    evaluator = DynamoDefinitions(get_settings(), cache_seconds=0)
    assert sorted(t.id for t in evaluator.triggers_for("Order Completed")) == ["order-confirmation",
                                                                                 "order-cross-sell"]
    pricing = {t.id: t for t in evaluator.triggers_for("page")}["pricing-page-alert"]
    assert pricing.match.matches({"event": {"type": "page", "properties": {"path": "/pricing/teams"}}, "profile": {}})
    # And nudge list shows them
    out = io.StringIO()
    assert cli.main(["list"], transport=chalice_transport(client), out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "CATEGORY", "EVENT", "ENABLED", "VERSION"]
    assert ["order-confirmation", "transactional", "Order", "Completed", "yes", "1"] in [l.split() for l in lines]
    assert len(lines) == 1 + len(list((root / "triggers").glob("*.yaml")))


def test_nudge_apply_reports_the_field_the_api_refused(client, tmp_path):
    (tmp_path / "triggers").mkdir()
    (tmp_path / "triggers" / "hello.yaml").write_text(
        "id: hello\ncategory: marketing\ntopic: news\nwhen: {event: Signed Up}\n"
        "then:\n  - email: {template: welcome, from: hello@example.com}\n")
    out = io.StringIO()
    assert cli.main(["apply", str(tmp_path)], transport=chalice_transport(client), out=out, err=io.StringIO()) == 1
    assert out.getvalue().strip() == (f"{tmp_path}/triggers/hello.yaml: then[0].email.template: names no known "
                                      "template: add templates/welcome.yaml or PUT /v1/templates/welcome first")

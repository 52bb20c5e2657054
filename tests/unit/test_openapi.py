"""The OpenAPI description (chalicelib/openapi.yaml) tells the truth about the app.

Every route the Chalice app serves is described and every described operation
is served; the document is valid OpenAPI; every error answer is the shared
JSON error shape; the credentials it names are the ones the routes ask for;
and the limits it states are the limits the code enforces. Real answers are
checked against its response schemas in
tests/integration/test_openapi_answers.py.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Iterator

import jsonschema
import pytest
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chalicelib import segment
from chalicelib.errors import InvalidInput
from functions.docs import description, path_prefix

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
#: Operations that need no credential: the health check, this description,
#: CORS preflights, and the pages authorised by the signed token in their link.
PUBLIC = {("GET", "/health"), ("GET", "/openapi.json"),
          ("GET", "/v1/unsubscribe"), ("POST", "/v1/unsubscribe"),
          ("GET", "/v1/preferences"), ("POST", "/v1/preferences"),
          *(("OPTIONS", f"/v1/{call}") for call in (*segment.CALL_TYPES, "batch"))}
WRITE = {("POST", f"/v1/{call}") for call in (*segment.CALL_TYPES, "batch")}
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return description()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def app_routes() -> set[tuple[str, str]]:
    from app import app

    return {(method, path) for path, methods in app.routes.items() for method in methods}


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def schema_validator(doc: dict[str, Any], pointer: str) -> jsonschema.Draft202012Validator:
    """A validator for the schema at ``#/<pointer>`` of the document, its
    ``#/components/...`` references resolved in the document."""
    uri = "urn:nudge:openapi"
    registry = Registry().with_resource(uri, Resource.from_contents(doc, default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"{uri}#/{pointer}"}, registry=registry,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


# --- the document and the app agree ----------------------------------------------------------


def test_every_route_of_the_app_is_described(doc):
    described = {(method, path) for method, path, _ in operations(doc)}
    missing = app_routes() - described
    assert not missing, f"routes served but not described in chalicelib/openapi.yaml: {sorted(missing)}"


def test_every_described_operation_is_a_route_of_the_app(doc):
    described = {(method, path) for method, path, _ in operations(doc)}
    extra = described - app_routes()
    assert not extra, f"operations described but not served: {sorted(extra)}"


def test_the_document_is_valid_openapi(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.")


def test_operation_ids_are_unique(doc):
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))


def test_path_parameters_are_declared_with_the_names_the_routes_use(doc):
    for method, path, operation in operations(doc):
        declared = {resolve(doc, p)["name"] for p in [*doc["paths"][path].get("parameters", []),
                                                      *operation.get("parameters", [])]
                    if resolve(doc, p)["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), f"{method} {path}"


# --- errors --------------------------------------------------------------------------------


def test_every_error_answer_is_the_shared_json_error_shape(doc):
    """The pages a person opens from a message may answer a browser with a
    page instead; everything else answers errors in JSON only."""
    for method, path, operation in operations(doc):
        statuses = operation["responses"]
        assert "5XX" in statuses, f"{method} {path} does not describe its 5xx answers"
        for status, response in statuses.items():
            if status[0] in "45":
                content = dict(resolve(doc, response)["content"])
                if "pages" in operation.get("tags", []) and status != "415":
                    assert content.pop("text/html") == {"schema": {"$ref": "#/components/schemas/ProblemPage"}}, \
                        f"{method} {path} {status}"
                assert list(content) == ["application/json"], f"{method} {path} {status}"
                assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, \
                    f"{method} {path} {status}"


def test_the_error_shape_accepts_nudges_errors_and_refuses_other_bodies(doc):
    from chalicelib.errors import FieldProblem
    from chalicelib.http import error

    check = schema_validator(doc, "components/schemas/Error")
    refused = error(400, "invalid_request", "batch[1].event: is required",
                    [FieldProblem("batch[1].event", "is required")])
    assert check.is_valid(refused.body)
    assert check.is_valid(error(401, "unauthorized", "a write key is required").body)
    assert not check.is_valid({"message": "Missing Authentication Token"})
    assert not check.is_valid({"error": "not found"})
    assert not check.is_valid({"error": {"code": "x", "message": "y", "problems": [{"field": "a"}]}})


def test_write_routes_answer_401_with_a_basic_challenge_and_admin_routes_with_bearer(doc):
    for method, path, operation in operations(doc):
        if "401" not in operation["responses"]:
            continue
        challenge = resolve(doc, operation["responses"]["401"])["headers"]["WWW-Authenticate"]["schema"]["const"]
        assert challenge == ('Basic realm="nudge"' if (method, path) in WRITE else "Bearer"), f"{method} {path}"


# --- credentials ---------------------------------------------------------------------------


def test_only_the_public_operations_need_no_credential(doc):
    """A new route is an admin route in the description unless it is listed
    here, so the security tests (which read the description) cover it."""
    for method, path, operation in operations(doc):
        security = operation.get("security", doc["security"])
        if (method, path) in PUBLIC:
            assert security == [], f"{method} {path} should need no credential"
        elif (method, path) in WRITE:
            assert security == [{"writeKey": []}], f"{method} {path}"
            assert "401" in operation["responses"]
        else:
            assert security == [{"adminToken": []}], f"{method} {path} should need the admin token"
            assert "401" in operation["responses"], f"{method} {path} does not describe its 401"


def test_the_credentials_are_http_basic_for_the_write_key_and_bearer_for_admin(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["writeKey"] == {**schemes["writeKey"], "type": "http", "scheme": "basic"}
    assert schemes["adminToken"] == {**schemes["adminToken"], "type": "http", "scheme": "bearer"}
    assert "writeKey" in doc["components"]["schemas"]["CallCommon"]["properties"]


def test_the_public_pages_answer_html(doc):
    for method, path in [("GET", "/v1/unsubscribe"), ("POST", "/v1/unsubscribe"),
                         ("GET", "/v1/preferences"), ("POST", "/v1/preferences")]:
        ok = resolve(doc, doc["paths"][path][method.lower()]["responses"]["200"])
        assert list(ok["content"]) == ["text/html"]
        assert "Content-Security-Policy" in ok["headers"]


# --- the limits the code enforces ----------------------------------------------------------


def test_the_segment_limits_are_the_ones_the_parser_enforces(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["Identifier"]["maxLength"] == segment.MAX_ID_LENGTH
    assert schemas["CallCommon"]["properties"]["messageId"]["maxLength"] == segment.MAX_ID_LENGTH
    assert schemas["Track"]["properties"]["event"]["maxLength"] == segment.MAX_EVENT_NAME_LENGTH
    items = schemas["Batch"]["properties"]["batch"]["items"]["oneOf"]
    assert [item["allOf"][0]["$ref"].rsplit("/", 1)[1].lower() for item in items] == list(segment.CALL_TYPES)
    for call in segment.CALL_TYPES:
        assert schemas[call.capitalize()]["properties"]["type"] == {"const": call}


def test_the_admin_limits_are_the_ones_the_routes_enforce(doc):
    from chalicelib.preferences import API_SOURCES, MAX_API_CHOICES
    from chalicelib.templates import CHANNELS, ID_PATTERN
    from chalicelib.triggers import CATEGORIES, MAX_ACTIONS, MAX_STEPS
    from functions import admin, feedback

    parameters = doc["components"]["parameters"]
    schemas = doc["components"]["schemas"]
    assert parameters["Limit"]["schema"]["maximum"] == admin.MAX_PAGE
    assert parameters["Limit"]["schema"]["default"] == admin.DEFAULT_PAGE
    days = doc["paths"]["/v1/triggers/{trigger_id}/stats"]["get"]["parameters"][0]["schema"]
    assert (days["maximum"], days["default"]) == (feedback.MAX_DAYS, feedback.DEFAULT_DAYS)
    assert schemas["DefinitionId"]["pattern"] == f"^{ID_PATTERN.pattern}$"
    assert schemas["Template"]["properties"]["channel"]["enum"] == list(CHANNELS)
    assert schemas["Trigger"]["properties"]["category"]["enum"] == list(CATEGORIES)
    assert schemas["Trigger"]["properties"]["then"]["maxItems"] == MAX_ACTIONS
    assert schemas["Trigger"]["properties"]["steps"]["maxItems"] == MAX_STEPS
    change = schemas["SubscriptionsChange"]["properties"]
    assert change["topics"]["maxProperties"] == MAX_API_CHOICES
    assert change["source"]["enum"] == list(API_SOURCES)


@pytest.mark.parametrize("call", [*segment.CALL_TYPES, "batch"])
def test_every_body_the_schema_calls_valid_in_the_examples_is_accepted_by_the_parser(doc, call):
    schema = doc["components"]["schemas"][call.capitalize()]
    examples = schema.get("examples") or [_minimal(call)]
    check = schema_validator(doc, f"components/schemas/{call.capitalize()}")
    for example in examples:
        assert check.is_valid(example), example
        if call == "batch":
            assert len(segment.parse_batch(example, NOW, 32 * 1024)) == len(example["batch"])
        else:
            assert segment.parse_call(call, example, NOW, 32 * 1024).type == call


@pytest.mark.parametrize("call, body", [
    ("track", {"userId": "ana"}),
    ("track", {"event": "Signed Up"}),
    ("track", {"userId": "ana", "event": "   "}),
    ("track", {"userId": "a" * 256, "event": "Signed Up"}),
    ("track", {"userId": True, "event": "Signed Up"}),
    ("identify", {"userId": "ana", "traits": ["not", "an", "object"]}),
    ("identify", {"userId": "ana", "timestamp": "yesterday"}),
    ("group", {"userId": "ana"}),
    ("alias", {"previousId": "anon-1"}),
    ("alias", {"userId": "ana"}),
    ("page", {"anonymousId": "anon-1", "name": 7}),
    ("track", {"userId": "ana", "event": "Signed Up", "messageId": ""}),
])
def test_bodies_the_schema_refuses_are_refused_by_the_parser(doc, call, body):
    check = schema_validator(doc, f"components/schemas/{call.capitalize()}")
    assert not check.is_valid(body)
    with pytest.raises(InvalidInput):
        segment.parse_call(call, body, NOW, 32 * 1024)


def test_a_batch_item_needs_its_type(doc):
    check = schema_validator(doc, "components/schemas/Batch")
    assert check.is_valid({"batch": [{"type": "track", "userId": "ana", "event": "Signed Up"}]})
    assert not check.is_valid({"batch": [{"userId": "ana", "event": "Signed Up"}]})
    assert not check.is_valid({"batch": []})
    with pytest.raises(InvalidInput):
        segment.parse_batch({"batch": [{"userId": "ana", "event": "Signed Up"}]}, NOW, 32 * 1024)


def _minimal(call: str) -> dict[str, Any]:
    return {"group": {"userId": "ana", "groupId": "acme"}, "alias": {"userId": "ana", "previousId": "anon-1"},
            "page": {"anonymousId": "anon-1", "name": "Pricing"}, "screen": {"userId": 42, "name": "Home"}}[call]


# --- serving it ----------------------------------------------------------------------------


@pytest.mark.parametrize("context, prefix", [
    ({"path": "/api/openapi.json", "resourcePath": "/openapi.json"}, "/api"),
    ({"path": "/openapi.json", "resourcePath": "/openapi.json"}, ""),
    ({}, ""),
])
def test_servers_name_the_stage_prefix_the_api_is_reached_under(context, prefix):
    assert path_prefix(context) == prefix


# --- what API Gateway answers itself ---------------------------------------------------------


def test_api_gateways_own_answers_are_in_the_json_error_shape(doc):
    """A path no route matches never reaches the function: the deployed API
    answers it (and a too-large body, throttling, a failed function) from the
    gateway responses in infra/template.yaml, in the same JSON error shape."""
    from infra.template import load_template

    responses = (load_template()["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
                 ["x-amazon-apigateway-gateway-responses"])
    check = schema_validator(doc, "components/schemas/Error")
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == 404
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for kind, response in responses.items():
        rendered = (response["responseTemplates"]["application/json"]
                    .replace("$context.httpMethod", "GET")
                    .replace("$context.error.messageString", '"Missing Authentication Token"'))
        assert check.is_valid(json.loads(rendered)), kind

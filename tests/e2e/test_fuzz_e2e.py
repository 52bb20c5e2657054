"""Fuzzing the HTTP API of a running local stack from its OpenAPI description.

schemathesis generates requests for every described operation, valid ones
and ones that break the description (missing or wrong-typed fields, values
out of range, bodies of the wrong type), with the write key on the tracking
routes and the admin token on the admin routes, and checks every answer:

- no 5xx, whatever the request;
- every 4xx is JSON in Nudge's error shape (``{"error": {code, message,
  problems}}``, the description's ``Error`` schema);
- the status is one the operation describes, with the described content
  type and a body that matches the described schema.

The stack is this module's own: fuzzing writes arbitrary valid triggers and
templates, moves the local clock, erases people and resumes sending, which
would disturb the tests that share the session stack.

``NUDGE_FUZZ_EXAMPLES`` (default 20) sets the examples per operation and
``NUDGE_FUZZ_SEED`` the seed (default fixed, so a failure reproduces); a
deeper run: ``NUDGE_FUZZ_EXAMPLES=200 NUDGE_FUZZ_SEED=$RANDOM pytest tests/e2e/test_fuzz_e2e.py``.
"""
from __future__ import annotations

import json
import os
import socket
import zlib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from chalicelib.segment import parse_time
from chalicelib.unsubscribe_tokens import sign
from functions.docs import description
from infra.local_stack import LOCAL_UNSUBSCRIBE_KEYS
from tests.e2e.conftest import ADMIN_TOKEN, PROJECT_DIR, WRITE_KEY, Stack, running_stack

EXAMPLES = int(os.environ.get("NUDGE_FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("NUDGE_FUZZ_SEED", "20261202"))
DOC = description()
CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": EXAMPLES},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "auth": {
        "auto-signup": False,
        "openapi": {
            "writeKey": {"username": WRITE_KEY, "password": ""},
            "adminToken": {"bearer": ADMIN_TOKEN},
        },
    },
})
schema = schemathesis.openapi.from_dict(DOC, config=CONFIG)
ERROR_SHAPE = jsonschema.Draft202012Validator(
    {"$ref": "urn:nudge:openapi#/components/schemas/Error"},
    registry=Registry().with_resource("urn:nudge:openapi", Resource.from_contents(
        DOC, default_specification=DRAFT202012)))
#: What the fuzzing did, per status class; written to the log directory at the end.
TALLY: Counter[str] = Counter()
#: A person who exists, with an email address, a phone number and some history.
KNOWN = "fuzz-ana"
TRIGGERS = sorted(path.stem for path in (PROJECT_DIR / "triggers").glob("*.yaml"))
TEMPLATES = sorted(path.stem for path in (PROJECT_DIR / "templates").glob("*.yaml"))


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("fuzz-stack")
    with running_stack(log_dir, name="the fuzzing stack") as running:
        for body in ({"userId": KNOWN, "traits": {"email": f"{KNOWN}@example.com", "phone": "+15555550100",
                                                   "firstName": "Ana", "timezone": "Europe/Lisbon"}},
                     {"userId": KNOWN, "event": "Order Completed", "properties": {"order_id": "F-1", "total": 10}}):
            response = running.post("/v1/identify" if "traits" in body else "/v1/track", body)
            assert response.status_code == 200, response.text
        yield running
    _write_tally(log_dir)


@schemathesis.check
def errors_in_the_json_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx answer is JSON in Nudge's error shape."""
    if response.status_code < 400:
        return None
    media = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    assert media == "application/json", f"a {response.status_code} answered {media or 'no content type'}"
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"a {response.status_code} answered a body that is not JSON: "
                             f"{response.content[:200]!r}") from None
    problems = [error.message for error in ERROR_SHAPE.iter_errors(body)]
    assert not problems, f"a {response.status_code} is not in the JSON error shape ({problems[0]}): {body}"
    return True


CHECKS = [not_a_server_error, errors_in_the_json_error_shape, status_code_conformance,
          content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=EXAMPLES)
def test_every_operation_survives_fuzzing(case: schemathesis.Case, fuzz_stack: Stack) -> None:
    _steer(case, fuzz_stack)
    response = case.call(base_url=fuzz_stack.url, timeout=30)
    TALLY["examples"] += 1
    TALLY[f"{response.status_code // 100}xx"] += 1
    TALLY[f"operation {case.operation.label}"] += 1
    TALLY[f"status {response.status_code}"] += 1
    TALLY[f"answer {case.operation.label} {response.status_code}"] += 1
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("status, media, content", [
    (404, "text/html", b"<html><h1>404 Not Found</h1></html>"),
    (403, "application/json", b'{"message": "Missing Authentication Token"}'),
    (400, "application/json", b"not json"),
    (500, "application/json", b'{"error": {"code": "internal_error"}}'),
])
def test_the_shape_check_refuses_other_error_bodies(status: int, media: str, content: bytes) -> None:
    response = SimpleNamespace(status_code=status, headers={"content-type": [media]}, content=content)
    with pytest.raises(AssertionError):
        errors_in_the_json_error_shape(None, response, None)
    shaped = (b'{"error": {"code": "not_found", "message": "no such person",'
              b' "problems": [{"field": "userId", "rule": "must name a known person"}]}}')
    assert errors_in_the_json_error_shape(None, SimpleNamespace(
        status_code=status, headers={"content-type": ["application/json"]}, content=shaped), None)


def _steer(case: schemathesis.Case, stack: Stack) -> None:
    """Half the examples (chosen by their content, so a run reproduces) name
    things that exist: the known person, an example trigger or template, a
    valid unsubscribe token. Fuzzing then reaches past the 404s and the token
    refusals into the handlers' real work. An erasure gets a person of its own."""
    choice = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    if choice % 2:
        return
    parameters = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if "user_id" in parameters:
        parameters["user_id"] = KNOWN if case.method != "DELETE" else f"fuzz-erased-{choice}"
        if case.method == "DELETE":
            stack.post("/v1/identify", {"userId": parameters["user_id"], "traits": {"email": "erased@example.com"}})
    if "trigger_id" in parameters:
        parameters["trigger_id"] = TRIGGERS[choice % len(TRIGGERS)]
    if "template_id" in parameters:
        parameters["template_id"] = TEMPLATES[choice % len(TEMPLATES)]
    if isinstance(case.query, dict) and "token" in case.query:
        # Signed at the engine's time: the fuzzing moves the local clock.
        now = parse_time(stack.admin_get("/v1/clock").json()["now"])
        channel, topic = [("email", None), ("email", "offers"), ("sms", "offers")][choice // 2 % 3]
        case.query["token"] = sign(LOCAL_UNSUBSCRIBE_KEYS, f"user:{KNOWN}", channel, topic, now)


def test_the_running_stack_serves_this_description(fuzz_stack: Stack) -> None:
    response = requests.get(fuzz_stack.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    served = response.json()
    assert served.pop("servers") == [{"url": "/"}]
    assert served == DOC


@pytest.mark.parametrize("method, path", [("GET", "/no-such-route"), ("POST", "/v1/profiles"),
                                          ("GET", "/v1/profiles/"), ("DELETE", "/v1/track"),
                                          ("TRACE", "/v1/track"), ("CONNECT", "/health"), ("BREW", "/health")])
def test_an_unknown_route_or_method_is_answered_in_the_json_error_shape(fuzz_stack: Stack, method: str,
                                                                        path: str) -> None:
    response = requests.request(method, fuzz_stack.url + path, headers=fuzz_stack.admin_auth(), timeout=10)
    assert response.status_code in (404, 405), response.text
    assert response.headers["Content-Type"] == "application/json"
    assert ERROR_SHAPE.is_valid(response.json()), response.text


def test_a_request_the_server_cannot_read_is_answered_in_the_json_error_shape(fuzz_stack: Stack) -> None:
    host, port = fuzz_stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        # More header lines than the server reads: it refuses before any route is looked up.
        connection.sendall(b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n")
        answer = connection.makefile("rb").read().decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.split()[1].startswith("4"), head
    assert "Content-Type: application/json" in head
    assert ERROR_SHAPE.is_valid(json.loads(body)), body


def _write_tally(log_dir: Path) -> None:
    operations = sorted(key for key in TALLY if key.startswith("operation "))
    summary = {"operations": len(operations), "examples": TALLY["examples"],
               **{key: TALLY[key] for key in ("2xx", "3xx", "4xx", "5xx")},
               "per status": {key.removeprefix("status "): TALLY[key] for key in sorted(TALLY)
                              if key.startswith("status ")},
               "per operation": {key.removeprefix("operation "): {
                   status.rsplit(" ", 1)[1]: TALLY[status] for status in sorted(TALLY)
                   if status.startswith("answer " + key.removeprefix("operation ") + " ")} for key in operations}}
    (log_dir / "fuzz-summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nfuzzing: {summary['operations']} operations, {summary['examples']} examples, "
          f"2xx {summary['2xx']}, 4xx {summary['4xx']}, 5xx {summary['5xx']} ({log_dir / 'fuzz-summary.json'})")


def test_a_chunked_body_is_read_like_any_other(fuzz_stack: Stack) -> None:
    """API Gateway accepts Transfer-Encoding: chunked; so does the local server,
    and the connection stays usable for the next request."""
    def chunks() -> Iterator[bytes]:
        yield b'{"userId": "chunked-sender", '
        yield b'"event": "Sent In Chunks"}'

    with requests.Session() as session:
        for _ in range(2):
            response = session.post(fuzz_stack.url + "/v1/track", data=chunks(), timeout=10,
                                    headers={**fuzz_stack.write_auth(), "Content-Type": "application/json"})
            assert response.status_code == 200, response.text
        assert session.get(fuzz_stack.url + "/health", timeout=10).status_code == 200
    assert fuzz_stack.profile("chunked-sender").json()["events"]["Sent In Chunks"]["count"] == 2

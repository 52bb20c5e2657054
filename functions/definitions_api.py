"""The definitions API: triggers and templates, with a Bearer admin token.

``PUT`` takes the same shape as the YAML files (as JSON) and answers 201 when
the definition is new, 200 when it replaced one or was already the same (no
new version then). An ``If-Match: <version>`` header makes the write
conditional on the version the caller last read (409 otherwise). A refused
definition changes nothing. Every change is kept: ``GET ...?versions=true``.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from chalice import Blueprint, Response

from chalicelib import auth, dependencies
from chalicelib.errors import ConcurrentUpdate, FieldProblem, InvalidInput
from chalicelib.http import NotFound, answers_errors, error, json_response
from chalicelib.settings import get_settings
from chalicelib.templates import parse_template
from chalicelib.triggers import MAX_ACTIONS, parse_trigger, referenced_templates

definitions = Blueprint(__name__)

_CHALLENGE = "Bearer"
#: A definition and its version are written together; both must fit in one
#: DynamoDB item (400 KB) with room to spare.
MAX_DEFINITION_BYTES = 256 * 1024
#: Templates looked up for one trigger; more actions than this are refused anyway.
MAX_REFERENCES = MAX_ACTIONS + 1
#: The nudge CLI says so in its User-Agent; recorded as "via" in the history.
CLI_AGENT = "nudge-cli"


def _admin() -> str:
    """The caller's admin token, after checking it."""
    return auth.require_admin(definitions.current_request.headers, dependencies.key_store(),
                              get_settings().key_cache_seconds)


def _author(token: str) -> tuple[str, str]:
    """(who, via) for the version history."""
    agent = definitions.current_request.headers.get("user-agent") or ""
    return auth.key_name(token, dependencies.key_store()), "cli" if agent.startswith(CLI_AGENT) else "api"


def _body(path_id: str) -> dict[str, Any]:
    raw = definitions.current_request.raw_body or b""
    if len(raw) > MAX_DEFINITION_BYTES:
        raise InvalidInput([FieldProblem("body", f"must be at most {MAX_DEFINITION_BYTES // 1024} KB")], 413)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InvalidInput([FieldProblem("body", "must be a JSON object: the definition, as in its YAML file")])
    if body.setdefault("id", path_id) != path_id:
        raise InvalidInput([FieldProblem("id", f"must equal the id in the path ({path_id!r})")])
    return body


def _expected_version() -> int | None:
    raw = definitions.current_request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip().strip('"')
    if not value.isdigit():
        raise InvalidInput([FieldProblem("If-Match", "must be the version you last read, e.g. 3 (0: not yet defined)")])
    return int(value)


def _show_versions() -> bool:
    value = (definitions.current_request.query_params or {}).get("versions", "false")
    if value not in ("true", "false"):
        raise InvalidInput([FieldProblem("versions", "must be true or false")])
    return value == "true"


def _conflict(exc: ConcurrentUpdate) -> Response:
    return error(409, "conflict", f"{exc}; read it again and retry",
                 [FieldProblem("If-Match", "must be the current version")])


def _saved(definition_id: str, save: Callable[[], Any]) -> Response:
    try:
        saved = save()
    except ConcurrentUpdate as exc:
        return _conflict(exc)
    return json_response({"id": definition_id, "version": saved.version, "outcome": saved.outcome},
                         status=201 if saved.outcome == "created" else 200)


def _shown(kind: str, definition_id: str) -> Response:
    store = dependencies.definitions()
    stored = store.stored(kind, definition_id)
    with_versions = _show_versions()
    if stored is None or (stored.deleted and not with_versions):
        rule = (f"names a deleted {kind}: GET ?versions=true shows its history" if stored is not None
                else f"must name a known {kind}")
        raise NotFound(f"no {kind} {definition_id!r}", FieldProblem("id", rule))
    body: dict[str, Any] = {"id": definition_id, **stored.meta(), "deleted": stored.deleted,
                            "definition": None if stored.deleted else stored.source}
    if with_versions:
        history = store.trigger_versions if kind == "trigger" else store.template_versions
        body["versions"] = [version.as_dict() for version in reversed(history(definition_id))]
    return json_response(body)


# --- triggers ---------------------------------------------------------------------------------


@definitions.route("/v1/triggers/{trigger_id}", methods=["PUT"])
@answers_errors(_CHALLENGE)
def put_trigger(trigger_id: str) -> Response:
    token = _admin()
    body = _body(trigger_id)
    expected = _expected_version()
    store = dependencies.definitions()
    # Read consistently, so a template saved a moment ago (nudge apply) is seen.
    found = {name: store.get_template(name) for name in sorted(referenced_templates(body))[:MAX_REFERENCES]}
    templates = {name: template.channel for name, template in found.items() if template is not None}
    trigger = parse_trigger(body, templates=templates, origin=f"PUT /v1/triggers/{trigger_id}")
    who, via = _author(token)
    return _saved(trigger_id,
                  lambda: store.save_trigger(trigger, who, via=via, expected_version=expected))


@definitions.route("/v1/triggers/{trigger_id}", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_trigger(trigger_id: str) -> Response:
    _admin()
    return _shown("trigger", trigger_id)


@definitions.route("/v1/triggers", methods=["GET"])
@answers_errors(_CHALLENGE)
def list_triggers() -> Response:
    _admin()
    rows = []
    for item in dependencies.definitions().list_stored("trigger"):
        source = item.source or {}
        when = source.get("when") or {}
        rows.append({"id": item.id, "description": source.get("description", ""), "category": source.get("category"),
                     "event": when.get("event") or when.get("type"), "type": when.get("type", "track"),
                     "enabled": source.get("enabled", True),
                     "actions": [next(iter(action)) for action in source.get("then") or []], **item.meta()})
    return json_response({"triggers": rows})


@definitions.route("/v1/triggers/{trigger_id}", methods=["DELETE"])
@answers_errors(_CHALLENGE)
def delete_trigger(trigger_id: str) -> Response:
    token = _admin()
    who, via = _author(token)
    try:
        deleted = dependencies.definitions().delete_trigger(trigger_id, who, via=via)
    except ConcurrentUpdate as exc:
        return _conflict(exc)
    if not deleted:
        raise NotFound(f"no trigger {trigger_id!r}", FieldProblem("id", "must name a known trigger"))
    return Response(body="", status_code=204)


# --- templates --------------------------------------------------------------------------------


@definitions.route("/v1/templates/{template_id}", methods=["PUT"])
@answers_errors(_CHALLENGE)
def put_template(template_id: str) -> Response:
    token = _admin()
    body = _body(template_id)
    expected = _expected_version()
    template = parse_template(body, f"PUT /v1/templates/{template_id}")
    store = dependencies.definitions()
    current = store.get_template(template_id)
    if current is not None and current.channel != template.channel:
        raise InvalidInput([FieldProblem("channel", f"cannot change (it is {current.channel}): triggers use this "
                                                    "template for that channel; create a template with a new id")])
    who, via = _author(token)
    return _saved(template_id,
                  lambda: store.save_template(template, who, via=via, expected_version=expected))


@definitions.route("/v1/templates/{template_id}", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_template(template_id: str) -> Response:
    _admin()
    return _shown("template", template_id)


@definitions.route("/v1/templates", methods=["GET"])
@answers_errors(_CHALLENGE)
def list_templates() -> Response:
    _admin()
    rows = [{"id": item.id, "channel": (item.source or {}).get("channel"),
             "description": (item.source or {}).get("description", ""),
             "subject": (item.source or {}).get("subject"), **item.meta()}
            for item in dependencies.definitions().list_stored("template")]
    return json_response({"templates": rows})

"""The admin API, with a Bearer admin token: profiles, their events, the
messages sent to them and why triggers fired or not; a person's export and
erasure; broadcast runs; EventBridge pattern tests.

Also GET /health, which needs no credential and touches nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib import auth, dependencies
from chalicelib.clock import utcnow
from chalicelib.errors import FieldProblem, InvalidInput
from chalicelib.http import NotFound, answers_errors, error, json_response
from chalicelib.messages import shown
from chalicelib.profiles import Profile
from chalicelib.segment import iso, parse_body
from chalicelib.settings import get_settings

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.erasure import PersonStores

admin = Blueprint(__name__)

DEFAULT_PAGE = 50
MAX_PAGE = 500
_CHALLENGE = "Bearer"


@admin.route("/health", methods=["GET"])
def health() -> Response:
    return json_response({"status": "ok"})


def authorized_profile(user_id: str) -> Profile:
    """The person's profile, after checking the caller's admin token."""
    request = admin.current_request
    auth.require(auth.ADMIN, auth.bearer_token(request.headers), dependencies.key_store(),
                 get_settings().key_cache_seconds)
    profile = dependencies.profile_store().get(f"user:{user_id}")
    if profile is None:
        raise NotFound(f"no profile for userId {user_id!r}", FieldProblem("userId", "must name a known person"))
    return profile


@admin.route("/v1/profiles/{user_id}", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_profile(user_id: str) -> Response:
    return json_response(authorized_profile(user_id).as_dict())


@admin.route("/v1/profiles/{user_id}/events", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_profile_events(user_id: str) -> Response:
    profile = authorized_profile(user_id)
    limit = _limit()
    identities = [profile.profile_id, *(f"anon:{a}" for a in profile.anonymous_ids)]
    try:
        page = dependencies.event_log().history(identities, limit,
                                                (admin.current_request.query_params or {}).get("cursor"))
    except ValueError as exc:
        raise InvalidInput([FieldProblem("cursor", "must be a cursor returned by this endpoint")]) from exc
    return json_response({"events": [event.as_dict() for event in page.events], "next": page.cursor})


def _limit(default: int = DEFAULT_PAGE) -> int:
    raw = (admin.current_request.query_params or {}).get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidInput([FieldProblem("limit", f"must be a whole number from 1 to {MAX_PAGE}")])
    return int(raw)


@admin.route("/v1/profiles/{user_id}/messages", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_profile_messages(user_id: str) -> Response:
    profile = authorized_profile(user_id)
    limit = _limit()
    # Decisions made before the person was identified stay under their anonymous id.
    records = [record for key in (profile.profile_id, *(f"anon:{a}" for a in profile.anonymous_ids))
               for record in dependencies.ledger().messages(key, limit)]
    records = sorted(records, key=lambda r: r.created_at, reverse=True)[:limit]
    return json_response({"messages": [shown(record, utcnow()) for record in records]})


@admin.route("/v1/profiles/{user_id}/decisions", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_profile_decisions(user_id: str) -> Response:
    profile = authorized_profile(user_id)
    return json_response({"decisions": dependencies.decision_log().decisions(profile.profile_id, _limit())})


#: How long one erasure request may work before answering 202 (API Gateway gives up at 29 s).
ERASE_SECONDS = 20.0


def _require_admin() -> None:
    auth.require(auth.ADMIN, auth.bearer_token(admin.current_request.headers), dependencies.key_store(),
                  get_settings().key_cache_seconds)


def _person_stores() -> "PersonStores":
    from chalicelib.erasure import PersonStores

    return PersonStores(events=dependencies.event_log(), profiles=dependencies.profile_store(),
                        ledger=dependencies.ledger(), decisions=dependencies.decision_log(),
                        timers=dependencies.timer_store(), consent=dependencies.consent_store())


@admin.route("/v1/profiles/{user_id}", methods=["DELETE"])
@answers_errors(_CHALLENGE)
def erase_profile(user_id: str) -> Response:
    """Erase everything held about the person (chalicelib.erasure): 200 with the
    counts removed; 202 when time ran out first (repeat the request to finish);
    404 when no profile is held (never known, or already erased)."""
    import time

    from chalicelib.erasure import erase

    _require_admin()
    stores = _person_stores()
    deadline = time.monotonic() + ERASE_SECONDS
    result = erase(user_id, stores, iso(utcnow()), out_of_time=lambda: time.monotonic() > deadline)
    if result is None:
        message = (f"userId {user_id!r} was erased; nothing more is held about them"
                   if stores.consent.erased(user_id) else f"no profile for userId {user_id!r}")
        raise NotFound(message, FieldProblem("userId", "must name a known person"))
    return json_response(result.as_dict(), status=200 if result.complete else 202)


@admin.route("/v1/profiles/{user_id}/export", methods=["GET"])
@answers_errors(_CHALLENGE)
def export_profile(user_id: str) -> Response:
    """Everything held about the person as one JSON document (chalicelib.erasure.export)."""
    from chalicelib.erasure import export

    _require_admin()
    document = export(user_id, _person_stores(), utcnow())
    if document is None:
        raise NotFound(f"no profile for userId {user_id!r}", FieldProblem("userId", "must name a known person"))
    return json_response(document)


@admin.route("/v1/broadcasts/{trigger_id}/runs", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_broadcast_runs(trigger_id: str) -> Response:
    """A broadcast's runs, newest first, with their counts (profiles read,
    matched the audience, decisions queued, shards done)."""
    request = admin.current_request
    auth.require(auth.ADMIN, auth.bearer_token(request.headers), dependencies.key_store(),
                 get_settings().key_cache_seconds)
    return json_response({"broadcast": trigger_id, "runs": dependencies.broadcast_runs().runs(trigger_id, _limit())})


@admin.route("/v1/test-event-pattern", methods=["POST"])
@answers_errors(_CHALLENGE)
def test_event_pattern() -> Response:
    """Mirror of EventBridge TestEventPattern: is this event matched by this pattern?"""
    from chalicelib.patterns import InvalidPattern, test_event_pattern as matches

    request = admin.current_request
    auth.require(auth.ADMIN, auth.bearer_token(request.headers), dependencies.key_store(),
                 get_settings().key_cache_seconds)
    body = parse_body(request.raw_body, get_settings().max_event_bytes)
    problems = [FieldProblem(name, "must be a JSON document in a string")
                for name in ("EventPattern", "Event") if not isinstance(body.get(name), str)]
    if problems:
        raise InvalidInput(problems)
    try:
        return json_response({"Result": matches(body["EventPattern"], body["Event"])})
    except InvalidPattern as exc:
        raise InvalidInput([FieldProblem("EventPattern", str(exc))]) from exc
    except ValueError as exc:
        raise InvalidInput([FieldProblem("Event", f"must be a JSON object ({exc})")]) from exc


@admin.route("/v1/clock", methods=["GET", "POST"])
@answers_errors(_CHALLENGE)
def clock() -> Response:
    """Local stage only: read the engine's clock, or move it forward and fire
    everything that falls due (``{"advance": "3d"}``)."""
    from chalicelib import clock as engine_clock
    from chalicelib.durations import format_duration, parse_duration
    from functions.schedules import run_sweep

    request = admin.current_request
    settings = get_settings()
    auth.require(auth.ADMIN, auth.bearer_token(request.headers), dependencies.key_store(),
                 settings.key_cache_seconds)
    if settings.stage != "local":
        return error(403, "forbidden", "time travel exists only in the local stage",
                     [FieldProblem("stage", f"is {settings.stage!r}; the clock can move only in 'local'")])
    swept = None
    if request.method == "POST":
        body = parse_body(request.raw_body, settings.max_event_bytes)
        try:
            engine_clock.advance(parse_duration(str(body.get("advance", ""))))
        except ValueError as exc:
            raise InvalidInput([FieldProblem("advance", f"must be a duration such as 1h or 3d ({exc})")]) from exc
        swept = run_sweep().as_dict()
    return json_response({"now": iso(engine_clock.utcnow()), "offset": format_duration(engine_clock.offset())
                          if engine_clock.offset() else "0s", "swept": swept})

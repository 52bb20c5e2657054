"""The admin API: reading profiles and their events, with a Bearer admin token.

Also GET /health, which needs no credential and touches nothing.
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import auth, dependencies
from chalicelib.errors import FieldProblem, InvalidInput
from chalicelib.http import NotFound, answers_errors, json_response
from chalicelib.profiles import Profile
from chalicelib.settings import get_settings

admin = Blueprint(__name__)

DEFAULT_PAGE = 50
MAX_PAGE = 500
_CHALLENGE = "Bearer"


@admin.route("/health", methods=["GET"])
def health() -> Response:
    return json_response({"status": "ok"})


def _authorized_profile(user_id: str) -> Profile:
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
    return json_response(_authorized_profile(user_id).as_dict())


@admin.route("/v1/profiles/{user_id}/events", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_profile_events(user_id: str) -> Response:
    profile = _authorized_profile(user_id)
    params = admin.current_request.query_params or {}
    raw_limit = params.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise InvalidInput([FieldProblem("limit", f"must be a whole number from 1 to {MAX_PAGE}")])
    identities = [profile.profile_id, *(f"anon:{a}" for a in profile.anonymous_ids)]
    try:
        page = dependencies.event_log().history(identities, int(raw_limit), params.get("cursor"))
    except ValueError as exc:
        raise InvalidInput([FieldProblem("cursor", "must be a cursor returned by this endpoint")]) from exc
    return json_response({"events": [event.as_dict() for event in page.events], "next": page.cursor})

"""Subscriptions: the public unsubscribe and preferences pages, the admin
API over a person's subscriptions, and mail to the unsubscribe address.

Public routes (no API key: the signed token in the link is the authority):

- ``GET /v1/unsubscribe?token=T``: a page asking to confirm;
- ``POST /v1/unsubscribe?token=T``: unsubscribes at once, for the page's form
  and for a mailbox provider's RFC 8058 one-click POST alike (200, no redirect);
- ``GET|POST /v1/preferences?token=T``: the person's topics on the token's
  channel, as a form that works without JavaScript.

A token that is missing, forged, altered or expired is a 400 in the JSON
error shape naming ``token``, and nothing changes; a browser (``Accept:
text/html``) gets the same status with a page saying so in words.

Admin routes (Bearer admin token): ``GET /v1/topics``,
``GET|PUT /v1/profiles/{userId}/subscriptions``.

``on_unsubscribe_mail``: SES receiving hands mail to the List-Unsubscribe
address to an SNS topic (infra/template.yaml, UnsubscribeMailTopic); the
token in its subject unsubscribes the person. Mail without a valid token is
logged and acknowledged, never retried.
"""
from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from chalice import Blueprint, Response
from chalice.app import SNSEvent

from chalicelib import auth, dependencies
from chalicelib.clock import utcnow
from chalicelib.consent import Topic, parse_topics
from chalicelib.errors import FieldProblem, InvalidInput
from chalicelib.http import NotFound, answers_errors, json_response
from chalicelib.observability import count, event_handler, logger
from chalicelib.preferences import (
    UnreadableMail, channel_rows, choose, leave, leave_by_mail, left_all, parse_choices, person, set_subscriptions,
    view,
)
from chalicelib.preferences_page import (
    HTML, SAVED, SECURITY_HEADERS, form_fields, leaving, preferences_page, problem_page, unsubscribe_page, wants_html,
)
from chalicelib.profiles import Profile
from chalicelib.segment import parse_body
from chalicelib.settings import get_settings
from chalicelib.unsubscribe_tokens import Claim, InvalidToken, verify
from functions.admin import authorized_profile

preferences = Blueprint(__name__)

_CHALLENGE = "Bearer"
#: RFC 8058 allows a one-click POST as either; the pages post the first.
_FORM_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data"]
# Chalice needs a topic when it packages; infra/template.yaml binds the
# function to the real one (Ref UnsubscribeMailTopic).
UNSUBSCRIBE_MAIL_PLACEHOLDER = "arn:aws:sns:us-east-1:000000000000:nudge-unsubscribe-mail-bound-by-infra"


def _public(view_function: Callable[..., Response]) -> Callable[..., Response]:
    """Errors in the JSON shape, or as a page when a browser asks for one
    (``Accept: text/html``), with the same status; every answer (page or
    error) with the pages' security headers: no caching, no framing, no script."""
    answering = answers_errors(_CHALLENGE)(view_function)

    @wraps(view_function)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        response = answering(*args, **kwargs)
        if response.status_code >= 400 and wants_html(preferences.current_request.headers.get("accept")):
            response = Response(body=problem_page(response.status_code, response.body["error"]),
                                status_code=response.status_code, headers={**response.headers, "Content-Type": HTML})
        response.headers.update(SECURITY_HEADERS)
        return response

    return wrapper


def _html(body: str) -> Response:
    return Response(body=body, status_code=200, headers={"Content-Type": HTML})


def _token() -> str:
    token = (preferences.current_request.query_params or {}).get("token")
    if not token:
        raise InvalidInput([FieldProblem("token", "is required: open the link from the message")])
    return token


def _claim(token: str) -> Claim:
    settings = get_settings()
    try:
        return verify(settings.unsubscribe_keys, token, utcnow(), settings.unsubscribe_token_days)
    except InvalidToken as exc:
        count("UnsubscribeTokensRefused")
        raise InvalidInput([FieldProblem("token", exc.rule)]) from exc


def _catalogue() -> tuple[Topic, ...]:
    return parse_topics(get_settings().topics)


def _what(claim: Claim) -> str:
    """What the token leaves, in words, with the catalogue's label."""
    if claim.topic is None:
        return leaving(claim.channel, None)
    label = next((t.label for t in _catalogue() if t.channel == claim.channel and t.id == claim.topic), claim.topic)
    return leaving(claim.channel, label)


def _form() -> dict[str, list[str]]:
    request = preferences.current_request
    try:
        return form_fields(request.raw_body, request.headers.get("content-type"))
    except ValueError as exc:
        raise InvalidInput([FieldProblem("body", str(exc))]) from exc


# --- the unsubscribe link ----------------------------------------------------------------


@preferences.route("/v1/unsubscribe", methods=["GET"])
@_public
def confirm_unsubscribe() -> Response:
    token = _token()
    claim = _claim(token)
    return _html(unsubscribe_page(token, claim.channel, _what(claim)))


@preferences.route("/v1/unsubscribe", methods=["POST"], content_types=_FORM_TYPES)
@_public
def unsubscribe() -> Response:
    token = _token()
    claim = _claim(token)
    fields = _form()
    source = "one-click" if "One-Click" in fields.get("List-Unsubscribe", []) else "unsubscribe-page"
    outcome = leave(dependencies.consent_store(), dependencies.profile_store(), claim, source, utcnow())
    if outcome.recorded:
        count("Unsubscribed")
    logger.info("unsubscribe", extra={"source": source, "channel": claim.channel, "topic": claim.topic,
                                      "changed": bool(outcome.recorded), "known": outcome.profile is not None})
    what = _what(claim)
    return _html(unsubscribe_page(token, claim.channel, what, status=f"You are unsubscribed from {what}."))


# --- the preferences page ----------------------------------------------------------------


def _token_person(claim: Claim) -> Profile:
    found = person(dependencies.profile_store(), claim.profile_id)
    if found is None:
        raise NotFound("this link is for a person Nudge no longer knows",
                       FieldProblem("token", "names a person who is no longer known"))
    return found


def _preferences_answer(profile: Profile, channel: str, status: str | None) -> Response:
    states = dependencies.consent_store().preferences(profile.profile_id)
    address = profile.traits.get("email" if channel == "email" else "phone")
    return _html(preferences_page(channel, channel_rows(states, _catalogue(), channel), left_all(states, channel),
                                  address if isinstance(address, str) else None, status))


@preferences.route("/v1/preferences", methods=["GET"])
@_public
def show_preferences() -> Response:
    claim = _claim(_token())
    return _preferences_answer(_token_person(claim), claim.channel, None)


@preferences.route("/v1/preferences", methods=["POST"], content_types=_FORM_TYPES)
@_public
def save_preferences() -> Response:
    claim = _claim(_token())
    fields = _form()
    profile = _token_person(claim)
    chosen_all = fields.get("all", [])
    if any(value != claim.channel for value in chosen_all):
        raise InvalidInput([FieldProblem("all", f"must be {claim.channel!r}, the channel of the link")])
    consent = dependencies.consent_store()
    offered = [row["key"] for row in channel_rows(consent.preferences(profile.profile_id), _catalogue(),
                                                  claim.channel)]
    outcome = choose(consent, profile, claim.channel, offered, fields.get("topic", []), bool(chosen_all), utcnow())
    logger.info("preferences saved", extra={"channel": claim.channel, "changed": sorted(outcome.recorded),
                                            "lifted": list(outcome.lifted)})
    return _preferences_answer(profile, claim.channel, SAVED)


# --- the admin API -----------------------------------------------------------------------



@preferences.route("/v1/topics", methods=["GET"])
@answers_errors(_CHALLENGE)
def list_topics() -> Response:
    request = preferences.current_request
    auth.require(auth.ADMIN, auth.bearer_token(request.headers), dependencies.key_store(),
                 get_settings().key_cache_seconds)
    return json_response({"topics": [{**topic.as_dict(), "key": topic.key} for topic in _catalogue()]})


@preferences.route("/v1/profiles/{user_id}/subscriptions", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_subscriptions(user_id: str) -> Response:
    profile = authorized_profile(user_id)
    return json_response(view(dependencies.consent_store(), profile, _catalogue()))


@preferences.route("/v1/profiles/{user_id}/subscriptions", methods=["PUT"])
@answers_errors(_CHALLENGE)
def put_subscriptions(user_id: str) -> Response:
    profile = authorized_profile(user_id)
    body = parse_body(preferences.current_request.raw_body, get_settings().max_event_bytes)
    choices, source = parse_choices(body)
    consent = dependencies.consent_store()
    outcome = set_subscriptions(consent, profile, choices, source, utcnow())
    logger.info("subscriptions set", extra={"source": source, "changed": sorted(outcome.recorded),
                                            "lifted": list(outcome.lifted)})
    return json_response(view(consent, profile, _catalogue()))


# --- mail to the unsubscribe address -----------------------------------------------------


@preferences.on_sns_message(topic=UNSUBSCRIBE_MAIL_PLACEHOLDER, name="on_unsubscribe_mail")
@event_handler
def on_unsubscribe_mail(event: SNSEvent) -> dict[str, Any]:
    """One SES "Received" notification: leave what its subject's token names.
    Storage failures are raised (Lambda retries the notification); a mail
    without a valid token is logged and acknowledged."""
    try:
        outcome = leave_by_mail(dependencies.consent_store(), dependencies.profile_store(), get_settings(),
                                event.message, utcnow())
    except (UnreadableMail, InvalidToken) as exc:
        count("UnsubscribeMailIgnored")
        logger.warning("unsubscribe mail ignored", extra={"reason": str(exc)})
        return {"unsubscribed": False, "reason": str(exc)}
    if outcome.recorded:
        count("Unsubscribed")
    logger.info("unsubscribed by mail", extra={"changed": sorted(outcome.recorded),
                                               "known": outcome.profile is not None})
    return {"unsubscribed": outcome.profile is not None, "changed": sorted(outcome.recorded)}

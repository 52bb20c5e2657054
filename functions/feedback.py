"""SES feedback from the feedback topic, and the admin routes that show it.

``on_feedback`` takes one SNS notification (an SES event, or an older
identity notification), applies it (chalicelib.feedback.record) and
acknowledges it. A notification Nudge cannot use (malformed, an unknown
event type) is logged and acknowledged: retrying would never help. A storage
failure or a failed alert is raised, so Lambda retries the invocation (twice)
and then parks it in the feedback dead-letter queue; applying it again
changes nothing twice.

Admin routes (Bearer admin token):

- GET /v1/triggers/{trigger_id}/stats?days=30: the trigger's emails sent,
  delivered, bounced, complained, opened and clicked, per day and in total;
- GET /v1/reputation: sends, hard bounces and complaints over the guard's
  window, the rates, the limits, and whether marketing email is paused;
- POST /v1/reputation/resume: clear the pause.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response
from chalice.app import SNSEvent

from chalicelib import auth, dependencies
from chalicelib.clock import utcnow
from chalicelib.errors import FieldProblem, InvalidInput
from chalicelib.feedback import Limits, Unreadable, describe, parse, record, report, trigger_stats
from chalicelib.http import answers_errors, json_response
from chalicelib.observability import count, event_handler, logger
from chalicelib.settings import get_settings

feedback = Blueprint(__name__)

# Chalice needs a topic when it packages; infra/template.yaml binds the
# function to the real one (Ref FeedbackTopic).
FEEDBACK_TOPIC_PLACEHOLDER = "arn:aws:sns:us-east-1:000000000000:nudge-feedback-bound-by-infra"
DEFAULT_DAYS = 30
MAX_DAYS = 400
_CHALLENGE = "Bearer"


@feedback.on_sns_message(topic=FEEDBACK_TOPIC_PLACEHOLDER, name="on_feedback")
@event_handler
def on_feedback(event: SNSEvent) -> None:
    notification = _sns_message_id(event)
    try:
        parsed = parse(event.message)
    except Unreadable as reason:
        count("FeedbackIgnored")
        logger.warning("feedback ignored", extra={"reason": str(reason), "sns_message_id": notification})
        return
    outcome = record(
        parsed,
        ledger=dependencies.ledger(),
        consent=dependencies.consent_store(),
        store=dependencies.feedback_store(),
        alert=dependencies.channels().send_alert,
        limits=Limits.from_settings(get_settings()),
        now=utcnow,
    )
    count(f"Feedback{''.join(part.capitalize() for part in parsed.kind.split('_'))}")
    if outcome.paused:
        count("MarketingPaused")
        logger.error("marketing email paused for the sending reputation", extra={"reason": outcome.paused})
    fields = {**describe(outcome), "sns_message_id": notification}
    if outcome.problems:
        logger.warning("feedback applied in part", extra=fields)
    else:
        logger.info("feedback applied", extra=fields)


def _sns_message_id(event: SNSEvent) -> str | None:
    records = event.to_dict().get("Records") or [{}]
    return (records[0].get("Sns") or {}).get("MessageId")


def _require_admin() -> None:
    auth.require(auth.ADMIN, auth.bearer_token(feedback.current_request.headers), dependencies.key_store(),
                 get_settings().key_cache_seconds)


@feedback.route("/v1/triggers/{trigger_id}/stats", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_trigger_stats(trigger_id: str) -> Response:
    _require_admin()
    raw = (feedback.current_request.query_params or {}).get("days", str(DEFAULT_DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise InvalidInput([FieldProblem("days", f"must be a whole number from 1 to {MAX_DAYS}")])
    return json_response(trigger_stats(dependencies.feedback_store(), trigger_id, int(raw), utcnow()))


@feedback.route("/v1/reputation", methods=["GET"])
@answers_errors(_CHALLENGE)
def get_reputation() -> Response:
    _require_admin()
    return json_response(report(dependencies.feedback_store(), Limits.from_settings(get_settings()), utcnow()))


@feedback.route("/v1/reputation/resume", methods=["POST"])
@answers_errors(_CHALLENGE)
def resume_sending() -> Response:
    """Clear the pause. If the rates are still over a limit, the next hard
    bounce or complaint pauses marketing email again."""
    _require_admin()
    was: Any = dependencies.feedback_store().resume()
    if was is not None:
        logger.info("marketing email resumed", extra={"was": was})
    return json_response({"resumed": was is not None, "was": was, "paused": None})

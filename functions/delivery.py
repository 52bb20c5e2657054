"""Decisions from the send queue: carry each out once (email, SMS, alert,
webhook, profile update, emitted event).

Records are processed one by one and failures reported per record
(ReportBatchItemFailures), so one throttled send does not redeliver the
batch. A retryable failure also pushes the message's next attempt back
exponentially (10 s, 20 s, 40 s ... capped at 15 minutes) before it is
reported (sooner when the cause says so: a profile not yet written is retried
after 1 s); after the queue's maxReceiveCount it lands in the dead-letter queue.
"""
from __future__ import annotations

import json
from typing import Any

from chalice import Blueprint
from chalice.app import SQSEvent

from chalicelib import dependencies
from chalicelib.aws_clients import client
from chalicelib.clock import utcnow
from chalicelib.budget import parse_budget
from chalicelib.consent import parse_topics
from chalicelib.deliver import deliver
from chalicelib.delivery_policy import DeliveryPolicy
from chalicelib.errors import SendRetryable
from chalicelib.evaluate import Decision
from chalicelib.observability import count, event_handler, logger
from chalicelib.quiet_hours import parse_windows
from chalicelib.settings import Settings, get_settings

delivery = Blueprint(__name__)

BASE_BACKOFF_SECONDS = 10
MAX_BACKOFF_SECONDS = 900
# Chalice needs a queue when it packages; infra/template.yaml binds the
# function to the real one (Fn::GetAtt SendQueue.Arn).
SEND_QUEUE_PLACEHOLDER = "arn:aws:sqs:us-east-1:000000000000:nudge-send-bound-by-infra"


def _back_off(record: Any, first_delay: int | None) -> None:
    attempts = int(record.attributes.approximate_receive_count or 1)
    delay = min(MAX_BACKOFF_SECONDS, (first_delay or BASE_BACKOFF_SECONDS) * 2 ** (attempts - 1))
    try:
        client("sqs").change_message_visibility(QueueUrl=get_settings().send_queue_url,
                                                ReceiptHandle=record.receipt_handle, VisibilityTimeout=delay)
    except Exception:  # noqa: BLE001 - the retry still happens, only sooner
        logger.warning("could not delay the retry", extra={"message_id": record.message_id})


def _policy(settings: Settings) -> DeliveryPolicy:
    channels = dependencies.channels()
    return DeliveryPolicy(
        timers=dependencies.timer_store(),
        consent=dependencies.consent_store(),
        topics=parse_topics(settings.topics),
        budget=parse_budget(settings.fatigue_budget),
        quiet_hours=parse_windows(settings.quiet_hours),
        fallback_timezone=settings.fallback_timezone,
        opted_out=channels.sms_opted_out,
    )


def _record_handler(record: Any) -> None:
    from chalicelib.preferences import links

    decision = Decision.from_dict(json.loads(record.body))
    settings = get_settings()
    try:
        outcome = deliver(
            decision,
            profiles=dependencies.profile_store(),
            ledger=dependencies.ledger(),
            templates=dependencies.definitions(),
            channels=dependencies.channels(),
            now=utcnow,
            policy=_policy(settings),
            notes=dependencies.decision_log(),
            links=lambda person, channel, topic: links(settings, person, channel, topic, utcnow()),
            attempt=int(record.attributes.approximate_receive_count or 1),
        )
    except SendRetryable as retry:
        count("SendsRetried")
        _back_off(record, retry.retry_after)
        raise
    count(f"Messages{outcome.status.capitalize()}")
    logger.info("delivered", extra={"key": outcome.key, "status": outcome.status, "channel": outcome.channel})


@delivery.on_sqs_message(queue_arn=SEND_QUEUE_PLACEHOLDER, batch_size=10, name="on_send")
@event_handler
def on_send(event: SQSEvent) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event.to_dict(), record_handler=_record_handler,
                                    processor=processor, context=event.context)

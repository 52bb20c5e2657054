"""Events from other services on the EventBridge bus ``nudge``.

DetailType is the Segment call type (or ``batch``) and Detail is the payload.
The bus and the rule's binding to it come from infra/template.yaml. A payload
that breaks a rule is logged and counted, not retried (it will never pass); an
AWS failure is raised so Lambda retries, then parks the event in the
dead-letter queue.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint
from chalice.app import CloudWatchEvent

from chalicelib import dependencies
from chalicelib import clock
from chalicelib.clock import utcnow
from chalicelib.errors import InvalidInput
from chalicelib.ingest import ingest
from chalicelib.observability import count, event_handler, logger
from chalicelib.segment import CALL_TYPES, parse_batch, parse_call, parse_time
from chalicelib.settings import get_settings

bus = Blueprint(__name__)

BUS_PATTERN: dict[str, Any] = {"detail-type": [*CALL_TYPES, "batch"]}


@bus.on_cw_event(BUS_PATTERN, name="on_bus_event")
@event_handler
def on_bus_event(event: CloudWatchEvent) -> dict[str, int]:
    settings = get_settings()
    detail = dict(event.detail or {})
    # The bus's own id and time are the same on every redelivery of this event,
    # so they stand in for a missing messageId and receivedAt.
    if event.detail_type != "batch":
        detail.setdefault("messageId", event.to_dict().get("id"))
    # The engine's clock offset is zero except under local time travel, which
    # must move bus events as it moves everything else.
    received_at = parse_time(event.time) + clock.offset() if event.time else utcnow()
    try:
        if event.detail_type == "batch":
            events = parse_batch(detail, received_at, settings.max_event_bytes)
        else:
            events = [parse_call(event.detail_type, detail, received_at, settings.max_event_bytes)]
    except InvalidInput as exc:
        count("RejectedEvents")
        logger.error("rejected bus event", extra={"id": event.to_dict().get("id"),
                                                  "problems": [p.as_dict() for p in exc.problems]})
        return {"accepted": 0, "duplicates": 0}
    result = ingest(events, dependencies.event_log(), dependencies.profile_store())
    count("AcceptedEvents", result.accepted)
    count("DuplicateEvents", result.duplicates)
    return {"accepted": result.accepted, "duplicates": result.duplicates}

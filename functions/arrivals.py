"""New events from the events table's stream: evaluate triggers on arrival.

Only INSERT records of event items are read (a retried ingest inserts nothing,
and deduplication markers are skipped). Each record is processed on its own;
a failing record is reported as a partial batch failure, so Lambda retries
from it and nothing logged goes unevaluated.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint
from chalice.app import DynamoDBEvent

from chalicelib import dependencies
from chalicelib.arrivals import on_arrival
from chalicelib.dynamodb import event_from_json
from chalicelib.observability import count, event_handler

arrivals = Blueprint(__name__)

# Chalice needs an ARN here when it packages; infra/template.yaml binds the
# function to the events table's real stream (Fn::GetAtt EventsTable.StreamArn).
STREAM_PLACEHOLDER = "arn:aws:dynamodb:us-east-1:000000000000:table/nudge-events/stream/bound-by-infra"


def _record_handler(record: Any) -> None:
    if record.event_name is None or record.event_name.name != "INSERT":
        return
    image = record.dynamodb.new_image or {}
    identity = image.get("pk", "")
    if not (identity.startswith("user:") or identity.startswith("anon:")) or "data" not in image:
        return
    evaluations = on_arrival(
        [event_from_json(image["data"])],
        profiles=dependencies.profile_store(),
        triggers=dependencies.definitions(),
        decisions=dependencies.decision_log(),
        queue=dependencies.send_queue(),
        timers=dependencies.timer_store(),
        history=dependencies.event_log(),
        enrollments=dependencies.ledger(),
    )
    count("DecisionsMade", sum(len(e.decisions) for e in evaluations))


@arrivals.on_dynamodb_record(stream_arn=STREAM_PLACEHOLDER, batch_size=100,
                             starting_position="TRIM_HORIZON", name="on_event_logged")
@event_handler
def on_event_logged(event: DynamoDBEvent) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return process_partial_response(event=event.to_dict(), record_handler=_record_handler,
                                    processor=processor, context=event.context)

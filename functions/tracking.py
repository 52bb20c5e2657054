"""The Segment-compatible tracking API: POST /v1/{track,identify,page,screen,group,alias,batch}.

Parse, authenticate the write key, call the ingest use case, answer. Existing
Segment libraries work unchanged when pointed at this host.
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import auth, dependencies
from chalicelib.clock import utcnow
from chalicelib.errors import InvalidInput, Unauthorized
from chalicelib.http import answers_errors, cors_headers
from chalicelib.ingest import ingest
from chalicelib.observability import count, logger
from chalicelib.segment import CALL_TYPES, parse_batch, parse_body, parse_call
from chalicelib.settings import get_settings

tracking = Blueprint(__name__)

# Browsers send beacons as text/plain; Segment libraries send application/json.
_CONTENT_TYPES = ["application/json", "text/plain"]
_PATHS = [f"/v1/{call}" for call in (*CALL_TYPES, "batch")]


@answers_errors('Basic realm="nudge"')
def _accept(call_type: str) -> Response:
    request = tracking.current_request
    settings = get_settings()
    limit = settings.max_batch_bytes if call_type == "batch" else settings.max_event_bytes
    try:
        body = parse_body(request.raw_body, limit, request.headers.get("content-encoding"))
        auth.require(auth.WRITE, auth.write_key(request.headers, body),
                     dependencies.key_store(), settings.key_cache_seconds)
        received_at = utcnow()
        if call_type == "batch":
            events = parse_batch(body, received_at, settings.max_event_bytes)
        else:
            events = [parse_call(call_type, body, received_at, settings.max_event_bytes)]
    except (Unauthorized, InvalidInput):
        count("RejectedEvents")
        raise
    result = ingest(events, dependencies.event_log(), dependencies.profile_store())
    count("AcceptedEvents", result.accepted)
    count("DuplicateEvents", result.duplicates)
    logger.info("ingested", extra={"call": call_type, "accepted": result.accepted, "duplicates": result.duplicates})
    return Response(body={"success": True}, status_code=200)


def _register(call_type: str) -> None:
    path = f"/v1/{call_type}"

    def handler() -> Response:
        return _accept(call_type)

    handler.__name__ = f"post_{call_type}"
    tracking.route(path, methods=["POST"], content_types=_CONTENT_TYPES)(handler)

    def preflight() -> Response:
        origin = tracking.current_request.headers.get("origin")
        headers = cors_headers(origin, get_settings().cors_origins)
        return Response(body="", status_code=204 if headers else 403, headers=headers)

    preflight.__name__ = f"preflight_{call_type}"
    tracking.route(path, methods=["OPTIONS"])(preflight)


for _call in (*CALL_TYPES, "batch"):
    _register(_call)

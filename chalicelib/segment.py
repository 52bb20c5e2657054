"""Validation and normalisation of Segment HTTP Tracking API payloads.

Turns the JSON a Segment library sends (track, identify, page, screen, group,
alias, batch) into frozen :class:`Event` values, or raises
:class:`~chalicelib.errors.InvalidInput` naming every field that breaks a rule.
Pure: no I/O, no clock of its own (``received_at`` is passed in).
"""
from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from chalicelib.errors import FieldProblem, InvalidInput

CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")
MAX_ID_LENGTH = 255
MAX_EVENT_NAME_LENGTH = 255
_OBJECT_FIELDS = {
    "track": ("properties", "context", "integrations"),
    "identify": ("traits", "context", "integrations"),
    "page": ("properties", "context", "integrations"),
    "screen": ("properties", "context", "integrations"),
    "group": ("traits", "context", "integrations"),
    "alias": ("context", "integrations"),
}
_TIME_FIELDS = ("timestamp", "sentAt", "originalTimestamp")


@dataclass(frozen=True)
class Event:
    """One accepted call, normalised. ``timestamp`` is corrected for clock skew."""

    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    timestamp: datetime
    received_at: datetime
    #: The client's own timestamp when it sent one: stable across retries of the
    #: same message, so it takes part in the storage key.
    client_timestamp: datetime | None
    message_id_given: bool
    event: str | None = None
    name: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    previous_id: str | None = None

    @property
    def identity(self) -> str:
        """The identity the call was made as: ``user:<id>`` or ``anon:<id>``."""
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"anon:{self.anonymous_id}"

    @property
    def counter_name(self) -> str:
        """The name this call is counted under in the profile."""
        return self.event if self.type == "track" and self.event else self.type

    def as_dict(self) -> dict[str, Any]:
        """The event in Segment's own JSON shape, as the API returns it."""
        out: dict[str, Any] = {
            "type": self.type,
            "messageId": self.message_id,
            "timestamp": iso(self.timestamp),
            "receivedAt": iso(self.received_at),
        }
        if self.client_timestamp is not None:
            out["originalTimestamp"] = iso(self.client_timestamp)
        optional = {
            "userId": self.user_id,
            "anonymousId": self.anonymous_id,
            "event": self.event,
            "name": self.name,
            "groupId": self.group_id,
            "previousId": self.previous_id,
        }
        out.update({key: value for key, value in optional.items() if value is not None})
        for key in ("properties", "traits", "context"):
            value = getattr(self, key)
            if value:
                out[key] = dict(value)
        return out


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and a ``Z``; sorts as text in time order."""
    utc = moment.astimezone(timezone.utc)
    # The year is padded by hand: strftime("%Y") writes year 999 as "999", which
    # is not ISO-8601 and sorts after "2026".
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 time; a time without an offset is taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON, the measure of the size limits."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def parse_body(raw: bytes | None, max_bytes: int, encoding: str | None = None) -> dict[str, Any]:
    """Decode a request body into a JSON object, or raise InvalidInput.

    ``encoding`` is the Content-Encoding header: Segment libraries may gzip
    their batches. The size limit applies to the decompressed body, which is
    never inflated past it.
    """
    if raw and (encoding or "").strip().lower() == "gzip":
        raw = _gunzip(raw, max_bytes)
    if raw is None or not raw.strip():
        raise InvalidInput([FieldProblem("body", "must be a JSON object")])
    if len(raw) > max_bytes:
        raise InvalidInput([FieldProblem("body", f"must be at most {max_bytes} bytes, got {len(raw)}")])
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput([FieldProblem("body", f"must be valid JSON ({exc})")]) from exc
    if not isinstance(body, dict):
        raise InvalidInput([FieldProblem("body", "must be a JSON object")])
    return body


def _gunzip(raw: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise InvalidInput([FieldProblem("body", f"must be valid gzip when Content-Encoding is gzip ({exc})")]) from exc
    if len(body) > max_bytes:
        raise InvalidInput([FieldProblem("body", f"must be at most {max_bytes} bytes once decompressed")])
    return body


def parse_call(
    call_type: str, body: Mapping[str, Any], received_at: datetime, max_event_bytes: int
) -> Event:
    """One ``/v1/<type>`` body into an Event, or InvalidInput naming each bad field."""
    problems: list[FieldProblem] = []
    event = _parse_message(call_type, body, "", body.get("sentAt"), received_at, max_event_bytes, problems)
    if problems or event is None:
        raise InvalidInput(problems)
    return event


def parse_batch(
    body: Mapping[str, Any], received_at: datetime, max_event_bytes: int
) -> list[Event]:
    """A ``/v1/batch`` body into Events; any bad item rejects the whole batch."""
    items = body.get("batch")
    if not isinstance(items, list):
        raise InvalidInput([FieldProblem("batch", "must be an array of calls")])
    if not items:
        raise InvalidInput([FieldProblem("batch", "must contain at least one call")])
    envelope_context = body.get("context")
    if envelope_context is not None and not isinstance(envelope_context, dict):
        raise InvalidInput([FieldProblem("context", "must be an object")])
    problems: list[FieldProblem] = []
    events: list[Event] = []
    for index, item in enumerate(items):
        path = f"batch[{index}]."
        if not isinstance(item, dict):
            problems.append(FieldProblem(f"batch[{index}]", "must be an object"))
            continue
        call_type = item.get("type")
        if call_type not in CALL_TYPES:
            problems.append(FieldProblem(f"{path}type", f"must be one of {', '.join(CALL_TYPES)}"))
            continue
        if envelope_context and "context" not in item:
            item = {**item, "context": envelope_context}
        sent_at = item.get("sentAt", body.get("sentAt"))
        event = _parse_message(call_type, item, path, sent_at, received_at, max_event_bytes, problems)
        if event is not None:
            events.append(event)
    if problems:
        raise InvalidInput(problems)
    return events


def _parse_message(
    call_type: str,
    msg: Mapping[str, Any],
    path: str,
    sent_at_raw: Any,
    received_at: datetime,
    max_event_bytes: int,
    problems: list[FieldProblem],
) -> Event | None:
    start = len(problems)
    message = {key: value for key, value in msg.items() if key != "writeKey"}
    size = json_size(message)
    if size > max_event_bytes:
        problems.append(FieldProblem(path.rstrip(".") or "body", f"must be at most {max_event_bytes} bytes per event, got {size}"))
        return None

    declared = message.get("type")
    if declared is not None and declared != call_type:
        problems.append(FieldProblem(f"{path}type", f"must be '{call_type}' on this endpoint"))

    user_id = _identifier(message, "userId", path, problems)
    anonymous_id = _identifier(message, "anonymousId", path, problems)
    if user_id is None and anonymous_id is None and len(problems) == start:
        problems.append(FieldProblem(f"{path}userId", "userId or anonymousId is required"))

    for key in _OBJECT_FIELDS[call_type]:
        if key in message and message[key] is not None and not isinstance(message[key], dict):
            problems.append(FieldProblem(f"{path}{key}", "must be an object"))

    times: dict[str, datetime | None] = {}
    for key in _TIME_FIELDS:
        raw = sent_at_raw if key == "sentAt" else message.get(key)
        times[key] = _time(raw, f"{path}{key}", problems)

    message_id = message.get("messageId")
    if message_id is not None and (not isinstance(message_id, str) or not message_id.strip() or len(message_id) > MAX_ID_LENGTH):
        problems.append(FieldProblem(f"{path}messageId", f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"))

    event_name = name = group_id = previous_id = None
    if call_type == "track":
        event_name = message.get("event")
        if not isinstance(event_name, str) or not event_name.strip():
            problems.append(FieldProblem(f"{path}event", "is required for track calls and must be a non-empty string"))
        elif len(event_name) > MAX_EVENT_NAME_LENGTH:
            problems.append(FieldProblem(f"{path}event", f"must be at most {MAX_EVENT_NAME_LENGTH} characters"))
    if call_type in ("page", "screen"):
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            problems.append(FieldProblem(f"{path}name", "must be a string"))
    if call_type == "group":
        group_id = _identifier(message, "groupId", path, problems)
        if group_id is None and "groupId" not in message:
            problems.append(FieldProblem(f"{path}groupId", "is required for group calls"))
    if call_type == "alias":
        previous_id = _identifier(message, "previousId", path, problems)
        if previous_id is None and "previousId" not in message:
            problems.append(FieldProblem(f"{path}previousId", "is required for alias calls"))
        if user_id is None and not any(p.field == f"{path}userId" for p in problems[start:]):
            problems.append(FieldProblem(f"{path}userId", "is required for alias calls"))

    if len(problems) > start:
        return None

    client_ts = times["timestamp"] or times["originalTimestamp"]
    sent_at = times["sentAt"]
    if client_ts is not None and sent_at is not None:
        try:
            corrected = received_at - (sent_at - client_ts)
        except OverflowError:
            field_name = "timestamp" if times["timestamp"] is not None else "originalTimestamp"
            problems.append(FieldProblem(f"{path}{field_name}", "is too far from sentAt to correct for the "
                                                                "device's clock (the result is not a date)"))
            return None
    else:
        corrected = client_ts or received_at
    return Event(
        type=call_type,
        message_id=message_id if isinstance(message_id, str) else str(uuid.uuid4()),
        message_id_given=isinstance(message_id, str),
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=corrected,
        received_at=received_at,
        client_timestamp=client_ts,
        event=event_name,
        name=name,
        properties=message.get("properties") or {},
        traits=message.get("traits") or {},
        context=message.get("context") or {},
        group_id=group_id,
        previous_id=previous_id,
    )


def _identifier(msg: Mapping[str, Any], key: str, path: str, problems: list[FieldProblem]) -> str | None:
    value = msg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(FieldProblem(f"{path}{key}", "must be a string"))
        return None
    text = str(value)
    if not text.strip():
        problems.append(FieldProblem(f"{path}{key}", "must not be empty"))
        return None
    if len(text) > MAX_ID_LENGTH:
        problems.append(FieldProblem(f"{path}{key}", f"must be at most {MAX_ID_LENGTH} characters"))
        return None
    return text


def _time(raw: Any, field_path: str, problems: list[FieldProblem]) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        problems.append(FieldProblem(field_path, "must be an ISO-8601 date-time string"))
        return None
    try:
        parsed = parse_time(raw)
        # A time whose UTC reading falls outside years 1-9999
        # (0001-01-01T00:00:00+01:00) cannot be stored: refused here.
        parsed.astimezone(timezone.utc)
        return parsed
    except ValueError:
        problems.append(FieldProblem(field_path, "must be an ISO-8601 date-time string"))
        return None
    except OverflowError:
        problems.append(FieldProblem(field_path, "must be an ISO-8601 date-time within years 1 to 9999 in UTC"))
        return None

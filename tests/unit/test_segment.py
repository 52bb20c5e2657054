"""The Segment payload rules, as a caller of the tracking API meets them."""
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.errors import InvalidInput
from chalicelib.segment import iso, parse_batch, parse_body, parse_call

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
LIMIT = 32 * 1024


def fields(exc: pytest.ExceptionInfo) -> dict[str, str]:
    return {p.field: p.rule for p in exc.value.problems}


def test_clock_skew_is_corrected_with_sent_at():
    # Given a device whose clock runs 10 minutes fast
    body = {"userId": "u1", "event": "Signed Up",
            "timestamp": "2026-12-02T12:09:00Z", "sentAt": "2026-12-02T12:10:00Z"}
    # When it reaches the server at 12:00
    event = parse_call("track", body, NOW, LIMIT)
    # Then the event happened one minute before it was received
    assert event.timestamp == NOW - timedelta(minutes=1)
    assert event.client_timestamp == datetime(2026, 12, 2, 12, 9, tzinfo=timezone.utc)


def test_timestamp_is_kept_without_sent_at_and_defaults_to_received_at():
    kept = parse_call("track", {"userId": "u1", "event": "X", "timestamp": "2026-11-30T08:00:00+01:00"}, NOW, LIMIT)
    assert iso(kept.timestamp) == "2026-11-30T07:00:00.000Z"
    defaulted = parse_call("track", {"userId": "u1", "event": "X"}, NOW, LIMIT)
    assert defaulted.timestamp == NOW and defaulted.client_timestamp is None


def test_batch_sent_at_applies_to_every_call():
    body = {"sentAt": "2026-12-02T12:10:00Z", "batch": [
        {"type": "track", "userId": "u1", "event": "A", "timestamp": "2026-12-02T12:05:00Z"},
        {"type": "identify", "userId": "u1", "timestamp": "2026-12-02T12:10:00Z"}]}
    first, second = parse_batch(body, NOW, LIMIT)
    assert first.timestamp == NOW - timedelta(minutes=5)
    assert second.timestamp == NOW


def test_a_person_must_be_named():
    with pytest.raises(InvalidInput) as exc:
        parse_call("track", {"event": "Signed Up"}, NOW, LIMIT)
    assert fields(exc) == {"userId": "userId or anonymousId is required"}


def test_track_needs_an_event_name():
    with pytest.raises(InvalidInput) as exc:
        parse_call("track", {"userId": "u1", "event": "  "}, NOW, LIMIT)
    assert "event" in fields(exc)


@pytest.mark.parametrize("call, body, field", [
    ("alias", {"userId": "u1"}, "previousId"),
    ("alias", {"previousId": "a1"}, "userId"),
    ("group", {"userId": "u1"}, "groupId"),
    ("identify", {"userId": "u1", "traits": ["not", "an", "object"]}, "traits"),
    ("track", {"userId": {"id": 1}, "event": "X"}, "userId"),
    ("track", {"userId": "u1", "event": "X", "timestamp": "yesterday"}, "timestamp"),
    ("track", {"userId": "u1", "event": "X", "messageId": 42}, "messageId"),
    ("page", {"anonymousId": "a1", "type": "track"}, "type"),
])
def test_each_broken_rule_names_its_field(call, body, field):
    with pytest.raises(InvalidInput) as exc:
        parse_call(call, body, NOW, LIMIT)
    assert field in fields(exc)


def test_numeric_user_ids_are_accepted_as_text():
    assert parse_call("identify", {"userId": 42}, NOW, LIMIT).user_id == "42"


def test_one_bad_call_rejects_the_whole_batch_and_names_its_index():
    body = {"batch": [{"type": "track", "userId": "u1", "event": "A"},
                      {"type": "track", "userId": "u1"},
                      {"type": "shout", "userId": "u1"}]}
    with pytest.raises(InvalidInput) as exc:
        parse_batch(body, NOW, LIMIT)
    assert set(fields(exc)) == {"batch[1].event", "batch[2].type"}


def test_empty_or_missing_batch_is_refused():
    for body in ({}, {"batch": []}, {"batch": {"type": "track"}}):
        with pytest.raises(InvalidInput) as exc:
            parse_batch(body, NOW, LIMIT)
        assert "batch" in fields(exc)


def test_an_event_over_the_size_limit_is_refused():
    body = {"userId": "u1", "event": "Big", "properties": {"blob": "x" * 40_000}}
    with pytest.raises(InvalidInput) as exc:
        parse_call("track", body, NOW, LIMIT)
    assert "32768 bytes" in fields(exc)["body"]
    batch = {"batch": [{"type": "track", **body}]}
    with pytest.raises(InvalidInput) as exc:
        parse_batch(batch, NOW, LIMIT)
    assert "batch[0]" in fields(exc)


@pytest.mark.parametrize("raw, rule", [
    (b"", "must be a JSON object"),
    (b"{not json", "must be valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"x" * 600_000, "must be at most 512000 bytes"),
])
def test_bodies_that_are_not_one_json_object_are_refused(raw, rule):
    with pytest.raises(InvalidInput) as exc:
        parse_body(raw, 500 * 1024)
    assert fields(exc)["body"].startswith(rule)


def test_the_write_key_is_not_stored_with_the_event():
    event = parse_call("track", {"userId": "u1", "event": "X", "writeKey": "secret"}, NOW, LIMIT)
    assert "secret" not in str(event.as_dict())


def test_batch_context_is_inherited_by_calls_without_their_own():
    body = {"context": {"timezone": "Asia/Tokyo"}, "batch": [
        {"type": "track", "userId": "u1", "event": "A"},
        {"type": "track", "userId": "u1", "event": "B", "context": {"timezone": "Europe/Oslo"}}]}
    first, second = parse_batch(body, NOW, LIMIT)
    assert first.context["timezone"] == "Asia/Tokyo"
    assert second.context["timezone"] == "Europe/Oslo"


def test_gzipped_bodies_are_read_and_bombs_are_refused():
    import gzip
    import json as _json

    body = _json.dumps({"userId": "u1", "event": "Zipped"}).encode()
    assert parse_body(gzip.compress(body), 1000, "gzip")["event"] == "Zipped"
    with pytest.raises(InvalidInput) as exc:
        parse_body(gzip.compress(b" " * 5000 + body), 1000, "gzip")
    assert "decompressed" in fields(exc)["body"]
    with pytest.raises(InvalidInput):
        parse_body(b"not gzip at all", 1000, "gzip")


# --- times at the edges of the calendar (found by fuzzing the HTTP API) ----------------------


@pytest.mark.parametrize("body, field", [
    ({"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"}, "timestamp"),
    ({"originalTimestamp": "9999-01-01T00:00:00Z", "sentAt": "0001-01-02T00:00:00Z"}, "originalTimestamp"),
    ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
    ({"sentAt": "9999-12-31T23:59:59-01:00"}, "sentAt"),
])
def test_times_that_cannot_be_corrected_or_stored_are_refused_naming_the_field(body, field):
    with pytest.raises(InvalidInput) as refused:
        parse_call("track", {"userId": "ana", "event": "Signed Up", **body}, NOW, LIMIT)
    assert refused.value.problems[0].field == field


def test_times_before_year_1000_are_written_as_iso_8601_and_sort_in_time_order():
    event = parse_call("track", {"userId": "ana", "event": "Signed Up", "timestamp": "0999-05-01T10:00:00Z"},
                       NOW, LIMIT)
    assert iso(event.timestamp) == "0999-05-01T10:00:00.000Z"
    assert sorted([iso(NOW), iso(event.timestamp)]) == [iso(event.timestamp), iso(NOW)]

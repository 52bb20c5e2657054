"""What the daily timer sweep reads: items read per item due, with 100,000 birthdays.

100,000 people each have a birthday timer (the anniversary trigger's next
occurrence, 09:00 in one of four time zones), spread over the coming year;
100 of them are today. The timers are computed by ``date_triggers`` and
written in DynamoTimerStore's item shape (sharded partition, due time + id
as the sort key) with BatchWriteItem, which is what makes seeding 100,000
items in moto take seconds rather than minutes; the store's own ``put``
writes the same items one by one.

Then the real sweep (``chalicelib.sweep`` with the DynamoDB adapters) runs
through the day, every ``STEP`` (12 hours): the minute-by-minute schedule
reads the same items, since each due timer is read once and then cleared,
only with more empty queries. (moto answers a Query by walking the whole
partition, about 25 s per sweep of 100,000 timers here, so the bench sweeps
twice rather than 1,440 times; DynamoDB reads only the matching range.) Every Query on the timers table is counted from its
response (``ScannedCount``: items DynamoDB read, ``Count``: items returned).
The figure is items read over items due: 1.0 means the sweep reads exactly
what is due, whatever the number of profiles.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator
from unittest import mock

import botocore.client

PROFILES = 100_000
DUE_TODAY = 100
ZONES = ("Europe/Berlin", "America/Los_Angeles", "Asia/Tokyo", "UTC")
TODAY = date(2027, 4, 12)
STEP = timedelta(hours=12)
BIRTHDAY = {"id": "birthday", "category": "marketing", "topic": "offers", "when": {"anniversary": {"trait": "birthday", "at": "09:00"}},
            "then": [{"email": {"template": "birthday", "from": "Shop <hello@example.com>"}}]}


@contextmanager
def _counting_queries(table: str) -> Iterator[dict[str, int]]:
    """Sum what Query responses on ``table`` say they read and returned."""
    tally = {"queries": 0, "scanned": 0, "returned": 0, "scans": 0}
    original = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
        answer = original(client, operation, params)
        if operation == "Scan":
            tally["scans"] += 1
        if operation == "Query" and params.get("TableName") == table:
            tally["queries"] += 1
            tally["scanned"] += answer.get("ScannedCount", answer.get("Count", 0))
            tally["returned"] += answer.get("Count", 0)
        return answer

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", recording):
        yield tally


class _Queue:
    def __init__(self) -> None:
        self.decisions: list[Any] = []

    def enqueue(self, decisions: Any) -> None:
        self.decisions.extend(decisions)


class _Triggers:
    def __init__(self, trigger: Any) -> None:
        self.trigger = trigger

    def get_trigger(self, trigger_id: str) -> Any:
        return self.trigger if trigger_id == self.trigger.id else None


def _birthday(index: int) -> str:
    """The first DUE_TODAY people have their birthday today, the others on the 364 days after."""
    day = TODAY if index < DUE_TODAY else TODAY + timedelta(days=1 + index % 364)
    return f"{1950 + index % 50}-{day:%m-%d}" if (day.month, day.day) != (2, 29) else f"1992-{day:%m-%d}"


def measure() -> dict[str, float]:
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    from chalicelib import dependencies
    from chalicelib.date_triggers import anniversary_timer
    from chalicelib.dynamodb import DynamoDecisionLog, DynamoProfileStore, DynamoTimerStore
    from chalicelib.profiles import Profile
    from chalicelib.segment import iso
    from chalicelib.settings import get_settings
    from chalicelib.sweep import sweep
    from chalicelib.triggers import parse_trigger
    from infra import template
    from infra.local_stack import stand_in_parameters

    trigger = parse_trigger(BIRTHDAY, templates=None, origin="bench")
    start = datetime.combine(TODAY, datetime.min.time(), timezone.utc)
    with mock_aws():
        cloudformation = boto3.client("cloudformation")
        template.create_stack(cloudformation, "nudge-bench", stand_in_parameters("https://nudge.example.com"))
        os.environ.update(template.stack_environment(cloudformation, "nudge-bench"))
        dependencies.override()
        settings = get_settings()
        store, profiles = DynamoTimerStore(settings), DynamoProfileStore(settings)
        dynamodb = boto3.client("dynamodb")

        began = time.monotonic()
        people, batch, due_today = [], [], 0
        for index in range(PROFILES):
            person = Profile(f"user:p{index}", user_id=f"p{index}", timezone=ZONES[index % len(ZONES)],
                             traits={"birthday": _birthday(index), "email": f"p{index}@example.org"})
            timer = anniversary_timer(trigger, person, start - timedelta(seconds=1))
            assert timer is not None
            if timer.due < iso(start + timedelta(days=1)):
                due_today += 1
                people.append(person)
            batch.append({"PutRequest": {"Item": {
                "pk": {"S": store._shard(timer.id)}, "sk": {"S": f"{timer.due}#{timer.id}"},
                "data": {"S": json.dumps(timer.as_dict(), separators=(",", ":"))}}}})
            if len(batch) == 25 or index == PROFILES - 1:
                answer = dynamodb.batch_write_item(RequestItems={settings.timers_table: batch})
                assert not answer.get("UnprocessedItems"), answer
                batch = []
        for person in people:  # only the people due are ever read
            profiles.save(person)
        seeded_s = time.monotonic() - began

        acted = due = 0
        queue = _Queue()
        with _counting_queries(settings.timers_table) as tally:
            for step in range(1, timedelta(days=1) // STEP + 1):  # the last one just before midnight
                moment = start + step * STEP - timedelta(milliseconds=1)
                result = sweep(moment, timers=store, profiles=profiles, triggers=_Triggers(trigger),
                               decisions=DynamoDecisionLog(settings), queue=queue, limit=1000)
                acted, due = acted + result.acted, due + result.due
        dependencies.override()
    assert due == due_today == DUE_TODAY and acted == DUE_TODAY and tally["scans"] == 0, (due, due_today, acted)
    return {
        "profiles": PROFILES,
        "due": due,
        "acted": acted,
        "queries": tally["queries"],
        "items_read": tally["scanned"],
        "items_returned": tally["returned"],
        "ratio": tally["scanned"] / due,
        "seed_seconds": seeded_s,
    }


if __name__ == "__main__":
    figures = measure()
    print(json.dumps(figures, indent=2), file=sys.stderr)
    print(f"items read by the daily sweep / items due: {figures['ratio']:.2f} "
          f"({figures['items_read']} / {figures['due']}, {figures['profiles']:,} profiles)")

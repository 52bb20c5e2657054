"""The local event-source runtime's delivery rules, on the stack's own emulator.

A small Chalice app with one handler per kind of event source is run by
infra.event_sources against resources made for it in the emulator, so each
rule (retries, dead letters, partial batch failures, schedules) is seen end to
end without touching Nudge's own resources.
"""
from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator
from unittest import mock

import pytest
from chalice import Chalice, Rate as ChaliceRate

from chalicelib import durations
from infra.bindings import NO_BINDING, Binding
from infra.event_sources import DeliveryPolicy, EventSourceRuntime
from tests.e2e.conftest import Stack, eventually

POLICY = DeliveryPolicy(wait_seconds=1, max_attempts=3, retry_seconds=0, stream_poll_seconds=0.1)
STREAM_PLACEHOLDER = "arn:aws:dynamodb:us-east-1:000000000000:table/placeholder/stream/bound-by-infra"


@dataclass
class Toy:
    stack: Stack
    runtime: EventSourceRuntime
    tag: str
    urls: dict[str, str]
    bus: str
    topic_arn: str
    table: str
    calls: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    def client(self, service: str) -> Any:
        return self.stack.aws_client(service)

    def messages(self, queue: str) -> list[dict[str, Any]]:
        response = self.client("sqs").receive_message(QueueUrl=self.urls[queue], MaxNumberOfMessages=10,
                                                      MessageAttributeNames=["All"], VisibilityTimeout=0)
        return response.get("Messages", [])

    def queue_is_empty(self, queue: str) -> bool:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.urls[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def make_app(toy: Toy) -> Chalice:
    app = Chalice(app_name="toy")
    calls = toy.calls

    @app.on_cw_event({"detail-type": ["toy"]}, name="toy_bus")
    def toy_bus(event):
        calls["bus"].append(event.to_dict())
        if event.detail.get("fail"):
            raise RuntimeError(f"cannot take {event.detail['n']}")

    @app.on_sqs_message(queue=f"toy-work-{toy.tag}", batch_size=5, name="toy_work")
    def toy_work(event):
        failures = []
        for record in event:
            body = json.loads(record.body)
            calls["work"].append(body["n"])
            if body.get("fail"):
                failures.append({"itemIdentifier": record.to_dict()["messageId"]})
        return {"batchItemFailures": failures}

    @app.on_sqs_message(queue="bound-by-the-template", name="toy_plain")
    def toy_plain(event):
        records = list(event)
        calls["plain"].extend(json.loads(record.body)["n"] for record in records)
        return {"batchItemFailures": [{"itemIdentifier": record.to_dict()["messageId"]} for record in records]}

    @app.on_sns_message(topic=f"toy-topic-{toy.tag}", name="toy_topic")
    def toy_topic(event):
        calls["topic"].append((event.subject, event.message))

    @app.on_dynamodb_record(stream_arn=STREAM_PLACEHOLDER, starting_position="TRIM_HORIZON", batch_size=10,
                            name="toy_stream")
    def toy_stream(event):
        failures = []
        for record in event:
            n = int(record.new_image["n"]["N"])
            calls["stream"].append(n)
            calls["sequence"].append((n, record.sequence_number))
            if "fail" in record.new_image:
                failures.append({"itemIdentifier": record.sequence_number})
        return {"batchItemFailures": failures}

    @app.schedule(ChaliceRate(1, unit=ChaliceRate.HOURS), name="toy_tick")
    def toy_tick(event):
        calls["tick"].append(event.to_dict())

    @app.on_s3_event(bucket="toy-bucket", name="toy_s3")
    def toy_s3(event):
        raise AssertionError("S3 events are not delivered locally")

    return app


@pytest.fixture(scope="module")
def toy(stack: Stack) -> Iterator[Toy]:
    tag = uuid.uuid4().hex[:8]
    sqs, events = stack.aws_client("sqs"), stack.aws_client("events")
    urls = {name: sqs.create_queue(QueueName=f"toy-{name}-{tag}")["QueueUrl"]
            for name in ("bus-dead", "work-dead", "plain", "stream-failures")}
    dead_arn = sqs.get_queue_attributes(QueueUrl=urls["work-dead"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    urls["work"] = sqs.create_queue(QueueName=f"toy-work-{tag}", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    bus = f"toy-bus-{tag}"
    events.create_event_bus(Name=bus)
    topic_arn = stack.aws_client("sns").create_topic(Name=f"toy-topic-{tag}")["TopicArn"]
    table = f"toy-table-{tag}"
    stream_arn = stack.aws_client("dynamodb").create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]["LatestStreamArn"]

    toy = Toy(stack=stack, runtime=None, tag=tag, urls=urls, bus=bus, topic_arn=topic_arn, table=table)  # type: ignore[arg-type]
    bindings = {
        # What infra/template.yaml would say for each function.
        "toy_bus": Binding(event_bus=bus, max_attempts=2, dead_letter_queue_url=urls["bus-dead"]),
        "toy_work": Binding(report_batch_item_failures=True),
        "toy_plain": Binding(queue_url=urls["plain"], report_batch_item_failures=False),
        "toy_stream": Binding(stream_arn=stream_arn, report_batch_item_failures=True, max_attempts=2,
                              dead_letter_queue_url=urls["stream-failures"]),
    }
    toy.runtime = EventSourceRuntime(make_app(toy), stack.aws_client, bus_name="not-used", prefix=f"toy-{tag}",
                                     policy=POLICY, bindings=lambda name: bindings.get(name, NO_BINDING))
    toy.runtime.start()
    yield toy
    toy.runtime.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("source-toy_")], "a source thread outlived stop()"


def test_every_source_is_wired_or_reported(toy: Toy) -> None:
    assert sorted(source.name for source in toy.runtime.sources) == [
        "toy_bus", "toy_plain", "toy_stream", "toy_tick", "toy_topic", "toy_work"]
    assert [name for name, _ in toy.runtime.skipped] == ["toy_s3"]
    described = "\n".join(toy.runtime.describe())
    assert f"EventBridge bus '{toy.bus}'" in described
    assert "toy_s3: NOT DELIVERED" in described


def test_bus_events_reach_the_handler_and_failures_end_in_the_dead_letter_queue(toy: Toy) -> None:
    put = toy.client("events").put_events(Entries=[
        {"EventBusName": toy.bus, "Source": "tests", "DetailType": "toy", "Detail": json.dumps({"n": 1})},
        {"EventBusName": toy.bus, "Source": "tests", "DetailType": "toy", "Detail": json.dumps({"n": 2, "fail": True})},
        {"EventBusName": toy.bus, "Source": "tests", "DetailType": "other", "Detail": json.dumps({"n": 3})},
    ])
    assert put["FailedEntryCount"] == 0

    [dead] = eventually(lambda: toy.messages("bus-dead"), what="the failing event reaching the dead-letter queue")
    parked = json.loads(dead["Body"])
    assert parked["detail"] == {"n": 2, "fail": True} and parked["detail-type"] == "toy"
    assert dead["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "RuntimeError"
    assert dead["MessageAttributes"]["ERROR_MESSAGE"]["StringValue"] == "cannot take 2"
    assert dead["MessageAttributes"]["ATTEMPTS"]["StringValue"] == "2"

    seen = [event["detail"]["n"] for event in toy.calls["bus"]]
    assert seen.count(1) == 1, "a handled event is deleted, not redelivered"
    assert seen.count(2) == 2, "the template's attempts, then the dead-letter queue"
    assert 3 not in seen, "the rule's pattern filters"
    first = toy.calls["bus"][0]
    assert first["source"] == "tests" and first["account"] and first["region"] == "us-east-1"
    assert first["version"] == "0" and first["id"] and first["time"].endswith("Z")


def test_sqs_partial_batch_failures_retry_only_the_failed_record(toy: Toy) -> None:
    sqs = toy.client("sqs")
    for n in (1, 2, 3):
        sqs.send_message(QueueUrl=toy.urls["work"], MessageBody=json.dumps({"n": n, "fail": n == 2}))

    [dead] = eventually(lambda: toy.messages("work-dead"), what="the failing record reaching the queue's DLQ")
    assert json.loads(dead["Body"])["n"] == 2
    eventually(lambda: toy.queue_is_empty("work"), what="the queue emptying")
    assert sorted(toy.calls["work"]) == [1, 2, 2, 3], "good records once; the bad one until maxReceiveCount"


def test_without_report_batch_item_failures_a_reported_failure_counts_as_done(toy: Toy) -> None:
    toy.client("sqs").send_message(QueueUrl=toy.urls["plain"], MessageBody=json.dumps({"n": 7}))

    eventually(lambda: toy.calls["plain"], what="the record being handled")
    eventually(lambda: toy.queue_is_empty("plain"), what="the record being deleted")
    assert toy.calls["plain"] == [7]


def test_sns_notifications_reach_the_handler(toy: Toy) -> None:
    toy.client("sns").publish(TopicArn=toy.topic_arn, Subject="greeting", Message="hello")

    assert eventually(lambda: toy.calls["topic"], what="the notification") == [("greeting", "hello")]


def test_stream_records_are_delivered_in_order_and_a_failing_one_is_given_up(toy: Toy) -> None:
    dynamodb = toy.client("dynamodb")

    def put(n: int, fail: bool = False) -> None:
        item = {"pk": {"S": f"item-{n}"}, "n": {"N": str(n)}}
        if fail:
            item["fail"] = {"BOOL": True}
        dynamodb.put_item(TableName=toy.table, Item=item)

    for n in (1, 2):
        put(n)
    put(3, fail=True)
    [failure] = eventually(lambda: toy.messages("stream-failures"), what="the failed batch being reported")
    put(4)
    eventually(lambda: 4 in toy.calls["stream"], what="the stream moving on")

    info = json.loads(failure["Body"])["DDBStreamBatchInfo"]
    sequence_of_3 = dict(toy.calls["sequence"])[3]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == sequence_of_3
    assert info["batchSize"] == 1
    calls = toy.calls["stream"]
    assert [calls.count(n) for n in (1, 2, 3, 4)] == [1, 1, 2, 1]
    assert [n for n in calls if n != 3] == [1, 2, 4], "in order"


def test_a_schedule_can_be_fired_by_name(toy: Toy) -> None:
    toy.runtime.fire("toy_tick")

    [event] = toy.calls["tick"]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == [f"arn:aws:events:us-east-1:{event['account']}:rule/toy-{toy.tag}-toy_tick"]
    assert event["detail"] == {}
    with pytest.raises(KeyError):
        toy.runtime.fire("toy_bus")


def test_schedules_fire_on_their_own(stack: Stack) -> None:
    fired: list[str] = []
    app = Chalice(app_name="ticks")

    @app.schedule("rate(1 minute)", name="tick")
    def tick(event):
        fired.append(event.time)

    runtime = EventSourceRuntime(app, stack.aws_client, bus_name="not-used", prefix="ticks", policy=POLICY)
    with mock.patch.dict(durations._UNIT_SECONDS, {"m": 0.05}):  # a minute lasts 50 ms here
        runtime.start()
    try:
        eventually(lambda: len(fired) >= 3, timeout=10, interval=0.02, what="three runs")
    finally:
        runtime.stop()
    assert not [t for t in threading.enumerate() if t.name == "source-tick"]


def test_a_schedule_eventbridge_would_refuse_is_skipped_with_the_reason(stack: Stack) -> None:
    app = Chalice(app_name="ticks")

    @app.schedule("cron(0 9 * * MON *)", name="both_days")  # day-of-month and day-of-week both given
    def both_days(event):
        raise AssertionError("never runs")

    runtime = EventSourceRuntime(app, stack.aws_client, bus_name="not-used", prefix="ticks", policy=POLICY)
    runtime.start()
    runtime.stop()
    [(name, reason)] = runtime.skipped
    assert name == "both_days" and "exactly one of day-of-month and day-of-week" in reason

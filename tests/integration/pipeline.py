"""Carry events through the asynchronous half of Nudge inside one test.

Reads the events table's real stream and the real send queue in moto, and
hands their records to the handlers through chalice.test.Client in the shape
Lambda uses, the way the local runtime and AWS do. ``run`` repeats until
nothing is left, so chains (emit -> bus -> trigger) settle too.
"""
from __future__ import annotations

import contextlib
import json
from typing import Any, Callable, ContextManager

import boto3
from chalice.test import Client


class Pipeline:
    def __init__(self, client: Client, env: dict[str, str],
                 invoking: Callable[[str], ContextManager[Any]] | None = None) -> None:
        self.client = client
        self.env = env
        #: Entered around each handler call, with the handler's name (tests that record calls).
        self.invoking = invoking or (lambda name: contextlib.nullcontext())
        self.sqs = boto3.client("sqs")
        self.streams = boto3.client("dynamodbstreams")
        table = boto3.client("dynamodb").describe_table(TableName=env["NUDGE_EVENTS_TABLE"])["Table"]
        self.stream_arn = table["LatestStreamArn"]
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        self.iterators = {
            shard["ShardId"]: self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
            for shard in shards
        }
        self.failures: list[Any] = []

    def arrivals(self) -> int:
        handled = 0
        for shard, iterator in list(self.iterators.items()):
            answer = self.streams.get_records(ShardIterator=iterator)
            self.iterators[shard] = answer["NextShardIterator"]
            records = [{**record, "eventSourceARN": self.stream_arn} for record in answer["Records"]]
            if records:
                with self.invoking("on_event_logged"):
                    result = self.client.lambda_.invoke("on_event_logged", {"Records": records}).payload
                self.failures += result.get("batchItemFailures", [])
                handled += len(records)
        return handled

    def sends(self) -> int:
        answer = self.sqs.receive_message(QueueUrl=self.env["NUDGE_SEND_QUEUE_URL"], MaxNumberOfMessages=10,
                                          AttributeNames=["All"], WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        records = [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:send",
            "awsRegion": "us-east-1",
        } for m in messages]
        with self.invoking("on_send"):
            result = self.client.lambda_.invoke("on_send", {"Records": records}).payload
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        self.failures += list(failed)
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.env["NUDGE_SEND_QUEUE_URL"],
                                        ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def queued(self) -> list[dict[str, Any]]:
        """Decisions waiting on the send queue, without taking them."""
        answer = self.sqs.receive_message(QueueUrl=self.env["NUDGE_SEND_QUEUE_URL"], MaxNumberOfMessages=10,
                                          VisibilityTimeout=0)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    def run(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            if not self.arrivals() + self.sends():
                return
        raise AssertionError("the pipeline did not settle")


def record_calls(monkeypatch: Any) -> list[tuple[str, str | None]]:
    """From now on, every AWS call this test makes: (operation, IndexName or None)."""
    import botocore.client

    calls: list[tuple[str, str | None]] = []
    original = botocore.client.BaseClient._make_api_call

    def recording(api: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((operation, params.get("IndexName")))
        return original(api, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return calls


def tick(client: Client) -> dict[str, Any]:
    """One run of the sweep_timers schedule, as EventBridge invokes it."""
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=[])
    return client.lambda_.invoke("sweep_timers", event).payload

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
        records = sqs_records(messages)
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


#: The template's settings for the two sources the pipeline carries (infra/template.yaml):
#: the stream mapping's MaximumRetryAttempts and the send queue's maxReceiveCount.
STREAM_RETRY_ATTEMPTS = 10


class AtLeastOncePipeline(Pipeline):
    """The pipeline as AWS behaves on a bad day: handler calls may fail
    (``faults``, an armed infra.faults.FaultInjector) and every delivery may
    come two or three times, out of order (``redelivery``, an
    infra.faults.Redelivery).

    Stream records go in batches of ``stream_batch`` per shard, shuffled;
    a batch whose handler raises, or reports failed records, is retried from
    its first failed record, as Lambda's stream mapping does with
    ReportBatchItemFailures; after STREAM_RETRY_ATTEMPTS tries at the same
    record the rest of the batch is set aside in ``parked_records`` (the
    mapping's on-failure destination; ``replay_parked`` hands them back, as an
    operator would). Copies of delivered records come again in later batches.

    Send-queue messages are received ten at a time, shuffled; failed ones are
    made visible again at once (the retry delay passes instantly) and the
    queue's redrive policy parks a message after its eighth receive. Copies
    of delivered messages are put on the queue again, so they arrive later,
    in other batches. Only handler calls are armed: the pipeline's own reads,
    deletes and copies never fail.
    """

    def __init__(self, client: Client, env: dict[str, str], *, faults: Any = None, redelivery: Any = None,
                 stream_batch: int = 10, stream_read: int = 50,
                 invoking: Callable[[str], ContextManager[Any]] | None = None) -> None:
        super().__init__(client, env, invoking)
        self.faults = faults
        self.redelivery = redelivery
        self.stream_batch = stream_batch
        #: Records read from a shard at a time (GetRecords' Limit).
        self.stream_read = max(stream_read, stream_batch)
        #: shard -> [(record, is_copy)], in delivery order; the head is the checkpoint.
        self.pending: dict[str, list[tuple[dict[str, Any], bool]]] = {shard: [] for shard in self.iterators}
        self.attempts: dict[str, int] = {shard: 0 for shard in self.iterators}
        #: (round due, shard, record): copies of delivered records, to come again.
        self.replays: list[tuple[int, str, dict[str, Any]]] = []
        self.parked_records: list[tuple[str, dict[str, Any]]] = []
        self.round = 0
        #: Handler deliveries by source (stream records, queue messages), copies included.
        self.delivered = {"on_event_logged": 0, "on_send": 0}
        self.handler_errors = 0

    def armed(self) -> ContextManager[Any]:
        """Calls made inside may meet the injected faults."""
        return self.faults.armed() if self.faults is not None else contextlib.nullcontext()

    def _invoke(self, name: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """One handler call; None when it raised (the whole batch failed)."""
        try:
            with self.invoking(name), self.armed():
                return self.client.lambda_.invoke(name, event).payload or {}
        except Exception:  # noqa: BLE001 - a crashed invocation fails its batch, as in Lambda
            self.handler_errors += 1
            return None

    # -- the stream ------------------------------------------------------------------------------

    def arrivals(self) -> int:
        self.round += 1
        handled = 0
        for shard in list(self.iterators):
            self._mix_in_replays(shard)
            if len(self.pending[shard]) < self.stream_batch and self.iterators[shard]:
                answer = self.streams.get_records(ShardIterator=self.iterators[shard], Limit=self.stream_read)
                self.iterators[shard] = answer.get("NextShardIterator")
                fresh = [({**record, "eventSourceARN": self.stream_arn}, False) for record in answer["Records"]]
                self.pending[shard] += self.redelivery.shuffled(fresh) if self.redelivery else fresh
            if self.pending[shard]:
                handled += self._deliver_stream_batch(shard)
        return handled

    def _mix_in_replays(self, shard: str) -> None:
        due = [entry for entry in self.replays if entry[0] <= self.round and entry[1] == shard]
        head = {record["dynamodb"]["SequenceNumber"] for record, _ in self.pending[shard][:self.stream_batch]}
        for entry in due:
            number = entry[2]["dynamodb"]["SequenceNumber"]
            if number in head:
                continue  # one delivery of a record per batch: this copy waits for a later one
            self.replays.remove(entry)
            at = self.redelivery.position(min(len(self.pending[shard]), self.stream_batch - 1))
            self.pending[shard].insert(at, (entry[2], True))
            head.add(number)

    def _deliver_stream_batch(self, shard: str) -> int:
        batch = self.pending[shard][:self.stream_batch]
        numbers = [record["dynamodb"]["SequenceNumber"] for record, _ in batch]
        result = self._invoke("on_event_logged", {"Records": [record for record, _ in batch]})
        self.delivered["on_event_logged"] += len(batch)
        if result is None:
            first_failed: int | None = 0
        else:
            failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
            self.failures += list(failed)
            first_failed = min(numbers.index(number) for number in failed) if failed else None
        done = batch if first_failed is None else batch[:first_failed]
        del self.pending[shard][:len(done)]
        for record, is_copy in done:
            if not is_copy and self.redelivery is not None:
                for _ in range(self.redelivery.copies()):
                    self.replays.append((self.round + self.redelivery.later(5), shard, record))
        if first_failed is None or first_failed > 0:
            self.attempts[shard] = 0
        if first_failed is not None:
            self.attempts[shard] += 1
            if self.attempts[shard] > STREAM_RETRY_ATTEMPTS:
                rest = batch[first_failed:]
                del self.pending[shard][:len(rest)]
                self.parked_records += [(shard, record) for record, is_copy in rest if not is_copy]
                self.attempts[shard] = 0
        return len(batch)

    def replay_parked(self) -> int:
        """Hand the records the stream mapping gave up on back to the
        evaluator (the operator's replay from the on-failure destination)."""
        parked, self.parked_records = self.parked_records, []
        for shard, record in parked:
            self.pending[shard].append((record, False))
        return len(parked)

    # -- the send queue ----------------------------------------------------------------------------

    def sends(self) -> int:
        url = self.env["NUDGE_SEND_QUEUE_URL"]
        answer = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                          MessageAttributeNames=["All"], WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        if self.redelivery is not None:
            messages = self.redelivery.shuffled(messages)
        records = sqs_records(messages)
        result = self._invoke("on_send", {"Records": records})
        self.delivered["on_send"] += len(records)
        ids = [m["MessageId"] for m in messages]
        failed = set(ids) if result is None else {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        self.failures += list(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        retry = [m for m in messages if m["MessageId"] in failed]
        if retry:
            self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(retry)])
        originals = [m for m in done if "copy" not in m.get("MessageAttributes", {})]
        copies = [m["Body"] for m in originals if self.redelivery is not None
                  for _ in range(self.redelivery.copies())]
        for start in range(0, len(copies), 10):
            self.sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": body,
                 "MessageAttributes": {"copy": {"DataType": "String", "StringValue": "at-least-once"}}}
                for i, body in enumerate(copies[start:start + 10])])
        return len(messages)

    def redrive(self, dead_letter_url: str) -> int:
        """Move every message of the send dead-letter queue back to the send
        queue (SQS's dead-letter redrive, as an operator starts it)."""
        moved = 0
        while True:
            answer = self.sqs.receive_message(QueueUrl=dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = answer.get("Messages", [])
            if not messages:
                return moved
            for message in messages:
                self.sqs.send_message(QueueUrl=self.env["NUDGE_SEND_QUEUE_URL"], MessageBody=message["Body"])
                self.sqs.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=message["ReceiptHandle"])
                moved += 1

    # -- driving -------------------------------------------------------------------------------------

    def run(self, rounds: int = 100_000) -> None:
        """Until the stream, the queue and the copies are all delivered. Each
        round hands over one stream batch per shard, then empties the queue,
        so the queue stays short."""
        for _ in range(rounds):
            moved = self.arrivals()
            while True:
                sent = self.sends()
                moved += sent
                if not sent:
                    break
            if not moved and not self.replays and not any(self.pending.values()):
                return
            if not moved:
                self.round = max([self.round] + [due for due, _, _ in self.replays])
        raise AssertionError("the pipeline did not settle")

    def sweep(self, attempts: int = 10_000) -> dict[str, Any]:
        """The sweep schedule, invoked until one run completes (a run that
        fails half-way leaves the rest due for the next)."""
        for _ in range(attempts):
            event = self.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                         detail={}, resources=[])
            try:
                with self.invoking("sweep_timers"), self.armed():
                    return self.client.lambda_.invoke("sweep_timers", event).payload
            except Exception:  # noqa: BLE001 - the next minute's sweep picks up the rest
                self.handler_errors += 1
        raise AssertionError("the sweep never completed")


def sqs_records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Received send-queue messages as the records Lambda hands the delivery function."""
    return [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:send",
        "awsRegion": "us-east-1",
    } for m in messages]

"""The local event-source runtime: what AWS does to call the non-HTTP handlers.

In AWS, EventBridge, the scheduler, SNS and Lambda's event-source mappings
invoke the handlers Chalice registers with ``@app.on_cw_event``,
``@app.schedule``, ``@app.on_sqs_message``, ``@app.on_sns_message`` and
``@app.on_dynamodb_record``. The emulator (moto) stores and routes messages but
never invokes a function, so on a laptop this module does that part. It reads
``app.event_sources`` and gives each entry a :class:`EventSource` chosen by its
Chalice config type (:data:`SOURCES`):

=======================  ======================================================
Chalice config           local delivery
=======================  ======================================================
CloudWatchEventConfig    A rule on the bus with the handler's event pattern
                         targets a queue made for the handler (moto does route
                         bus events to SQS targets); the queue is long-polled
                         and each event is handed to the handler as
                         EventBridge would. A failing event is retried, then
                         moved to the dead-letter queue with its error.
ScheduledEventConfig     ``rate(...)`` and ``cron(...)`` expressions (UTC, see
                         chalicelib/durations.py) fire on a timer with a
                         "Scheduled Event".
SQSEventConfig           The queue is polled like Lambda's SQS mapping, with
                         partial batch failures when the template enables
                         ``ReportBatchItemFailures``: failed records stay on the
                         queue and the queue's own redrive policy parks them.
SNSEventConfig           The topic gets a queue subscription; each notification
                         is delivered like the bus's (retries, dead letters).
DynamoDBEventConfig      The stream's shards are read in order, batch by batch;
                         a failed batch is retried from its first failed
                         record, then reported to the on-failure queue.
=======================  ======================================================

Which bus, queue, stream or topic a handler listens to, and its retry and
dead-letter settings, come from the template's wiring block for the function
(see infra/bindings.py); without one, from the decorator's own arguments.
Other Chalice event types are listed in ``skipped`` with the reason; adding
one is one more :class:`EventSource` subclass registered in :data:`SOURCES`.

Handlers are called exactly as Lambda calls them: ``app.handler_map[name]``
with the event as plain JSON data and a Lambda context, so Chalice's event
classes and middleware run as in the cloud. Each source runs in its own thread;
events of one source are handled one invocation at a time.

At-least-once mode (``redelivery``, an infra.faults.Redelivery; the local stack
sets it from NUDGE_DUPLICATE_DELIVERY): every batch is handed over shuffled, and
a share of the queue messages, bus events, notifications and stream records
handled come again once or twice more, later, in other batches, as AWS may do.
``invoking`` is entered around every invocation (infra.faults arms its faults there).
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, ContextManager, Mapping

from botocore.exceptions import ClientError
from chalice.app import (
    BaseEventSourceConfig,
    Chalice,
    CloudWatchEventConfig,
    DynamoDBEventConfig,
    ScheduledEventConfig,
    SNSEventConfig,
    SQSEventConfig,
)
from chalice.local import LambdaContext

from chalicelib.durations import parse_schedule
from infra.bindings import NO_BINDING, Binding

log = logging.getLogger("local_stack")

#: service name -> boto3 client pointed at the emulator.
ClientFactory = Callable[[str], Any]
#: handler name -> the Lambda context passed to it.
ContextFactory = Callable[[str], Any]
#: handler name -> what the template binds its event source to.
BindingLookup = Callable[[str], Binding]
#: handler name -> a context entered around each of its invocations.
InvocationScope = Callable[[str], ContextManager[Any]]

#: The message attribute that marks a repeated delivery (not repeated again).
COPY_ATTRIBUTE = "nudge-local-copy"

_MAX_ERROR_TEXT = 1000


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the runtime polls and how hard it tries before giving up on an event."""

    #: Long-poll wait of each receive; also bounds how long stopping takes.
    wait_seconds: int = 1
    #: Invocations of an event before it goes to the dead-letter queue, unless
    #: the template says otherwise (Lambda's asynchronous invocation: the first
    #: try and two retries; for streams AWS retries until the records expire).
    max_attempts: int = 3
    #: Delay before a retry, times the number of attempts so far (AWS waits minutes).
    retry_seconds: int = 1
    #: Visibility timeout of the queues the runtime creates.
    visibility_seconds: int = 60
    #: Pause between reads of a stream that had nothing new.
    stream_poll_seconds: float = 0.25


class SourceUnavailable(Exception):
    """An event source cannot be wired in the emulator (e.g. its queue is missing)."""


class EventSourceRuntime:
    """Delivers the events of every supported ``app.event_sources`` entry.

    ``start`` wires each source in the emulator (in the calling thread) and
    starts its thread; ``stop`` stops them all. Sources that cannot be
    delivered are listed in ``skipped`` with the reason, and logged.
    """

    def __init__(
        self,
        app: Chalice,
        clients: ClientFactory,
        *,
        bus_name: str,
        prefix: str = "nudge-local",
        policy: DeliveryPolicy = DeliveryPolicy(),
        context_factory: ContextFactory | None = None,
        bindings: BindingLookup | None = None,
        redelivery: Any = None,
        invoking: InvocationScope | None = None,
    ) -> None:
        self.app = app
        #: infra.faults.Redelivery (or None): repeat and reorder deliveries.
        self.redelivery = redelivery
        self.invoking: InvocationScope = invoking or (lambda name: contextlib.nullcontext())
        self.bus_name = bus_name
        self.prefix = prefix
        self.policy = policy
        self.binding: BindingLookup = bindings or (lambda name: NO_BINDING)
        self.sources: list[EventSource] = []
        self.skipped: list[tuple[str, str]] = []
        self.region = "us-east-1"
        self.account = "123456789012"
        self._clients = clients
        self._client_cache: dict[str, Any] = {}
        self._context_factory = context_factory or self._default_context
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- wiring ---------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A shared client (boto3 clients are thread-safe once made)."""
        if service not in self._client_cache:
            self._client_cache[service] = self._clients(service)
        return self._client_cache[service]

    def resource_name(self, handler_name: str, suffix: str = "") -> str:
        """A name for something made for a handler, valid for rules and queues."""
        name = re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.prefix}-{handler_name}{suffix}")
        return name[:64]

    def make_queue(self, name: str) -> tuple[str, str]:
        """Create (or find) a standard queue; returns its URL and ARN."""
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(self.policy.visibility_seconds)})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def dead_letter_queue(self, source: EventSource) -> str:
        """Where a source's undeliverable events go: the template's queue, else
        one made for the handler, so nothing is lost."""
        if source.binding.dead_letter_queue_url:
            return source.binding.dead_letter_queue_url
        return self.make_queue(self.resource_name(source.name, "-dead-letters"))[0]

    def max_attempts(self, source: EventSource) -> int:
        return source.binding.max_attempts or self.policy.max_attempts

    def start(self) -> None:
        sts = self.client("sts")
        try:
            self.account = sts.get_caller_identity()["Account"]
        except ClientError:
            pass
        self.region = sts.meta.region_name or self.region
        for config in self.app.event_sources:
            source_class = SOURCES.get(type(config))
            if source_class is None:
                self._skip(config.name, f"{type(config).__name__} events are not delivered locally yet")
                continue
            source = source_class(self, config)
            try:
                source.setup()
            except SourceUnavailable as exc:
                self._skip(config.name, str(exc))
                continue
            self.sources.append(source)
        for source in self.sources:
            thread = threading.Thread(target=self._run, args=(source,), name=f"source-{source.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _skip(self, name: str, reason: str) -> None:
        log.warning("event source %s is not delivered: %s", name, reason)
        self.skipped.append((name, reason))

    def _run(self, source: EventSource) -> None:
        try:
            source.run(self._stop)
        except Exception:  # a dead source must be visible, not silent
            log.exception("event source %s stopped on an unexpected error", source.name)

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        limit = timeout if timeout is not None else self.policy.wait_seconds + 10
        for thread in self._threads:
            thread.join(timeout=limit)
        self._threads.clear()

    def __enter__(self) -> EventSourceRuntime:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- invoking -------------------------------------------------------------

    def invoke(self, name: str, event: Mapping[str, Any]) -> Any:
        """One Lambda invocation of handler ``name``: the event goes through
        JSON as it would over the wire, and exceptions propagate."""
        handler = self.app.handler_map[name]
        with self.invoking(name):
            return handler(json.loads(json.dumps(event)), self._context_factory(name))

    def shuffled(self, items: list[Any]) -> list[Any]:
        """A batch as it is handed over: shuffled in at-least-once mode."""
        return self.redelivery.shuffled(items) if self.redelivery is not None else items

    def copies(self) -> int:
        """How many more times to deliver an item just handled (at-least-once mode)."""
        return self.redelivery.copies() if self.redelivery is not None else 0

    def fire(self, name: str) -> Any:
        """Invoke a scheduled handler now, as its schedule would."""
        for source in self.sources:
            if source.name == name and isinstance(source, ScheduleSource):
                return self.invoke(name, source.event(datetime.now(timezone.utc)))
        raise KeyError(f"no schedule named {name!r}")

    def _default_context(self, name: str) -> LambdaContext:
        return LambdaContext(function_name=f"{self.app.app_name}-{name}", memory_size=128, max_runtime_ms=60_000)

    def describe(self) -> list[str]:
        """One line per source, for the banner."""
        lines = [f"{source.name}: {source.describe()}" for source in self.sources]
        lines += [f"{name}: NOT DELIVERED ({reason})" for name, reason in self.skipped]
        return lines


class EventSource:
    """One ``app.event_sources`` entry, delivered locally.

    ``setup`` wires it in the emulator (called once, before any thread runs);
    ``run`` delivers until ``stop`` is set. Subclasses register in SOURCES.
    """

    kind = "?"

    def __init__(self, runtime: EventSourceRuntime, config: BaseEventSourceConfig) -> None:
        self.runtime = runtime
        self.config = config
        self.name = config.name
        self.binding = runtime.binding(config.name)

    def setup(self) -> None:
        raise NotImplementedError

    def run(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


class QueuePoller(EventSource):
    """A source whose events wait in an SQS queue: long-poll it until stopped."""

    queue_url = ""
    queue_arn = ""
    batch_size = 1

    def run(self, stop: threading.Event) -> None:
        sqs = self.runtime.client("sqs")
        while not stop.is_set():
            try:
                response = sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.batch_size,
                    WaitTimeSeconds=self.runtime.policy.wait_seconds,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception:
                if stop.is_set():
                    break
                log.warning("receiving from %s failed; trying again", self.queue_url, exc_info=True)
                stop.wait(1)
                continue
            messages = response.get("Messages", [])
            if messages:
                self.deliver(sqs, messages)

    def deliver(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def repeat(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        """At-least-once mode: put copies of handled messages back on the
        queue, so they come again later, in other batches (copies are not
        copied again)."""
        for message in messages:
            if COPY_ATTRIBUTE in message.get("MessageAttributes", {}):
                continue
            attributes = {name: {key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value}
                          for name, value in message.get("MessageAttributes", {}).items()}
            attributes[COPY_ATTRIBUTE] = {"DataType": "String", "StringValue": "at-least-once"}
            for _ in range(self.runtime.copies()):
                sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"], MessageAttributes=attributes,
                                 DelaySeconds=self.runtime.redelivery.later(3) - 1)

    def retry_later(self, sqs: Any, message: dict[str, Any]) -> None:
        """Make a failed message visible again after the retry delay."""
        delay = self.runtime.policy.retry_seconds * _receive_count(message)
        sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                      VisibilityTimeout=min(delay, 43_200))


class AsyncEventSource(QueuePoller):
    """Events Lambda gets by asynchronous invocation (EventBridge, SNS): one
    event per call; a failed call is retried up to ``max_attempts`` times, then
    the event goes to the dead-letter queue with the error as attributes."""

    dead_letter_url = ""
    batch_size = 10  # received together, invoked one by one

    def event(self, message: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def deliver(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        for message in self.runtime.shuffled(messages):
            event = self.event(message)
            try:
                self.runtime.invoke(self.name, event)
            except Exception as exc:  # the handler's failure is the event's, not the runtime's
                self.failed(sqs, message, event, exc)
            else:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                self.repeat(sqs, [message])

    def failed(self, sqs: Any, message: dict[str, Any], event: dict[str, Any], exc: Exception) -> None:
        attempt, limit = _receive_count(message), self.runtime.max_attempts(self)
        if attempt < limit:
            log.warning("%s failed on attempt %d of %d; it will be retried", self.name, attempt, limit,
                        exc_info=exc)
            self.retry_later(sqs, message)
            return
        log.error("%s failed on attempt %d of %d; the event goes to %s", self.name, attempt, limit,
                  self.dead_letter_url, exc_info=exc)
        sqs.send_message(
            QueueUrl=self.dead_letter_url,
            MessageBody=json.dumps(event),
            MessageAttributes={
                "ERROR_CODE": {"DataType": "String", "StringValue": type(exc).__name__},
                "ERROR_MESSAGE": {"DataType": "String", "StringValue": (str(exc) or repr(exc))[:_MAX_ERROR_TEXT]},
                "TARGET": {"DataType": "String", "StringValue": self.name},
                "ATTEMPTS": {"DataType": "Number", "StringValue": str(attempt)},
            },
        )
        sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


class BusRuleSource(AsyncEventSource):
    """``@app.on_cw_event``: events on the bus that match the handler's pattern."""

    kind = "bus"
    config: CloudWatchEventConfig

    def setup(self) -> None:
        events = self.runtime.client("events")
        self.bus = self.binding.event_bus or self.runtime.bus_name
        rule = self.runtime.resource_name(self.name)
        self.queue_url, self.queue_arn = self.runtime.make_queue(self.runtime.resource_name(self.name, "-bus"))
        try:
            self.rule_arn = events.put_rule(Name=rule, EventBusName=self.bus, State="ENABLED",
                                            EventPattern=json.dumps(self.config.event_pattern))["RuleArn"]
        except ClientError as exc:
            raise SourceUnavailable(f"cannot add a rule to bus {self.bus!r}: {exc}") from exc
        events.put_targets(Rule=rule, EventBusName=self.bus,
                           Targets=[{"Id": "local-runtime", "Arn": self.queue_arn}])
        self.dead_letter_url = self.runtime.dead_letter_queue(self)

    def event(self, message: dict[str, Any]) -> dict[str, Any]:
        event = json.loads(message["Body"])
        # moto leaves out fields EventBridge always sends (and Chalice reads).
        event.setdefault("version", "0")
        event.setdefault("id", message["MessageId"])
        event.setdefault("account", self.runtime.account)
        event.setdefault("region", self.runtime.region)
        event.setdefault("source", "")
        event.setdefault("resources", [])
        event.setdefault("detail", {})
        event.setdefault("time", _event_time(datetime.now(timezone.utc)))
        return event

    def describe(self) -> str:
        return (f"EventBridge bus {self.bus!r}, pattern {json.dumps(self.config.event_pattern)}; "
                f"{self.runtime.max_attempts(self)} attempts, then {_queue_name(self.dead_letter_url)}")


class SnsTopicSource(AsyncEventSource):
    """``@app.on_sns_message``: notifications published to the topic."""

    kind = "sns"
    config: SNSEventConfig

    def setup(self) -> None:
        sns = self.runtime.client("sns")
        topic = self.binding.topic_arn or self.config.topic
        if topic.startswith("arn:"):
            topic_arn = topic
        else:
            arns = [t["TopicArn"] for page in sns.get_paginator("list_topics").paginate() for t in page["Topics"]]
            matches = [arn for arn in arns if arn.rsplit(":", 1)[-1] == topic]
            if not matches:
                raise SourceUnavailable(f"topic {topic!r} does not exist in the emulator")
            topic_arn = matches[0]
        self.topic_arn = topic_arn
        self.queue_url, self.queue_arn = self.runtime.make_queue(self.runtime.resource_name(self.name, "-sns"))
        try:
            self.subscription_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs",
                                                  Endpoint=self.queue_arn)["SubscriptionArn"]
        except ClientError as exc:
            raise SourceUnavailable(f"cannot subscribe to topic {topic!r}: {exc}") from exc
        self.dead_letter_url = self.runtime.dead_letter_queue(self)

    def event(self, message: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(message["Body"])
        return {"Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": self.subscription_arn,
            "Sns": {
                "Type": body.get("Type", "Notification"),
                "MessageId": body.get("MessageId", message["MessageId"]),
                "TopicArn": body.get("TopicArn", self.topic_arn),
                "Subject": body.get("Subject"),
                "Message": body.get("Message", ""),
                "Timestamp": body.get("Timestamp", _event_time(datetime.now(timezone.utc))),
                "SignatureVersion": body.get("SignatureVersion", "1"),
                "Signature": body.get("Signature", ""),
                "SigningCertUrl": body.get("SigningCertURL", ""),
                "UnsubscribeUrl": body.get("UnsubscribeURL", ""),
                "MessageAttributes": body.get("MessageAttributes", {}),
            },
        }]}

    def describe(self) -> str:
        return (f"SNS topic {self.topic_arn.rsplit(':', 1)[-1]}; "
                f"{self.runtime.max_attempts(self)} attempts, then {_queue_name(self.dead_letter_url)}")


class SqsQueueSource(QueuePoller):
    """``@app.on_sqs_message``: Lambda's SQS mapping.

    A handler that raises fails the whole batch. When the template enables
    ``ReportBatchItemFailures``, one that returns ``{"batchItemFailures":
    [{"itemIdentifier": messageId}, ...]}`` fails only those records (without
    it, as in AWS, the answer is ignored and the batch counts as done). Failed
    records stay on the queue and come back after the retry delay; the queue's
    redrive policy (from the template) moves them to its dead-letter queue.
    """

    kind = "sqs"
    config: SQSEventConfig

    def setup(self) -> None:
        sqs = self.runtime.client("sqs")
        name = self.config.queue or (self.config.queue_arn or "").rsplit(":", 1)[-1]
        self.queue_url = self.binding.queue_url or ""
        if not self.queue_url:
            try:
                self.queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except ClientError as exc:
                raise SourceUnavailable(f"queue {name!r} does not exist in the emulator "
                                        "(bind the function to its queue in infra/template.yaml)") from exc
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                  AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.batch_size = max(1, min(self.binding.batch_size or self.config.batch_size or 10, 10))
        self.reports_failures = bool(self.binding.report_batch_item_failures)

    def record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = {}
        for key, value in message.get("MessageAttributes", {}).items():
            binary = value.get("BinaryValue")
            attributes[key] = {
                "stringValue": value.get("StringValue"),
                "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.runtime.region,
        }

    def deliver(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        messages = self.runtime.shuffled(messages)
        ids = [message["MessageId"] for message in messages]
        try:
            result = self.runtime.invoke(self.name, {"Records": [self.record(m) for m in messages]})
        except Exception:
            log.warning("%s failed; the batch of %d will be retried", self.name, len(ids), exc_info=True)
            failed = set(ids)
        else:
            failed = batch_item_failures(result, ids) if self.reports_failures else set()
            if failed:
                log.warning("%s reported %d of %d records failed; they will be retried",
                            self.name, len(failed), len(ids))
            elif not self.reports_failures and isinstance(result, dict) and result.get("batchItemFailures"):
                log.warning("%s reported failed records, but the template does not enable "
                            "ReportBatchItemFailures for it: as in AWS, the whole batch counts as done", self.name)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(done)])
            self.repeat(sqs, done)
        for message in messages:
            if message["MessageId"] in failed:
                self.retry_later(sqs, message)

    def describe(self) -> str:
        partial = "partial batch failures" if self.reports_failures else "no partial batch failures"
        return f"SQS queue {_queue_name(self.queue_url)} (batches of up to {self.batch_size}, {partial})"


def batch_item_failures(result: Any, message_ids: list[str]) -> set[str]:
    """The records a handler's answer marks as failed, by Lambda's rules: no
    answer or an empty list is success; a malformed answer or an unknown
    identifier fails the whole batch. Identifiers are SQS message ids or
    stream sequence numbers."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        log.warning("a batch handler answered %r; Lambda treats that as a failed batch", type(result).__name__)
        return set(message_ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(message_ids)
    failed = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in message_ids:
            log.warning("batchItemFailures names %r, not a record of the batch: the batch failed", identifier)
            return set(message_ids)
        failed.add(identifier)
    return failed


class DynamoStreamSource(EventSource):
    """``@app.on_dynamodb_record``: Lambda's stream mapping.

    Each shard is read in order. A handler that raises fails the batch; with
    ``ReportBatchItemFailures`` (from the template) the batch is retried from
    its first reported sequence number, records before it being done. After
    the attempts allowed (the template's MaximumRetryAttempts, else the local
    policy: AWS's default retries until the records expire, which would stall
    a laptop's shard for a day), the batch is skipped and described on the
    on-failure queue if the template names one.
    """

    kind = "dynamodb"
    config: DynamoDBEventConfig

    def setup(self) -> None:
        streams = self.runtime.client("dynamodbstreams")
        self.stream_arn = self.binding.stream_arn or self.config.stream_arn
        try:
            shards = streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        except ClientError as exc:
            raise SourceUnavailable(f"stream {self.stream_arn} does not exist in the emulator "
                                    "(bind the function to its table's stream in infra/template.yaml)") from exc
        position = (self.config.starting_position or "LATEST").upper()
        self.iterators: dict[str, str | None] = {
            shard["ShardId"]: streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard["ShardId"],
                                                         ShardIteratorType=position)["ShardIterator"]
            for shard in shards}
        self.pending: dict[str, list[dict[str, Any]]] = {shard: [] for shard in self.iterators}
        self.attempts: dict[str, int] = {shard: 0 for shard in self.iterators}
        #: At-least-once mode: shard -> [batches to wait, record] of records to hand over again,
        #: and the sequence numbers already repeated (a copy is not copied again).
        self.replays: dict[str, list[list[Any]]] = {shard: [] for shard in self.iterators}
        self.repeated: dict[str, set[str]] = {shard: set() for shard in self.iterators}
        self.batch_size = max(1, min(self.binding.batch_size or self.config.batch_size or 100, 1000))
        self.reports_failures = bool(self.binding.report_batch_item_failures)
        self.dead_letter_url = self.binding.dead_letter_queue_url

    def record(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {**_jsonable(raw), "eventSourceARN": self.stream_arn}

    def run(self, stop: threading.Event) -> None:
        streams = self.runtime.client("dynamodbstreams")
        while not stop.is_set():
            busy = False
            for shard, iterator in list(self.iterators.items()):
                if not self.pending[shard] and iterator:
                    try:
                        response = streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
                    except Exception:
                        if stop.is_set():
                            return
                        log.warning("reading stream %s failed; trying again", self.stream_arn, exc_info=True)
                        continue
                    self.iterators[shard] = response.get("NextShardIterator")
                    self.pending[shard] = self.runtime.shuffled([self.record(r) for r in response.get("Records", [])])
                self._replay(shard)
                if self.pending[shard]:
                    busy = True
                    self.deliver(shard, stop)
            if not busy:
                stop.wait(self.runtime.policy.stream_poll_seconds)

    def _replay(self, shard: str) -> None:
        """At-least-once mode: records handled earlier whose turn to come again
        has come join the pending ones (one delivery of a record per batch)."""
        waiting = self.replays[shard]
        for entry in waiting:
            entry[0] -= 1
        head = {r["dynamodb"]["SequenceNumber"] for r in self.pending[shard][:self.batch_size]}
        for entry in [e for e in waiting if e[0] <= 0]:
            number = entry[1]["dynamodb"]["SequenceNumber"]
            if number not in head:
                waiting.remove(entry)
                self.pending[shard].insert(self.runtime.redelivery.position(min(len(self.pending[shard]),
                                                                                self.batch_size - 1)), entry[1])
                head.add(number)

    def deliver(self, shard: str, stop: threading.Event) -> None:
        batch = self.pending[shard][:self.batch_size]
        numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        try:
            result = self.runtime.invoke(self.name, {"Records": batch})
        except Exception:
            log.warning("%s failed on a batch of %d records", self.name, len(batch), exc_info=True)
            first_failed: int | None = 0
        else:
            failed = batch_item_failures(result, numbers) if self.reports_failures else set()
            first_failed = min(numbers.index(number) for number in failed) if failed else None
        done = batch if first_failed is None else batch[:first_failed]
        if self.runtime.redelivery is not None:
            for record in done:
                number = record["dynamodb"]["SequenceNumber"]
                if number not in self.repeated[shard]:
                    self.repeated[shard].add(number)
                    self.replays[shard] += [[self.runtime.redelivery.later(3), record]
                                            for _ in range(self.runtime.copies())]
        if first_failed is None:
            del self.pending[shard][:len(batch)]
            self.attempts[shard] = 0
            return
        del self.pending[shard][:first_failed]  # the checkpoint: records before it are done
        self.attempts[shard] += 1
        attempt, limit = self.attempts[shard], self.runtime.max_attempts(self)
        if attempt < limit:
            log.warning("%s: batch from sequence number %s failed (attempt %d of %d); retrying",
                        self.name, numbers[first_failed], attempt, limit)
            stop.wait(self.runtime.policy.retry_seconds * attempt)
            return
        skipped = batch[first_failed:]
        del self.pending[shard][:len(skipped)]
        self.attempts[shard] = 0
        log.error("%s: giving up on %d records from sequence number %s after %d attempts%s", self.name,
                  len(skipped), numbers[first_failed], attempt,
                  f"; described on {_queue_name(self.dead_letter_url)}" if self.dead_letter_url else "")
        if self.dead_letter_url:
            self.runtime.client("sqs").send_message(QueueUrl=self.dead_letter_url, MessageBody=json.dumps({
                "requestContext": {"requestId": str(uuid.uuid4()), "condition": "RetryAttemptsExhausted",
                                   "approximateInvokeCount": attempt, "functionName": self.name},
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "version": "1.0",
                "timestamp": _event_time(datetime.now(timezone.utc)),
                "DDBStreamBatchInfo": {
                    "shardId": shard,
                    "startSequenceNumber": skipped[0]["dynamodb"]["SequenceNumber"],
                    "endSequenceNumber": skipped[-1]["dynamodb"]["SequenceNumber"],
                    "batchSize": len(skipped),
                    "streamArn": self.stream_arn,
                },
            }))

    def describe(self) -> str:
        partial = "partial batch failures" if self.reports_failures else "no partial batch failures"
        failure = f", then {_queue_name(self.dead_letter_url)}" if self.dead_letter_url else ""
        return (f"DynamoDB stream of {self.stream_arn.split('/')[1]} (batches of up to {self.batch_size}, {partial}; "
                f"{self.runtime.max_attempts(self)} attempts{failure})")


# -- schedules ---------------------------------------------------------------------------------------


class ScheduleSource(EventSource):
    """``@app.schedule``: fires at the expression's times (UTC). A failing run
    is retried like an asynchronous invocation, then dropped with an error in
    the log (the next run comes anyway)."""

    kind = "schedule"
    config: ScheduledEventConfig

    def setup(self) -> None:
        raw = self.config.schedule_expression
        self.expression = raw if isinstance(raw, str) else raw.to_string()
        try:
            self.schedule = parse_schedule(self.expression, datetime.now(timezone.utc))
        except ValueError as exc:
            raise SourceUnavailable(str(exc)) from exc
        self.rule_arn = (f"arn:aws:events:{self.runtime.region}:{self.runtime.account}:rule/"
                         f"{self.runtime.resource_name(self.name)}")

    def event(self, moment: datetime) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.runtime.account,
            "time": _event_time(moment),
            "region": self.runtime.region,
            "resources": [self.rule_arn],
            "detail": {},
        }

    def run(self, stop: threading.Event) -> None:
        due = self.schedule.next_after(datetime.now(timezone.utc))
        while due is not None and not stop.wait(max(0.0, (due - datetime.now(timezone.utc)).total_seconds())):
            self._fire(due, stop)
            # A run that outlasts the period skips the runs it missed, as in AWS.
            due = self.schedule.next_after(max(due, datetime.now(timezone.utc)))
        if due is None:
            log.info("%s: %s has no more runs", self.name, self.expression)

    def _fire(self, due: datetime, stop: threading.Event) -> None:
        event, limit = self.event(due), self.runtime.max_attempts(self)
        for attempt in range(1, limit + 1):
            try:
                self.runtime.invoke(self.name, event)
                return
            except Exception:
                level = logging.WARNING if attempt < limit else logging.ERROR
                log.log(level, "%s failed on attempt %d of %d for its %s run", self.name, attempt, limit,
                        event["time"], exc_info=True)
            if stop.wait(self.runtime.policy.retry_seconds * attempt):
                return

    def describe(self) -> str:
        return f"schedule {self.expression} (UTC)"


#: Chalice event-source config type -> how it is delivered locally.
SOURCES: dict[type, type[EventSource]] = {
    CloudWatchEventConfig: BusRuleSource,
    ScheduledEventConfig: ScheduleSource,
    SQSEventConfig: SqsQueueSource,
    SNSEventConfig: SnsTopicSource,
    DynamoDBEventConfig: DynamoStreamSource,
}


def _receive_count(message: dict[str, Any]) -> int:
    return int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))


def _queue_name(url: str | None) -> str:
    return (url or "").rstrip("/").rsplit("/", 1)[-1]


def _jsonable(value: Any) -> Any:
    """boto3's parsed values as Lambda's JSON has them (epoch seconds, base64)."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    return value


def _event_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


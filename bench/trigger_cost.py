"""What triggers cost: evaluation time as the trigger set grows, and AWS calls
and DynamoDB write units per message sent.

Evaluation scale: the on-arrival use case for one event, with 10 and with
10,000 triggers that listen for other events, behind the same event-name index
the definitions table provides (a query on its ``by_event`` index returns only
the triggers for that name). The ratio of the two median times is reported.

Per message: whitepaper downloads from distinct people go through the real
handlers (chalice.test.Client against moto with the tables from infra/): the
calls and write units counted are those made while the delivery function runs,
divided by the messages it sent; those of the evaluator, which reads the
events off the stream and queues the decisions, are reported apart
(``evaluation_*``).
"""
from __future__ import annotations

import base64
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 40


class _IndexedTriggers:
    """Triggers by event name, as the definitions table's by_event index holds them."""

    def __init__(self, triggers: list[Any]) -> None:
        self.by_event: dict[str, list[Any]] = {}
        for trigger in triggers:
            self.by_event.setdefault(trigger.event_key, []).append(trigger)

    def triggers_for(self, event_key: str) -> list[Any]:
        return self.by_event.get(event_key, [])


def _evaluation_seconds(other_triggers: int, rounds: int = 2000) -> float:
    from chalicelib.arrivals import on_arrival
    from chalicelib.segment import parse_call
    from chalicelib.triggers import parse_trigger
    from tests.fakes import MemoryDecisionLog, MemoryProfileStore, MemorySendQueue, MemoryTimers

    def trigger(index: int, event: str) -> Any:
        return parse_trigger({
            "id": f"t{index:05d}", "description": "", "category": "marketing", "topic": "offers",
            "when": {"event": event, "match": {"event": {"properties": {"total": [{"numeric": [">", 100]}]}}}},
            "then": [{"update_profile": {"increment": {"score": 1}}}],
        }, templates=None, origin="bench", check_liquid=False)

    triggers = [trigger(i, f"Other Event {i}") for i in range(other_triggers)]
    triggers += [trigger(other_triggers + i, "Order Completed") for i in range(3)]
    source = _IndexedTriggers(triggers)
    event = parse_call("track", {"userId": "ana", "event": "Order Completed", "messageId": "o1",
                                 "properties": {"total": 250}}, datetime.now(timezone.utc), 32768)
    profiles, decisions, queue, timers = MemoryProfileStore(), MemoryDecisionLog(), MemorySendQueue(), MemoryTimers()
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            on_arrival([event], profiles=profiles, triggers=source, decisions=decisions, queue=queue, timers=timers)
        samples.append((time.perf_counter() - start) / rounds)
        decisions.evaluations.clear()
        queue.decisions.clear()
    return statistics.median(samples)


def evaluation_scale() -> dict[str, float]:
    small, large = _evaluation_seconds(10), _evaluation_seconds(10_000)
    return {"small_us": small * 1e6, "large_us": large * 1e6, "ratio": large / small}


def per_message() -> dict[str, float]:
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    import yaml
    from chalice.test import Client
    from moto import mock_aws

    from bench.aws_calls import counting
    from chalicelib import auth, dependencies
    from chalicelib.aws_clients import forget_clients
    from chalicelib.dynamodb import DynamoKeyStore
    from chalicelib.settings import get_settings
    from infra import template
    from infra.local_stack import stand_in_parameters, verify_senders
    from tests.integration.pipeline import Pipeline

    with mock_aws():
        cloudformation = boto3.client("cloudformation")
        # Marketing email carries unsubscribe links: the stack needs its public URL and signing keys
        # (fixed stand-ins, not read from the environment an earlier measurement filled with its own stack's).
        template.create_stack(cloudformation, "nudge-bench", stand_in_parameters("https://nudge.example.com"))
        env = template.stack_environment(cloudformation, "nudge-bench")
        os.environ.update(env)
        dependencies.override()
        forget_clients()
        auth.forget_cached_keys()
        verify_senders(("example.com",), get_settings().ses_configuration_set)
        keys = DynamoKeyStore(get_settings())
        keys.add("bench-key", auth.WRITE, "bench")
        keys.add("bench-admin", auth.ADMIN, "bench")
        write = {"Authorization": "Basic " + base64.b64encode(b"bench-key:").decode(),
                 "Content-Type": "application/json"}
        admin = {"Authorization": "Bearer bench-admin", "Content-Type": "application/json"}
        from app import app

        with Client(app, stage_name="local") as client:
            for kind in ("templates", "triggers"):
                doc = yaml.safe_load((ROOT / kind / "whitepaper-thank-you.yaml").read_text())
                client.http.put(f"/v1/{kind}/{doc['id']}", headers=admin, body=json.dumps(doc))
            for index in range(MESSAGES):
                person = f"reader-{index}"
                client.http.post("/v1/identify", headers=write, body=json.dumps(
                    {"userId": person, "traits": {"email": f"{person}@example.org", "firstName": "R"}}))
                client.http.post("/v1/track", headers=write, body=json.dumps(
                    {"userId": person, "event": "Whitepaper Downloaded",
                     "properties": {"asset": "guide.pdf", "title": "Guide"}}))
            pipeline = Pipeline(client, env)
            with counting() as evaluation:
                while pipeline.arrivals():
                    pass
            with counting() as delivery:
                while pipeline.sends():
                    pass
        dependencies.override()
    channel_calls = sum(n for call, n in delivery.calls.items() if call.startswith(("sesv2:", "sns:")))
    handler_calls = sum(n for call, n in delivery.calls.items() if not call.startswith("sqs:"))
    return {
        "calls": handler_calls / MESSAGES,
        "channel_calls": channel_calls / MESSAGES,
        "wcu": delivery.write_units / MESSAGES,
        "rru": delivery.read_units / MESSAGES,
        "emails": sum(n for call, n in delivery.calls.items() if call.startswith("sesv2:Send")) / MESSAGES,
        # The evaluator's part: the stream's events (an identify and a download per message) evaluated.
        "evaluation_calls": sum(n for call, n in evaluation.calls.items()
                                if not call.startswith(("sqs:", "dynamodbstreams:"))) / MESSAGES,
        "evaluation_queue_calls": sum(n for call, n in evaluation.calls.items() if call.startswith("sqs:")) / MESSAGES,
        "evaluation_wcu": evaluation.write_units / MESSAGES,
        "evaluation_rru": evaluation.read_units / MESSAGES,
    }

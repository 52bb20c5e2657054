"""AWS calls and DynamoDB write units per ingested event, single and batched.

Runs the real handlers through chalice.test.Client against moto, with the
tables created from infra/template.yaml, and counts what the ingest path asks
of AWS. Payloads are shaped like a Segment library's.
"""
from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any

EVENTS = 100


def _event(user_id: str, index: int) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat()
    return {
        "type": "track", "userId": user_id, "event": "Product Viewed", "messageId": str(uuid.uuid4()),
        "timestamp": now, "sentAt": now,
        "properties": {"sku": f"SKU-{index:05d}", "price": 19.99, "category": "shoes"},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "timezone": "Europe/Paris",
                    "ip": "203.0.113.7", "userAgent": "Mozilla/5.0"},
    }


def measure() -> dict[str, float]:
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from chalice.test import Client
    from moto import mock_aws

    from bench.aws_calls import counting
    from chalicelib import auth, dependencies
    from chalicelib.dynamodb import DynamoKeyStore
    from chalicelib.settings import get_settings
    from infra import template
    from infra.local_stack import stand_in_parameters

    with mock_aws():
        cloudformation = boto3.client("cloudformation")
        template.create_stack(cloudformation, "nudge-bench", stand_in_parameters("https://nudge.example.com"))
        os.environ.update(template.stack_environment(cloudformation, "nudge-bench"))
        dependencies.override()
        auth.forget_cached_keys()
        DynamoKeyStore(get_settings()).add("bench-key", auth.WRITE, "bench")
        headers = {"Authorization": "Basic " + base64.b64encode(b"bench-key:").decode(),
                   "Content-Type": "application/json"}
        from app import app

        with Client(app, stage_name="local") as client:
            client.http.post("/v1/track", headers=headers, body=json.dumps(_event("warm-up", 0)))
            with counting() as single:
                for index in range(EVENTS):
                    response = client.http.post("/v1/track", headers=headers, body=json.dumps(_event("one", index)))
                    assert response.status_code == 200, response.body
            with counting() as batched:
                batch = {"batch": [_event("many", index) for index in range(EVENTS)]}
                response = client.http.post("/v1/batch", headers=headers, body=json.dumps(batch))
                assert response.status_code == 200, response.body
        dependencies.override()
    return {
        "single_calls": single.total_calls / EVENTS,
        "single_wcu": single.write_units / EVENTS,
        "batch_calls": batched.total_calls / EVENTS,
        "batch_wcu": batched.write_units / EVENTS,
        "single_rru": single.read_units / EVENTS,
        "batch_rru": batched.read_units / EVENTS,
        "events_per_batch": EVENTS,
    }

"""Handlers through chalice.test.Client against tables moto creates from infra/template.yaml."""
from __future__ import annotations

import base64
import json
import os
from typing import Any, Iterator

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import auth, clock, dependencies
from chalicelib.dynamodb import DynamoKeyStore
from chalicelib.settings import get_settings
from chalicelib.aws_clients import forget_clients
from infra import template
from infra.local_stack import local_parameters, verify_senders

WRITE_KEY = "test-write-key"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with mock_aws():
        cloudformation = boto3.client("cloudformation")
        template.create_stack(cloudformation, "nudge-test", local_parameters("https://nudge.example.com/api"))
        env = template.stack_environment(cloudformation, "nudge-test")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        dependencies.override()
        auth.forget_cached_keys()
        forget_clients()
        verify_senders(("example.com",), get_settings().ses_configuration_set)
        keys = DynamoKeyStore(get_settings())
        keys.add(WRITE_KEY, auth.WRITE, "tests")
        keys.add(ADMIN_TOKEN, auth.ADMIN, "tests")
        yield env
        dependencies.override()
        auth.forget_cached_keys()
        clock.reset()


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    from app import app

    with Client(app, stage_name="local") as test_client:
        yield test_client


def write_headers(key: str = WRITE_KEY) -> dict[str, str]:
    token = base64.b64encode(f"{key}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(client: Client, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.http.post(path, headers=headers if headers is not None else write_headers(), body=raw)


def get_json(client: Client, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = client.http.get(path, headers=headers if headers is not None else admin_headers())
    return response.status_code, json.loads(response.body)


def opt_in(client: Client, user_id: str, key: str) -> None:
    """The person consents to a subscription topic (``sms:offers``) through the admin API."""
    response = client.http.put(f"/v1/profiles/{user_id}/subscriptions",
                               headers={**admin_headers(), "Content-Type": "application/json"},
                               body=json.dumps({"topics": {key: True}, "source": "api"}))
    assert response.status_code == 200, response.body

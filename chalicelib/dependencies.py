"""Where the storage adapters are made: once per process and per settings.

Handlers ask here instead of building adapters themselves, so there is one way
to reach DynamoDB and tests can swap in other implementations with ``override``.
Nothing is created at import time.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from chalicelib.ports import Channels, DecisionLog, EventLog, KeyStore, Ledger, ProfileStore, SendQueue
from chalicelib.settings import Settings, get_settings

_overrides: dict[str, Any] = {}


@lru_cache(maxsize=4)
def _adapters(settings: Settings) -> dict[str, Any]:
    from chalicelib import dynamodb  # deferred: keeps PynamoDB off the import path of `app`

    from chalicelib.channels import AwsChannels
    from chalicelib.send_queue import SqsSendQueue

    return {
        "events": dynamodb.DynamoEventLog(settings),
        "profiles": dynamodb.DynamoProfileStore(settings),
        "keys": dynamodb.DynamoKeyStore(settings),
        "ledger": dynamodb.DynamoLedger(settings),
        "decisions": dynamodb.DynamoDecisionLog(settings),
        "send_queue": SqsSendQueue(settings),
        "channels": AwsChannels(settings),
    }


def _get(name: str) -> Any:
    if name in _overrides:
        return _overrides[name]
    return _adapters(get_settings())[name]


def event_log() -> EventLog:
    return _get("events")


def profile_store() -> ProfileStore:
    return _get("profiles")


def key_store() -> KeyStore:
    return _get("keys")


def ledger() -> Ledger:
    return _get("ledger")


def decision_log() -> DecisionLog:
    return _get("decisions")


def send_queue() -> SendQueue:
    return _get("send_queue")


def channels() -> Channels:
    return _get("channels")


def override(**adapters: Any) -> None:
    """Replace adapters (tests); ``override()`` with no arguments restores them."""
    _overrides.clear()
    _overrides.update(adapters)
    _adapters.cache_clear()

"""Where the adapters are made: each on first use, once per process and settings.

Handlers ask here instead of building adapters themselves, so there is one way
to reach AWS, a handler only pays for the adapters it uses, and tests can swap
in other implementations with ``override``. Nothing is created at import time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from chalicelib.ports import (
    Channels, ConsentStore, DecisionLog, EventLog, KeyStore, Ledger, ProfileStore, SendQueue,
    TimerStore,
)
from chalicelib.settings import Settings, get_settings

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.definitions import DynamoDefinitions

_overrides: dict[str, Any] = {}
_made: dict[tuple[str, Settings], Any] = {}


def _dynamodb(name: str) -> Callable[[Settings], Any]:
    def make(settings: Settings) -> Any:
        from chalicelib import dynamodb  # deferred: keeps PynamoDB off the import path of `app`

        return getattr(dynamodb, name)(settings)

    return make


def _send_queue(settings: Settings) -> Any:
    from chalicelib.send_queue import SqsSendQueue

    return SqsSendQueue(settings)


def _definitions(settings: Settings) -> Any:
    from chalicelib.definitions import DynamoDefinitions

    return DynamoDefinitions(settings)


def _consent(settings: Settings) -> Any:
    from chalicelib.consent_store import DynamoConsentStore

    return DynamoConsentStore(settings)


def _feedback(settings: Settings) -> Any:
    from chalicelib.feedback_store import DynamoFeedbackStore

    return DynamoFeedbackStore(settings)


def _channels(settings: Settings) -> Any:
    from chalicelib.channels import AwsChannels

    return AwsChannels(settings)


_FACTORIES: dict[str, Callable[[Settings], Any]] = {
    "events": _dynamodb("DynamoEventLog"),
    "profiles": _dynamodb("DynamoProfileStore"),
    "keys": _dynamodb("DynamoKeyStore"),
    "ledger": _dynamodb("DynamoLedger"),
    "decisions": _dynamodb("DynamoDecisionLog"),
    "timers": _dynamodb("DynamoTimerStore"),
    "broadcast_runs": _dynamodb("DynamoBroadcastRuns"),
    "send_queue": _send_queue,
    "channels": _channels,
    "consent": _consent,
    "feedback": _feedback,
    "definitions": _definitions,
}


def _get(name: str) -> Any:
    if name in _overrides:
        return _overrides[name]
    settings = get_settings()
    key = (name, settings)
    if key not in _made:
        _made[key] = _FACTORIES[name](settings)
    return _made[key]


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


def timer_store() -> TimerStore:
    return _get("timers")


def consent_store() -> ConsentStore:
    return _get("consent")


def feedback_store() -> Any:
    """Feedback counts and the reputation guard's state (chalicelib.feedback.FeedbackStore)."""
    return _get("feedback")


def broadcast_runs() -> Any:
    """Broadcast runs and their counts (chalicelib.broadcasts.RunLog)."""
    return _get("broadcast_runs")


def definitions() -> DynamoDefinitions:
    """Triggers and templates: a TriggerSource and a TemplateSource."""
    return _get("definitions")


def override(**adapters: Any) -> None:
    """Replace adapters (tests); ``override()`` with no arguments restores them."""
    _overrides.clear()
    _overrides.update(adapters)
    _made.clear()

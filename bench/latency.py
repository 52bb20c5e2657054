"""Event-to-send latency on a running local stack: from the answer to an
``Order Completed`` to its confirmation email recorded as sent.

``run(stack, samples)`` applies the order-confirmation example (the template
and the trigger from ``templates/`` and ``triggers/``, through the admin API),
then, one buyer at a time: identifies a new person with an email address,
tracks their ``Order Completed``, notes when that POST is answered, and reads
the person's message history (``GET /v1/profiles/{userId}/messages``) every
``POLL_SECONDS`` until the order confirmation shows ``sent`` (or ``delivered``, once the SES
feedback came back). The sample is the time the delivery function recorded it
sent (its ``updatedAt``, taken once SES has answered; feedback adds to the
record without changing it) minus the time of the answer: both are this
machine's clock, so how often the history is read changes neither the figure
nor, much, the load on the stack. A send can be recorded before the answer
reaches the client, which makes a sample of zero or less. One order is
in flight at a time, so each sample is the path of one event through an idle
engine: the request logs the event, the events table's stream hands it to
the evaluator, the decision goes through the send queue to the delivery
function, which calls SES and records the outcome.

The figures are the local stack's, not Lambda's: its event-source runtime
polls the stream every 0.25 s when it is idle and long-polls the queues
(infra/event_sources.py), and every function runs in one Python process next
to the emulator. They show where the time goes on a laptop; in AWS, Lambda's
stream and queue pollers and cold starts set it. The stack's clock must not
have been moved (``POST /v1/clock``): the recorded times are the engine's.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import requests
import yaml

if TYPE_CHECKING:
    from tests.e2e.conftest import Stack

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "order-confirmation"
POLL_SECONDS = 0.1
#: Past this, a sample counts as not sent.
GIVE_UP_SECONDS = 30.0
SENT = frozenset({"sent", "delivered"})
NOT_SENT = frozenset({"failed", "skipped", "unknown", "bounced", "complained"})


@dataclass(frozen=True)
class LatencyResult:
    #: Milliseconds from the POST's answer to the message recorded sent, in order of sending.
    samples_ms: tuple[float, ...]
    #: Orders whose confirmation was not sent (another status, or nothing in time).
    not_sent: int

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p95_ms(self) -> float:
        return percentile(self.samples_ms, 95)


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value with at least pct % of values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def apply_example(stack: Stack, name: str = EXAMPLE) -> None:
    """PUT the example's template and trigger, as ``nudge apply`` would."""
    headers = {**stack.admin_auth(), "Content-Type": "application/json"}
    for kind in ("templates", "triggers"):
        doc = yaml.safe_load((ROOT / kind / f"{name}.yaml").read_text())
        answer = requests.put(f"{stack.url}/v1/{kind}/{doc['id']}", headers=headers, data=json.dumps(doc), timeout=30)
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"PUT /v1/{kind}/{doc['id']}: {answer.status_code} {answer.text}")


def _confirmation(session: requests.Session, stack: Stack, user_id: str) -> dict[str, Any] | None:
    answer = session.get(f"{stack.url}/v1/profiles/{user_id}/messages", timeout=30)
    if answer.status_code != 200:
        return None
    return next((m for m in answer.json()["messages"] if m["trigger"] == EXAMPLE), None)


def one_order(stack: Stack, write: requests.Session, admin: requests.Session, run_id: str, index: int) -> float | None:
    """Seconds from the order's answer to its confirmation recorded sent, or None."""
    user_id = f"{run_id}-buyer-{index}"
    identify = write.post(f"{stack.url}/v1/identify", timeout=30, json={
        "userId": user_id, "messageId": str(uuid.uuid4()),
        "traits": {"email": f"{user_id}@example.org", "firstName": "Bench"}})
    identify.raise_for_status()
    order = {"userId": user_id, "event": "Order Completed", "messageId": str(uuid.uuid4()),
             "properties": {"order_id": f"B-{index:05d}", "total": 42.5, "currency": "EUR",
                            "products": [{"sku": "SKU-1", "name": "Socks", "quantity": 2, "price": 21.25}]}}
    answer = write.post(f"{stack.url}/v1/track", json=order, timeout=30)
    answered = time.time()
    answer.raise_for_status()
    while time.time() - answered < GIVE_UP_SECONDS:
        message = _confirmation(admin, stack, user_id)
        status = message["status"] if message is not None else None
        if status in SENT:
            return _epoch(message["updatedAt"]) - answered if message.get("updatedAt") else time.time() - answered
        if status in NOT_SENT:
            return None
        time.sleep(POLL_SECONDS)
    return None


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _require_unmoved_clock(stack: Stack) -> None:
    answer = requests.get(f"{stack.url}/v1/clock", headers=stack.admin_auth(), timeout=30)
    answer.raise_for_status()
    if answer.json().get("offset") not in ("0s", None):
        raise RuntimeError(f"the stack's clock was moved ({answer.json()['offset']}): its records are not wall time")


def run(stack: Stack, samples: int = 40, warm_up: int = 2) -> LatencyResult:
    """Apply the example, send ``warm_up`` orders unmeasured, then ``samples`` measured ones."""
    _require_unmoved_clock(stack)
    apply_example(stack)
    run_id = f"latency-{uuid.uuid4().hex[:8]}"
    measured: list[float] = []
    not_sent = 0
    with requests.Session() as write, requests.Session() as admin:
        write.headers.update(stack.write_auth())
        admin.headers.update(stack.admin_auth())
        for index in range(warm_up + samples):
            seconds = one_order(stack, write, admin, run_id, index)
            if index < warm_up:
                continue
            if seconds is None:
                not_sent += 1
            else:
                measured.append(seconds * 1000)
    return LatencyResult(samples_ms=tuple(measured), not_sent=not_sent)

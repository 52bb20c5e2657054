"""Ingestion under bounded concurrent load on a running local stack, and the
proof that nothing accepted was lost.

``run(stack, plan)`` starts ``plan.clients`` clients at once, each in its own
thread with its own HTTP session. Each sends ``plan.events_per_client`` track
events through ``POST /v1/batch`` in batches of ``plan.batch_size``, shaped
like a Segment library's (``messageId``, ``timestamp``, library ``context``,
the batch's ``sentAt``), spread round-robin over ``plan.people_per_client``
people of its own. A client sends its next batch when the previous one is
answered, so at most ``plan.clients`` requests are in flight: the load is
bounded by the clients, not by the server. Nothing is retried: any answer
but ``200``, and any request that fails to get an answer, is an error.

The events carry a name no trigger listens for (``plan.event``), so on a
stack without the example triggers (``NUDGE_LOCAL_EXAMPLES=0``) the run
measures ingestion: logging each event and folding it into its person's
profile, with the stream's evaluator finding nothing to do.

Then every person's history is read through the admin API
(``GET /v1/profiles/{userId}/events``, following ``next`` until it is null)
and every accepted ``messageId`` is looked for in it: ``lost`` counts those
not found, ``extra`` those stored more than once. Each person's profile
(``GET /v1/profiles/{userId}``) must count the event as many times as it was
accepted for them; ``miscounted`` is the number of people it does not. The
throughput reported is
accepted events over the time from the first request to the last answer; it
is this machine's and the local stack's (one process serving the API, the
emulator and the event sources), a reported figure rather than a target.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from tests.e2e.conftest import Stack

#: An event name no trigger (example or otherwise) listens for.
LOAD_EVENT = "Load Test Product Viewed"
#: Page size of the history reads that check for losses (the API's maximum).
HISTORY_PAGE = 500
REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class LoadPlan:
    clients: int = 8
    events_per_client: int = 2000
    batch_size: int = 100
    people_per_client: int = 4
    event: str = LOAD_EVENT

    @property
    def events(self) -> int:
        return self.clients * self.events_per_client


@dataclass(frozen=True)
class LoadResult:
    plan: LoadPlan
    #: Events sent, and accepted (in batches answered 200).
    sent: int
    accepted: int
    #: Requests answered with anything but 200, or not answered at all.
    errors: int
    #: Accepted events missing from their person's history, and events stored twice.
    lost: int
    extra: int
    #: People whose profile counts the event a different number of times than accepted.
    miscounted: int
    #: From the first request to the last answer.
    elapsed_s: float
    #: What the failed requests got, e.g. ``{"503": 2, "ReadTimeout": 1}``.
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class _ClientOutcome:
    accepted: dict[str, list[str]] = field(default_factory=dict)  # userId -> messageIds
    sent: int = 0
    errors: Counter = field(default_factory=Counter)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def segment_event(user_id: str, event: str, index: int) -> dict[str, Any]:
    """One track call as analytics-python puts it in a batch."""
    return {
        "type": "track", "userId": user_id, "event": event, "messageId": str(uuid.uuid4()),
        "timestamp": now_iso(),
        "properties": {"sku": f"SKU-{index:05d}", "price": 19.99, "category": "shoes", "position": index},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"},
                    "ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "timezone": "Europe/Paris"},
        "integrations": {},
    }


def people(run_id: str, plan: LoadPlan, client: int) -> list[str]:
    return [f"{run_id}-c{client}-p{person}" for person in range(plan.people_per_client)]


def _send(stack: Stack, plan: LoadPlan, run_id: str, client: int, start: threading.Barrier) -> _ClientOutcome:
    outcome = _ClientOutcome()
    users = people(run_id, plan, client)
    with requests.Session() as session:
        session.headers.update(stack.write_auth())
        start.wait(timeout=60)
        for first in range(0, plan.events_per_client, plan.batch_size):
            batch = [segment_event(users[index % len(users)], plan.event, index)
                     for index in range(first, min(first + plan.batch_size, plan.events_per_client))]
            sent_at = now_iso()
            outcome.sent += len(batch)
            try:
                answer = session.post(stack.url + "/v1/batch", json={"batch": batch, "sentAt": sent_at},
                                      timeout=REQUEST_TIMEOUT)
            except requests.RequestException as exc:
                outcome.errors[type(exc).__name__] += 1
                continue
            if answer.status_code != 200:
                outcome.errors[str(answer.status_code)] += 1
                continue
            for event in batch:
                outcome.accepted.setdefault(event["userId"], []).append(event["messageId"])
    return outcome


def stored_message_ids(stack: Stack, user_id: str) -> Counter:
    """How many times each messageId is in the person's history."""
    found: Counter = Counter()
    cursor = None
    with requests.Session() as session:
        session.headers.update(stack.admin_auth())
        while True:
            params = {"limit": HISTORY_PAGE, **({"cursor": cursor} if cursor else {})}
            answer = session.get(f"{stack.url}/v1/profiles/{user_id}/events", params=params, timeout=REQUEST_TIMEOUT)
            if answer.status_code == 404:
                return found
            answer.raise_for_status()
            body = answer.json()
            found.update(event["messageId"] for event in body["events"])
            cursor = body["next"]
            if not cursor:
                return found


def profile_count(stack: Stack, user_id: str, event: str) -> int:
    """How many times the person's profile counts ``event`` (0 for a person not seen)."""
    answer = requests.get(f"{stack.url}/v1/profiles/{user_id}", headers=stack.admin_auth(), timeout=REQUEST_TIMEOUT)
    if answer.status_code == 404:
        return 0
    answer.raise_for_status()
    return answer.json()["events"].get(event, {}).get("count", 0)


def run(stack: Stack, plan: LoadPlan = LoadPlan()) -> LoadResult:
    """Send the plan's load, then check every accepted event is stored once."""
    run_id = f"load-{uuid.uuid4().hex[:8]}"
    start = threading.Barrier(plan.clients + 1)
    with ThreadPoolExecutor(max_workers=plan.clients) as pool:
        futures = [pool.submit(_send, stack, plan, run_id, client, start) for client in range(plan.clients)]
        start.wait(timeout=60)
        began = time.perf_counter()
        outcomes = [future.result() for future in futures]
        elapsed = time.perf_counter() - began
    accepted = {user: ids for outcome in outcomes for user, ids in outcome.accepted.items()}
    lost = extra = miscounted = 0
    for user, ids in accepted.items():
        stored = stored_message_ids(stack, user)
        lost += sum(1 for message_id in ids if not stored[message_id])
        extra += sum(count - 1 for count in stored.values() if count > 1)
        miscounted += profile_count(stack, user, plan.event) != len(ids)
    errors = sum((outcome.errors for outcome in outcomes), Counter())
    return LoadResult(
        plan=plan,
        sent=sum(outcome.sent for outcome in outcomes),
        accepted=sum(len(ids) for ids in accepted.values()),
        errors=sum(errors.values()),
        lost=lost,
        extra=extra,
        miscounted=miscounted,
        elapsed_s=elapsed,
        error_kinds=dict(errors),
    )

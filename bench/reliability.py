"""`make reliability`: no accepted event lost, no message sent twice, measured
under injected faults and at-least-once delivery.

A scenario of people and their events (identify, sign-ups, whitepaper
downloads, support requests, orders, carts left and finished, pricing page
views, upgrades, plain browsing) runs through the real handlers, in process:
moto's ``mock_aws``, ``chalice.test.Client`` for the HTTP API and the
handlers, and tests/integration/pipeline.py's AtLeastOncePipeline for the
events table's stream, the send queue and the timer sweep. Time moves with the
engine's clock (``chalicelib.clock.advance``), a week in all, so waits (the
abandoned cart's hour) and the welcome series' steps (days 0, 2 and 7) fall
due. Six shipped triggers are applied from triggers/ and templates/:
order-confirmation, support-acknowledgement, whitepaper-thank-you,
abandoned-cart (wait 1h, unless Order Completed), welcome-series (three steps,
exit on Upgraded, re-entry once, step 3 only for plans other than pro) and
pricing-page-alert (an SNS alert and a lead-score increment).

Faults (infra/faults.py): a share of the handlers' AWS calls fail (throttling
or 5xx, as the calling code sees them after the SDK's retries), a share of
accepted sends are followed by the death of the delivery process, and a share
of stream records and queue messages are delivered two or three times, in
shuffled batches. The client retries a call answered 5xx or 429 with the same
messageId, ten times at most, as the Segment libraries do; an event is
*accepted* once a call carrying it is answered 200.

What is expected is computed from the events alone (:func:`expected`), by the
triggers' rules; what happened is read from moto's own record of sent email
and SNS notifications and from the send ledger, never from the API under test.
The marketing fatigue budget is turned off for the run (``email=off``): it
holds messages by design, which would make the expected set depend on timing.

The event sources behave as the template configures them: a stream batch is
retried from its first failed record, ten times at the same record, and the
send queue parks a decision after its eighth receive. What they park is
handed back at the end, as an operator replays a dead-letter queue, and
counted in the table.

Runs are reproducible: the scenario, the faults and the redelivery are drawn
from random.Random generators seeded from ``--seed``; the engine's clock
starts at a fixed time (BASE), its caches are kept for the whole run, and the
events log's puts run in order in the handler's thread (:class:`InlineExecutor`),
so every run with the same arguments makes the same calls and meets the same
faults (``make reliability`` also fixes PYTHONHASHSEED). ``--workers`` splits
the people into groups run in parallel processes; the figures depend on it.

Not modelled: a failed call that took effect anyway (a 5xx answered after a
write was applied); faults are raised before the request leaves.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import random
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email.parser import BytesHeaderParser, HeaderParser
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"

TRIGGERS = ("order-confirmation", "support-acknowledgement", "whitepaper-thank-you", "abandoned-cart",
            "welcome-series", "pricing-page-alert")
TEMPLATES = ("order-confirmation", "support-acknowledgement", "whitepaper-thank-you", "abandoned-cart",
             "welcome-1", "welcome-2", "welcome-3", "pricing-page-alert")
WRITE_KEY = "reliability-write-key"
ADMIN_TOKEN = "reliability-admin-token"
#: Retries of a call answered 5xx or 429 (the Segment libraries' default).
CLIENT_RETRIES = 10
#: Requests sent between two runs of the pipeline.
CHUNK = 250
#: Stream records per evaluator invocation (a batch fails from its first failed record on).
STREAM_BATCH = 3
#: Environment of the run: caches that outlive it (so the calls made do not
#: depend on the machine's speed) and no fatigue budget (see the docstring).
RUN_ENVIRONMENT = {
    "NUDGE_FATIGUE_BUDGET": "email=off,sms=off",
    "NUDGE_KEY_CACHE_SECONDS": "86400",
    "NUDGE_DEFINITIONS_CACHE_SECONDS": "86400",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}
#: Where the engine's clock starts: a fixed Monday morning, so hours and days
#: fall the same way on every run (the clock only moves forward from the real time).
BASE = datetime(2100, 1, 4, 10, 0, tzinfo=timezone.utc)


# -- the scenario -------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One event as a client sends it."""

    user: str
    call: str  # track, identify, page
    body: dict[str, Any]
    at: datetime

    @property
    def message_id(self) -> str:
        return self.body["messageId"]

    @property
    def name(self) -> str:
        return self.body.get("event") or self.call


@dataclass
class Person:
    user: str
    email: str
    plan: str
    events: list[Sent] = field(default_factory=list)


@dataclass
class Phase:
    """Events sent once the engine's clock reads ``at``, then a sweep if asked."""

    name: str
    at: timedelta
    sweep: bool = False
    events: list[Sent] = field(default_factory=list)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def scenario(people: range, seed: int | str, base: datetime) -> tuple[list[Person], list[Phase]]:
    """People (by index: each drawn from its own generator, so a person is the
    same whichever part of the run they fall in) and the phases of their week
    (times relative to ``base``).

    Phase 1 (base): everyone identifies (email, first name, plan: 20 % pro),
    then signs up, downloads whitepapers (one in ten without an asset), asks
    support, orders, fills carts (1-3 items, 45-40 minutes before), views pages
    (four in ten under /pricing) and browses. Phase 2 (+10 min): a few sign up
    again, a quarter of the carts get one more item (the hour restarts), four
    in ten cart owners order. Sweeps at +40 min (first reminders) and +2 h
    (restarted carts). Upgrades on day 1 (before welcome 2) and day 3 (before
    welcome 3); sweeps after day 2 and day 7.
    """
    phases = {name: Phase(name, at, sweep) for name, at, sweep in (
        ("signups and shopping", timedelta(0), False),
        ("orders and second thoughts", timedelta(minutes=10), False),
        ("first cart reminders", timedelta(minutes=40), True),
        ("restarted cart reminders", timedelta(hours=2), True),
        ("day 1 upgrades", timedelta(days=1), False),
        ("welcome 2", timedelta(days=2, hours=1), True),
        ("day 3 upgrades", timedelta(days=3), False),
        ("welcome 3", timedelta(days=7, hours=1), True),
    )}
    first, second, day1, day3 = (phases[n] for n in ("signups and shopping", "orders and second thoughts",
                                                    "day 1 upgrades", "day 3 upgrades"))
    persons: list[Person] = []

    def event(person: Person, phase: Phase, call: str, at: datetime, name: str | None = None,
              properties: dict[str, Any] | None = None, traits: dict[str, Any] | None = None) -> Sent:
        body: dict[str, Any] = {"userId": person.user, "messageId": f"{person.user}-{len(person.events)}",
                                "timestamp": iso(at)}
        if call == "track":
            body["event"] = name
        if call == "page":
            body["name"] = name
        if properties is not None:
            body["properties"] = properties
        if traits is not None:
            body["traits"] = traits
        sent = Sent(person.user, call, body, at)
        person.events.append(sent)
        phase.events.append(sent)
        return sent

    for index in people:
        rng = random.Random(f"{seed}:person:{index}")
        user = f"p{index:05d}"
        person = Person(user, f"{user}@example.org", "pro" if rng.random() < 0.2 else "free")
        persons.append(person)
        minute = lambda m, s=0: base + timedelta(minutes=m, seconds=s + rng.random())  # noqa: E731
        event(person, first, "identify", minute(-59), traits={"email": person.email, "firstName": f"N{index}",
                                                             "plan": person.plan})
        if rng.random() < 0.35:
            event(person, first, "track", minute(-50), "Signed Up", {"source": "web"})
            if rng.random() < 0.05:
                event(person, second, "track", minute(5), "Signed Up", {"source": "app"})
            draw = rng.random()
            if draw < 0.15:
                event(person, day1, "track", base + timedelta(days=1, minutes=-10), "Upgraded", {"plan": "team"})
            elif draw < 0.30:
                event(person, day3, "track", base + timedelta(days=3, minutes=-10), "Upgraded", {"plan": "team"})
        for n in range(rng.choice((0, 0, 0, 1, 1, 2)) if rng.random() < 0.6 else 0):
            properties = {"title": f"Guide {n}"}
            if rng.random() < 0.9:
                properties["asset"] = f"guide-{n}.pdf"
            event(person, first, "track", minute(-49, n), "Whitepaper Downloaded", properties)
        for n in range(rng.choice((1, 1, 2)) if rng.random() < 0.25 else 0):
            event(person, first, "track", minute(-48, n), "Support Request Submitted",
                  {"ticket_id": f"T-{user}-{n}", "subject": "Help"})
        for n in range(rng.choice((1, 1, 2)) if rng.random() < 0.35 else 0):
            event(person, first, "track", minute(-47, n), "Order Completed",
                  {"order_id": f"O-{user}-{n}", "total": 20 + n, "currency": "EUR",
                   "products": [{"name": "Socks", "price": 20, "quantity": 1}]})
        if rng.random() < 0.4:
            for n in range(rng.randint(1, 3)):
                event(person, first, "track", minute(-45 + n), "Product Added",
                      {"name": f"Item {n}", "price": 10 + n})
            if rng.random() < 0.25:
                event(person, second, "track", minute(5, 30), "Product Added", {"name": "Extra", "price": 5})
            if rng.random() < 0.4:
                event(person, second, "track", minute(2), "Order Completed",
                      {"order_id": f"C-{user}", "total": 30, "currency": "EUR", "products": []})
        for n in range(rng.randint(1, 3)):
            path = f"/pricing/{user}-{n}" if rng.random() < 0.4 else f"/docs/{n}"
            event(person, first, "page", minute(-44, n), "Page", {"path": path})
        for n in range(rng.randint(2, 6)):
            event(person, first, "track", minute(-43, n), "Product Viewed", {"sku": f"S{n}"})
    ordered = sorted(phases.values(), key=lambda p: p.at)
    rng = random.Random(f"{seed}:order:{people.start}")
    for phase in ordered:  # identifies first, then everything else of the phase, people interleaved
        identifies = [e for e in phase.events if e.call == "identify"]
        rest = [e for e in phase.events if e.call != "identify"]
        rng.shuffle(rest)
        phase.events = identifies + rest
    return persons, ordered


# -- what must happen ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """A message the triggers' rules call for: (profile id, ledger key)."""

    profile: str
    key: str
    channel: str  # email, alert, update_profile


def expected(persons: list[Person], happened: set[str]) -> list[Expected]:
    """The messages the six triggers owe, given the events that happened
    (accepted or stored: both are evaluated)."""
    owed: list[Expected] = []
    for person in persons:
        pid = f"user:{person.user}"
        events = [e for e in person.events if e.message_id in happened]
        by_name: dict[str, list[Sent]] = defaultdict(list)
        for e in events:
            by_name[e.name].append(e)
        for e in by_name["Order Completed"]:
            owed.append(Expected(pid, f"order-confirmation#{e.message_id}#0", "email"))
        for e in by_name["Support Request Submitted"]:
            owed.append(Expected(pid, f"support-acknowledgement#{e.message_id}#0", "email"))
        for e in by_name["Whitepaper Downloaded"]:
            if "asset" in e.body.get("properties", {}):
                owed.append(Expected(pid, f"whitepaper-thank-you#{e.message_id}#0", "email"))
        for e in by_name["page"]:
            if e.body["properties"]["path"].startswith("/pricing"):
                owed.append(Expected(pid, f"pricing-page-alert#{e.message_id}#0", "alert"))
                owed.append(Expected(pid, f"pricing-page-alert#{e.message_id}#1", "update_profile"))
        adds = sorted(by_name["Product Added"], key=lambda e: e.at)
        if adds:
            last = adds[-1]
            if not any(order.at > last.at for order in by_name["Order Completed"]):
                owed.append(Expected(pid, f"abandoned-cart#{last.message_id}#0", "email"))
        signups = sorted(by_name["Signed Up"], key=lambda e: e.at)
        if signups:
            entered = signups[0]  # re-entry once: the first sign-up (the second comes ten minutes later)
            upgrades = [u.at for u in by_name["Upgraded"] if u.at > entered.at]
            step2_due = entered.at + timedelta(days=2)
            step3_due = step2_due + timedelta(days=5)
            owed.append(Expected(pid, f"welcome-series#{entered.message_id}#0", "email"))
            if not any(u < step2_due for u in upgrades):
                owed.append(Expected(pid, f"welcome-series#{entered.message_id}#1", "email"))
                if not any(u < step3_due for u in upgrades) and person.plan not in ("pro", "enterprise"):
                    owed.append(Expected(pid, f"welcome-series#{entered.message_id}#2", "email"))
    return owed


# -- running it ---------------------------------------------------------------------------------------


@dataclass
class Client:
    """A Segment-library-like client: retries 5xx and 429 with the same
    messageId, up to CLIENT_RETRIES times; a 200 accepts every event of the call."""

    http: Any
    armed: Any
    attempts: int = 0
    answers: Counter = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)
    gave_up: set[str] = field(default_factory=set)

    def send(self, path: str, body: dict[str, Any], message_ids: list[str]) -> None:
        auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
        raw = json.dumps(body)
        for _ in range(CLIENT_RETRIES + 1):
            self.attempts += 1
            with self.armed():
                response = self.http.post(path, headers=headers, body=raw)
            self.answers[response.status_code] += 1
            if response.status_code == 200:
                self.accepted.update(message_ids)
                return
            if response.status_code < 500 and response.status_code != 429:
                raise AssertionError(f"{path} refused: {response.status_code} {response.body!r}")
        self.gave_up.update(message_ids)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Handler logs and metrics off the terminal, warnings of moto's CloudFormation off."""
    from chalicelib.observability import logger

    level = logger.log_level
    logger.setLevel("ERROR")
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
        logger.setLevel(level)


class InlineExecutor:
    """Stands in for the ThreadPoolExecutor of the events log's batch puts:
    every call runs, in order, in the calling thread (as a pool sends them
    all); ``map`` then answers in order and raises at the first failure."""

    def __init__(self, max_workers: int | None = None) -> None:
        pass

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def map(self, fn: Any, *iterables: Any) -> Iterator[Any]:
        outcomes = []
        for args in zip(*iterables):
            try:
                outcomes.append((True, fn(*args)))
            except Exception as exc:  # noqa: BLE001 - raised below, in order, as a pool's map does
                outcomes.append((False, exc))
        for ok, value in outcomes:
            if not ok:
                raise value
            yield value


@contextlib.contextmanager
def _stack() -> Iterator[dict[str, str]]:
    """The resources of infra/template.yaml in moto, a write key and an admin
    token, verified senders; the SDK pointed at nothing real."""
    import boto3
    from moto import mock_aws

    from chalicelib import auth, clock, dependencies, dynamodb
    from chalicelib.aws_clients import forget_clients
    from chalicelib.settings import get_settings
    from infra import template
    from infra.local_stack import local_parameters, verify_senders

    fake_aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}
    saved_executor = dynamodb.ThreadPoolExecutor
    with _environment(fake_aws), mock_aws():
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            os.environ.pop(name, None)
        cloudformation = boto3.client("cloudformation")
        template.create_stack(cloudformation, "nudge-reliability", local_parameters("https://nudge.example.com/api"))
        env = template.stack_environment(cloudformation, "nudge-reliability")
        with _environment({**env, **RUN_ENVIRONMENT}):
            dependencies.override()
            auth.forget_cached_keys()
            forget_clients()
            # A batch's puts in the handler's own thread, in order: armed like the
            # rest of the request, and the faults drawn follow one order on every run.
            dynamodb.ThreadPoolExecutor = InlineExecutor  # type: ignore[misc, assignment]
            try:
                verify_senders(("example.com",), get_settings().ses_configuration_set)
                keys = dynamodb.DynamoKeyStore(get_settings())
                keys.add(WRITE_KEY, auth.WRITE, "reliability")
                keys.add(ADMIN_TOKEN, auth.ADMIN, "reliability")
                yield env
            finally:
                dynamodb.ThreadPoolExecutor = saved_executor  # type: ignore[misc]
                dependencies.override()
                auth.forget_cached_keys()
                forget_clients()
                clock.reset()


def _apply_definitions(http: Any) -> None:
    import yaml

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    for kind, ids in (("templates", TEMPLATES), ("triggers", TRIGGERS)):
        for definition_id in ids:
            definition = yaml.safe_load((ROOT / kind / f"{definition_id}.yaml").read_text())
            response = http.put(f"/v1/{kind}/{definition_id}", body=json.dumps(definition), headers=headers)
            if response.status_code >= 300:
                raise RuntimeError(f"{kind}/{definition_id} was refused: {response.body!r}")


@dataclass
class Report:
    """The figures of one run (see ``rows``)."""

    people: int
    seed: int
    fault_rate: float
    die_after_send: float
    duplicates: float
    seconds: float = 0.0
    workers: int = 1
    events_sent: int = 0
    events_accepted: int = 0
    events_stored: int = 0
    events_lost: int = 0
    stored_not_accepted: int = 0
    to_evaluate: int = 0
    evaluated: int = 0
    requests: int = 0
    answers: dict[int, int] = field(default_factory=dict)
    calls_armed: int = 0
    faults: int = 0
    faults_by_code: dict[str, int] = field(default_factory=dict)
    stream_deliveries: int = 0
    queue_deliveries: int = 0
    extra_deliveries: int = 0
    handler_errors: int = 0
    stream_parked: int = 0
    send_parked: int = 0
    messages_expected: int = 0
    expected_by_channel: dict[str, int] = field(default_factory=dict)
    sent_moto: int = 0
    sent_ledger: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    lost_keys: list[str] = field(default_factory=list)
    unknown: int = 0
    process_deaths: int = 0
    unexpected: int = 0
    unexpected_keys: list[str] = field(default_factory=list)
    sent_not_recorded: int = 0
    updates_expected: int = 0
    updates_applied: int = 0
    lead_scores_wrong: int = 0

    @property
    def ok(self) -> bool:
        return not (self.events_lost or self.lost or self.duplicated or self.unexpected or self.sent_not_recorded
                    or self.lead_scores_wrong or self.evaluated < self.to_evaluate)


def run(people: int = 1100, seed: int = 7, fault_rate: float = 0.1, die_after_send: float = 0.01,
        duplicates: float = 0.3, workers: int = 1) -> Report:
    """Run the scenario once and measure it (see the module docstring).

    With ``workers`` > 1 the people are split into that many groups, each run
    in its own process against its own emulator (the groups never meet: no
    event names another group's person), and the figures are added up. Group
    ``k`` draws its faults from the seed ``"<seed>/<k>"``, so the figures
    depend on the number of workers as well as on the seed."""
    began = time.monotonic()
    everyone = range(people)
    if workers <= 1:
        report = _run_part(everyone, seed, seed, fault_rate, die_after_send, duplicates)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        size = -(-people // workers)
        parts = [everyone[start:start + size] for start in range(0, people, size)]
        with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_part, part, seed, f"{seed}/{k}", fault_rate, die_after_send, duplicates)
                       for k, part in enumerate(parts)]
            report = _merged([future.result() for future in futures])
    report.workers = max(1, workers)
    report.seconds = time.monotonic() - began
    return report


def _merged(reports: list[Report]) -> Report:
    total = Report(0, reports[0].seed, reports[0].fault_rate, reports[0].die_after_send, reports[0].duplicates)
    for part in reports:
        for name, value in vars(part).items():
            if name in ("seed", "fault_rate", "die_after_send", "duplicates", "seconds", "workers"):
                continue
            mine = getattr(total, name)
            if isinstance(value, dict):
                setattr(total, name, dict(sorted((Counter(mine) + Counter(value)).items())))
            else:
                setattr(total, name, mine + value)
    return total


def _run_part(people: range, seed: int, fault_seed: int | str, fault_rate: float, die_after_send: float,
              duplicates: float) -> Report:
    """One group of people, in this process, against its own emulator."""
    from chalice.test import Client as ChaliceClient

    from chalicelib import clock
    from infra.faults import FaultInjector, FaultPlan, Redelivery
    from tests.integration.pipeline import AtLeastOncePipeline

    report = Report(len(people), seed, fault_rate, die_after_send, duplicates)
    plan = FaultPlan(rate=fault_rate, seed=fault_seed, die_after_send=die_after_send, duplicates=duplicates)
    with _quiet(), _stack() as env:
        from app import app

        with ChaliceClient(app, stage_name="local") as chalice_client:
            _apply_definitions(chalice_client.http)
            base = BASE
            _move_clock_to(base)
            persons, phases = scenario(people, seed, base)
            with FaultInjector(plan) as faults:
                pipeline = AtLeastOncePipeline(chalice_client, env, faults=faults, stream_batch=STREAM_BATCH,
                                               redelivery=Redelivery.from_plan(plan))
                client = Client(chalice_client.http, faults.armed)
                for phase in phases:
                    _move_clock_to(base + phase.at)
                    _send(client, pipeline, phase.events, seed)
                    pipeline.run()
                    if phase.sweep:
                        pipeline.sweep()
                        pipeline.run()
                # The operator's step for what the event sources gave up on: replay and redrive.
                report.stream_parked = pipeline.replay_parked()
                report.send_parked = pipeline.redrive(_dead_letter_url(env))
                pipeline.run()
            report.calls_armed, report.faults = faults.stats.armed_calls, faults.stats.total_faults
            report.faults_by_code = {f"{service} {code}": n for (service, code), n in
                                     sorted(faults.stats.faults.items())}
            report.process_deaths = len(faults.stats.died)
            report.stream_deliveries = pipeline.delivered["on_event_logged"]
            report.queue_deliveries = pipeline.delivered["on_send"]
            report.extra_deliveries = pipeline.redelivery.extra if pipeline.redelivery else 0
            report.handler_errors = pipeline.handler_errors
            _measure(report, persons, client, env)
    return report


def _move_clock_to(moment: datetime) -> None:
    from chalicelib import clock

    ahead = moment - clock.utcnow()
    if ahead > timedelta(0):
        clock.advance(ahead)


def _send(client: Client, pipeline: Any, events: list[Sent], seed: int) -> None:
    """The phase's events: identifies one by one; then per person, three
    calls in ten as one /v1/batch of that person's events, the rest one by one."""
    rng = random.Random(f"{seed}:batches:{len(events)}")
    calls: list[tuple[str, dict[str, Any], list[str]]] = []
    grouped: dict[str, list[Sent]] = defaultdict(list)
    for event in events:
        if event.call == "identify" or rng.random() >= 0.3:
            calls.append((f"/v1/{event.call}", event.body, [event.message_id]))
        else:
            grouped[event.user].append(event)
    for user, batch in grouped.items():
        body = {"batch": [{**e.body, "type": e.call} for e in batch]}
        calls.append(("/v1/batch", body, [e.message_id for e in batch]))
    for index, (path, body, ids) in enumerate(calls):
        client.send(path, body, ids)
        if index % CHUNK == CHUNK - 1:
            pipeline.run()


def _dead_letter_url(env: dict[str, str]) -> str:
    import boto3

    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=env["NUDGE_SEND_QUEUE_URL"],
                                          AttributeNames=["RedrivePolicy"])["Attributes"]
    arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    return sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]


# -- measuring ----------------------------------------------------------------------------------------


_ALERT_PAGE = re.compile(r"^Page:\s+(\S+)", re.MULTILINE)


def sent_emails() -> list[tuple[str, str]]:
    """(profile id, ledger key) of every email in moto's SES record, from its
    X-Nudge-Message header."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    from chalicelib.message_ref import HEADER, read_message_ref

    found = []
    parser = HeaderParser()
    for message in ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages:
        raw = getattr(message, "raw_data", None)
        if raw is None:
            continue
        headers = parser.parsestr(raw) if isinstance(raw, str) else BytesHeaderParser().parsebytes(raw)
        ref = read_message_ref("".join(str(headers.get(HEADER, "")).split()))
        found.append(ref if ref is not None else ("?", "?"))
    return found


def sent_alerts(topic_arn: str, page_views: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """(profile id, ledger key) of every alert in moto's SNS record, found by
    the page it names (each pricing view in the scenario has its own path)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    found = []
    for notification in sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic_arn].sent_notifications:
        match = _ALERT_PAGE.search(notification[1])
        found.append(page_views.get(match.group(1), ("?", "?")) if match else ("?", "?"))
    return found


def _scan(table: str) -> list[dict[str, Any]]:
    import boto3

    items: list[dict[str, Any]] = []
    for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table):
        items += page["Items"]
    return items


def _measure(report: Report, persons: list[Person], client: Client, env: dict[str, str]) -> None:
    everything = {e.message_id: e for p in persons for e in p.events}
    report.events_sent = len(everything)
    report.events_accepted = len(client.accepted)
    report.requests = client.attempts
    report.answers = dict(sorted(client.answers.items()))

    stored = set()
    for item in _scan(env["NUDGE_EVENTS_TABLE"]):
        if item["pk"]["S"].startswith(("user:", "anon:")) and "data" in item:
            stored.add(json.loads(item["data"]["S"])["messageId"])
    report.events_stored = len(stored & set(everything))
    report.events_lost = len(client.accepted - stored)
    report.stored_not_accepted = len(stored - client.accepted)
    happened = client.accepted | stored

    ledger: dict[tuple[str, str], str] = {}
    ledger_sent = 0
    reasons: dict[tuple[str, str], str] = {}
    decided = set()
    lead_scores: dict[str, float] = {}
    for item in _scan(env["NUDGE_DELIVERIES_TABLE"]):
        sk = item["sk"]["S"]
        if sk.startswith("msg#"):
            status = item.get("status", {}).get("S", "")
            ledger[(item["pk"]["S"], sk.removeprefix("msg#"))] = status
            reasons[(item["pk"]["S"], sk.removeprefix("msg#"))] = json.loads(item["data"]["S"]).get("reason") or ""
            ledger_sent += status == "sent" and json.loads(item["data"]["S"]).get("channel") in ("email", "alert")
        elif sk.startswith("dec#"):
            body = json.loads(item["data"]["S"])
            if "event" in body and body.get("triggers"):
                decided.add(body["event"].get("messageId"))
    for item in _scan(env["NUDGE_PROFILES_TABLE"]):
        if item["pk"]["S"].startswith("user:"):
            traits = json.loads(item["data"]["S"]).get("traits", {})
            lead_scores[item["pk"]["S"]] = traits.get("lead_score", 0)
    listening = {"Signed Up", "Whitepaper Downloaded", "Support Request Submitted", "Order Completed",
                 "Product Added", "page"}
    to_evaluate = {mid for mid in happened if mid in everything and everything[mid].name in listening}
    report.to_evaluate = len(to_evaluate)
    report.evaluated = len(to_evaluate & decided)

    owed = expected(persons, happened)
    sends = [o for o in owed if o.channel != "update_profile"]
    report.messages_expected = len(sends)
    report.expected_by_channel = dict(Counter(o.channel for o in owed))
    page_views = {e.body["properties"]["path"]: (f"user:{e.user}", f"pricing-page-alert#{e.message_id}#0")
                  for e in everything.values() if e.call == "page"}
    observed = Counter(sent_emails()) + Counter(sent_alerts(env["NUDGE_ALERTS_TOPIC_ARN"], page_views))
    report.sent_moto = sum(observed.values())
    report.sent_ledger = ledger_sent
    wanted = {(o.profile, o.key) for o in sends}
    for key in sorted(wanted):
        times, status = observed.get(key, 0), ledger.get(key, "")
        if times == 0:
            report.lost += 1
            why = f": {reasons[key]}" if reasons.get(key) else ""
            report.lost_keys.append(f"{key[0]} {key[1]} (ledger: {status or 'none'}{why})")
        elif status == "sending":
            report.unknown += 1
        else:
            report.delivered += 1
        report.duplicated += max(0, times - 1)
        if times and status not in ("sent", "sending"):
            report.sent_not_recorded += 1
    for key, times in sorted(observed.items()):
        if key not in wanted:
            report.unexpected += times
            report.unexpected_keys.append(f"{key[0]} {key[1]} x{times}")
    updates = [o for o in owed if o.channel == "update_profile"]
    report.updates_expected = len(updates)
    report.updates_applied = sum(1 for o in updates if ledger.get((o.profile, o.key)) in ("sent", "sending"))
    views: Counter = Counter(o.profile for o in updates)
    report.lead_scores_wrong = sum(1 for p in persons
                                   if lead_scores.get(f"user:{p.user}", 0) != 10 * views.get(f"user:{p.user}", 0))


# -- the table ----------------------------------------------------------------------------------------


def rows(report: Report) -> list[tuple[str, str]]:
    r = report
    answers = ", ".join(f"{n} x {status}" for status, n in r.answers.items())
    return [
        ("events sent by clients", f"{r.events_sent:,}"),
        ("events accepted (answered 200, after retries)", f"{r.events_accepted:,}"),
        ("events stored in the events log", f"{r.events_stored:,}"
         + (f" ({r.stored_not_accepted} whose client gave up)" if r.stored_not_accepted else "")),
        ("accepted events lost", f"{r.events_lost:,}"),
        ("events evaluated / to evaluate (a decision recorded)", f"{r.evaluated:,} / {r.to_evaluate:,}"),
        ("API requests (retries included)", f"{r.requests:,} ({answers})"),
        ("handler AWS calls / faults injected", f"{r.calls_armed:,} / {r.faults:,}"),
        ("deliveries to handlers: stream records, queue messages (copies included)",
         f"{r.stream_deliveries:,}, {r.queue_deliveries:,} ({r.extra_deliveries:,} copies drawn)"),
        ("parked by the event sources, then replayed: stream records, send decisions",
         f"{r.stream_parked}, {r.send_parked}"),
        ("messages expected (email, SNS alert)", f"{r.messages_expected:,} ({r.expected_by_channel.get('email', 0):,} "
                                                 f"email, {r.expected_by_channel.get('alert', 0):,} alert)"),
        ("messages sent: moto's SES and SNS record / the send ledger (sent)", f"{r.sent_moto:,} / {r.sent_ledger:,}"),
        ("delivered once and recorded sent", f"{r.delivered:,}"),
        ("duplicated (same person, trigger, occurrence twice in moto)", f"{r.duplicated:,}"),
        ("lost (expected, never sent)", f"{r.lost:,}"),
        ("unknown outcome (sent once, recorded `sending`: process died after the send)",
         f"{r.unknown:,} ({r.process_deaths} deaths injected)"),
        ("unexpected (sent, not owed by the triggers)", f"{r.unexpected:,}"),
        ("sent but recorded failed or skipped in the ledger", f"{r.sent_not_recorded:,}"),
        ("lead-score updates applied / expected; people with a wrong score",
         f"{r.updates_applied:,} / {r.updates_expected:,}; {r.lead_scores_wrong}"),
    ]


def table(report: Report) -> str:
    lines = ["| measure | result |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows(report)]
    return "\n".join(lines)


def summary(report: Report) -> str:
    minutes, seconds = divmod(round(report.seconds), 60)
    return (f"Measured {date.today().isoformat()} with `make reliability` (in-process: moto `mock_aws`, "
            f"chalice.test.Client, tests/integration/pipeline.py; {report.workers} worker processes), "
            f"seed {report.seed}, {report.people:,} people, "
            f"a week of engine time: {report.fault_rate:.0%} of handler AWS calls fail, "
            f"{report.die_after_send:.0%} of sends die before recording, "
            f"{report.duplicates:.0%} of deliveries repeated 2-3 times out of order. "
            f"The run took {minutes} min {seconds:02d} s.")


def write_readme(report: Report, readme: Path = README) -> None:
    """Put the table between the reliability markers (added at the end of the
    Benchmark section if missing)."""
    text = readme.read_text()
    block = f"{START}\n{summary(report)}\n\n{table(report)}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        anchor = "\n## Design"
        if anchor not in text:
            raise RuntimeError("README.md has no '## Design' section to put the reliability table before")
        text = text.replace(anchor, f"\n{block}\n{anchor}", 1)
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--die-after-send", type=float, default=0.01)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=2, help="processes, each with its own group of people")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    report = run(args.people, args.seed, args.fault_rate, args.die_after_send, args.duplicates, args.workers)
    print(summary(report))
    print()
    print(table(report))
    for title, keys in (("lost", report.lost_keys), ("unexpected", report.unexpected_keys)):
        if keys:
            print(f"\n{title}:\n  " + "\n  ".join(keys[:50]))
    if not args.no_readme:
        write_readme(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

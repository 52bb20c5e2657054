"""Fault injection: AWS calls that fail, a delivery that dies after sending,
and events delivered more than once, out of order. For the local stack and
the tests only; never in Lambda.

Three faults, each drawn from its own ``random.Random`` seeded from one seed,
so a run with the same seed, the same inputs and the same order of calls
meets the same faults:

``rate``
    A share of the AWS calls the handlers make fail before they reach AWS
    (the call has no effect), half with the service's throttling error and
    half with a 5xx:

    =================  ========================================  =====================================
    service            throttling                                5xx
    =================  ========================================  =====================================
    DynamoDB           ProvisionedThroughputExceededException,   InternalServerError (500)
                       ThrottlingException (400)
    SQS                RequestThrottled (400)                    InternalError (500)
    SES v2             TooManyRequestsException (429)            InternalServiceErrorException (500)
    SNS                Throttled (429)                           InternalError (500)
    EventBridge        ThrottlingException (400)                 InternalException (500)
    other              ThrottlingException (400)                 ServiceUnavailable (503)
    =================  ========================================  =====================================

    The fault is raised by ``botocore.client.BaseClient._make_api_call``,
    patched for the whole process: every botocore client goes through it,
    the boto3 clients of ``chalicelib.aws_clients`` and the client PynamoDB
    makes for itself (PynamoDB 6 calls ``self.client._make_api_call``). The
    error is the client's own modelled exception (``client.exceptions``), as
    botocore would raise it. The patch sits above botocore's retries, so a
    fault is what the calling code sees after the SDK gave up: 10 % here is
    far harsher than AWS, where the SDK's own retries hide most throttling.

``die_after_send``
    A share of the messages SES or SNS accepted are followed by the death of
    the delivery process before it records the outcome: ``AwsChannels``'s
    ``send_email``, ``send_sms`` and ``send_alert`` return from the provider,
    then raise :class:`ProcessDied` (neither SendRetryable nor SendRejected).
    The send ledger keeps the claim in ``sending``; the message was sent once
    and is shown ``unknown``. ``died`` lists each such message.

``duplicates`` (see :class:`Redelivery`)
    A share of queue messages, stream records, bus events and notifications
    are delivered two or three times, in shuffled batches, the copies later
    in other batches. infra/event_sources.py and tests/integration/pipeline.py
    apply it; this module only draws.

Faults hit only calls made while *armed* (:meth:`FaultInjector.armed`), in
the thread that armed: the local runtime and the test pipeline arm around each
handler invocation and each API request, so the event-source runtime's own
polling and a test's verification reads never fail. Work a handler hands to
other threads is not armed (the events log's parallel puts of a batch; the
in-process benchmark runs them inline instead).

Enabled in the local stack by environment (``FaultPlan.from_env``):
NUDGE_FAULT_RATE=0.1, NUDGE_FAULT_SEED=7, NUDGE_FAULT_DIE_AFTER_SEND=0.01,
NUDGE_DUPLICATE_DELIVERY=0.3 (the share of deliveries repeated; 1: every one).
Nothing here is packaged (infra/ is not in the function zip), and
:class:`FaultInjector` refuses to start inside Lambda.
"""
from __future__ import annotations

import contextlib
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

#: service -> (throttling (code, status) choices, 5xx (code, status)).
ERRORS: dict[str, tuple[tuple[tuple[str, int], ...], tuple[str, int]]] = {
    "dynamodb": ((("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400)),
                 ("InternalServerError", 500)),
    "sqs": ((("RequestThrottled", 400),), ("InternalError", 500)),
    "sesv2": ((("TooManyRequestsException", 429),), ("InternalServiceErrorException", 500)),
    "ses": ((("Throttling", 400),), ("ServiceUnavailable", 503)),
    "sns": ((("Throttled", 429),), ("InternalError", 500)),
    "events": ((("ThrottlingException", 400),), ("InternalException", 500)),
}
DEFAULT_ERRORS: tuple[tuple[tuple[str, int], ...], tuple[str, int]] = (
    (("ThrottlingException", 400),), ("ServiceUnavailable", 503))

#: The AwsChannels methods that hand a message to SES or SNS.
SEND_METHODS = ("send_email", "send_sms", "send_alert")

_T = TypeVar("_T")


class ProcessDied(Exception):
    """The delivery process 'died' after the provider accepted a message and
    before its outcome was recorded (a simulated crash or timeout)."""


class FaultsRefused(RuntimeError):
    """Fault injection was asked for where it must never run (in Lambda)."""


@dataclass(frozen=True)
class FaultPlan:
    """What to inject. All shares are in [0, 1]; zero turns a fault off."""

    rate: float = 0.0
    #: Any int or str; each fault draws from ``random.Random(f"{seed}:<fault>")``.
    seed: int | str = 0
    die_after_send: float = 0.0
    duplicates: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FaultPlan:
        """NUDGE_FAULT_RATE, NUDGE_FAULT_SEED, NUDGE_FAULT_DIE_AFTER_SEND and
        NUDGE_DUPLICATE_DELIVERY; unset or empty means off (seed 0)."""

        def share(name: str) -> float:
            raw = (env.get(name) or "").strip()
            try:
                value = float(raw) if raw else 0.0
            except ValueError:
                raise ValueError(f"{name} must be a number between 0 and 1, got {raw!r}") from None
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1, got {raw!r}")
            return value

        raw_seed = (env.get("NUDGE_FAULT_SEED") or "0").strip()
        try:
            seed = int(raw_seed)
        except ValueError:
            raise ValueError(f"NUDGE_FAULT_SEED must be an integer, got {raw_seed!r}") from None
        return cls(rate=share("NUDGE_FAULT_RATE"), seed=seed,
                   die_after_send=share("NUDGE_FAULT_DIE_AFTER_SEND"),
                   duplicates=share("NUDGE_DUPLICATE_DELIVERY"))

    @property
    def enabled(self) -> bool:
        return bool(self.rate or self.die_after_send or self.duplicates)

    def describe(self) -> str:
        parts = []
        if self.rate:
            parts.append(f"{self.rate:.0%} of AWS calls fail")
        if self.die_after_send:
            parts.append(f"{self.die_after_send:.1%} of sends die before recording")
        if self.duplicates:
            parts.append(f"{self.duplicates:.0%} of deliveries repeated, out of order")
        return ", ".join(parts) + f" (seed {self.seed})" if parts else "off"


@dataclass
class FaultStats:
    """What was injected: calls seen while armed, faults by service and code,
    and the messages sent before a process death (channel, provider id)."""

    armed_calls: int = 0
    faults: Counter = field(default_factory=Counter)
    died: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())


class _Patches:
    """The one process-wide patch of botocore and AwsChannels, shared by every
    injector; it does nothing unless an injector is active."""

    lock = threading.Lock()
    active: FaultInjector | None = None


_thread_state = threading.local()


class FaultInjector:
    """Injects a :class:`FaultPlan` into this process while it is entered.

    ``with FaultInjector(plan) as faults:`` patches botocore and AwsChannels;
    ``with faults.armed():`` marks the handler calls that may fail. Only one
    injector is active at a time.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.stats = FaultStats()
        self._calls = random.Random(f"{plan.seed}:calls")
        self._deaths = random.Random(f"{plan.seed}:deaths")
        self._lock = threading.Lock()

    # -- scope -------------------------------------------------------------------------------

    def __enter__(self) -> FaultInjector:
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            raise FaultsRefused("fault injection never runs in Lambda")
        with _Patches.lock:
            if _Patches.active is not None and _Patches.active is not self:
                raise RuntimeError("another FaultInjector is already active in this process")
            _install()
            _Patches.active = self
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with _Patches.lock:
            if _Patches.active is self:
                _Patches.active = None

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """Calls made inside, by this thread, may fail."""
        _thread_state.armed = getattr(_thread_state, "armed", 0) + 1
        try:
            yield
        finally:
            _thread_state.armed -= 1

    @staticmethod
    def is_armed() -> bool:
        return getattr(_thread_state, "armed", 0) > 0

    # -- draws -------------------------------------------------------------------------------

    def fault_for(self, service: str, operation: str) -> tuple[str, int] | None:
        """The (code, HTTP status) this call fails with, or None."""
        if not self.plan.rate or not self.is_armed():
            return None
        with self._lock:
            self.stats.armed_calls += 1
            if self._calls.random() >= self.plan.rate:
                return None
            throttles, server = ERRORS.get(service, DEFAULT_ERRORS)
            if self._calls.random() < 0.5:
                code, status = throttles[self._calls.randrange(len(throttles))]
            else:
                code, status = server
            self.stats.faults[(service, code)] += 1
        return code, status

    def dies_after(self, channel: str, provider_id: str) -> bool:
        """Whether the process dies after this accepted send (and note it)."""
        if not self.plan.die_after_send or not self.is_armed():
            return False
        with self._lock:
            if self._deaths.random() >= self.plan.die_after_send:
                return False
            self.stats.died.append((channel, provider_id))
        return True


_MARK = "_nudge_fault_patch"


def _install() -> None:
    """Patch botocore and AwsChannels (callers hold the lock). Idempotent; a
    patch replaced since (another recorder restored its own original) is put
    back on top of what is there now."""
    import botocore.client

    from chalicelib.channels import AwsChannels

    for name in SEND_METHODS:
        if not getattr(getattr(AwsChannels, name), _MARK, False):
            setattr(AwsChannels, name, _dying(getattr(AwsChannels, name), name.removeprefix("send_")))
    original_call = botocore.client.BaseClient._make_api_call
    if getattr(original_call, _MARK, False):
        return

    def _make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        injector = _Patches.active
        if injector is None or getattr(_thread_state, "in_call", False):
            # Off, or a second layer of this patch under another recorder's wrapper: one draw per call.
            return original_call(client, operation_name, api_params)
        fault = injector.fault_for(client.meta.service_model.service_name, operation_name)
        if fault is not None:
            raise _client_error(client, operation_name, *fault)
        _thread_state.in_call = True
        try:
            return original_call(client, operation_name, api_params)
        finally:
            _thread_state.in_call = False

    _make_api_call.__wrapped__ = original_call  # type: ignore[attr-defined]
    setattr(_make_api_call, _MARK, True)
    botocore.client.BaseClient._make_api_call = _make_api_call  # type: ignore[method-assign]


def _dying(send: Callable[..., str], channel: str) -> Callable[..., str]:
    def sent_then_maybe_died(self: Any, *args: Any, **kwargs: Any) -> str:
        provider_id = send(self, *args, **kwargs)
        injector = _Patches.active
        if injector is not None and injector.dies_after(channel, provider_id):
            raise ProcessDied(f"the delivery process died after {channel} message {provider_id} was accepted")
        return provider_id

    sent_then_maybe_died.__wrapped__ = send  # type: ignore[attr-defined]
    sent_then_maybe_died.__name__ = send.__name__
    sent_then_maybe_died.__doc__ = send.__doc__
    setattr(sent_then_maybe_died, _MARK, True)
    return sent_then_maybe_died


def _client_error(client: Any, operation_name: str, code: str, status: int) -> Exception:
    """The exception botocore raises for an error answer ``code`` / ``status``."""
    response = {
        "Error": {"Code": code, "Message": "injected by infra.faults"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0,
                             "RequestId": "injected-fault"},
    }
    return client.exceptions.from_code(code)(response, operation_name)


@contextlib.contextmanager
def injected(plan: FaultPlan) -> Iterator[FaultInjector]:
    """``with injected(FaultPlan(rate=0.1, seed=7)) as faults:`` for tests."""
    with FaultInjector(plan) as injector:
        yield injector


class Redelivery:
    """At-least-once delivery, drawn from its own seeded ``random.Random``:
    batches are shuffled, and a ``share`` of deliveries come again once or
    twice more (two or three deliveries in all), later, in other batches."""

    def __init__(self, share: float, seed: int | str = 0, *, max_deliveries: int = 3) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be between 0 and 1")
        self.share = share
        self.max_deliveries = max(2, max_deliveries)
        self._random = random.Random(f"{seed}:redelivery")
        self._lock = threading.Lock()
        #: Extra deliveries drawn so far (each is one more handler delivery).
        self.extra = 0

    @classmethod
    def from_plan(cls, plan: FaultPlan) -> Redelivery | None:
        return cls(plan.duplicates, plan.seed) if plan.duplicates else None

    def shuffled(self, items: Sequence[_T]) -> list[_T]:
        """The batch in a random order."""
        chosen = list(items)
        with self._lock:
            self._random.shuffle(chosen)
        return chosen

    def copies(self) -> int:
        """How many more times to deliver one item: 0, or 1 or 2."""
        with self._lock:
            if self.share <= 0 or self._random.random() >= self.share:
                return 0
            more = self._random.randint(1, self.max_deliveries - 1)
            self.extra += more
            return more

    def later(self, limit: int) -> int:
        """How many batches from now a copy comes (1..limit)."""
        with self._lock:
            return self._random.randint(1, max(1, limit))

    def position(self, length: int) -> int:
        """Where in a batch of ``length`` a copy goes."""
        with self._lock:
            return self._random.randint(0, length)


def arm_http_server(server: Any, injector: FaultInjector) -> None:
    """Arm every request a socketserver-based HTTP server (Chalice's local
    server) handles: the handler object does its whole request while it is
    made, in the request's own thread."""
    make_handler = server.RequestHandlerClass

    def armed_handler(*args: Any, **kwargs: Any) -> Any:
        with injector.armed():
            return make_handler(*args, **kwargs)

    server.RequestHandlerClass = armed_handler


def armed_invocations(injector: FaultInjector) -> Callable[[str], Any]:
    """For EventSourceRuntime(invoking=...): every handler invocation armed."""
    return lambda name: injector.armed()

"""What the email provider reports after a send, and what Nudge does about it.

SES publishes an event for every email sent with Nudge's configuration set
(Send, Delivery, Bounce, Complaint, Open, Click, Reject, DeliveryDelay,
Rendering Failure) to the feedback topic; accounts that still use identity
notifications send Bounce, Complaint and Delivery in the older shape. Both
arrive here as the SNS message text. SES repeats the email's own headers in
``mail.headers``, so the ``X-Nudge-Message`` header (chalicelib.message_ref)
names the person and the send-ledger key of the message: no lookup table.

The rules (``decide``):

* a permanent (hard) bounce suppresses the address for everything (scope
  ``all``, reason ``hard bounce``); a transient bounce suppresses nothing;
* a complaint suppresses the address for marketing (reason ``complaint``);
* the message's status becomes delivered, bounced or complained (a delivery
  reported later never replaces bounced or complained), and the first time
  of each kind of feedback (delivery, bounce, complaint, open, click) is kept
  on the message;
* per trigger and day: emails sent, delivered, bounced, complained, opened
  and clicked, each counted once per email (an email opened three times is
  one open);
* the reputation guard: sends, hard bounces and complaints per hour. When,
  over the window, at least the minimum number of emails went out and the
  bounce or complaint rate passed its limit, marketing email is paused (one
  conditional write) and the team gets one alert (topic ``deliverability``).
  Delivery holds marketing email while paused; transactional email goes on.
  An operator resumes it (POST /v1/reputation/resume).

``parse``, ``decide`` and ``breach`` are pure. ``record`` carries one parsed
notification out through the ports it is given and touches no AWS API itself.
A notification that cannot be used raises :class:`Unreadable` from ``parse``:
the handler logs and acknowledges it, so it is never retried.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import parseaddr
from typing import Any, Callable, Mapping, Protocol

from chalicelib.message_ref import HEADER, read_message_ref
from chalicelib.ports import ConsentStore, Ledger, MessageRecord
from chalicelib.segment import iso, parse_time

#: SES event publishing's ``eventType`` -> the kind of feedback.
EVENT_TYPES = {
    "Send": "send", "Delivery": "delivery", "Bounce": "bounce", "Complaint": "complaint", "Open": "open",
    "Click": "click", "Reject": "reject", "DeliveryDelay": "delivery_delay",
    "Rendering Failure": "rendering_failure", "RenderingFailure": "rendering_failure",
    "Subscription": "subscription",
}
#: Identity notifications' ``notificationType`` -> the kind of feedback.
NOTIFICATION_TYPES = {"Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery"}
#: Where each kind keeps its details in the event.
_SECTIONS = {"send": "send", "delivery": "delivery", "bounce": "bounce", "complaint": "complaint", "open": "open",
             "click": "click", "reject": "reject", "delivery_delay": "deliveryDelay",
             "rendering_failure": "failure", "subscription": "subscription"}
#: The counters kept per trigger and day, in the order they are shown.
COUNTERS = ("sent", "delivered", "bounced", "complained", "opened", "clicked")
#: The counters kept per hour for the reputation guard.
REPUTATION_COUNTERS = ("sent", "bounced", "complained")
#: Hour buckets are kept this long; the window cannot be longer.
MAX_WINDOW_HOURS = 14 * 24
ALERT_TOPIC = "deliverability"
#: The key (``pk``, ``sk``) of the pause flag on the consent table: set by the
#: guard (chalicelib.feedback_store), read with a person's standing by delivery.
PAUSE_FLAG = ("reputation", "state")
HARD_BOUNCE = "hard bounce"
COMPLAINT = "complaint"


class Unreadable(Exception):
    """A notification Nudge cannot use (malformed, or of a type it does not
    know); logged and acknowledged, never retried."""


@dataclass(frozen=True)
class Feedback:
    """One SES event or notification about one email."""

    kind: str
    #: When it happened (the event's own time), UTC ISO-8601.
    at: str
    #: The id SES gave the email (``mail.messageId``).
    message_id: str
    #: (profile id, ledger key) from the X-Nudge-Message header; None without one.
    message: tuple[str, str] | None
    #: The addresses this event is about (bounced, complained, delivered ones).
    recipients: tuple[str, ...] = ()
    #: The ``trigger`` tag the email was sent with, when SES reports tags.
    trigger: str | None = None
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    #: An identity notification (no Send events exist in that shape).
    legacy: bool = False
    #: For the log: a bounce's diagnostic, a complaint's type, a clicked link.
    detail: str | None = None
    #: The header value when it is there but names no message.
    unknown_reference: str | None = None

    @property
    def permanent_bounce(self) -> bool:
        return self.kind == "bounce" and self.bounce_type == "Permanent"


@dataclass(frozen=True)
class Suppress:
    address: str
    scope: str
    reason: str


@dataclass(frozen=True)
class Count:
    """Count ``counter`` once for the email: per trigger and day (``stats``)
    and per hour for the reputation guard (``reputation``)."""

    counter: str
    stats: bool = True
    reputation: bool = False


@dataclass(frozen=True)
class Plan:
    """What one piece of feedback changes."""

    suppress: tuple[Suppress, ...] = ()
    #: (feedback kind kept on the message, status to set or None).
    ledger: tuple[str, str | None] | None = None
    counts: tuple[Count, ...] = ()
    #: Whether the reputation guard looks at the rates afterwards.
    check_reputation: bool = False


@dataclass(frozen=True)
class Limits:
    bounce_rate: float = 0.05
    complaint_rate: float = 0.001
    window_hours: int = 24
    min_sends: int = 100

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(bounce_rate=float(settings.bounce_rate_limit), complaint_rate=float(settings.complaint_rate_limit),
                   window_hours=max(1, min(int(settings.reputation_window_hours), MAX_WINDOW_HOURS)),
                   min_sends=max(1, int(settings.reputation_min_sends)))

    def as_dict(self) -> dict[str, Any]:
        return {"bounceRate": self.bounce_rate, "complaintRate": self.complaint_rate,
                "windowHours": self.window_hours, "minSends": self.min_sends}


@dataclass(frozen=True)
class Totals:
    """Emails sent, hard bounces and complaints over a window."""

    sent: int = 0
    bounced: int = 0
    complained: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "bounced": self.bounced, "complained": self.complained,
                "bounceRate": round(self.bounce_rate, 6), "complaintRate": round(self.complaint_rate, 6)}


@dataclass(frozen=True)
class Outcome:
    """What ``record`` did, for the log and the tests."""

    feedback: Feedback
    suppressed: tuple[Suppress, ...] = ()
    record: MessageRecord | None = None
    trigger: str | None = None
    counted: tuple[str, ...] = ()
    #: The reason the guard paused marketing email during this call, if it did.
    paused: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)


class FeedbackStore(Protocol):
    """Feedback counts and the reputation guard's pause flag (chalicelib.feedback_store)."""

    def count(self, message_id: str, counter: str, trigger_id: str | None, at: str, reputation: bool) -> bool:
        """Add one to ``counter`` for the trigger's day of ``at`` (when
        ``trigger_id`` is given) and for the hour of ``at`` (``reputation``),
        unless this email was already counted for ``counter``; all or nothing.
        True when it was counted now."""

    def totals(self, first_hour: str, last_hour: str) -> Totals:
        """The reputation counts of the hours from ``first_hour`` to
        ``last_hour`` (``YYYY-MM-DDTHH``), both included."""

    def stats(self, trigger_id: str, first_day: str) -> list[dict[str, Any]]:
        """The trigger's counts per day from ``first_day`` (``YYYY-MM-DD``) on,
        oldest first: ``{"day", "sent", "delivered", ...}``."""

    def trip(self, reason: str, at: str) -> bool:
        """Set the pause flag unless it is set (a conditional write); True when this call set it."""

    def untrip(self, at: str) -> None:
        """Clear the pause flag set at ``at`` (its alert could not be sent; the retry sets it again)."""

    def pause_state(self) -> dict[str, str] | None:
        """``{"reason", "at"}`` of the pause flag, or None."""

    def resume(self) -> dict[str, str] | None:
        """Clear the pause flag; returns what it was (None: it was not set)."""


def pause_reason(data: str | None) -> str:
    """The reason kept in the pause flag's JSON ``data``."""
    return json.loads(data or "{}").get("reason") or "paused"


# --- parsing ----------------------------------------------------------------------------------------


def parse(message: str | Mapping[str, Any]) -> Feedback:
    """The feedback in one SNS message from SES (event publishing or an
    identity notification). Raises Unreadable with the reason."""
    body = _json_object(message)
    if "eventType" in body:
        kind = EVENT_TYPES.get(body["eventType"]) if isinstance(body["eventType"], str) else None
        if kind is None:
            raise Unreadable(f"unknown eventType {body['eventType']!r}")
        legacy = False
    elif "notificationType" in body:
        kind = NOTIFICATION_TYPES.get(body["notificationType"]) if isinstance(body["notificationType"], str) else None
        if kind is None:
            raise Unreadable(f"notificationType {body['notificationType']!r} is not feedback about an email")
        legacy = True
    else:
        raise Unreadable("neither eventType nor notificationType: not an SES notification")
    mail = body.get("mail")
    if not isinstance(mail, Mapping):
        raise Unreadable("no mail object")
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise Unreadable("mail.messageId is missing")
    section = body.get(_SECTIONS[kind])
    section = section if isinstance(section, Mapping) else {}
    if kind in ("bounce", "complaint") and not section:
        raise Unreadable(f"a {kind} without its {_SECTIONS[kind]} object")
    reference = _reference(_header(mail, HEADER))
    found = read_message_ref(reference) if reference else None
    return Feedback(
        kind=kind,
        at=_time(section.get("timestamp"), mail.get("timestamp")),
        message_id=message_id,
        message=found,
        recipients=_recipients(kind, section, mail),
        trigger=_tag(mail, "trigger"),
        bounce_type=_text(section.get("bounceType")) if kind == "bounce" else None,
        bounce_subtype=_text(section.get("bounceSubType")) if kind == "bounce" else None,
        legacy=legacy,
        detail=_detail(kind, section),
        unknown_reference=reference if reference and found is None else None,
    )


def _json_object(message: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(message, Mapping):
        return message
    try:
        body = json.loads(message)
    except (TypeError, ValueError) as exc:
        raise Unreadable(f"the message is not JSON ({exc})") from None
    if not isinstance(body, Mapping):
        raise Unreadable("the message is not a JSON object")
    return body


def _header(mail: Mapping[str, Any], name: str) -> str | None:
    headers = mail.get("headers")
    if not isinstance(headers, list):
        return None
    for header in headers:
        if isinstance(header, Mapping) and str(header.get("name", "")).lower() == name.lower():
            value = header.get("value")
            return value if isinstance(value, str) else None
    return None


def _reference(value: str | None) -> str | None:
    """The header's value as written by Nudge: a long value may come back
    folded, or as RFC 2047 encoded words, depending on the MIME writer."""
    if value is None:
        return None
    if "=?" in value:
        try:
            value = str(make_header(decode_header(value)))
        except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
            pass
    return "".join(value.split()) or None


def _tag(mail: Mapping[str, Any], name: str) -> str | None:
    tags = mail.get("tags")
    values = tags.get(name) if isinstance(tags, Mapping) else None
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return values if isinstance(values, str) else None


def _time(*candidates: Any) -> str:
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            try:
                return iso(parse_time(candidate))
            except ValueError:
                continue
    raise Unreadable("the event has no readable timestamp")


def _address(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    address = parseaddr(value)[1].strip()
    return address if "@" in address else None


def _recipients(kind: str, section: Mapping[str, Any], mail: Mapping[str, Any]) -> tuple[str, ...]:
    if kind == "bounce":
        raw = [entry.get("emailAddress") for entry in section.get("bouncedRecipients") or []
               if isinstance(entry, Mapping)]
    elif kind == "complaint":
        raw = [entry.get("emailAddress") for entry in section.get("complainedRecipients") or []
               if isinstance(entry, Mapping)]
    elif kind == "delivery" and isinstance(section.get("recipients"), list):
        raw = list(section["recipients"])
    else:
        raw = list(mail.get("destination") or []) if isinstance(mail.get("destination"), list) else []
    found: list[str] = []
    for value in raw:
        address = _address(value)
        if address and address not in found:
            found.append(address)
    if kind in ("bounce", "complaint") and not found:
        raise Unreadable(f"a {kind} that names no recipient")
    return tuple(found)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _detail(kind: str, section: Mapping[str, Any]) -> str | None:
    if kind == "bounce":
        recipients = [e for e in section.get("bouncedRecipients") or [] if isinstance(e, Mapping)]
        return _text(recipients[0].get("diagnosticCode")) if recipients else None
    if kind == "complaint":
        return _text(section.get("complaintFeedbackType"))
    if kind == "click":
        return _text(section.get("link"))
    if kind == "reject":
        return _text(section.get("reason"))
    if kind == "rendering_failure":
        return _text(section.get("errorMessage"))
    if kind == "delivery_delay":
        return _text(section.get("delayType"))
    return None


# --- deciding ---------------------------------------------------------------------------------------


def decide(feedback: Feedback) -> Plan:
    """What this feedback changes (pure)."""
    kind = feedback.kind
    # Identity notifications have no Send: a delivery or a bounce says the email went out.
    implied_send = (Count("sent", reputation=True),) if feedback.legacy and kind in ("delivery", "bounce") else ()
    if kind == "send":
        return Plan(counts=(Count("sent", reputation=True),))
    if kind == "delivery":
        return Plan(ledger=("delivery", "delivered"), counts=implied_send + (Count("delivered"),))
    if kind == "bounce":
        hard = feedback.permanent_bounce
        suppress = tuple(Suppress(address, "all", HARD_BOUNCE) for address in feedback.recipients) if hard else ()
        # SES's bounce rate counts hard bounces only; the trigger's count has every bounce.
        return Plan(suppress=suppress, ledger=("bounce", "bounced"),
                    counts=implied_send + (Count("bounced", reputation=hard),), check_reputation=hard)
    if kind == "complaint":
        return Plan(suppress=tuple(Suppress(address, "marketing", COMPLAINT) for address in feedback.recipients),
                    ledger=("complaint", "complained"), counts=(Count("complained", reputation=True),),
                    check_reputation=True)
    if kind == "open":
        return Plan(ledger=("open", None), counts=(Count("opened"),))
    if kind == "click":
        return Plan(ledger=("click", None), counts=(Count("clicked"),))
    return Plan()  # reject, delivery delay, rendering failure, subscription: logged only


def breach(totals: Totals, limits: Limits) -> str | None:
    """Why sending must pause at these totals, or None (pure)."""
    if totals.sent < limits.min_sends:
        return None
    window = f"over the last {limits.window_hours} h"
    if totals.bounce_rate > limits.bounce_rate:
        return (f"hard-bounce rate {_percent(totals.bounce_rate)} {window} ({totals.bounced} of {totals.sent} "
                f"emails) passed the limit of {_percent(limits.bounce_rate)}")
    if totals.complaint_rate > limits.complaint_rate:
        return (f"complaint rate {_percent(totals.complaint_rate)} {window} ({totals.complained} of "
                f"{totals.sent} emails) passed the limit of {_percent(limits.complaint_rate)}")
    return None


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}".rstrip("0").rstrip(".") + "%"


def window_hours(now: datetime, limits: Limits) -> tuple[str, str]:
    """The first and last hour buckets of the window ending at ``now``."""
    first = now - timedelta(hours=limits.window_hours - 1)
    return hour_of(iso(first)), hour_of(iso(now))


def hour_of(at: str) -> str:
    return at[:13]


def day_of(at: str) -> str:
    return at[:10]


# --- carrying it out --------------------------------------------------------------------------------


def record(
    feedback: Feedback,
    *,
    ledger: Ledger,
    consent: ConsentStore,
    store: FeedbackStore,
    alert: Callable[[str, str, str], Any],
    limits: Limits,
    now: Callable[[], datetime],
) -> Outcome:
    """Apply ``feedback``: suppressions, the message's status, the counts, and
    the reputation guard. Every step is safe to repeat, so a redelivered
    notification (or a retry after a storage failure) changes nothing twice;
    StorageUnavailable and a failed alert are raised for SNS to retry."""
    plan = decide(feedback)
    problems: list[str] = []
    if feedback.unknown_reference:
        problems.append(f"the {HEADER} header {feedback.unknown_reference!r} names no message")
    elif feedback.message is None and plan.ledger is not None:
        problems.append(f"the email has no {HEADER} header")
    for suppression in plan.suppress:
        consent.suppress(suppression.address, suppression.scope, suppression.reason, feedback.at)
    found: MessageRecord | None = None
    if feedback.message is not None:
        profile_id, key = feedback.message
        if plan.ledger is not None:
            kind, status = plan.ledger
            found = ledger.note_feedback(profile_id, key, kind, feedback.at, status)
        elif plan.counts and feedback.trigger is None:
            found = ledger.get(profile_id, key)  # only to learn the trigger
        if found is None and (plan.ledger is not None or plan.counts and feedback.trigger is None):
            problems.append(f"no message {key!r} of {profile_id!r} in the send ledger")
    trigger = feedback.trigger or (found.trigger_id if found is not None else None)
    counted = []
    for count in plan.counts:
        target = trigger if count.stats else None
        if target is None and not count.reputation:
            continue
        if store.count(feedback.message_id, count.counter, target, feedback.at, count.reputation):
            counted.append(count.counter)
    paused = check_reputation(store, alert, limits, now()) if plan.check_reputation else None
    return Outcome(feedback=feedback, suppressed=plan.suppress, record=found, trigger=trigger,
                   counted=tuple(counted), paused=paused, problems=tuple(problems))


def check_reputation(store: FeedbackStore, alert: Callable[[str, str, str], Any], limits: Limits,
                     now: datetime) -> str | None:
    """Pause marketing email if the rates over the window passed a limit, and
    tell the team once. Returns the reason when this call paused it."""
    totals = store.totals(*window_hours(now, limits))
    reason = breach(totals, limits)
    if reason is None:
        return None
    at = iso(now)
    if not store.trip(reason, at):
        return None
    try:
        alert(ALERT_TOPIC, "Nudge paused marketing email: sending reputation at risk",
              f"Nudge paused marketing email at {at}: the {reason}.\n"
              "Transactional email still goes out. SES reviews an account whose bounce rate passes 5% "
              "or complaint rate passes 0.1%. Find the cause (a purchased or stale list, a broken signup "
              "form), then resume marketing email with POST /v1/reputation/resume.")
    except Exception:
        # Untripped, so the retry of this notification trips it again and alerts.
        store.untrip(at)
        raise
    return reason


def report(store: FeedbackStore, limits: Limits, now: datetime) -> dict[str, Any]:
    """The guard as GET /v1/reputation shows it."""
    first, last = window_hours(now, limits)
    totals = store.totals(first, last)
    return {"window": {"hours": limits.window_hours, "from": first + ":00:00Z", "to": iso(now)},
            **totals.as_dict(), "limits": limits.as_dict(), "paused": store.pause_state(),
            "breach": breach(totals, limits)}


def trigger_stats(store: FeedbackStore, trigger_id: str, days: int, now: datetime) -> dict[str, Any]:
    """A trigger's counts per day over the last ``days`` days (today included), and their totals."""
    first = day_of(iso(now - timedelta(days=days - 1)))
    rows = store.stats(trigger_id, first)
    totals = {counter: sum(int(row.get(counter, 0)) for row in rows) for counter in COUNTERS}
    return {"trigger": trigger_id, "days": days, "from": first, "totals": totals,
            "perDay": [{"day": row["day"], **{c: int(row.get(c, 0)) for c in COUNTERS}} for row in rows]}


def describe(outcome: Outcome) -> dict[str, Any]:
    """The outcome as structured log fields."""
    feedback = outcome.feedback
    return {"kind": feedback.kind, "ses_message_id": feedback.message_id, "at": feedback.at,
            "ledger_message": list(feedback.message) if feedback.message else None, "trigger": outcome.trigger,
            "status": outcome.record.status if outcome.record else None,
            "suppressed": [{"scope": s.scope, "reason": s.reason} for s in outcome.suppressed],
            "counted": list(outcome.counted), "paused": outcome.paused, "problems": list(outcome.problems),
            "bounce_type": feedback.bounce_type, "detail": feedback.detail}

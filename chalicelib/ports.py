"""The interfaces the engine needs from storage, in one place.

Adapters live in ``chalicelib.dynamodb`` (DynamoDB through PynamoDB); unit tests
use in-memory versions. Use cases depend on these protocols only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

from chalicelib.profiles import Profile
from chalicelib.segment import Event

if TYPE_CHECKING:
    from chalicelib.consent import Consent, Standing, Suppression
    from chalicelib.evaluate import Decision, Evaluation


@dataclass(frozen=True)
class EventPage:
    """Events newest first, and the cursor for the next page (None at the end)."""

    events: list[Event]
    cursor: str | None


class EventLog(Protocol):
    def append(self, events: Sequence[Event]) -> list[bool]:
        """Store each event unless its messageId is already stored for that
        identity. Returns, per event, True when it was new. A repeated call with
        the same events stores nothing more."""

    def stored(self, events: Sequence[Event]) -> list[Event | None]:
        """The logged copy of each of these events, read consistently, for the
        events that carry a client timestamp (the key is then known); None for
        the others and for events not logged."""

    def history(self, identities: Sequence[str], limit: int, cursor: str | None) -> EventPage:
        """Events of these identities (``user:<id>``/``anon:<id>``), newest first."""

    def count(self, identities: Sequence[str], event_key: str, start: Any, end: Any) -> int:
        """How many events named ``event_key`` these identities sent from
        ``start`` to ``end`` (inclusive), by reading that window only."""

    def forget(self, identities: Sequence[str], limit: int) -> int:
        """Remove up to ``limit`` events of these identities, each after its
        deduplication marker (so a removal cut short leaves no marker behind);
        returns how many events were removed. Fewer than ``limit``: none is left."""


class ProfileStore(Protocol):
    def get(self, profile_id: str) -> Profile | None:
        """The stored profile, read consistently, or None."""

    def save(self, profile: Profile) -> Profile:
        """Write the profile if its version is still the stored one; returns it
        with the new version. Raises ConcurrentUpdate when another writer won."""

    def delete(self, profile_id: str) -> None:
        """Remove a profile (an anonymous one merged into a user's)."""

    def resolve(self, anonymous_ids: Sequence[str]) -> dict[str, str]:
        """anonymousId -> userId for the ids already linked to a user."""

    def link(self, anonymous_id: str, user_id: str) -> None:
        """Record that this anonymousId belongs to this user, idempotently."""

    def page(self, shard: str, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """Up to ``limit`` profile ids of one broadcast shard after ``cursor``, and
        the next page's cursor (None at the end); never a scan."""

    def get_many(self, profile_ids: Sequence[str]) -> list[Profile]:
        """The profiles of these ids that exist, in one batched read."""

    def unlink(self, anonymous_id: str, user_id: str) -> bool:
        """Remove the link of this anonymousId if it still names this user;
        True when one was removed."""


class KeyStore(Protocol):
    def kind_of(self, secret: str) -> str | None:
        """``"write"`` or ``"admin"`` for a known key, None otherwise."""


@dataclass(frozen=True)
class MessageRecord:
    """One decided action for one person, as the send ledger and the message
    history know it. ``status`` is sending, sent, failed, skipped, deferred
    (held by quiet hours) or, as shown, unknown."""

    profile_id: str
    key: str
    trigger_id: str
    channel: str
    status: str
    created_at: str
    to: str | None = None
    subject: str | None = None
    provider_id: str | None = None
    reason: str | None = None
    updated_at: str | None = None
    #: What the email provider reported afterwards, kind -> first time
    #: (``delivery``, ``bounce``, ``complaint``, ``open``, ``click``); chalicelib.feedback.
    feedback: Mapping[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.key, "trigger": self.trigger_id, "channel": self.channel, "status": self.status,
            "to": self.to, "subject": self.subject, "providerMessageId": self.provider_id,
            "reason": self.reason, "createdAt": self.created_at, "updatedAt": self.updated_at,
            "feedback": dict(self.feedback) if self.feedback else None,
        }


#: Message status set by provider feedback -> the statuses it may replace. A
#: later ``delivered`` never replaces ``bounced`` or ``complained``.
FEEDBACK_STATUS_AFTER: dict[str, tuple[str, ...]] = {
    "delivered": ("sending", "sent"),
    "bounced": ("sending", "sent", "delivered"),
    "complained": ("sending", "sent", "delivered"),
}


class Ledger(Protocol):
    def get(self, profile_id: str, key: str) -> MessageRecord | None:
        """The record of this decision, if it was ever claimed or recorded."""

    def claim(self, record: MessageRecord) -> bool:
        """Write the record only if none exists for its key, or the one there
        is ``deferred`` (conditional put). False when another delivery of the
        same decision got there first."""

    def finish(self, record: MessageRecord) -> None:
        """Overwrite a claimed record with its outcome."""

    def release(self, profile_id: str, key: str) -> None:
        """Drop a claim whose send is known not to have happened, so a retry can claim it."""

    def note_feedback(self, profile_id: str, key: str, kind: str, at: str,
                      status: str | None) -> MessageRecord | None:
        """Keep the first time of provider feedback ``kind`` on the message and,
        when ``status`` is given, set it if the current status is one it may
        replace (FEEDBACK_STATUS_AFTER), in one conditional write; returns the
        record after it, or None when there is no such message."""

    def messages(self, profile_id: str, limit: int) -> list[MessageRecord]:
        """The person's messages, newest first."""

    def enroll(self, profile_id: str, trigger_id: str, occurrence: str, at: str, until: Any) -> bool:
        """Let the person enter the trigger (a conditional write): True when
        they never did, their last entry's ``until`` has passed, or this is
        the same occurrence again (a redelivery). ``until`` None: never again."""

    def entered(self, profile_id: str) -> list[dict[str, Any]]:
        """The triggers the person entered under a re-entry rule (their re-entry
        records): ``{trigger, occurrence, at, until}``."""

    def forget(self, profile_id: str, limit: int) -> dict[str, int]:
        """Remove up to ``limit`` of the person's messages and re-entry records;
        returns how many of each (``messages``, ``enrollments``). Fewer than
        ``limit`` in all: none is left."""


class DecisionLog(Protocol):
    def record(self, evaluation: "Evaluation", at: str) -> None:
        """Keep why each considered trigger did or did not fire for this event."""

    def note(self, profile_id: str, at: str, entry: Mapping[str, Any]) -> None:
        """Keep why delivery skipped or held one of the person's messages
        (``entry``: trigger, message, channel, outcome, reason)."""

    def decisions(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        """The person's evaluations and delivery notes, newest first."""

    def forget(self, profile_id: str, limit: int) -> int:
        """Remove up to ``limit`` of the person's decision records; returns how
        many. Fewer than ``limit``: none is left."""


class SendQueue(Protocol):
    def enqueue(self, decisions: Sequence["Decision"]) -> None:
        """Hand decisions to the delivery handler (at-least-once)."""


class Channels(Protocol):
    def send_email(self, to: str, sender: str, reply_to: str | None, subject: str,
                   html: str | None, text: str | None, tags: Mapping[str, str],
                   headers: Mapping[str, str]) -> str:
        """Send one email with these extra headers; returns the provider's message id."""

    def send_sms(self, phone: str, text: str) -> str:
        """Send one text message to an E.164 number; returns the provider's id."""

    def sms_opted_out(self, phone: str) -> bool:
        """True when the number replied STOP (the provider's opt-out list)."""

    def send_alert(self, topic: str, subject: str, text: str) -> str:
        """Publish a team alert (e.g. ``sales``); returns the provider's id."""

    def post_webhook(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> str:
        """POST a signed JSON body; returns a delivery id (status and request id)."""

    def emit(self, detail_type: str, detail: Mapping[str, Any]) -> str:
        """Put an event on the Nudge bus so triggers can chain."""


class TemplateSource(Protocol):
    def get_template(self, template_id: str) -> Any:
        """The current template, or None."""


class TriggerSource(Protocol):
    def triggers_for(self, event_key: str) -> list[Any]:
        """The enabled and disabled triggers indexed under this event name."""


class TimerStore(Protocol):
    def put(self, timer: Any) -> None:
        """Set a timer (one write; setting the same timer again changes nothing)."""

    def due(self, now: Any, limit: int) -> list[Any]:
        """Timers due at ``now`` or before, at most ``limit``, by indexed queries (never a scan)."""

    def delete(self, timer: Any) -> None:
        """Clear a timer that has fired (one write)."""

    def of_person(self, profile_id: str) -> list[Any]:
        """The person's pending timers, soonest first, by an index query (never a scan)."""

    def forget(self, profile_id: str) -> int:
        """Clear every pending timer of the person; returns how many."""


class ConsentStore(Protocol):
    """Subscriptions with their consent history, suppressions by salted hash,
    erased people, and the send budget's state (chalicelib.consent, chalicelib.budget)."""

    def preferences(self, profile_id: str) -> dict[str, "Consent"]:
        """The person's subscription states by key (``email:offers``, ``email:*``)."""

    def set_preferences(self, profile_id: str, changes: Mapping[str, "Consent"]) -> dict[str, "Consent"]:
        """Apply ``changes`` and keep each in the consent history, all or nothing;
        returns the states after them. Concurrent changes are merged, none lost."""

    def consent_history(self, profile_id: str) -> list[dict[str, Any]]:
        """Every consent change, oldest first: ``{key, subscribed, source, at}``."""

    def suppression(self, address: str) -> "Suppression | None":
        """The suppression of this email address or phone number, if any."""

    def suppress(self, address: str, scope: str, reason: str, at: str) -> None:
        """Suppress an address (scope ``all`` or ``marketing``); a suppression of
        scope ``all`` is never narrowed to ``marketing``."""

    def lift(self, address: str, reasons: Sequence[str]) -> bool:
        """Remove the address's suppression if its reason is one of ``reasons``
        (fresh consent after an erasure); True when one was removed."""

    def erased(self, user_id: str) -> bool:
        """True when a person with this user id was erased."""

    def mark_erased(self, user_id: str, at: str) -> None:
        """Keep the salted hash of an erased person's user id."""

    def forget(self, profile_id: str) -> None:
        """Remove the person's subscription states, consent history and budget."""

    def standing(self, profile_id: str, user_id: str | None, address: str, channel: str) -> "Standing":
        """Everything delivery checks about one person and address, in one read:
        subscription states, the address's suppression, whether the user id was
        erased, the channel's budget state with its version, and for email
        whether the reputation guard has paused marketing."""

    def budget(self, profile_id: str, channel: str) -> tuple[dict[str, Any], int]:
        """The budget state of the person on the channel and its version (0: none yet)."""

    def save_budget(self, profile_id: str, channel: str, state: Mapping[str, Any], version: int) -> None:
        """Write the state if its version is still ``version``; ConcurrentUpdate otherwise."""

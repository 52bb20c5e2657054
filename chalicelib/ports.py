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
    from chalicelib.consent import Consent, Suppression
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

    def history(self, identities: Sequence[str], limit: int, cursor: str | None) -> EventPage:
        """Events of these identities (``user:<id>``/``anon:<id>``), newest first."""

    def count(self, identities: Sequence[str], event_key: str, start: Any, end: Any) -> int:
        """How many events named ``event_key`` these identities sent from
        ``start`` to ``end`` (inclusive), by reading that window only."""


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.key, "trigger": self.trigger_id, "channel": self.channel, "status": self.status,
            "to": self.to, "subject": self.subject, "providerMessageId": self.provider_id,
            "reason": self.reason, "createdAt": self.created_at, "updatedAt": self.updated_at,
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

    def messages(self, profile_id: str, limit: int) -> list[MessageRecord]:
        """The person's messages, newest first."""

    def enroll(self, profile_id: str, trigger_id: str, occurrence: str, at: str, until: Any) -> bool:
        """Let the person enter the trigger (a conditional write): True when
        they never did, their last entry's ``until`` has passed, or this is
        the same occurrence again (a redelivery). ``until`` None: never again."""


class DecisionLog(Protocol):
    def record(self, evaluation: "Evaluation", at: str) -> None:
        """Keep why each considered trigger did or did not fire for this event."""

    def decisions(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        """The person's evaluations, newest first."""


class SendQueue(Protocol):
    def enqueue(self, decisions: Sequence["Decision"]) -> None:
        """Hand decisions to the delivery handler (at-least-once)."""


class Channels(Protocol):
    def send_email(self, to: str, sender: str, reply_to: str | None, subject: str,
                   html: str | None, text: str | None, tags: Mapping[str, str]) -> str:
        """Send one email; returns the provider's message id."""

    def send_sms(self, phone: str, text: str) -> str:
        """Send one text message to an E.164 number; returns the provider's id."""

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

    def budget(self, profile_id: str, channel: str) -> tuple[dict[str, Any], int]:
        """The budget state of the person on the channel and its version (0: none yet)."""

    def save_budget(self, profile_id: str, channel: str, state: Mapping[str, Any], version: int) -> None:
        """Write the state if its version is still ``version``; ConcurrentUpdate otherwise."""

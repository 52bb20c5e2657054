"""The interfaces the engine needs from storage, in one place.

Adapters live in ``chalicelib.dynamodb`` (DynamoDB through PynamoDB); unit tests
use in-memory versions. Use cases depend on these protocols only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from chalicelib.profiles import Profile
from chalicelib.segment import Event


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


class KeyStore(Protocol):
    def kind_of(self, secret: str) -> str | None:
        """``"write"`` or ``"admin"`` for a known key, None otherwise."""


ProfileUpdate = Callable[[Profile], Profile]

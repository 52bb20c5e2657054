"""In-memory versions of the storage ports, for unit tests of the engine only."""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from chalicelib.dynamodb import event_sort_key
from chalicelib.errors import ConcurrentUpdate
from chalicelib.ports import EventPage
from chalicelib.profiles import Profile
from chalicelib.segment import Event


class MemoryEventLog:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Event] = {}
        self.message_ids: set[tuple[str, str]] = set()

    def append(self, events: Sequence[Event]) -> list[bool]:
        results = []
        for event in events:
            marker = (event.identity, event.message_id)
            key = (event.identity, event_sort_key(event))
            if key in self.items or (event.client_timestamp is None and marker in self.message_ids):
                results.append(False)
                continue
            self.items[key] = event
            self.message_ids.add(marker)
            results.append(True)
        return results

    def history(self, identities: Sequence[str], limit: int, cursor: str | None) -> EventPage:
        keys = sorted((k for k in self.items if k[0] in identities and (cursor is None or k[1] < cursor)),
                      key=lambda k: k[1], reverse=True)
        chosen = keys[:limit]
        more = len(keys) > limit
        return EventPage([self.items[k] for k in chosen], chosen[-1][1] if more else None)


class MemoryProfileStore:
    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.links: dict[str, str] = {}
        self.writes = 0
        #: Profile ids whose next save loses a race, to exercise retries.
        self.conflicts: list[str] = []

    def get(self, profile_id: str) -> Profile | None:
        return self.profiles.get(profile_id)

    def save(self, profile: Profile) -> Profile:
        if profile.profile_id in self.conflicts:
            self.conflicts.remove(profile.profile_id)
            raise ConcurrentUpdate(profile.profile_id)
        stored = self.profiles.get(profile.profile_id)
        if (stored.version if stored else 0) != profile.version:
            raise ConcurrentUpdate(profile.profile_id)
        saved = replace(profile, version=profile.version + 1)
        self.profiles[profile.profile_id] = saved
        self.writes += 1
        return saved

    def delete(self, profile_id: str) -> None:
        self.profiles.pop(profile_id, None)

    def resolve(self, anonymous_ids: Sequence[str]) -> dict[str, str]:
        return {a: self.links[a] for a in anonymous_ids if a in self.links}

    def link(self, anonymous_id: str, user_id: str) -> None:
        self.links[anonymous_id] = user_id


class MemoryKeyStore:
    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self.keys = dict(keys or {})
        self.lookups = 0

    def kind_of(self, secret: str) -> str | None:
        self.lookups += 1
        return self.keys.get(secret)

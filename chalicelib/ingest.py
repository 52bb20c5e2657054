"""The ingest use case: log accepted events once, then fold them into profiles.

Order matters for "nothing accepted is lost": events are logged first (a
conditional write per event, so a retried request is a no-op), then each
person's profile is read, updated in memory and written back once per request
under an optimistic lock. Many events from one person cost one profile write.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from chalicelib.errors import ConcurrentUpdate
from chalicelib.ports import EventLog, ProfileStore
from chalicelib.profiles import Profile, apply_events, linked_anonymous_ids, merge, new_profile
from chalicelib.segment import Event

MAX_PROFILE_ATTEMPTS = 5


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    profiles: tuple[str, ...]


def ingest(events: Sequence[Event], log: EventLog, profiles: ProfileStore) -> IngestResult:
    """Log ``events`` and update the profiles of the people they belong to."""
    fresh = [event for event, is_new in zip(events, log.append(events)) if is_new]
    by_profile = _group_by_profile(fresh, profiles)
    for profile_id, person_events in by_profile.items():
        _update_profile(profile_id, person_events, profiles)
    return IngestResult(
        accepted=len(fresh),
        duplicates=len(events) - len(fresh),
        profiles=tuple(sorted(by_profile)),
    )


def _group_by_profile(events: Sequence[Event], profiles: ProfileStore) -> dict[str, list[Event]]:
    """Each event goes to its user's profile when the user is known, from the
    event itself, from a link in the same request, or from a stored link."""
    links = {anon: event.user_id for event in events for anon in linked_anonymous_ids([event]) if event.user_id}
    unknown = sorted({e.anonymous_id for e in events if e.user_id is None and e.anonymous_id not in links})
    if unknown:
        links.update(profiles.resolve(unknown))
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.user_id is not None:
            grouped[f"user:{event.user_id}"].append(event)
        elif event.anonymous_id in links:
            grouped[f"user:{links[event.anonymous_id]}"].append(event)
        else:
            grouped[f"anon:{event.anonymous_id}"].append(event)
    return grouped


def _update_profile(profile_id: str, events: list[Event], profiles: ProfileStore) -> Profile:
    for attempt in range(MAX_PROFILE_ATTEMPTS):
        current = profiles.get(profile_id) or new_profile(profile_id)
        newly_linked = [a for a in sorted(linked_anonymous_ids(events)) if a not in current.anonymous_ids]
        merged_away = []
        for anonymous_id in newly_linked:
            anonymous = profiles.get(f"anon:{anonymous_id}")
            if anonymous is not None:
                current = merge(current, anonymous)
                merged_away.append(anonymous.profile_id)
        try:
            saved = profiles.save(apply_events(current, events))
        except ConcurrentUpdate:
            if attempt == MAX_PROFILE_ATTEMPTS - 1:
                raise
            continue
        # Links are written after the profile that lists them, so a reader that
        # follows a link always finds the merged profile.
        for anonymous_id in newly_linked:
            profiles.link(anonymous_id, saved.user_id or "")
        for merged_id in merged_away:
            profiles.delete(merged_id)
        return saved
    raise AssertionError("unreachable")

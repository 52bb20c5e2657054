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
from chalicelib.segment import Event, iso

MAX_PROFILE_ATTEMPTS = 5


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    profiles: tuple[str, ...]


def ingest(events: Sequence[Event], log: EventLog, profiles: ProfileStore) -> IngestResult:
    """Log ``events`` and update the profiles of the people they belong to.

    An event the log already holds is a retry, and its first attempt may have
    stopped between logging and folding (it answered 503). So a retried event
    is folded unless the profile already shows an event of that name at or
    after the logged event's time; without that, a retried identify would
    never bring its traits (an email address) and a retried order would never
    call off a cart reminder. The logged time is the retry's own when the
    client gave a timestamp and no ``sentAt`` correction moved it; when one
    did, the logged copy is read back (retries only) and folded instead.
    Retried events without a client timestamp are not folded again (their
    logged time, the first receipt, is not known).
    """
    logged = log.append(events)
    fresh = [event for event, is_new in zip(events, logged) if is_new]
    keys = {_key(event) for event in fresh}
    retried: list[Event] = []
    for event, is_new in zip(events, logged):
        if not is_new and _key(event) not in keys and event.client_timestamp is not None:
            keys.add(_key(event))
            retried.append(event)
    by_profile = _group_by_profile([*fresh, *retried], profiles)
    fresh_keys = {_key(event) for event in fresh}
    for profile_id, person_events in by_profile.items():
        _update_profile(profile_id, person_events, profiles, fresh_keys, log)
    return IngestResult(
        accepted=len(fresh),
        duplicates=len(events) - len(fresh),
        profiles=tuple(sorted(by_profile)),
    )


def _key(event: Event) -> tuple[str, str, str | None]:
    """What makes two calls the same event (as the event log keys it)."""
    return event.identity, event.message_id, iso(event.client_timestamp) if event.client_timestamp else None


def _shown(profile: Profile, event: Event) -> bool:
    """Whether the profile counts an event of this one's name at or after its time."""
    counter = profile.counters.get(event.counter_name)
    return counter is not None and counter.last >= iso(event.timestamp)


def _to_fold(current: Profile, candidates: list[Event], fresh: set[tuple[str, str, str | None]],
             log: EventLog) -> list[Event]:
    """The new events, and the retried ones (as logged) the profile does not show."""
    chosen = [e for e in candidates if _key(e) in fresh]
    exact = [e for e in candidates if _key(e) not in fresh and e.timestamp == e.client_timestamp]
    moved = [e for e in candidates if _key(e) not in fresh and e.timestamp != e.client_timestamp
             and not _shown(current, e)]  # shown at the retry's own time: taken as shown, nothing read
    copies = [copy for copy in log.stored(moved) if copy is not None] if moved else []
    return chosen + [e for e in exact + copies if not _shown(current, e)]


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


def _update_profile(profile_id: str, candidates: list[Event], profiles: ProfileStore,
                    fresh: set[tuple[str, str, str | None]], log: EventLog) -> Profile | None:
    for attempt in range(MAX_PROFILE_ATTEMPTS):
        stored = profiles.get(profile_id)
        current = stored or new_profile(profile_id)
        events = _to_fold(current, candidates, fresh, log)
        if not events:
            return stored  # a retry of what the profile already shows: nothing to write
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

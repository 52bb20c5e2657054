"""Profiles: what Nudge knows about one person, folded from their events.

Pure functions over frozen values. A profile is keyed by the person's userId
once known (``user:<id>``), or by an anonymousId before that (``anon:<id>``).
Identify and alias calls link anonymous ids to a user; the anonymous profile is
then merged into the user's, so events sent before login belong to the person.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.segment import Event, iso


@dataclass(frozen=True)
class EventCounter:
    count: int
    last: str  # ISO time of the newest event counted

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "last": self.last}


@dataclass(frozen=True)
class Profile:
    profile_id: str
    user_id: str | None = None
    anonymous_ids: tuple[str, ...] = ()
    traits: Mapping[str, Any] = field(default_factory=dict)
    groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timezone: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None
    counters: Mapping[str, EventCounter] = field(default_factory=dict)
    #: Optimistic-lock version held by the store; 0 for a profile not yet saved.
    version: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "profileId": self.profile_id,
            "userId": self.user_id,
            "anonymousIds": list(self.anonymous_ids),
            "traits": dict(self.traits),
            "groups": {key: dict(value) for key, value in self.groups.items()},
            "timezone": self.timezone,
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "events": {name: counter.as_dict() for name, counter in sorted(self.counters.items())},
        }


def profile_key(user_id: str | None, anonymous_id: str | None) -> str:
    return f"user:{user_id}" if user_id is not None else f"anon:{anonymous_id}"


def new_profile(profile_id: str) -> Profile:
    kind, _, ident = profile_id.partition(":")
    if kind == "user":
        return Profile(profile_id=profile_id, user_id=ident)
    return Profile(profile_id=profile_id, anonymous_ids=(ident,))


def valid_timezone(name: Any) -> str | None:
    """The IANA zone name if it exists, else None."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def linked_anonymous_ids(events: Iterable[Event]) -> set[str]:
    """Anonymous ids that these events tie to their userId (any call carrying
    both ids, and alias calls' previousId)."""
    linked: set[str] = set()
    for event in events:
        if event.user_id is None:
            continue
        if event.anonymous_id is not None:
            linked.add(event.anonymous_id)
        if event.type == "alias" and event.previous_id is not None:
            linked.add(event.previous_id)
    return linked


def merge(into: Profile, other: Profile) -> Profile:
    """Fold ``other`` (usually an anonymous profile) into ``into``.

    Traits already on ``into`` win; counters add; first and last seen widen.
    """
    counters = dict(into.counters)
    for name, theirs in other.counters.items():
        ours = counters.get(name)
        counters[name] = theirs if ours is None else EventCounter(ours.count + theirs.count, max(ours.last, theirs.last))
    anonymous_ids = tuple(dict.fromkeys(into.anonymous_ids + other.anonymous_ids))
    return replace(
        into,
        anonymous_ids=anonymous_ids,
        traits={**other.traits, **into.traits},
        groups={**other.groups, **into.groups},
        timezone=into.timezone or other.timezone,
        first_seen=_earliest(into.first_seen, other.first_seen),
        last_seen=_latest(into.last_seen, other.last_seen),
        counters=counters,
    )


def apply_events(profile: Profile, events: Iterable[Event]) -> Profile:
    """The profile after these events, applied in timestamp order."""
    traits = dict(profile.traits)
    groups = dict(profile.groups)
    counters = dict(profile.counters)
    anonymous_ids = list(profile.anonymous_ids)
    first_seen, last_seen = profile.first_seen, profile.last_seen
    context_zone = None
    for event in sorted(events, key=lambda e: e.timestamp):
        when = iso(event.timestamp)
        first_seen = _earliest(first_seen, when)
        last_seen = _latest(last_seen, when)
        name = event.counter_name
        current = counters.get(name)
        counters[name] = EventCounter(1, when) if current is None else EventCounter(current.count + 1, max(current.last, when))
        if event.type == "identify" and event.traits:
            traits.update(event.traits)
        if event.type == "group" and event.group_id is not None:
            groups[event.group_id] = {**groups.get(event.group_id, {}), **event.traits}
        context_zone = valid_timezone(event.context.get("timezone")) or context_zone
        for anonymous_id in linked_anonymous_ids([event]):
            if anonymous_id not in anonymous_ids:
                anonymous_ids.append(anonymous_id)
    timezone = valid_timezone(traits.get("timezone")) or context_zone or profile.timezone
    return replace(
        profile,
        traits=traits,
        groups=groups,
        counters=counters,
        anonymous_ids=tuple(anonymous_ids),
        first_seen=first_seen,
        last_seen=last_seen,
        timezone=timezone,
    )


# Times are held as segment.iso() text, which sorts in time order.
def _earliest(a: str | None, b: str | None) -> str | None:
    values = [v for v in (a, b) if v]
    return min(values) if values else None


def _latest(a: str | None, b: str | None) -> str | None:
    values = [v for v in (a, b) if v]
    return max(values) if values else None


def apply_update(profile: Profile, params: Mapping[str, Any]) -> Profile:
    """The profile after an ``update_profile`` action: ``set`` traits, add or
    remove ``tags`` (kept sorted in the ``tags`` trait), ``increment`` numbers
    (a missing or non-numeric trait counts as 0)."""
    traits = dict(profile.traits)
    traits.update(params.get("set") or {})
    tags = set(traits.get("tags") or []) if isinstance(traits.get("tags"), list) else set()
    if params.get("add_tags") or params.get("remove_tags"):
        tags |= set(params.get("add_tags") or [])
        tags -= set(params.get("remove_tags") or [])
        traits["tags"] = sorted(tags)
    for name, amount in (params.get("increment") or {}).items():
        current = traits.get(name)
        base = current if isinstance(current, (int, float)) and not isinstance(current, bool) else 0
        traits[name] = base + amount
    return replace(profile, traits=traits)

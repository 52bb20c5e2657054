"""Erasure and export of one person: the right to erasure and the right of access.

Pure of AWS: both use cases work over the storage ports (chalicelib.ports), so
unit tests run them on the in-memory fakes and the admin API on DynamoDB.

A person is found by userId (``user:<id>``); their identities are that key and
``anon:<anonymousId>`` for every anonymous id their profile lists. What Nudge
holds about them is keyed by those identities: events (and their deduplication
markers), the profile, anonymous profiles and alias links, messages, decisions
and re-entry records, timers, subscription states with their consent history
and send budgets.

``erase`` removes all of it in an order that a crash, a timeout or an exhausted
time budget can interrupt anywhere and a repeat finishes:

1. read the profile (it names the identities and the addresses);
2. keep only salted hashes: the erased marker of the userId, and an ``erased``
   suppression of scope ``marketing`` for the email and phone traits, so a later
   marketing event cannot quietly reach them again (transactional messages to a
   returning customer still go; fresh consent lifts an ``erased`` suppression);
3. clear the timers first, so nothing fires for the person meanwhile; then the
   consent items, messages and re-entry records, decisions, events (each after
   its marker);
4. remove anonymous profiles and alias links, and the person's profile last.

While the profile exists a repeat finds every identity again; once it is gone
nothing is left to find. Every step is idempotent.

``export`` reads the same data into one JSON-ready document.

Neither stops events that are still arriving: an event accepted after the
erasure starts a new profile (marketing to the erased addresses stays
suppressed until the person consents again).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from chalicelib.consent import CHANNELS
from chalicelib.ports import ConsentStore, DecisionLog, EventLog, Ledger, ProfileStore, TimerStore
from chalicelib.profiles import Profile
from chalicelib.segment import iso

#: Items removed per call to a store while erasing (events, messages, decisions).
ERASE_PAGE = 250
#: Events read per history page while exporting.
EXPORT_PAGE = 500
#: Upper bound of messages and decisions read for an export: in practice, all of them.
EVERYTHING = 1_000_000
#: The traits whose values are addresses (they get the ``erased`` suppression).
ADDRESS_TRAITS = ("email", "phone")
#: The suppression reason an erasure leaves; fresh consent lifts it.
ERASED = "erased"


@dataclass(frozen=True)
class PersonStores:
    """The stores that hold something about a person."""

    events: EventLog
    profiles: ProfileStore
    ledger: Ledger
    decisions: DecisionLog
    timers: TimerStore
    consent: ConsentStore


@dataclass(frozen=True)
class Erasure:
    """What one erase call removed. ``complete`` False: the time budget ran out
    first; repeating the call carries on from where it stopped."""

    user_id: str
    complete: bool
    removed: Mapping[str, int]
    #: The traits (``email``, ``phone``) whose addresses are now suppressed for marketing.
    suppressed: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"userId": self.user_id, "complete": self.complete, "removed": dict(self.removed),
                "suppressed": list(self.suppressed), "identities": len(self.identities)}


#: Every kind an erasure counts, so a summary always names them all.
KINDS = ("events", "profiles", "links", "messages", "decisions", "enrollments", "timers", "subscriptions",
         "consentChanges")


def identities_of(profile: Profile) -> tuple[str, ...]:
    """The person's keys: the profile id, then ``anon:<id>`` per anonymous id."""
    return (profile.profile_id, *(f"anon:{anonymous_id}" for anonymous_id in profile.anonymous_ids))


def addresses_of(profile: Profile) -> list[tuple[str, str]]:
    """(trait, address) for each address trait the profile holds."""
    return [(trait, value.strip()) for trait in ADDRESS_TRAITS
            if isinstance(value := profile.traits.get(trait), str) and value.strip()]


class _OutOfTime(Exception):
    pass


def erase(user_id: str, stores: PersonStores, at: str,
          out_of_time: Callable[[], bool] = lambda: False, page: int = ERASE_PAGE) -> Erasure | None:
    """Erase the person with this userId (see the module docstring); None when
    there is no profile for them (never known, or already erased).

    ``out_of_time`` is asked after each step and page: once it says True the
    call stops and returns ``complete=False`` with what it removed so far. It is
    asked only after a step that removed something, so every call gets further
    than the one before and repeating it always gets to the end."""
    profile = stores.profiles.get(f"user:{user_id}")
    if profile is None:
        return None
    identities = identities_of(profile)
    addresses = addresses_of(profile)
    stores.consent.mark_erased(user_id, at)
    for _, address in addresses:
        stores.consent.suppress(address, "marketing", ERASED, at)
    suppressed = tuple(trait for trait, _ in addresses)
    removed: Counter[str] = Counter({kind: 0 for kind in KINDS})

    def check(removed_some: int) -> None:
        # Only after a step that removed something: a repeat skips the empty
        # steps, so each call gets further, and the repeats reach the end.
        if removed_some and out_of_time():
            raise _OutOfTime

    try:
        for identity in identities:
            count = stores.timers.forget(identity)
            removed["timers"] += count
            check(count)
        for identity in identities:
            states, changes = len(stores.consent.preferences(identity)), len(stores.consent.consent_history(identity))
            stores.consent.forget(identity)
            removed["subscriptions"] += states
            removed["consentChanges"] += changes
            check(states + changes)
        for identity in identities:
            while True:
                counts = stores.ledger.forget(identity, page)
                removed.update(counts)
                check(sum(counts.values()))
                if sum(counts.values()) < page:
                    break
            while True:
                count = stores.decisions.forget(identity, page)
                removed["decisions"] += count
                check(count)
                if count < page:
                    break
        while True:
            count = stores.events.forget(identities, page)
            removed["events"] += count
            check(count)
            if count < page:
                break
        anonymous = [f"anon:{anonymous_id}" for anonymous_id in profile.anonymous_ids]
        for leftover in stores.profiles.get_many(anonymous) if anonymous else []:
            stores.profiles.delete(leftover.profile_id)
            removed["profiles"] += 1
        for anonymous_id in profile.anonymous_ids:
            removed["links"] += stores.profiles.unlink(anonymous_id, user_id)
        stores.profiles.delete(profile.profile_id)
        removed["profiles"] += 1
    except _OutOfTime:
        return Erasure(user_id, False, dict(removed), suppressed, identities)
    return Erasure(user_id, True, dict(removed), suppressed, identities)


def export(user_id: str, stores: PersonStores, now: Any) -> dict[str, Any] | None:
    """Everything Nudge holds about the person with this userId, as one
    JSON-ready document; None when there is no profile for them.

    Events are oldest first; messages and decisions newest first; timers
    soonest first; consent changes oldest first."""
    from chalicelib.messages import shown

    profile = stores.profiles.get(f"user:{user_id}")
    if profile is None:
        return None
    identities = identities_of(profile)
    events = []
    cursor = None
    while True:
        events_page = stores.events.history(identities, EXPORT_PAGE, cursor)
        events.extend(event.as_dict() for event in events_page.events)
        cursor = events_page.cursor
        if cursor is None:
            break
    events.reverse()
    records = [record for identity in identities for record in stores.ledger.messages(identity, EVERYTHING)]
    decisions = [decision for identity in identities for decision in stores.decisions.decisions(identity, EVERYTHING)]
    subscriptions: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    budgets: dict[str, Any] = {}
    for identity in identities:
        subscriptions.update({key: consent.as_dict() for key, consent in stores.consent.preferences(identity).items()})
        history.extend(stores.consent.consent_history(identity))
        for channel in CHANNELS:
            state, _ = stores.consent.budget(identity, channel)
            if state:
                budgets[channel] = dict(state)
    suppression = {trait: {"address": address, "suppression": _shown(stores.consent.suppression(address))}
                   for trait, address in addresses_of(profile)}
    return {
        "userId": user_id,
        "exportedAt": iso(now),
        "profile": profile.as_dict(),
        "identities": list(identities),
        "events": events,
        "messages": [shown(record, now) for record in sorted(records, key=lambda r: r.created_at, reverse=True)],
        "decisions": sorted(decisions, key=_decision_time, reverse=True),
        "enrollments": [entry for identity in identities for entry in stores.ledger.entered(identity)],
        "timers": [timer.as_dict() for timer in
                   sorted((t for identity in identities for t in stores.timers.of_person(identity)),
                          key=lambda timer: timer.due)],
        "subscriptions": subscriptions,
        "consentHistory": sorted(history, key=lambda change: str(change.get("at", ""))),
        "budgets": budgets,
        "suppressions": suppression,
        "erasedBefore": stores.consent.erased(user_id),
    }


def _shown(suppression: Any) -> dict[str, Any] | None:
    return suppression.as_dict() if suppression is not None else None


def _decision_time(decision: Any) -> str:
    return str(decision.get("at", "")) if isinstance(decision, Mapping) else ""

"""The on-arrival use case: evaluate triggers for newly logged events.

Runs for every event the events table's stream reports as new (a retried
ingest writes nothing new, so it triggers nothing). For each event: look up
the triggers indexed under its name, read the person's profile, evaluate,
keep the verdicts, set the timers of triggers that wait, and hand the
decisions to the send queue.

Date triggers are set here too (``chalicelib.date_triggers``), without ever
scanning profiles:

- anniversary triggers (indexed under ``@anniversary``) are consulted for an
  identify carrying a trait one of them names, and for an identify or alias
  that links an anonymous id (the merged profile may bring the date): each
  sets the timer of the next occurrence, or records why there is none;
- inactivity triggers (``@inactive``) are consulted for every event and set
  the timer of the silence after it; that costs a timer write per event and
  trigger, and no decision record (their verdict is written when they fire).

So a person is scheduled once they send such an event after the trigger
exists; people who stay silent are not (a backfill would be a separate job).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any, Sequence

from chalicelib.durations import format_duration
from chalicelib.evaluate import Admit, Evaluation, Verdict, evaluate
from chalicelib.ports import DecisionLog, EventLog, Ledger, ProfileStore, SendQueue, TimerStore, TriggerSource
from chalicelib.profiles import Profile, apply_events, linked_anonymous_ids, new_profile
from chalicelib.segment import Event, iso
from chalicelib.triggers import ANNIVERSARY_KEY, INACTIVE_KEY, Trigger

#: Events emitted by triggers carry a hop count; chains longer than this stop.
MAX_HOPS = 5


def hops(event: Event) -> int:
    nudge = event.context.get("nudge") if isinstance(event.context, dict) else None
    value = nudge.get("hops") if isinstance(nudge, dict) else 0
    return value if isinstance(value, int) else 0


def snapshot(profile: Profile, event: Event) -> Profile:
    """The profile as of ``event``. The stream may report the event before the
    ingest request has written the profile; then the event is folded in here,
    for this evaluation only."""
    if profile.last_seen is None or profile.last_seen < iso(event.timestamp):
        return apply_events(profile, [event])
    return profile


def on_arrival(
    events: Sequence[Event],
    *,
    profiles: ProfileStore,
    triggers: TriggerSource,
    decisions: DecisionLog,
    queue: SendQueue,
    timers: TimerStore,
    fallback_tz: str | None = None,
    history: EventLog | None = None,
    enrollments: Ledger | None = None,
) -> list[Evaluation]:
    """``fallback_tz``: the zone of people without one (default: the settings').
    ``history`` counts past events for ``when.count`` triggers, ``enrollments``
    keeps re-entry rules; without them those triggers are not admitted."""
    evaluations = []
    for event in events:
        if hops(event) >= MAX_HOPS:
            continue
        candidates = triggers.triggers_for(event.counter_name)
        inactive = [t for t in triggers.triggers_for(INACTIVE_KEY) if t.enabled]
        anniversaries = _anniversaries_to_set(event, triggers)
        if not (candidates or inactive or anniversaries):
            continue
        profile_id = event.identity
        if event.user_id is None and event.anonymous_id is not None:
            linked = profiles.resolve([event.anonymous_id]).get(event.anonymous_id)
            profile_id = f"user:{linked}" if linked else profile_id
        profile = snapshot(profiles.get(profile_id) or new_profile(profile_id), event)
        evaluation = evaluate(event, profile, candidates, admit=_admission(profile, history, enrollments))
        if anniversaries or inactive:
            evaluation = _with_dates(evaluation, event, profile, anniversaries, inactive, fallback_tz)
        if evaluation.verdicts:
            decisions.record(evaluation, iso(event.received_at))
        for timer in evaluation.timers:
            timers.put(timer)
        if evaluation.decisions:
            queue.enqueue(evaluation.decisions)
        evaluations.append(evaluation)
    return evaluations


def _admission(profile: Profile, history: EventLog | None, enrollments: Ledger | None) -> Admit:
    """The storage checks of matched triggers: how many times within a window,
    and whether the person may enter again."""

    def admit(trigger: Trigger, event: Event) -> tuple[bool, str]:
        if trigger.count is not None:
            if history is None:
                return False, "counts are not available here"
            identities = [profile.profile_id, *(f"anon:{a}" for a in profile.anonymous_ids)]
            seen = history.count(identities, trigger.event_key, event.timestamp - trigger.count.within,
                                 event.timestamp)
            if seen < trigger.count.at_least:
                return False, f"{seen} of {trigger.count.at_least} within {format_duration(trigger.count.within)}"
        if trigger.reentry != "every":
            if enrollments is None:
                return False, "re-entry rules are not available here"
            until = None if trigger.reentry == "once" else event.timestamp + (trigger.reentry_period or timedelta(0))
            if not enrollments.enroll(profile.profile_id, trigger.id, event.message_id, iso(event.timestamp), until):
                rule = "once" if trigger.reentry == "once" else f"once per {format_duration(trigger.reentry_period)}"
                return False, f"already entered ({rule})"
        return True, ""

    return admit


def _anniversaries_to_set(event: Event, triggers: TriggerSource) -> list[Any]:
    """The anniversary triggers this event may (re)set: an identify carrying
    their date trait, or any identify or alias that links an anonymous id."""
    if event.type not in ("identify", "alias"):
        return []
    links = bool(linked_anonymous_ids([event]))
    if not links and not event.traits:
        return []
    return [t for t in triggers.triggers_for(ANNIVERSARY_KEY)
            if t.anniversary is not None and (links or t.anniversary.trait in event.traits)]


def _with_dates(evaluation: Evaluation, event: Event, profile: Profile, anniversaries: Sequence[Any],
                inactive: Sequence[Any], fallback_tz: str | None) -> Evaluation:
    from chalicelib.date_triggers import inactivity_timer, plan_anniversary

    if fallback_tz is None:
        from chalicelib.settings import get_settings

        fallback_tz = get_settings().fallback_timezone
    verdicts = list(evaluation.verdicts)
    timers = list(evaluation.timers)
    for trigger in anniversaries:
        if trigger.anniversary.trait not in event.traits and trigger.anniversary.trait not in profile.traits:
            continue  # a link that brought no date: nothing to say
        if not trigger.enabled:
            verdicts.append(Verdict(trigger.id, False, "trigger is disabled"))
            continue
        planned = plan_anniversary(trigger, profile, event.received_at, fallback_tz)
        verdicts.append(Verdict(trigger.id, planned.timer is not None, planned.reason))
        timers.extend([planned.timer] if planned.timer is not None else [])
    for trigger in inactive:
        timer = inactivity_timer(trigger, profile, event, fallback_tz)
        timers.extend([timer] if timer is not None else [])
    return replace(evaluation, verdicts=tuple(verdicts), timers=tuple(timers))

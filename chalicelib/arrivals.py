"""The on-arrival use case: evaluate triggers for newly logged events.

Runs for every event the events table's stream reports as new (a retried
ingest writes nothing new, so it triggers nothing). For each event: look up
the triggers indexed under its name, read the person's profile, evaluate,
keep the verdicts, set the timers of triggers that wait, and hand the
decisions to the send queue.
"""
from __future__ import annotations

from typing import Sequence

from chalicelib.evaluate import Evaluation, evaluate
from chalicelib.ports import DecisionLog, ProfileStore, SendQueue, TimerStore, TriggerSource
from chalicelib.profiles import Profile, apply_events, new_profile
from chalicelib.segment import Event, iso

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
) -> list[Evaluation]:
    evaluations = []
    for event in events:
        candidates = triggers.triggers_for(event.counter_name)
        if not candidates or hops(event) >= MAX_HOPS:
            continue
        profile_id = event.identity
        if event.user_id is None and event.anonymous_id is not None:
            linked = profiles.resolve([event.anonymous_id]).get(event.anonymous_id)
            profile_id = f"user:{linked}" if linked else profile_id
        profile = profiles.get(profile_id) or new_profile(profile_id)
        evaluation = evaluate(event, snapshot(profile, event), candidates)
        decisions.record(evaluation, iso(event.received_at))
        for timer in evaluation.timers:
            timers.put(timer)
        if evaluation.decisions:
            queue.enqueue(evaluation.decisions)
        evaluations.append(evaluation)
    return evaluations

"""Timers: a trigger that waits, and what happens when its wait is over.

Pure. ``timer_for`` turns a matched event into a Timer due at the event's time
plus the trigger's wait; ``fire`` decides, when it is due, whether the trigger
still acts:

- a newer event of the trigger's own kind restarted the wait (abandoned cart:
  each "Product Added" moves the reminder to an hour after the last one), so
  this timer is superseded;
- an ``unless`` event happened since the wait began: called off;
- the trigger was deleted or disabled meanwhile, or the person erased: dropped.

A "deferred" timer holds a decision that quiet hours kept back; when due it
hands the decision back to the send queue (unless the trigger is gone).

Otherwise it returns the trigger's actions as decisions, keyed like any other
decision (trigger, event, action), so a timer fired twice still sends once.
The profile's per-event ``last`` times are all ``fire`` needs: calling a wait
off costs no write when the cancelling event arrives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from chalicelib.evaluate import Decision
from chalicelib.profiles import Profile
from chalicelib.segment import Event, iso
from chalicelib.triggers import Trigger


@dataclass(frozen=True)
class Timer:
    profile_id: str
    trigger_id: str
    #: The messageId of the event that started the wait.
    occurrence: str
    #: When the wait began (the event's time) and ends, as segment.iso() text.
    started: str
    due: str
    event: Mapping[str, Any] = field(default_factory=dict)
    #: "wait" (a trigger's wait), "deferred" (a decision held back by quiet hours), "step",
    #: "anniversary", "inactive", or "broadcast" (a page of a broadcast run: chalicelib.broadcasts).
    kind: str = "wait"
    #: The held-back decision (Decision.as_dict()) of a "deferred" timer.
    decision: Mapping[str, Any] | None = None
    #: The sequence step a "step" timer carries out; a "broadcast" timer's profiles shard.
    step: int = 0
    #: A "broadcast" timer's place in its shard (the last profile id read), None at the start.
    cursor: str | None = None

    @property
    def id(self) -> str:
        base = f"{self.profile_id}#{self.trigger_id}#{self.occurrence}"
        if self.kind == "broadcast":
            return f"{base}#b{self.step}#{self.cursor or ''}"
        return f"{base}#s{self.step}" if self.kind == "step" else base

    def as_dict(self) -> dict[str, Any]:
        body = {"profileId": self.profile_id, "trigger": self.trigger_id, "occurrence": self.occurrence,
                "started": self.started, "due": self.due, "event": dict(self.event), "kind": self.kind}
        if self.decision is not None:
            body["decision"] = dict(self.decision)
        if self.kind in ("step", "broadcast"):
            body["step"] = self.step
        if self.cursor is not None:
            body["cursor"] = self.cursor
        return body

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Timer":
        return cls(profile_id=raw["profileId"], trigger_id=raw["trigger"], occurrence=raw["occurrence"],
                   started=raw["started"], due=raw["due"], event=raw.get("event", {}),
                   kind=raw.get("kind", "wait"), decision=raw.get("decision"), step=raw.get("step", 0),
                   cursor=raw.get("cursor"))


@dataclass(frozen=True)
class Firing:
    """What a due timer came to: decisions to carry out, or why there are none."""

    decisions: tuple[Decision, ...]
    reason: str
    #: Timers the sweep sets after this one (an anniversary's next occurrence).
    next_timers: tuple[Timer, ...] = ()

    @property
    def acted(self) -> bool:
        return bool(self.decisions)


def timer_for(trigger: Trigger, event: Event, profile_id: str) -> Timer:
    assert trigger.wait is not None
    return Timer(profile_id=profile_id, trigger_id=trigger.id, occurrence=event.message_id,
                 started=iso(event.timestamp), due=iso(event.timestamp + trigger.wait), event=event.as_dict())


def fire(timer: Timer, trigger: Trigger | None, profile: Profile | None, fallback_tz: str = "UTC") -> Firing:
    """Decide what a due timer does (see the module docstring; anniversary and
    inactivity timers: chalicelib.date_triggers)."""
    if timer.kind in ("anniversary", "inactive"):
        from chalicelib.date_triggers import fire_dated

        return fire_dated(timer, trigger, profile, fallback_tz)
    if trigger is None:
        return Firing((), "the trigger was deleted during the wait")
    if not trigger.enabled:
        return Firing((), "the trigger was disabled during the wait")
    if profile is None:
        return Firing((), "the person's profile no longer exists")
    if timer.kind == "deferred" and timer.decision is not None:
        return Firing((Decision.from_dict(timer.decision),), "quiet hours are over")
    if timer.kind == "step":
        return fire_step(timer, trigger, profile)
    own = profile.counters.get(trigger.event_key)
    if own is not None and own.last > timer.started:
        return Firing((), f"a newer {trigger.event_key!r} restarted the wait")
    for key in trigger.unless:
        seen = profile.counters.get(key)
        if seen is not None and seen.last > timer.started:
            return Firing((), f"called off: {key!r} happened at {seen.last}")
    decisions = tuple(
        Decision(profile_id=profile.profile_id, trigger_id=trigger.id, trigger_version=trigger.version,
                 category=trigger.category, occurrence=timer.occurrence, action=action, event=timer.event, policy=trigger.policy)
        for action in trigger.actions
    )
    return Firing(decisions, "the wait is over")


def step_timer(trigger: Trigger, step: int, occurrence: str, started: str, after: datetime,
               event: Mapping[str, Any], profile_id: str) -> Timer | None:
    """The timer for a sequence's step ``step``, due its wait after ``after``;
    None past the last step."""
    if step >= len(trigger.steps):
        return None
    wait = trigger.steps[step].wait or timedelta(0)
    return Timer(profile_id=profile_id, trigger_id=trigger.id, occurrence=occurrence, started=started,
                 due=iso(after + wait), event=event, kind="step", step=step)


def step_decisions(trigger: Trigger, step: int, occurrence: str, event: Mapping[str, Any],
                   profile: Profile) -> tuple[tuple[Decision, ...], str]:
    """A step's decisions if its condition holds for the person now."""
    current = trigger.steps[step]
    subject = {"event": dict(event), "profile": profile.as_dict()}
    if current.match is not None and not current.match.matches(subject):
        return (), f"step {step + 1}: condition did not match, step skipped"
    decisions = tuple(
        Decision(profile_id=profile.profile_id, trigger_id=trigger.id, trigger_version=trigger.version,
                 category=trigger.category, occurrence=occurrence, action=action, event=event, policy=trigger.policy)
        for action in current.actions
    )
    return decisions, f"step {step + 1} of {len(trigger.steps)}"


def fire_step(timer: Timer, trigger: Trigger, profile: Profile) -> Firing:
    """A sequence step falls due: leave on the goal, else act (if the step's
    condition holds) and set the next step's timer."""
    for key in trigger.exit_on:
        seen = profile.counters.get(key)
        if seen is not None and seen.last > timer.started:
            return Firing((), f"left the sequence: {key!r} happened at {seen.last}")
    if timer.step >= len(trigger.steps):
        return Firing((), "the sequence no longer has this step")
    decisions, reason = step_decisions(trigger, timer.step, timer.occurrence, timer.event, profile)
    following = step_timer(trigger, timer.step + 1, timer.occurrence, timer.started,
                           datetime.fromisoformat(timer.due.replace("Z", "+00:00")), timer.event, timer.profile_id)
    return Firing(decisions, reason, next_timers=(following,) if following else ())


def deferral(decision: Decision, now: datetime, until: datetime) -> Timer:
    """A timer that hands ``decision`` back to the send queue at ``until``."""
    return Timer(profile_id=decision.profile_id, trigger_id=decision.trigger_id, occurrence=decision.ledger_key,
                 started=iso(now), due=iso(until), event=decision.event, kind="deferred",
                 decision=decision.as_dict())

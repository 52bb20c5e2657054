"""Trigger evaluation: which triggers an event sets off for one person, and why.

Pure: takes the event, the person's profile and the triggers indexed under the
event's name, returns an :class:`Evaluation` (a verdict per trigger considered
and the decisions to carry out). No AWS, no clock, no I/O; the same function
runs in Lambda, in the local stack, in unit tests and in replays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from chalicelib.profiles import Profile
from chalicelib.segment import Event, iso
from chalicelib.triggers import Action, Trigger

MATCHED = "matched"


@dataclass(frozen=True)
class Verdict:
    trigger_id: str
    matched: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger_id, "matched": self.matched, "reason": self.reason}


@dataclass(frozen=True)
class Decision:
    """One action to carry out for one person because of one event.

    ``occurrence`` identifies the cause (the event's messageId); together with
    the trigger and the action's place it is the send ledger's key, so the same
    decision reached twice is carried out once.
    """

    profile_id: str
    trigger_id: str
    trigger_version: int
    category: str
    occurrence: str
    action: Action
    event: Mapping[str, Any]
    #: The trigger's delivery policy (Trigger.policy): topic, priority, expiry,
    #: quiet hours and budget.
    policy: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ledger_key(self) -> str:
        return f"{self.trigger_id}#{self.occurrence}#{self.action.index}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "profileId": self.profile_id,
            "trigger": self.trigger_id,
            "triggerVersion": self.trigger_version,
            "category": self.category,
            "occurrence": self.occurrence,
            "action": {"kind": self.action.kind, "index": self.action.index, "params": dict(self.action.params)},
            "event": dict(self.event),
            "policy": dict(self.policy),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Decision":
        action = raw["action"]
        return cls(
            profile_id=raw["profileId"],
            trigger_id=raw["trigger"],
            trigger_version=raw["triggerVersion"],
            category=raw["category"],
            occurrence=raw["occurrence"],
            action=Action(kind=action["kind"], params=action["params"], index=action["index"]),
            event=raw["event"],
            policy=raw.get("policy") or {},
        )


@dataclass(frozen=True)
class Evaluation:
    event: Mapping[str, Any]
    profile_id: str
    verdicts: tuple[Verdict, ...]
    decisions: tuple[Decision, ...]
    #: Waits started by this event (chalicelib.timers.Timer), carried out when due.
    timers: tuple[Any, ...] = ()


def match_input(event: Event, profile: Profile) -> dict[str, Any]:
    """What a trigger's ``when.match`` pattern is matched against."""
    return {"event": event.as_dict(), "profile": profile.as_dict()}


#: ``admit(trigger, event) -> (admitted, reason)``: the checks that need storage
#: (counts within a window, re-entry), made by the caller for matched triggers only.
Admit = Callable[[Trigger, Event], "tuple[bool, str]"]


def evaluate(event: Event, profile: Profile, triggers: Sequence[Trigger], admit: Admit | None = None) -> Evaluation:
    """Decide what ``event`` sets off for the person whose profile is given.

    ``triggers`` are those indexed under the event's name; the cost of an event
    does not depend on how many other triggers exist.
    """
    from chalicelib.timers import step_decisions, step_timer, timer_for

    subject = match_input(event, profile)
    verdicts: list[Verdict] = []
    decisions: list[Decision] = []
    timers = []
    for trigger in sorted(triggers, key=lambda t: t.id):
        verdict = _verdict(trigger, event, subject)
        if verdict.matched and admit is not None:
            admitted, why = admit(trigger, event)
            if not admitted:
                verdict = Verdict(trigger.id, False, why)
        if not verdict.matched:
            verdicts.append(verdict)
            continue
        if trigger.steps:
            first = step_timer(trigger, 0, event.message_id, iso(event.timestamp), event.timestamp,
                               subject["event"], profile.profile_id)
            if first is not None and trigger.steps[0].wait is None:
                now_decisions, reason = step_decisions(trigger, 0, event.message_id, subject["event"], profile)
                decisions.extend(now_decisions)
                first = step_timer(trigger, 1, event.message_id, iso(event.timestamp), event.timestamp,
                                   subject["event"], profile.profile_id)
                verdict = Verdict(trigger.id, True, f"entered the sequence; {reason}")
            else:
                verdict = Verdict(trigger.id, True, "entered the sequence")
            if first is not None:
                timers.append(first)
        elif trigger.wait is not None:
            timer = timer_for(trigger, event, profile.profile_id)
            timers.append(timer)
            unless = f" unless {', '.join(trigger.unless)} happens first" if trigger.unless else ""
            verdict = Verdict(trigger.id, True, f"matched; acts at {timer.due}{unless}")
        else:
            decisions.extend(
                Decision(
                    profile_id=profile.profile_id,
                    trigger_id=trigger.id,
                    trigger_version=trigger.version,
                    category=trigger.category,
                    occurrence=event.message_id,
                    action=action,
                    event=subject["event"],
                    policy=trigger.policy,
                )
                for action in trigger.actions
            )
        verdicts.append(verdict)
    return Evaluation(subject["event"], profile.profile_id, tuple(verdicts), tuple(decisions), tuple(timers))


def _verdict(trigger: Trigger, event: Event, subject: Mapping[str, Any]) -> Verdict:
    if not trigger.enabled:
        return Verdict(trigger.id, False, "trigger is disabled")
    if trigger.event_key != event.counter_name:
        return Verdict(trigger.id, False, f"trigger listens for {trigger.event_key!r}")
    if trigger.match is not None and not trigger.match.matches(subject):
        return Verdict(trigger.id, False, "condition did not match")
    return Verdict(trigger.id, True, MATCHED)

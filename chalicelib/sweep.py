"""The timer sweep: fire every timer that is due, once a minute.

Reads only what is due (one query per timer shard, on the due-time sort key),
never scans. For each due timer: read the trigger and the profile, decide with
``timers.fire``, record the verdict, queue the decisions, set the timers it hands back
(an anniversary's next occurrence), then clear the timer.
A sweep that stops half-way, or two that overlap, fire some timers twice; the
send ledger keeps that to one message.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib.evaluate import Evaluation, Verdict
from chalicelib.ports import DecisionLog, ProfileStore, SendQueue, TimerStore
from chalicelib.segment import iso
from chalicelib.timers import fire


class TriggerLookup(Protocol):
    def get_trigger(self, trigger_id: str) -> Any:
        """The current trigger, or None."""


@dataclass(frozen=True)
class SweepResult:
    due: int
    acted: int
    called_off: int

    def as_dict(self) -> dict[str, int]:
        return {"due": self.due, "acted": self.acted, "calledOff": self.called_off}


def sweep(now: datetime, *, timers: TimerStore, profiles: ProfileStore, triggers: TriggerLookup,
          decisions: DecisionLog, queue: SendQueue, limit: int = 1000, fallback_tz: str = "UTC") -> SweepResult:
    """Fire up to ``limit`` due timers; call again while ``due == limit``.

    ``fallback_tz`` is the zone of people without one (an anniversary's next occurrence)."""
    due = timers.due(now, limit)
    acted = 0
    for timer in due:
        firing = fire(timer, triggers.get_trigger(timer.trigger_id), profiles.get(timer.profile_id), fallback_tz)
        record = {**timer.event, "messageId": f"{timer.occurrence}~{timer.trigger_id}", "timestamp": timer.due}
        decisions.record(Evaluation(event=record, profile_id=timer.profile_id,
                                    verdicts=(Verdict(timer.trigger_id, firing.acted, firing.reason),),
                                    decisions=firing.decisions), iso(now))
        if firing.decisions:
            queue.enqueue(firing.decisions)
            acted += 1
        for following in firing.next_timers:  # set before this one is cleared: a crash between keeps both
            timers.put(following)
        timers.delete(timer)
    return SweepResult(due=len(due), acted=acted, called_off=len(due) - acted)

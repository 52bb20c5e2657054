"""The timer sweep: fire every timer that is due, once a minute.

Reads only what is due (one query per timer shard, on the due-time sort key),
never scans. For each due timer: read the trigger and the profile, decide with
``timers.fire``, record the verdict, queue the decisions, set the timers it hands back
(an anniversary's next occurrence, a broadcast's next page), then clear the timer.
With ``runs`` given, each sweep also starts the broadcasts that are due
(chalicelib.broadcasts): their pages are timers too.
A sweep that stops half-way, or two that overlap, fire some timers twice; the
send ledger keeps that to one message.

A timer that cannot be fired for a reason of its own (a trigger or a stored
timer that no longer reads, a bug) stays where it is, is named in the result's
``failed`` and is tried again by the next sweep; the others go on, so one bad
timer never holds the rest back. Storage that is unavailable or a lost race
stops the sweep as before (the next one finds everything still due).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib import broadcasts
from chalicelib.errors import ConcurrentUpdate, StorageUnavailable
from chalicelib.evaluate import Evaluation, Verdict
from chalicelib.ports import DecisionLog, ProfileStore, SendQueue, TimerStore
from chalicelib.segment import iso
from chalicelib.timers import Timer, fire

#: Failures that are about the stores, not the timer: the sweep stops and is run again.
TRANSIENT = (StorageUnavailable, ConcurrentUpdate)


class TriggerLookup(Protocol):
    def get_trigger(self, trigger_id: str) -> Any:
        """The current trigger, or None."""

    def triggers_for(self, event_key: str) -> Any:
        """The live triggers indexed under ``event_key`` (broadcasts: ``@broadcast``)."""


@dataclass(frozen=True)
class SweepResult:
    due: int
    acted: int
    called_off: int
    #: Timers set by this round that are already due (a broadcast's next pages).
    chained: int = 0
    #: ``(which timer, error)`` of each timer left in place to be tried again.
    failed: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"due": self.due, "acted": self.acted, "calledOff": self.called_off, "failed": len(self.failed)}


def sweep(now: datetime, *, timers: TimerStore, profiles: ProfileStore, triggers: TriggerLookup,
          decisions: DecisionLog, queue: SendQueue, limit: int = 1000, fallback_tz: str = "UTC",
          runs: Any = None) -> SweepResult:
    """Fire up to ``limit`` due timers; call again while ``due == limit`` or ``chained``.

    ``fallback_tz`` is the zone of people without one (an anniversary's next occurrence).
    ``runs`` (a broadcasts.RunLog) turns on broadcasts; ``profiles`` must then page them."""
    if runs is not None:
        broadcasts.start_due_runs(now, triggers.triggers_for(broadcasts.BROADCAST_KEY), runs, timers)
    due = timers.due(now, limit)
    acted = chained = 0
    failed: list[tuple[str, str]] = []
    for timer in due:
        try:
            fired, following_due = _fire_one(timer, now, timers=timers, profiles=profiles, triggers=triggers,
                                              decisions=decisions, queue=queue, fallback_tz=fallback_tz, runs=runs)
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad timer must not hold back the others
            failed.append((f"{timer.kind} {timer.trigger_id}#{timer.occurrence} of {timer.profile_id} due {timer.due}",
                           f"{type(exc).__name__}: {exc}"))
            continue
        acted += fired
        chained += following_due
    return SweepResult(due=len(due), acted=acted, called_off=len(due) - acted - len(failed), chained=chained,
                       failed=tuple(failed))


def _fire_one(timer: Timer, now: datetime, *, timers: TimerStore, profiles: ProfileStore, triggers: TriggerLookup,
              decisions: DecisionLog, queue: SendQueue, fallback_tz: str, runs: Any) -> tuple[bool, int]:
    """Fire one due timer and clear it; returns whether it queued decisions
    and how many of the timers it set are already due."""
    tally = None
    if timer.kind == "broadcast":
        firing, tally = broadcasts.fire_page(timer, triggers.get_trigger(timer.trigger_id), profiles)
    else:
        profile = profiles.get(timer.profile_id)
        firing = fire(timer, triggers.get_trigger(timer.trigger_id), profile, fallback_tz)
        if profile is not None:  # a person erased since keeps no new records
            record = {**timer.event, "messageId": f"{timer.occurrence}~{timer.trigger_id}",
                      "timestamp": timer.due}
            decisions.record(Evaluation(event=record, profile_id=timer.profile_id,
                                        verdicts=(Verdict(timer.trigger_id, firing.acted, firing.reason),),
                                        decisions=firing.decisions), iso(now))
    if firing.decisions:
        queue.enqueue(firing.decisions)
    if tally is not None and runs is not None:
        runs.add(timer.trigger_id, timer.started, tally.as_dict())
    chained = 0
    for following in firing.next_timers:  # set before this one is cleared: a crash between keeps both
        timers.put(following)
        chained += following.due <= iso(now)
    timers.delete(timer)
    return bool(firing.decisions), chained

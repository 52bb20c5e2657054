"""Scheduled broadcasts: act on everyone in an audience at a time of the calendar.

A broadcast is a trigger with ``when: {schedule, audience?}`` (see
chalicelib.triggers), indexed under ``@broadcast``. The sweep runs it:

- Each sweep asks for the broadcasts (``triggers_for("@broadcast")``, cached)
  and, for each enabled one, computes its due run: the latest run of the
  schedule after its last run (or after the time the sweep first saw it) that
  is not later than now. Missed periods are not caught up one by one: a sweep
  after a long pause starts only the latest.
- Starting a run is a conditional put of its record (two sweeps start it
  once) and one timer per profiles shard (kind ``broadcast``, due at the run
  time), so the sweep carries the run out with the timers it already reads.
- Firing a broadcast timer reads one page of its shard (a Query on the
  profiles table's ``by_shard`` index, never a Scan), reads those profiles with
  one BatchGetItem, matches the audience against ``{"profile": ...}`` and
  returns a decision per matched person and action, plus the timer of the next
  page (due at the same time, so the sweep goes on at once) until the shard is
  done. The decisions' occurrence is ``<trigger id>@<run time>``: a page fired
  twice still sends one message per person and run (the send ledger).

Pure except ``start_due_runs`` and ``fire_page``, which take their stores as
parameters (chalicelib.dynamodb has the adapters).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol, Sequence

from chalicelib.evaluate import Decision
from chalicelib.profiles import Profile
from chalicelib.segment import iso
from chalicelib.timers import Firing, Timer
from chalicelib.triggers import BROADCAST_KEY, Trigger

__all__ = ["BROADCAST_KEY", "PAGE", "SHARDS", "RunTally", "due_run", "fire_page", "occurrence", "page_decisions",
           "profile_shard", "run_timers", "start_due_runs"]

#: Partitions of the profiles table's ``by_shard`` index (never lower it: profiles keep their shard).
SHARDS = 16
#: Profiles read per broadcast timer.
PAGE = 100
#: The profile id broadcast timers carry: they belong to no one person.
RUN_OWNER = "@broadcast"
#: How many schedule steps ``due_run`` walks at most to find the latest due run.
MAX_STEPS = 100_000


def profile_shard(profile_id: str) -> str:
    """The ``by_shard`` partition of a person's profile: fixed for life."""
    return str(int.from_bytes(hashlib.sha256(profile_id.encode()).digest(), "big") % SHARDS)


def occurrence(trigger_id: str, run_at: str) -> str:
    """The cause of a run's decisions: one message per person, action and run."""
    return f"{trigger_id}@{run_at}"


def due_run(trigger: Trigger, since: datetime, now: datetime) -> datetime | None:
    """The latest run of the broadcast's schedule after ``since`` that is not
    after ``now``; None if no run falls in (since, now]."""
    if trigger.schedule is None:
        return None
    found = None
    moment = since
    for _ in range(MAX_STEPS):
        following = trigger.schedule.next_after(moment)
        if following is None or following > now:
            break
        found = moment = following
    return found


def run_timers(trigger: Trigger, run_at: str) -> list[Timer]:
    """One timer per shard, due at the run time, starting at the shard's first page."""
    return [Timer(profile_id=RUN_OWNER, trigger_id=trigger.id, occurrence=occurrence(trigger.id, run_at),
                  started=run_at, due=run_at, kind="broadcast", step=shard) for shard in range(SHARDS)]


def run_time(timer: Timer) -> str:
    return timer.started


def broadcast_event(trigger: Trigger, run_at: str, profile: Profile) -> dict[str, Any]:
    """What templates see as ``event`` in a broadcast's message."""
    return {"type": "broadcast", "event": trigger.id, "messageId": occurrence(trigger.id, run_at),
            "userId": profile.user_id, "timestamp": run_at, "properties": {}}


def page_decisions(trigger: Trigger, run_at: str, profiles: Iterable[Profile]) -> tuple[list[Decision], int]:
    """The decisions for the people of one page who are in the audience, and how many are."""
    decisions: list[Decision] = []
    matched = 0
    for profile in profiles:
        if trigger.match is not None and not trigger.match.matches({"profile": profile.as_dict()}):
            continue
        matched += 1
        event = broadcast_event(trigger, run_at, profile)
        decisions.extend(
            Decision(profile_id=profile.profile_id, trigger_id=trigger.id, trigger_version=trigger.version,
                     category=trigger.category, occurrence=occurrence(trigger.id, run_at), action=action,
                     event=event, policy=trigger.policy)
            for action in trigger.actions)
    return decisions, matched


@dataclass(frozen=True)
class RunTally:
    """What one page added to its run's counts."""

    profiles: int = 0
    matched: int = 0
    queued: int = 0
    done: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"profiles": self.profiles, "matched": self.matched, "queued": self.queued, "done": self.done}


class AudienceSource(Protocol):
    def page(self, shard: str, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """Profile ids of one shard after ``cursor``, and the cursor of the next page (None at the end)."""

    def get_many(self, profile_ids: Sequence[str]) -> list[Profile]:
        """The profiles of these ids that exist."""


class RunLog(Protocol):
    def last_run(self, trigger_id: str, now: datetime) -> datetime:
        """The time of the broadcast's newest run, else when it was first seen (recorded now if never)."""

    def start(self, trigger_id: str, run_at: str, started_at: str, shards: int) -> bool:
        """Record a run; False if it was already started."""

    def add(self, trigger_id: str, run_at: str, tally: Mapping[str, int]) -> None:
        """Add a page's counts to its run."""

    def runs(self, trigger_id: str, limit: int) -> list[dict[str, Any]]:
        """Runs newest first, with their counts."""


class TimerSetter(Protocol):
    def put(self, timer: Any) -> None: ...


def start_due_runs(now: datetime, broadcasts: Iterable[Trigger], runs: RunLog, timers: TimerSetter) -> int:
    """Start the due run of every enabled broadcast; how many were started."""
    started = 0
    for trigger in broadcasts:
        if not trigger.enabled or trigger.schedule is None:
            continue
        run_at = due_run(trigger, runs.last_run(trigger.id, now), now)
        if run_at is None or not runs.start(trigger.id, iso(run_at), iso(now), SHARDS):
            continue
        for timer in run_timers(trigger, iso(run_at)):
            timers.put(timer)
        started += 1
    return started


def fire_page(timer: Timer, trigger: Trigger | None, audience: AudienceSource,
              limit: int = PAGE) -> tuple[Firing, RunTally | None]:
    """Carry out one page of a broadcast run (see the module docstring)."""
    if trigger is None or trigger.event_key != BROADCAST_KEY:
        return Firing((), "the broadcast was deleted during its run"), None
    if not trigger.enabled:
        return Firing((), "the broadcast was disabled during its run"), None
    ids, cursor = audience.page(str(timer.step), timer.cursor, limit)
    profiles = audience.get_many(ids) if ids else []
    run_at = run_time(timer)
    decisions, matched = page_decisions(trigger, run_at, profiles)
    following = ()
    if cursor is not None:
        following = (Timer(profile_id=timer.profile_id, trigger_id=timer.trigger_id, occurrence=timer.occurrence,
                           started=timer.started, due=timer.due, kind="broadcast", step=timer.step,
                           cursor=cursor),)
    tally = RunTally(profiles=len(profiles), matched=matched, queued=len(decisions), done=0 if following else 1)
    reason = f"broadcast page of shard {timer.step}: {matched} of {len(profiles)} in the audience"
    return Firing(tuple(decisions), reason, next_timers=following), tally

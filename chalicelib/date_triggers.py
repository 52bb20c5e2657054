"""Date triggers: the timers of anniversary and inactivity triggers, and what
they do when due.

Pure: no I/O, no clock of its own (``now`` and the fallback zone are
parameters). Times go in and out as segment.iso() text or timezone-aware UTC.
It must not read or write storage: ``chalicelib.arrivals`` puts the timers
computed here, ``chalicelib.sweep`` fires them through ``timers.fire``.

Anniversary (``when.anniversary``)
    * The timer is the next occurrence after ``now`` of the date a profile
      trait holds (:mod:`chalicelib.anniversaries`: local time, offset, months,
      every), in the person's zone (``profile.timezone``, else the fallback).
    * Its occurrence is the anniversary's own day (``2027-04-12``), so its id
      (person, trigger, day) is the same however often it is set, and the send
      ledger keeps one message per person, trigger and day.
    * When due it acts only if the trait still holds the same date ("the date
      changed": dropped; the identify that changed it set the new one) and the
      ``match`` pattern holds for ``{"profile": ...}``; either way, unless the
      trigger or the person is gone or the date changed, it hands back the
      next occurrence's timer, so each person costs one timer per trigger.
    * A missing or unreadable date sets no timer; the reason is returned for
      the decision log. Nothing here raises for a bad profile.

Inactivity (``when.inactive``)
    * Each event (of the named kind, or any) sets a timer due when the silence
      after it is over: with ``at``, the first ``at`` on the person's wall clock
      after the end of the event's local day plus ``for``, so every event of one
      local day sets the same timer (one per person per active day); without
      ``at``, the whole hour after the silence ends.
    * When due it acts only if nothing newer happened: ``last + for <= due``
      (``last`` is the profile's lastSeen, or the named event's last time);
      otherwise a later timer is already waiting and this one is superseded.
      Its occurrence is the due day (or hour), the ledger's key.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Mapping

from chalicelib.anniversaries import InvalidDate, next_anniversary, parse_date
from chalicelib.durations import format_duration
from chalicelib.evaluate import Decision
from chalicelib.profiles import Profile
from chalicelib.quiet_hours import local_to_utc, recipient_zone
from chalicelib.segment import Event, iso, parse_time
from chalicelib.timers import Firing, Timer
from chalicelib.triggers import Trigger

ANNIVERSARY = "anniversary"
INACTIVE = "inactive"
DATE_KINDS = (ANNIVERSARY, INACTIVE)


@dataclass(frozen=True)
class Planned:
    """A date trigger's timer for one person, or why there is none."""

    timer: Timer | None
    reason: str


# --- anniversaries ---------------------------------------------------------------------------


def anniversary_timer(trigger: Trigger, profile: Profile, now: datetime, fallback_tz: str = "UTC") -> Timer | None:
    """The timer of the next occurrence after ``now``, or None (see plan_anniversary for why)."""
    return plan_anniversary(trigger, profile, now, fallback_tz).timer


def plan_anniversary(trigger: Trigger, profile: Profile, now: datetime, fallback_tz: str = "UTC") -> Planned:
    rule = trigger.anniversary
    if rule is None:
        return Planned(None, "not an anniversary trigger")
    value = profile.traits.get(rule.trait)
    try:
        found = next_anniversary(value, after=now, local_time=rule.at, tz_name=profile.timezone,
                                 fallback_tz=fallback_tz, offset=rule.offset, months=rule.months, every=rule.every)
    except InvalidDate as exc:
        return Planned(None, f"no timer: {rule.trait} {exc.reason}")
    except ValueError as exc:  # a date outside the calendar, a bad fallback zone: never stop the others
        return Planned(None, f"no timer: {exc}")
    if found is None:
        return Planned(None, f"no timer: the {rule.trait} date {value!r} is past")
    day, moment = found
    zone = recipient_zone(profile.timezone, fallback_tz)
    timer = Timer(profile_id=profile.profile_id, trigger_id=trigger.id, occurrence=day.isoformat(),
                  started=iso(now), due=iso(moment), kind=ANNIVERSARY,
                  event={"type": ANNIVERSARY, "properties": {"trait": rule.trait, "date": value,
                                                             "occurrence": day.isoformat()}})
    local = moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return Planned(timer, f"scheduled for {local} {zone.key} ({timer.due}), {rule.trait} {day.isoformat()}")


def _fire_anniversary(timer: Timer, trigger: Trigger | None, profile: Profile | None, fallback_tz: str) -> Firing:
    if trigger is None:
        return Firing((), "the trigger was deleted")
    if trigger.anniversary is None:
        return Firing((), "the trigger is no longer an anniversary trigger")
    if profile is None:
        return Firing((), "the person's profile no longer exists")
    trait = trigger.anniversary.trait
    written = (timer.event.get("properties") or {}).get("date")
    if not _same_date(profile.traits.get(trait), written):
        return Firing((), f"the date changed: {trait} is now {profile.traits.get(trait)!r}, not {written!r}")
    following = _following(timer, trigger, profile, fallback_tz)
    if not trigger.enabled:
        return Firing((), "the trigger is disabled", following)
    if trigger.match is not None and not trigger.match.matches({"profile": profile.as_dict()}):
        return Firing((), "condition did not match", following)
    return Firing(_decisions(timer, trigger, profile), f"{trait} on {timer.occurrence}", following)


def _following(timer: Timer, trigger: Trigger, profile: Profile, fallback_tz: str) -> tuple[Timer, ...]:
    """The next occurrence's timer, never a second one for the same day (a person
    who moved west can have this day's local time still ahead)."""
    after = parse_time(timer.due)
    for _ in range(3):
        planned = plan_anniversary(trigger, profile, after, fallback_tz).timer
        if planned is None:
            return ()
        if planned.occurrence != timer.occurrence:
            return (planned,)
        after = parse_time(planned.due)
    return ()


def _same_date(current: Any, written: Any) -> bool:
    try:
        return parse_date(current) == parse_date(written)
    except InvalidDate:
        return False


# --- inactivity ------------------------------------------------------------------------------


def inactivity_timer(trigger: Trigger, profile: Profile, event: Event, fallback_tz: str = "UTC") -> Timer | None:
    """The timer that acts if nothing follows ``event`` for the trigger's silence, or None
    (another kind of event than the trigger watches, or an event already older than the silence)."""
    rule = trigger.inactivity
    if rule is None or (rule.event is not None and event.counter_name != rule.event):
        return None
    try:
        zone = recipient_zone(profile.timezone, fallback_tz)
    except ValueError:
        return None
    quiet_from = event.timestamp.astimezone(timezone.utc) + rule.silence
    if rule.at is None:
        due = quiet_from.replace(minute=0, second=0, microsecond=0)
        due = due if due == quiet_from else due + timedelta(hours=1)
        occurrence = iso(due)
    else:
        # From the end of the event's local day, so the whole day's events set one timer.
        quiet_local = datetime.combine(event.timestamp.astimezone(zone).date() + timedelta(days=1),
                                       time(0)) + rule.silence
        threshold = max(quiet_from, local_to_utc(quiet_local, zone))
        day = quiet_local.date()
        while (due := local_to_utc(datetime.combine(day, rule.at), zone)) < threshold:
            day += timedelta(days=1)
        occurrence = day.isoformat()
    if due <= event.received_at:
        return None  # history sent late: the silence was over before Nudge heard of it
    properties = {"for": format_duration(rule.silence), "since": iso(event.timestamp)}
    if rule.event is not None:
        properties["event"] = rule.event
    return Timer(profile_id=profile.profile_id, trigger_id=trigger.id, occurrence=occurrence,
                 started=iso(event.timestamp), due=iso(due), kind=INACTIVE,
                 event={"type": INACTIVE, "properties": properties})


def _fire_inactive(timer: Timer, trigger: Trigger | None, profile: Profile | None) -> Firing:
    if trigger is None:
        return Firing((), "the trigger was deleted")
    if trigger.inactivity is None:
        return Firing((), "the trigger is no longer an inactivity trigger")
    if not trigger.enabled:
        return Firing((), "the trigger is disabled")
    if profile is None:
        return Firing((), "the person's profile no longer exists")
    rule = trigger.inactivity
    if rule.event is None:
        last = profile.last_seen
    else:
        counter = profile.counters.get(rule.event)
        last = counter.last if counter is not None else None
    if last is None:
        return Firing((), f"no {rule.event or 'event'} on the profile")
    if parse_time(last) + rule.silence > parse_time(timer.due):
        return Firing((), f"superseded: active again at {last}")
    if trigger.match is not None and not trigger.match.matches({"profile": profile.as_dict()}):
        return Firing((), "condition did not match")
    return Firing(_decisions(timer, trigger, profile), f"silent since {last}")


# --- both ------------------------------------------------------------------------------------


def fire_dated(timer: Timer, trigger: Trigger | None, profile: Profile | None, fallback_tz: str = "UTC") -> Firing:
    """What a due anniversary or inactivity timer does (see the module docstring)."""
    if timer.kind == ANNIVERSARY:
        return _fire_anniversary(timer, trigger, profile, fallback_tz)
    return _fire_inactive(timer, trigger, profile)


def _decisions(timer: Timer, trigger: Trigger, profile: Profile) -> tuple[Decision, ...]:
    event: Mapping[str, Any] = {**timer.event, "messageId": f"{timer.occurrence}~{trigger.id}",
                                "timestamp": timer.due}
    return tuple(
        Decision(profile_id=profile.profile_id, trigger_id=trigger.id, trigger_version=trigger.version,
                 category=trigger.category, occurrence=timer.occurrence, action=action, event=event, policy=trigger.policy)
        for action in trigger.actions
    )

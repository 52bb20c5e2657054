"""Date triggers: birthdays, service reminders and win-backs, scheduled per person
and fired when due, with the cost of what is due only."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.arrivals import on_arrival
from chalicelib.date_triggers import anniversary_timer, inactivity_timer, plan_anniversary
from chalicelib.errors import InvalidInput
from chalicelib.profiles import Profile, apply_events, new_profile
from chalicelib.segment import iso, parse_call
from chalicelib.sweep import sweep
from chalicelib.timers import Timer, fire
from chalicelib.triggers import ANNIVERSARY_KEY, INACTIVE_KEY, parse_trigger
from tests.fakes import (MemoryDecisionLog, MemoryDefinitions, MemoryProfileStore, MemorySendQueue,
                         MemoryTimers)

UTC = timezone.utc
EMAIL = {"email": {"template": "offer", "from": "Shop <hello@example.com>"}}


def trigger(when, **extra):
    doc = {"id": extra.pop("id", "birthday"), "category": "marketing", "topic": "offers", "when": when, "then": [EMAIL], **extra}
    return parse_trigger(doc, templates=None, origin="test")


BIRTHDAY = trigger({"anniversary": {"trait": "birthday", "at": "09:00"}})
WIN_BACK = trigger({"inactive": {"for": "30d", "at": "10:00"}}, id="win-back")


def person(birthday="1990-04-12", tz="Europe/Berlin", **traits):
    return Profile(profile_id="user:ana", user_id="ana", traits={"birthday": birthday, **traits}, timezone=tz)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def track(name, at, user="ana", received=None):
    return parse_call("track", {"userId": user, "event": name, "timestamp": at.isoformat(),
                                "messageId": f"{name}-{at.isoformat()}"}, received or at, 32768)


# --- the definition -------------------------------------------------------------------------


def test_date_triggers_are_indexed_under_reserved_keys():
    assert BIRTHDAY.event_key == ANNIVERSARY_KEY and WIN_BACK.event_key == INACTIVE_KEY
    service = trigger({"anniversary": {"trait": "last_service_date", "at": "10:00", "months": 6, "every": "none",
                                       "offset": "-7d"}})
    assert (service.anniversary.months, service.anniversary.every, service.anniversary.offset) == (
        6, None, timedelta(days=-7))
    lapsed = trigger({"inactive": {"for": "60d", "event": "Order Completed"}})
    assert lapsed.inactivity.event == "Order Completed" and lapsed.inactivity.at is None


@pytest.mark.parametrize("when, field", [
    ({"event": "@anniversary"}, "when.event"),
    ({"anniversary": {"at": "09:00"}}, "when.anniversary.trait"),
    ({"anniversary": {"trait": "birthday", "at": 600}}, "when.anniversary.at"),  # YAML's reading of 10:00
    ({"anniversary": {"trait": "birthday", "at": "9am"}}, "when.anniversary.at"),
    ({"anniversary": {"trait": "birthday", "every": "week"}}, "when.anniversary.every"),
    ({"anniversary": {"trait": "birthday", "offset": "-1mo"}}, "when.anniversary.offset"),
    ({"anniversary": {"trait": "birthday"}, "match": {"event": {"type": ["identify"]}}}, "when.match.event"),
    ({"inactive": {"for": "30m"}}, "when.inactive.for"),
    ({"inactive": {}}, "when.inactive.for"),
    ({"inactive": {"for": "30d", "since": "x"}}, "when.inactive.since"),
    ({"inactive": {"for": "30d"}, "event": "Order Completed"}, "when"),
])
def test_bad_date_triggers_are_refused_with_the_field(when, field):
    with pytest.raises(InvalidInput) as exc:
        trigger(when)
    assert field in {p.field for p in exc.value.problems}


def test_a_date_trigger_does_not_wait():
    with pytest.raises(InvalidInput) as exc:
        trigger({"inactive": {"for": "30d"}}, wait="1h")
    assert "wait" in {p.field for p in exc.value.problems}


# --- anniversaries --------------------------------------------------------------------------


def test_a_birthday_is_scheduled_at_nine_in_the_persons_own_zone():
    now = utc(2027, 3, 1)
    berlin = anniversary_timer(BIRTHDAY, person(tz="Europe/Berlin"), now)
    los_angeles = anniversary_timer(BIRTHDAY, person(tz="America/Los_Angeles"), now)
    assert berlin.due == "2027-04-12T07:00:00.000Z"  # CEST, UTC+2
    assert los_angeles.due == "2027-04-12T16:00:00.000Z"  # PDT, UTC-7
    assert berlin.occurrence == los_angeles.occurrence == "2027-04-12"
    assert berlin.id == "user:ana#birthday#2027-04-12"  # the same however often it is set


def test_without_a_zone_the_fallback_zone_is_used():
    timer = anniversary_timer(BIRTHDAY, person(tz=None), utc(2027, 3, 1), fallback_tz="Asia/Tokyo")
    assert timer.due == "2027-04-12T00:00:00.000Z"  # 09:00 in Tokyo


def test_a_29_february_birthday_is_greeted_on_28_february_in_other_years():
    timer = anniversary_timer(BIRTHDAY, person("1992-02-29", tz="UTC"), utc(2027, 1, 1))
    assert (timer.occurrence, timer.due) == ("2027-02-28", "2027-02-28T09:00:00.000Z")
    leap = anniversary_timer(BIRTHDAY, person("1992-02-29", tz="UTC"), utc(2028, 1, 1))
    assert leap.occurrence == "2028-02-29"


@pytest.mark.parametrize("value, reason", [
    (None, "no timer: birthday no date"),
    ("someday", "no timer: birthday 'someday' is not a date"),
    (19900412, "is not a date"),
])
def test_a_missing_or_unreadable_date_sets_no_timer_and_says_why(value, reason):
    planned = plan_anniversary(BIRTHDAY, person(value), utc(2027, 1, 1))
    assert planned.timer is None and reason in planned.reason


def test_a_single_service_reminder_six_months_after_the_last_service():
    service = trigger({"anniversary": {"trait": "last_service_date", "at": "10:00", "months": 6, "every": "none"}},
                      id="service")
    profile = Profile("user:bo", traits={"last_service_date": "2027-01-31"}, timezone="UTC")
    timer = anniversary_timer(service, profile, utc(2027, 2, 1))
    assert (timer.occurrence, timer.due) == ("2027-07-31", "2027-07-31T10:00:00.000Z")
    past = plan_anniversary(service, profile, utc(2027, 8, 1))
    assert past.timer is None and "is past" in past.reason
    # When due it acts and sets nothing more.
    firing = fire(timer, service, profile)
    assert firing.acted and firing.next_timers == ()


def test_a_due_birthday_acts_once_per_occurrence_and_sets_next_years():
    timer = anniversary_timer(BIRTHDAY, person(), utc(2027, 3, 1))
    firing = fire(timer, BIRTHDAY, person())
    assert firing.acted
    assert [d.ledger_key for d in firing.decisions] == ["birthday#2027-04-12#0"]
    [following] = firing.next_timers
    assert (following.occurrence, following.due) == ("2028-04-12", "2028-04-12T07:00:00.000Z")


def test_a_changed_birthday_drops_the_old_timer():
    timer = anniversary_timer(BIRTHDAY, person(), utc(2027, 3, 1))
    firing = fire(timer, BIRTHDAY, person("1990-06-01"))
    assert not firing.acted and firing.next_timers == () and firing.reason.startswith("the date changed")
    # The same date written another way is the same date.
    assert fire(timer, BIRTHDAY, person("1990-04-12T00:00:00+02:00")).acted


def test_a_condition_that_fails_skips_this_year_but_keeps_the_next():
    opted_in = trigger({"anniversary": {"trait": "birthday"},
                        "match": {"profile": {"traits": {"newsletter": [True]}}}})
    timer = anniversary_timer(opted_in, person(), utc(2027, 3, 1))
    firing = fire(timer, opted_in, person(newsletter=False))
    assert (firing.acted, firing.reason, len(firing.next_timers)) == (False, "condition did not match", 1)
    assert fire(timer, opted_in, person(newsletter=True)).acted


def test_a_person_who_moved_west_gets_one_message_for_the_day():
    timer = anniversary_timer(BIRTHDAY, person(tz="Europe/Berlin"), utc(2027, 3, 1))
    firing = fire(timer, BIRTHDAY, person(tz="America/Los_Angeles"))
    assert [t.occurrence for t in firing.next_timers] == ["2028-04-12"]


def test_a_deleted_trigger_or_person_ends_the_chain():
    timer = anniversary_timer(BIRTHDAY, person(), utc(2027, 3, 1))
    assert fire(timer, None, person()).next_timers == ()
    assert fire(timer, BIRTHDAY, None).next_timers == ()
    paused = fire(timer, replace(BIRTHDAY, enabled=False), person())
    assert not paused.acted and len(paused.next_timers) == 1  # re-enabled, it greets next year


def test_timers_read_back_with_their_kind():
    timer = anniversary_timer(BIRTHDAY, person(), utc(2027, 3, 1))
    assert Timer.from_dict(timer.as_dict()) == timer
    assert Timer.from_dict({k: v for k, v in timer.as_dict().items() if k != "kind"}).kind == "wait"


# --- inactivity -----------------------------------------------------------------------------


def test_every_event_of_a_local_day_sets_the_same_win_back_timer():
    profile = person(tz="Europe/Berlin")
    morning = inactivity_timer(WIN_BACK, profile, track("Page Viewed", utc(2027, 1, 5, 7, 0)))
    evening = inactivity_timer(WIN_BACK, profile, track("Page Viewed", utc(2027, 1, 5, 22, 30)))  # 23:30 local
    assert morning == replace(evening, started=morning.started, event=morning.event)
    assert (morning.occurrence, morning.due) == ("2027-02-05", "2027-02-05T09:00:00.000Z")  # 10:00 CET


def test_without_a_send_time_the_win_back_is_due_on_the_hour_after_the_silence():
    plain = trigger({"inactive": {"for": "30d"}}, id="win-back")
    timer = inactivity_timer(plain, person(tz=None), track("Page Viewed", utc(2027, 1, 5, 7, 20)))
    assert timer.due == "2027-02-04T08:00:00.000Z"


def test_only_the_named_event_restarts_a_lapsed_buyer_timer():
    lapsed = trigger({"inactive": {"for": "60d", "event": "Order Completed"}}, id="lapsed")
    assert inactivity_timer(lapsed, person(), track("Page Viewed", utc(2027, 1, 5))) is None
    assert inactivity_timer(lapsed, person(), track("Order Completed", utc(2027, 1, 5))) is not None


def test_history_older_than_the_silence_sets_nothing():
    old = track("Page Viewed", utc(2026, 1, 5), received=utc(2027, 1, 5))
    assert inactivity_timer(WIN_BACK, person(), old) is None


def test_the_win_back_acts_only_after_thirty_silent_days():
    event = track("Page Viewed", utc(2027, 1, 5, 12, 0))
    profile = apply_events(new_profile("user:ana"), [event])
    timer = inactivity_timer(WIN_BACK, profile, event)
    firing = fire(timer, WIN_BACK, profile)
    assert firing.acted and [d.ledger_key for d in firing.decisions] == [f"win-back#{timer.occurrence}#0"]
    back = apply_events(profile, [track("Page Viewed", utc(2027, 1, 25))])
    superseded = fire(timer, WIN_BACK, back)
    assert not superseded.acted and superseded.reason.startswith("superseded")


# --- on arrival and in the sweep ------------------------------------------------------------


class Engine:
    def __init__(self, *triggers):
        self.profiles, self.timers = MemoryProfileStore(), MemoryTimers()
        self.queue, self.log = MemorySendQueue(), MemoryDecisionLog()
        self.definitions = MemoryDefinitions(triggers=triggers)

    def arrive(self, event):
        stored = self.profiles.get(event.identity)
        self.profiles.save(apply_events(stored or new_profile(event.identity), [event]))
        return on_arrival([event], profiles=self.profiles, triggers=self.definitions, decisions=self.log,
                          queue=self.queue, timers=self.timers, fallback_tz="UTC")

    def sweep(self, now):
        return sweep(now, timers=self.timers, profiles=self.profiles, triggers=self.definitions,
                     decisions=self.log, queue=self.queue)


def identify(user, traits, at):
    return parse_call("identify", {"userId": user, "traits": traits, "timestamp": at.isoformat()}, at, 32768)


def test_an_identify_with_a_birthday_schedules_it_and_the_sweep_keeps_it_yearly():
    engine = Engine(BIRTHDAY)
    engine.arrive(identify("ana", {"birthday": "1990-04-12", "timezone": "Europe/Berlin"}, utc(2027, 3, 1)))
    [timer] = engine.timers.items.values()
    verdict = engine.log.evaluations[0][1].verdicts[0]
    assert verdict.matched and verdict.reason.startswith("scheduled for 2027-04-12 09:00 Europe/Berlin")
    assert engine.sweep(utc(2027, 4, 12, 6, 59)).due == 0
    assert engine.sweep(utc(2027, 4, 12, 7, 0)).acted == 1
    assert [t.occurrence for t in engine.timers.items.values()] == ["2028-04-12"]
    # The same identify again, after the birthday: next year's timer, the same item.
    engine.arrive(identify("ana", {"birthday": "1990-04-12"}, utc(2027, 4, 13)))
    assert [t.occurrence for t in engine.timers.items.values()] == ["2028-04-12"]


def test_a_bad_birthday_is_recorded_and_does_not_stop_the_others():
    engine = Engine(BIRTHDAY)
    engine.arrive(identify("bo", {"birthday": "soon"}, utc(2027, 3, 1)))
    engine.arrive(identify("ana", {"birthday": "1990-04-12"}, utc(2027, 3, 1)))
    reasons = [e.verdicts[0].reason for _, e in engine.log.evaluations]
    assert "is not a date" in reasons[0] and reasons[1].startswith("scheduled")
    assert [t.profile_id for t in engine.timers.items.values()] == ["user:ana"]


def test_events_without_the_date_trait_never_consult_anniversaries():
    engine = Engine(BIRTHDAY)
    engine.arrive(track("Page Viewed", utc(2027, 3, 1)))
    engine.arrive(identify("ana", {"plan": "pro"}, utc(2027, 3, 1)))
    assert engine.timers.items == {} and engine.log.evaluations == []
    assert engine.definitions.lookups == 5  # per event: its name and @inactive; the identify also @anniversary


def test_win_back_after_thirty_silent_days_and_not_for_someone_who_came_back():
    engine = Engine(WIN_BACK)
    engine.arrive(track("Page Viewed", utc(2027, 1, 5, 12, 0), user="ana"))
    engine.arrive(track("Page Viewed", utc(2027, 1, 5, 12, 0), user="bo"))
    engine.arrive(track("Page Viewed", utc(2027, 1, 25, 12, 0), user="bo"))  # bo is back on day 20
    assert engine.log.evaluations == []  # setting a silence timer records no decision
    result = engine.sweep(utc(2027, 2, 7))
    assert (result.due, result.acted) == (2, 1)
    assert [d.profile_id for d in engine.queue.decisions] == ["user:ana"]
    assert engine.sweep(utc(2027, 2, 26)).acted == 1  # bo's own silence is over
    assert [d.profile_id for d in engine.queue.decisions] == ["user:ana", "user:bo"]


def test_the_sweep_reads_only_what_is_due():
    engine = Engine(BIRTHDAY)
    for day in range(1, 29):
        engine.arrive(identify(f"p{day}", {"birthday": f"1990-02-{day:02d}"}, utc(2027, 1, 1)))
    result = engine.sweep(utc(2027, 2, 3, 23, 59))
    assert (result.due, result.acted) == (3, 3)
    assert iso(utc(2027, 2, 4)) < min(t.due for t in engine.timers.items.values() if t.occurrence < "2028")

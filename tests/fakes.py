"""In-memory versions of the storage ports, for unit tests of the engine only."""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from chalicelib.dynamodb import event_sort_key
from chalicelib.errors import ConcurrentUpdate
from chalicelib.ports import EventPage
from chalicelib.profiles import Profile
from chalicelib.segment import Event


class MemoryEventLog:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Event] = {}
        self.message_ids: set[tuple[str, str]] = set()

    def append(self, events: Sequence[Event]) -> list[bool]:
        results = []
        for event in events:
            marker = (event.identity, event.message_id)
            key = (event.identity, event_sort_key(event))
            if key in self.items or (event.client_timestamp is None and marker in self.message_ids):
                results.append(False)
                continue
            self.items[key] = event
            self.message_ids.add(marker)
            results.append(True)
        return results

    def stored(self, events):
        return [self.items.get((e.identity, event_sort_key(e))) if e.client_timestamp is not None else None
                for e in events]

    def count(self, identities, event_key, start, end) -> int:
        from chalicelib.segment import iso

        low, high = iso(start), iso(end) + "#\uffff"
        return sum(1 for (identity, sk), event in self.items.items()
                   if identity in identities and low <= sk <= high and event.counter_name == event_key)

    def history(self, identities: Sequence[str], limit: int, cursor: str | None) -> EventPage:
        keys = sorted((k for k in self.items if k[0] in identities and (cursor is None or k[1] < cursor)),
                      key=lambda k: k[1], reverse=True)
        chosen = keys[:limit]
        more = len(keys) > limit
        return EventPage([self.items[k] for k in chosen], chosen[-1][1] if more else None)

    def forget(self, identities, limit) -> int:
        chosen = sorted(k for k in self.items if k[0] in identities)[:limit]
        for key in chosen:
            self.message_ids.discard((key[0], self.items[key].message_id))
            del self.items[key]
        return len(chosen)


class MemoryProfileStore:
    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.links: dict[str, str] = {}
        self.writes = 0
        #: Profile ids whose next save loses a race, to exercise retries.
        self.conflicts: list[str] = []

    def get(self, profile_id: str) -> Profile | None:
        return self.profiles.get(profile_id)

    def save(self, profile: Profile) -> Profile:
        if profile.profile_id in self.conflicts:
            self.conflicts.remove(profile.profile_id)
            raise ConcurrentUpdate(profile.profile_id)
        stored = self.profiles.get(profile.profile_id)
        if (stored.version if stored else 0) != profile.version:
            raise ConcurrentUpdate(profile.profile_id)
        saved = replace(profile, version=profile.version + 1)
        self.profiles[profile.profile_id] = saved
        self.writes += 1
        return saved

    def delete(self, profile_id: str) -> None:
        self.profiles.pop(profile_id, None)

    def resolve(self, anonymous_ids: Sequence[str]) -> dict[str, str]:
        return {a: self.links[a] for a in anonymous_ids if a in self.links}

    def link(self, anonymous_id: str, user_id: str) -> None:
        self.links[anonymous_id] = user_id

    def page(self, shard: str, cursor, limit: int):
        from chalicelib.broadcasts import profile_shard

        ids = sorted(p for p in self.profiles if profile_shard(p) == shard and (cursor is None or p > cursor))
        chosen = ids[:limit]
        return chosen, (chosen[-1] if len(ids) > limit else None)

    def get_many(self, profile_ids):
        return [self.profiles[p] for p in profile_ids if p in self.profiles]

    def unlink(self, anonymous_id, user_id) -> bool:
        if self.links.get(anonymous_id) != user_id:
            return False
        del self.links[anonymous_id]
        return True


class MemoryKeyStore:
    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self.keys = dict(keys or {})
        self.lookups = 0

    def kind_of(self, secret: str) -> str | None:
        self.lookups += 1
        return self.keys.get(secret)


def at_time(text):
    from chalicelib.segment import parse_time

    return parse_time(text)


class MemoryLedger:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], "MessageRecord"] = {}
        self.enrollments: dict[tuple[str, str], tuple] = {}
        self.writes = 0

    def get(self, profile_id, key):
        return self.records.get((profile_id, key))

    def claim(self, record) -> bool:
        self.writes += 1
        held = self.records.get((record.profile_id, record.key))
        if held is not None and held.status != "deferred":
            return False
        self.records[(record.profile_id, record.key)] = record
        return True

    def finish(self, record) -> None:
        self.writes += 1
        self.records[(record.profile_id, record.key)] = record

    def release(self, profile_id, key) -> None:
        record = self.records.get((profile_id, key))
        if record is not None and record.status == "sending":
            del self.records[(profile_id, key)]

    def note_feedback(self, profile_id, key, kind, at, status):
        from chalicelib.ports import FEEDBACK_STATUS_AFTER

        record = self.records.get((profile_id, key))
        if record is None:
            return None
        self.writes += 1
        feedback = dict(record.feedback or {})
        feedback.setdefault(kind, at)
        allowed = status is not None and record.status in FEEDBACK_STATUS_AFTER[status]
        record = replace(record, feedback=feedback, status=status if allowed else record.status)
        self.records[(profile_id, key)] = record
        return record

    def enroll(self, profile_id, trigger_id, occurrence, at, until) -> bool:
        held = self.enrollments.get((profile_id, trigger_id))
        if held is not None and held[0] != occurrence and (held[2] is None or held[2] > at_time(at)):
            return False
        self.writes += 1
        self.enrollments[(profile_id, trigger_id)] = (occurrence, at, until)
        return True

    def messages(self, profile_id, limit):
        mine = [r for (p, _), r in self.records.items() if p == profile_id]
        return sorted(mine, key=lambda r: r.created_at, reverse=True)[:limit]

    def entered(self, profile_id):
        from chalicelib.segment import iso

        return [{"trigger": trigger, "occurrence": occurrence, "at": at, "until": iso(until) if until else None}
                for (person, trigger), (occurrence, at, until) in self.enrollments.items() if person == profile_id]

    def forget(self, profile_id, limit):
        messages = [key for key in self.records if key[0] == profile_id][:limit]
        entries = [key for key in self.enrollments if key[0] == profile_id][:limit - len(messages)]
        for key in messages:
            del self.records[key]
        for key in entries:
            del self.enrollments[key]
        return {"messages": len(messages), "enrollments": len(entries)}


class MemoryChannels:
    """Records what was sent; ``failures`` holds exceptions to raise on the next sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.failures: list[Exception] = []
        #: Numbers that replied STOP.
        self.opted_out: set[str] = set()

    def _send(self, channel: str, **fields) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((channel, fields))
        return f"{channel}-{len(self.sent)}"

    def send_email(self, to, sender, reply_to, subject, html, text, tags, headers):
        return self._send("email", to=to, sender=sender, reply_to=reply_to, subject=subject, html=html,
                          text=text, tags=dict(tags), headers=dict(headers))

    def sms_opted_out(self, phone):
        return phone in self.opted_out

    def send_sms(self, phone, text):
        return self._send("sms", to=phone, text=text)

    def send_alert(self, topic, subject, text):
        return self._send("alert", to=topic, subject=subject, text=text)

    def post_webhook(self, url, body, headers, timeout):
        return self._send("webhook", to=url, body=body, headers=dict(headers))

    def emit(self, detail_type, detail):
        return self._send("emit", detail_type=detail_type, detail=dict(detail))


class MemoryDefinitions:
    def __init__(self, triggers=(), templates=()) -> None:
        self.triggers = list(triggers)
        self.templates = {t.id: t for t in templates}
        self.lookups = 0

    def triggers_for(self, event_key):
        self.lookups += 1
        return [t for t in self.triggers if t.event_key == event_key]

    def get_trigger(self, trigger_id):
        return next((t for t in self.triggers if t.id == trigger_id), None)

    def get_template(self, template_id):
        return self.templates.get(template_id)


class MemorySendQueue:
    def __init__(self) -> None:
        self.decisions: list = []

    def enqueue(self, decisions) -> None:
        self.decisions.extend(decisions)


class MemoryDecisionLog:
    def __init__(self) -> None:
        self.evaluations: list = []
        self.notes: list = []

    def record(self, evaluation, at) -> None:
        self.evaluations.append((at, evaluation))

    def note(self, profile_id, at, entry) -> None:
        self.notes.append((profile_id, at, dict(entry)))

    def decisions(self, profile_id, limit):
        return [e for _, e in self.evaluations if e.profile_id == profile_id][:limit]

    def forget(self, profile_id, limit):
        mine = [entry for entry in self.evaluations if entry[1].profile_id == profile_id][:limit]
        notes = [note for note in self.notes if note[0] == profile_id][:limit - len(mine)]
        self.evaluations = [entry for entry in self.evaluations if entry not in mine]
        self.notes = [note for note in self.notes if note not in notes]
        return len(mine) + len(notes)


class MemoryTimers:
    def __init__(self) -> None:
        self.items: dict[str, "Timer"] = {}
        self.writes = 0

    def put(self, timer) -> None:
        self.writes += 1
        self.items[timer.id] = timer

    def due(self, now, limit):
        from chalicelib.segment import iso

        return sorted((t for t in self.items.values() if t.due <= iso(now)), key=lambda t: t.due)[:limit]

    def delete(self, timer) -> None:
        self.writes += 1
        self.items.pop(timer.id, None)

    def of_person(self, profile_id):
        return sorted((t for t in self.items.values() if t.profile_id == profile_id and t.kind != "broadcast"),
                      key=lambda t: t.due)

    def forget(self, profile_id):
        mine = self.of_person(profile_id)
        for timer in mine:
            self.delete(timer)
        return len(mine)


class MemoryBroadcastRuns:
    """Broadcast runs (chalicelib.broadcasts.RunLog) in memory."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}
        self.records: dict[tuple[str, str], dict] = {}

    def last_run(self, trigger_id, now):
        from chalicelib.segment import parse_time

        mine = sorted(at for (tid, at) in self.records if tid == trigger_id)
        if mine:
            return parse_time(mine[-1])
        return self.seen.setdefault(trigger_id, now)

    def start(self, trigger_id, run_at, started_at, shards) -> bool:
        if (trigger_id, run_at) in self.records:
            return False
        self.records[(trigger_id, run_at)] = {"at": run_at, "startedAt": started_at, "shards": shards,
                                              "counts": {"profiles": 0, "matched": 0, "queued": 0, "done": 0}}
        return True

    def add(self, trigger_id, run_at, tally) -> None:
        counts = self.records[(trigger_id, run_at)]["counts"]
        for name, value in tally.items():
            counts[name] += value

    def runs(self, trigger_id, limit):
        return [self.records[key] for key in sorted(self.records, reverse=True) if key[0] == trigger_id][:limit]


class MemoryConsentStore:
    """ConsentStore in memory; hashes like the DynamoDB adapter so nothing but
    hashes of addresses and user ids is kept. ``feedback`` (a
    MemoryFeedbackStore) holds the pause flag, which shares the table in AWS."""

    def __init__(self, salt: str = "test-salt", feedback: "MemoryFeedbackStore | None" = None) -> None:
        from chalicelib.consent import digest

        self._digest = digest
        self.salt = salt
        self.states: dict[str, dict] = {}
        self.history: dict[str, list] = {}
        self.suppressions: dict[str, object] = {}
        self.erased_ids: set[str] = set()
        self.budgets: dict[tuple[str, str], tuple[dict, int]] = {}
        self.standing_reads = 0
        self.feedback = feedback

    def preferences(self, profile_id):
        return dict(self.states.get(profile_id, {}))

    def set_preferences(self, profile_id, changes):
        self.states.setdefault(profile_id, {}).update(changes)
        for key, consent in changes.items():
            self.history.setdefault(profile_id, []).append({"key": key, **consent.as_dict()})
        return dict(self.states[profile_id])

    def consent_history(self, profile_id):
        return list(self.history.get(profile_id, []))

    def suppression(self, address):
        return self.suppressions.get(self._digest(self.salt, address))

    def suppress(self, address, scope, reason, at):
        from chalicelib.consent import Suppression

        key = self._digest(self.salt, address)
        held = self.suppressions.get(key)
        if held is not None and held.scope == "all" and scope != "all":
            return
        self.suppressions[key] = Suppression(scope, reason, at)

    def lift(self, address, reasons):
        key = self._digest(self.salt, address)
        held = self.suppressions.get(key)
        if held is None or held.reason not in reasons:
            return False
        del self.suppressions[key]
        return True

    def erased(self, user_id):
        return self._digest(self.salt, user_id, fold_case=False) in self.erased_ids

    def mark_erased(self, user_id, at):
        self.erased_ids.add(self._digest(self.salt, user_id, fold_case=False))

    def forget(self, profile_id):
        self.states.pop(profile_id, None)
        self.history.pop(profile_id, None)
        for key in [k for k in self.budgets if k[0] == profile_id]:
            del self.budgets[key]

    def standing(self, profile_id, user_id, address, channel):
        from chalicelib.consent import Standing

        self.standing_reads += 1
        state, version = self.budget(profile_id, channel)
        return Standing(states=self.preferences(profile_id), suppression=self.suppression(address),
                        erased=bool(user_id) and self.erased(user_id), budget=state, budget_version=version,
                        paused=self.feedback.state["reason"] if self.feedback and self.feedback.state and channel == "email"
                        else None)

    def budget(self, profile_id, channel):
        return self.budgets.get((profile_id, channel), ({}, 0))

    def save_budget(self, profile_id, channel, state, version):
        from chalicelib.errors import ConcurrentUpdate

        if self.budgets.get((profile_id, channel), ({}, 0))[1] != version:
            raise ConcurrentUpdate(profile_id)
        self.budgets[(profile_id, channel)] = (dict(state), version + 1)


class MemoryFeedbackStore:
    """Feedback counts and the pause flag (chalicelib.feedback.FeedbackStore) in memory."""

    def __init__(self) -> None:
        self.markers: set[tuple[str, str]] = set()
        self.days: dict[tuple[str, str], dict[str, int]] = {}
        self.hours: dict[str, dict[str, int]] = {}
        self.state: dict | None = None
        self.trips = 0

    def count(self, message_id, counter, trigger_id, at, reputation):
        if (message_id, counter) in self.markers:
            return False
        self.markers.add((message_id, counter))
        if trigger_id:
            day = self.days.setdefault((trigger_id, at[:10]), {})
            day[counter] = day.get(counter, 0) + 1
        if reputation:
            hour = self.hours.setdefault(at[:13], {})
            hour[counter] = hour.get(counter, 0) + 1
        return True

    def totals(self, first_hour, last_hour):
        from chalicelib.feedback import Totals

        sums = {"sent": 0, "bounced": 0, "complained": 0}
        for hour, counts in self.hours.items():
            if first_hour <= hour <= last_hour:
                for name in sums:
                    sums[name] += counts.get(name, 0)
        return Totals(**sums)

    def stats(self, trigger_id, first_day):
        from chalicelib.feedback import COUNTERS

        return [{"day": day, **{c: counts.get(c, 0) for c in COUNTERS}}
                for (trigger, day), counts in sorted(self.days.items()) if trigger == trigger_id and day >= first_day]

    def trip(self, reason, at):
        if self.state is not None:
            return False
        self.trips += 1
        self.state = {"reason": reason, "at": at}
        return True

    def untrip(self, at):
        if self.state is not None and self.state["at"] == at:
            self.state = None

    def pause_state(self):
        return dict(self.state) if self.state else None

    def resume(self):
        state, self.state = self.state, None
        return state

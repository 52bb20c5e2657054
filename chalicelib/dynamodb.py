"""DynamoDB adapters for the storage ports, built on PynamoDB.

The only module that knows the tables' item shapes. Table names come from
settings when an adapter is made, never at import; the endpoint comes from
botocore's own configuration (``AWS_ENDPOINT_URL`` points it at the emulator).

Item shapes (see infra/template.yaml for the tables):

- events: ``pk`` = identity (``user:<id>``/``anon:<id>``), ``sk`` = client time
  + ``#`` + messageId, ``data`` = the event as JSON. The client's own timestamp
  is in the key because it is the same on every retry, which makes the
  conditional put a deduplication. A message with a messageId and no client
  timestamp also claims a marker item (``msg:<identity>:<messageId>``, expiring
  after a week) so that its retries are recognised too.
- profiles: ``pk`` = profile id, ``data`` = the profile as JSON, ``version``
  for optimistic locking, ``shard`` (0-15, from the id) for the ``by_shard``
  index broadcasts page through; link items ``pk`` = ``alias:<anonymousId>``
  (no shard: not in the index).
- keys: ``pk`` = SHA-256 of the secret, ``kind`` = write or admin.
- timers: ``pk`` = ``timers#<shard>`` (the timer id hashed over ``timer_shards``
  partitions, so no partition is hot), ``sk`` = due time + ``#`` + timer id.
  The sweep asks each shard for ``sk <= now``: it reads only what is due.
  A person's timer also carries ``person`` (the profile id; broadcast pages
  carry none), which puts its keys in the KEYS_ONLY ``by_person`` index, so an
  erasure or an export finds the person's timers by one Query.
- deliveries: ``pk`` = profile id; ``sk`` = ``msg#<trigger>#<occurrence>#<action>``
  for the send ledger and message history (``status`` sending, sent, failed,
  skipped), ``dec#<time>#<messageId>`` for why triggers did or did not fire
  (expiring after ``DECISION_DAYS``). Broadcasts: ``pk`` = ``broadcast#<trigger>``,
  ``sk`` = ``run#<run time>`` per run with the counts ``profiles``, ``matched``,
  ``queued``, ``done`` (shards finished), and ``seen`` (when the sweep first saw it).
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import wraps
from typing import Any, Callable, Sequence, TypeVar

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, VersionAttribute
from botocore.exceptions import BotoCoreError
from pynamodb.exceptions import DeleteError, PynamoDBException, PutError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.errors import ConcurrentUpdate, StorageUnavailable
from chalicelib.ports import FEEDBACK_STATUS_AFTER, EventPage, MessageRecord
from chalicelib.profiles import EventCounter, Profile
from chalicelib.segment import Event, iso, parse_time
from chalicelib.settings import Settings

DEDUPE_MARKER_SECONDS = 7 * 24 * 3600
DECISION_DAYS = 90
#: Conditional puts in flight at once for one request's events.
PUT_CONCURRENCY = 8


class EventItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    data = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)


class ByShardIndex(GlobalSecondaryIndex["ProfileItem"]):
    class Meta:
        index_name = "by_shard"
        projection = KeysOnlyProjection()

    shard = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class ProfileItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    data = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    version = VersionAttribute(null=True)
    shard = UnicodeAttribute(null=True)

    by_shard = ByShardIndex()


class DeliveryItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute(null=True)
    data = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)
    #: A broadcast run's counts.
    profiles = NumberAttribute(null=True)
    matched = NumberAttribute(null=True)
    queued = NumberAttribute(null=True)
    done = NumberAttribute(null=True)
    #: A message's provider feedback, first time of each kind (Ledger.note_feedback).
    delivery_at = UnicodeAttribute(null=True)
    bounce_at = UnicodeAttribute(null=True)
    complaint_at = UnicodeAttribute(null=True)
    open_at = UnicodeAttribute(null=True)
    click_at = UnicodeAttribute(null=True)


class ByPersonIndex(GlobalSecondaryIndex["TimerItem"]):
    class Meta:
        index_name = "by_person"
        projection = KeysOnlyProjection()

    person = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class TimerItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    data = UnicodeAttribute()
    #: The profile id of a person's timer (not of a broadcast page): the ``by_person`` index.
    person = UnicodeAttribute(null=True)

    by_person = ByPersonIndex()


class KeyItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    name = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)


def bind(settings: Settings) -> None:
    """Point the models at this deployment's tables (cheap; safe to repeat)."""
    for model, table in (
        (EventItem, settings.events_table),
        (ProfileItem, settings.profiles_table),
        (KeyItem, settings.keys_table),
        (DeliveryItem, settings.deliveries_table),
        (TimerItem, settings.timers_table),
    ):
        if model.Meta.table_name != table or getattr(model.Meta, "region", None) != settings.region:
            model.Meta.table_name = table
            model.Meta.region = settings.region
            model._connection = None


def conditional_failure(exc: Exception) -> bool:
    """True when a write was refused by its condition (a single write, or any
    part of a transaction)."""
    if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
        return True
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(reason is not None and reason.code == "ConditionalCheckFailed" for reason in reasons)


def _delete_items(model: type[Model], items: Sequence[Model]) -> None:
    """Delete these items by key with BatchWriteItem, 25 a call, in the order
    given (PynamoDB resends what DynamoDB leaves unprocessed)."""
    with model.batch_write() as batch:
        for item in items:
            batch.delete(item)


_F = TypeVar("_F", bound=Callable[..., Any])


def translated(method: _F) -> _F:
    """Turn PynamoDB and botocore failures into StorageUnavailable, so callers
    handle one domain error instead of two libraries' exception trees."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (PynamoDBException, BotoCoreError) as exc:
            raise StorageUnavailable(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def event_sort_key(event: Event) -> str:
    return f"{iso(event.client_timestamp or event.received_at)}#{event.message_id}"


def event_from_json(data: str) -> Event:
    raw = json.loads(data)
    client = raw.get("originalTimestamp")
    return Event(
        type=raw["type"],
        message_id=raw["messageId"],
        message_id_given=True,
        user_id=raw.get("userId"),
        anonymous_id=raw.get("anonymousId"),
        timestamp=parse_time(raw["timestamp"]),
        received_at=parse_time(raw["receivedAt"]),
        client_timestamp=parse_time(client) if client else None,
        event=raw.get("event"),
        name=raw.get("name"),
        properties=raw.get("properties", {}),
        traits=raw.get("traits", {}),
        context=raw.get("context", {}),
        group_id=raw.get("groupId"),
        previous_id=raw.get("previousId"),
    )


class DynamoEventLog:
    """EventLog on the events table."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)

    @translated
    def append(self, events: Sequence[Event]) -> list[bool]:
        seen: set[tuple[str, str]] = set()
        unique: list[int] = []
        for index, event in enumerate(events):
            key = (event.identity, event_sort_key(event))
            if key not in seen:
                seen.add(key)
                unique.append(index)
        results = [False] * len(events)
        if len(unique) == 1:
            results[unique[0]] = self._put(events[unique[0]])
            return results
        with ThreadPoolExecutor(max_workers=min(PUT_CONCURRENCY, len(unique) or 1)) as pool:
            for index, is_new in zip(unique, pool.map(lambda i: self._put(events[i]), unique)):
                results[index] = is_new
        return results

    @translated
    def stored(self, events: Sequence[Event]) -> list[Event | None]:
        """One consistent Query per identity over the span of the keys asked
        (the log's own read, already granted); only retried requests ask, and
        only for events whose time the retry cannot tell (chalicelib.ingest)."""
        wanted: dict[str, set[str]] = {}
        for event in events:
            if event.client_timestamp is not None:
                wanted.setdefault(event.identity, set()).add(event_sort_key(event))
        found: dict[tuple[str, str], Event] = {}
        for identity, keys in wanted.items():
            for item in EventItem.query(identity, EventItem.sk.between(min(keys), max(keys)), consistent_read=True):
                if item.sk in keys and item.data:
                    found[(identity, item.sk)] = event_from_json(item.data)
        return [found.get((e.identity, event_sort_key(e))) if e.client_timestamp is not None else None
                for e in events]

    @translated
    def count(self, identities: Sequence[str], event_key: str, start: datetime, end: datetime) -> int:
        low, high = f"{iso(start)}#", f"{iso(end)}#\uffff"
        total = 0
        for identity in identities:
            for item in EventItem.query(identity, EventItem.sk.between(low, high)):
                if item.data and event_from_json(item.data).counter_name == event_key:
                    total += 1
        return total

    def _put(self, event: Event) -> bool:
        if event.message_id_given and event.client_timestamp is None:
            marker = EventItem(
                f"msg:{event.identity}:{event.message_id}", "dedupe",
                expires_at=int(time.time()) + DEDUPE_MARKER_SECONDS,
            )
            if not self._claim(marker):
                return False
        item = EventItem(
            event.identity,
            event_sort_key(event),
            data=json.dumps(event.as_dict(), separators=(",", ":"), ensure_ascii=False),
        )
        return self._claim(item)

    @staticmethod
    def _claim(item: EventItem) -> bool:
        try:
            item.save(condition=EventItem.pk.does_not_exist())
        except PutError as exc:
            if conditional_failure(exc):
                return False
            raise
        return True

    @translated
    def history(self, identities: Sequence[str], limit: int, cursor: str | None) -> EventPage:
        before = _decode_cursor(cursor) if cursor else None
        candidates: list[EventItem] = []
        more = False
        for identity in identities:
            condition = EventItem.sk < before if before else None
            page = list(
                EventItem.query(identity, range_key_condition=condition, scan_index_forward=False, limit=limit + 1)
            )
            more = more or len(page) > limit
            candidates.extend(page[:limit + 1])
        candidates.sort(key=lambda item: item.sk, reverse=True)
        chosen = candidates[:limit]
        more = more or len(candidates) > limit
        next_cursor = base64.urlsafe_b64encode(chosen[-1].sk.encode()).decode() if more and chosen else None
        return EventPage([event_from_json(item.data) for item in chosen], next_cursor)

    @translated
    def forget(self, identities: Sequence[str], limit: int) -> int:
        """Up to ``limit`` events of these identities, oldest first (strongly
        consistent Queries), deleted in batches after their markers. Only an
        event stored without a client timestamp can have a marker, and its key
        is computed from the event: no lookup, no scan."""
        chosen: list[EventItem] = []
        for identity in identities:
            if len(chosen) >= limit:
                break
            chosen.extend(EventItem.query(identity, consistent_read=True, limit=limit - len(chosen)))
        markers = []
        for item in chosen:
            raw = json.loads(item.data or "{}")
            if raw.get("messageId") and not raw.get("originalTimestamp"):
                markers.append(EventItem(f"msg:{item.pk}:{raw['messageId']}", "dedupe"))
        _delete_items(EventItem, markers)
        _delete_items(EventItem, chosen)
        return len(chosen)


def _decode_cursor(cursor: str) -> str:
    """The sort key a cursor stands for; ValueError if it is not one of ours."""
    sort_key = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    if "#" not in sort_key:
        raise ValueError("not a history cursor")
    return sort_key


def _profile_to_json(profile: Profile) -> str:
    body = profile.as_dict()
    body["events"] = {name: [c.count, c.last] for name, c in profile.counters.items()}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _profile_from_item(item: ProfileItem) -> Profile:
    body: dict[str, Any] = json.loads(item.data or "{}")
    return Profile(
        profile_id=item.pk,
        user_id=body.get("userId"),
        anonymous_ids=tuple(body.get("anonymousIds", ())),
        traits=body.get("traits", {}),
        groups=body.get("groups", {}),
        timezone=body.get("timezone"),
        first_seen=body.get("firstSeen"),
        last_seen=body.get("lastSeen"),
        counters={name: EventCounter(count, last) for name, (count, last) in body.get("events", {}).items()},
        version=item.version or 0,
    )


class DynamoProfileStore:
    """ProfileStore on the profiles table."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)

    @translated
    def get(self, profile_id: str) -> Profile | None:
        try:
            return _profile_from_item(ProfileItem.get(profile_id, consistent_read=True))
        except ProfileItem.DoesNotExist:
            return None

    @translated
    def save(self, profile: Profile) -> Profile:
        """Write the profile (optimistic lock on ``version``).

        Every person's profile carries ``shard`` (chalicelib.broadcasts.profile_shard),
        which puts it in the KEYS_ONLY ``by_shard`` index broadcasts page through.
        The shard is derived from the id, so it is the same on every save: an index
        whose key attributes never change after creation and that projects only
        keys costs one index write when the profile is created and none when it is
        updated (DynamoDB writes to a GSI only when the item's index keys or
        projected attributes change). Link items (``alias:``) get no shard.
        """
        from chalicelib.broadcasts import profile_shard

        item = ProfileItem(profile.profile_id, data=_profile_to_json(profile), user_id=profile.user_id,
                           shard=profile_shard(profile.profile_id))
        if profile.version:
            item.version = profile.version
        try:
            item.save()
        except PutError as exc:
            if conditional_failure(exc):
                raise ConcurrentUpdate(profile.profile_id) from exc
            raise
        return replace(profile, version=item.version)

    @translated
    def delete(self, profile_id: str) -> None:
        ProfileItem(profile_id).delete(add_version_condition=False)

    @translated
    def page(self, shard: str, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """Profile ids of one ``by_shard`` partition after ``cursor`` (one Query on
        the index, never a Scan), and the cursor of the next page (None at the end)."""
        start = {"shard": {"S": shard}, "pk": {"S": cursor}} if cursor else None
        results = ProfileItem.by_shard.query(shard, limit=limit, page_size=limit, last_evaluated_key=start)
        ids = [item.pk for item in results]
        last = results.last_evaluated_key
        return ids, (last["pk"]["S"] if last and len(ids) >= limit else None)

    @translated
    def get_many(self, profile_ids: Sequence[str]) -> list[Profile]:
        """The profiles of these ids that exist (BatchGetItem, up to 100 ids a call)."""
        return [_profile_from_item(item) for item in ProfileItem.batch_get(list(profile_ids))]

    @translated
    def resolve(self, anonymous_ids: Sequence[str]) -> dict[str, str]:
        keys = [f"alias:{anon}" for anon in anonymous_ids]
        found = ProfileItem.batch_get(keys, consistent_read=True)
        return {item.pk.removeprefix("alias:"): item.user_id for item in found if item.user_id}

    @translated
    def link(self, anonymous_id: str, user_id: str) -> None:
        ProfileItem(f"alias:{anonymous_id}", user_id=user_id).save(add_version_condition=False)

    @translated
    def unlink(self, anonymous_id: str, user_id: str) -> bool:
        """One conditional delete: a link that names someone else stays."""
        try:
            ProfileItem(f"alias:{anonymous_id}").delete(condition=ProfileItem.user_id == user_id,
                                                        add_version_condition=False)
        except DeleteError as exc:
            if conditional_failure(exc):
                return False
            raise
        return True


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class DynamoKeyStore:
    """KeyStore on the keys table; only SHA-256 digests of secrets are stored."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)

    @translated
    def kind_of(self, secret: str) -> str | None:
        try:
            return KeyItem.get(key_digest(secret)).kind
        except KeyItem.DoesNotExist:
            return None

    @translated
    def add(self, secret: str, kind: str, name: str) -> None:
        created = datetime.now(timezone.utc).isoformat()
        KeyItem(key_digest(secret), kind=kind, name=name, created_at=created).save()


#: Feedback kind -> the attribute keeping its first time on a message item.
FEEDBACK_KINDS = ("delivery", "bounce", "complaint", "open", "click")


def _record_from_item(item: DeliveryItem) -> MessageRecord:
    record = MessageRecord(**json.loads(item.data))
    # Feedback is written by UpdateItem next to ``data``: its times, and the status it set.
    feedback = {kind: getattr(item, f"{kind}_at") for kind in FEEDBACK_KINDS if getattr(item, f"{kind}_at", None)}
    if feedback:
        record = replace(record, status=item.status or record.status, feedback=feedback)
    return record


class DynamoLedger:
    """Ledger and message history on the deliveries table."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)

    @staticmethod
    def _item(record: MessageRecord) -> DeliveryItem:
        return DeliveryItem(record.profile_id, f"msg#{record.key}", status=record.status,
                            data=json.dumps(record.__dict__, separators=(",", ":"), ensure_ascii=False))

    @translated
    def get(self, profile_id: str, key: str) -> MessageRecord | None:
        try:
            return _record_from_item(DeliveryItem.get(profile_id, f"msg#{key}", consistent_read=True))
        except DeliveryItem.DoesNotExist:
            return None

    @translated
    def claim(self, record: MessageRecord) -> bool:
        try:
            self._item(record).save(condition=DeliveryItem.pk.does_not_exist() | (DeliveryItem.status == "deferred"))
        except PutError as exc:
            if conditional_failure(exc):
                return False
            raise
        return True

    @translated
    def finish(self, record: MessageRecord) -> None:
        """Record the outcome with UpdateItem, leaving the feedback attributes alone:
        SES feedback can arrive before the outcome is written, and its status
        (delivered, bounced) is kept then."""
        item = DeliveryItem(record.profile_id, f"msg#{record.key}")
        data = DeliveryItem.data.set(json.dumps(record.__dict__, separators=(",", ":"), ensure_ascii=False))
        try:
            item.update(actions=[data, DeliveryItem.status.set(record.status)],
                        condition=DeliveryItem.status == "sending")
        except UpdateError as exc:
            if not conditional_failure(exc):
                raise
            item.update(actions=[data])

    @translated
    def note_feedback(self, profile_id: str, key: str, kind: str, at: str,
                      status: str | None) -> MessageRecord | None:
        """One UpdateItem: the kind's first time (if_not_exists) and, when the
        status may follow the current one, the status. If it may not (a
        delivery reported after a bounce), a second UpdateItem keeps the time only."""
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {kind!r}")
        item = DeliveryItem(profile_id, f"msg#{key}")
        attribute = getattr(DeliveryItem, f"{kind}_at")
        keep_first = attribute.set(attribute | at)
        exists = DeliveryItem.pk.exists() & DeliveryItem.sk.exists()
        attempts = []
        if status is not None:
            attempts.append(([keep_first, DeliveryItem.status.set(status)],
                             exists & DeliveryItem.status.is_in(*FEEDBACK_STATUS_AFTER[status])))
        attempts.append(([keep_first], exists))
        for actions, condition in attempts:
            try:
                item.update(actions=actions, condition=condition)
            except UpdateError as exc:
                if conditional_failure(exc):
                    continue
                raise
            return _record_from_item(item)
        return None

    @translated
    def release(self, profile_id: str, key: str) -> None:
        try:
            DeliveryItem(profile_id, f"msg#{key}").delete(condition=DeliveryItem.status == "sending")
        except DeleteError as exc:
            if not conditional_failure(exc):
                raise

    @translated
    def enroll(self, profile_id: str, trigger_id: str, occurrence: str, at: str, until: datetime | None) -> bool:
        now = int(parse_time(at).timestamp())  # the event's time: the engine's clock, not this machine's
        item = DeliveryItem(profile_id, f"enroll#{trigger_id}", status="entered",
                            data=json.dumps({"occurrence": occurrence, "at": at}),
                            expires_at=int(until.timestamp()) if until is not None else None)
        try:
            # A lapsed entry carries expires_at (it is also the table's TTL attribute).
            item.save(condition=DeliveryItem.pk.does_not_exist() | (DeliveryItem.expires_at < now))
        except PutError as exc:
            if not conditional_failure(exc):
                raise
            held = DeliveryItem.get(profile_id, f"enroll#{trigger_id}", consistent_read=True)
            return json.loads(held.data).get("occurrence") == occurrence
        return True

    @translated
    def messages(self, profile_id: str, limit: int) -> list[MessageRecord]:
        items = DeliveryItem.query(profile_id, DeliveryItem.sk.startswith("msg#"))
        records = sorted((_record_from_item(item) for item in items), key=lambda r: r.created_at, reverse=True)
        return records[:limit]

    @translated
    def entered(self, profile_id: str) -> list[dict[str, Any]]:
        found = []
        for item in DeliveryItem.query(profile_id, DeliveryItem.sk.startswith("enroll#"), consistent_read=True):
            body = json.loads(item.data)
            until = datetime.fromtimestamp(item.expires_at, timezone.utc) if item.expires_at is not None else None
            found.append({"trigger": item.sk.removeprefix("enroll#"), "occurrence": body.get("occurrence"),
                          "at": body.get("at"), "until": iso(until) if until else None})
        return found

    @translated
    def forget(self, profile_id: str, limit: int) -> dict[str, int]:
        """Queries by sort-key prefix (strongly consistent), then batched deletes."""
        removed: dict[str, int] = {}
        chosen: list[DeliveryItem] = []
        for prefix, kind in (("msg#", "messages"), ("enroll#", "enrollments")):
            found = list(DeliveryItem.query(profile_id, DeliveryItem.sk.startswith(prefix), consistent_read=True,
                                            limit=limit - len(chosen), attributes_to_get=["pk", "sk"])
                         ) if len(chosen) < limit else []
            removed[kind] = len(found)
            chosen.extend(found)
        _delete_items(DeliveryItem, chosen)
        return removed


class DynamoDecisionLog:
    """Why triggers fired or not, per evaluated event, on the deliveries table."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)

    @translated
    def record(self, evaluation: Any, at: str) -> None:
        body = {
            "at": at,
            "event": {k: evaluation.event.get(k) for k in ("messageId", "type", "event", "name", "timestamp")
                      if evaluation.event.get(k) is not None},
            "triggers": [verdict.as_dict() for verdict in evaluation.verdicts],
            "actions": len(evaluation.decisions),
        }
        DeliveryItem(
            evaluation.profile_id, f"dec#{evaluation.event.get('timestamp')}#{evaluation.event.get('messageId')}",
            data=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            expires_at=int(time.time()) + DECISION_DAYS * 86400,
        ).save()

    @translated
    def note(self, profile_id: str, at: str, entry: Any) -> None:
        body = {"at": at, "delivery": dict(entry)}
        DeliveryItem(
            profile_id, f"dec#{at}#{entry.get('message')}",
            data=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            expires_at=int(time.time()) + DECISION_DAYS * 86400,
        ).save()

    @translated
    def decisions(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        items = DeliveryItem.query(profile_id, DeliveryItem.sk.startswith("dec#"), scan_index_forward=False,
                                   limit=limit)
        return [json.loads(item.data) for item in items]

    @translated
    def forget(self, profile_id: str, limit: int) -> int:
        found = list(DeliveryItem.query(profile_id, DeliveryItem.sk.startswith("dec#"), consistent_read=True,
                                        limit=limit, attributes_to_get=["pk", "sk"]))
        _delete_items(DeliveryItem, found)
        return len(found)


class DynamoBroadcastRuns:
    """Broadcast runs and their counts on the deliveries table (chalicelib.broadcasts.RunLog)."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)

    @translated
    def last_run(self, trigger_id: str, now: datetime) -> datetime:
        # Newest first: ``seen`` sorts after every ``run#...``, so two items say both.
        items = list(DeliveryItem.query(f"broadcast#{trigger_id}", scan_index_forward=False, limit=2))
        newest = next((item for item in items if item.sk.startswith("run#")), None)
        if newest is not None:
            return parse_time(newest.sk.removeprefix("run#"))
        seen = next((item for item in items if item.sk == "seen"), None)
        if seen is not None:
            return parse_time(json.loads(seen.data)["at"])
        try:
            DeliveryItem(f"broadcast#{trigger_id}", "seen", data=json.dumps({"at": iso(now)})).save(
                condition=DeliveryItem.pk.does_not_exist())
        except PutError as exc:
            if not conditional_failure(exc):
                raise
        return now

    @translated
    def start(self, trigger_id: str, run_at: str, started_at: str, shards: int) -> bool:
        item = DeliveryItem(f"broadcast#{trigger_id}", f"run#{run_at}", status="running",
                            data=json.dumps({"at": run_at, "startedAt": started_at, "shards": shards}),
                            profiles=0, matched=0, queued=0, done=0)
        try:
            item.save(condition=DeliveryItem.pk.does_not_exist())
        except PutError as exc:
            if conditional_failure(exc):
                return False
            raise
        return True

    @translated
    def add(self, trigger_id: str, run_at: str, tally: dict[str, int]) -> None:
        DeliveryItem(f"broadcast#{trigger_id}", f"run#{run_at}").update(actions=[
            getattr(DeliveryItem, name).add(value) for name, value in tally.items()])

    @translated
    def runs(self, trigger_id: str, limit: int) -> list[dict[str, Any]]:
        items = DeliveryItem.query(f"broadcast#{trigger_id}", DeliveryItem.sk.startswith("run#"),
                                   scan_index_forward=False, limit=limit)
        found = []
        for item in items:
            body = json.loads(item.data)
            counts = {name: int(getattr(item, name) or 0) for name in ("profiles", "matched", "queued", "done")}
            found.append({**body, "counts": counts,
                          "status": "done" if counts["done"] >= body.get("shards", 0) else "running"})
        return found


class DynamoTimerStore:
    """TimerStore on the timers table."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)
        self._shards = settings.timer_shards

    def _shard(self, timer_id: str) -> str:
        digest = hashlib.sha256(timer_id.encode()).digest()
        return f"timers#{int.from_bytes(digest[:4], 'big') % self._shards}"

    @translated
    def put(self, timer: Any) -> None:
        """One PutItem, and one write to the ``by_person`` index for a person's
        timer (a broadcast page has no person and stays out of the index)."""
        TimerItem(self._shard(timer.id), f"{timer.due}#{timer.id}",
                  data=json.dumps(timer.as_dict(), separators=(",", ":"), ensure_ascii=False),
                  person=None if timer.kind == "broadcast" else timer.profile_id).save()

    @translated
    def due(self, now: datetime, limit: int) -> list[Any]:
        from chalicelib.timers import Timer

        bound = f"{iso(now)}#\uffff"
        found: list[Any] = []
        for shard in range(self._shards):
            if len(found) >= limit:
                break
            query = TimerItem.query(f"timers#{shard}", TimerItem.sk <= bound, limit=limit - len(found))
            found.extend(Timer.from_dict(json.loads(item.data)) for item in query)
        return found

    @translated
    def delete(self, timer: Any) -> None:
        TimerItem(self._shard(timer.id), f"{timer.due}#{timer.id}").delete()

    @staticmethod
    def _keys_of(profile_id: str) -> list[TimerItem]:
        # The index is eventually consistent: a timer set a moment ago may not be listed yet.
        return [TimerItem(item.pk, item.sk) for item in TimerItem.by_person.query(profile_id)]

    @translated
    def of_person(self, profile_id: str) -> list[Any]:
        """The index gives the keys; one BatchGetItem per 100 reads the timers."""
        from chalicelib.timers import Timer

        keys = [(item.pk, item.sk) for item in self._keys_of(profile_id)]
        timers = [Timer.from_dict(json.loads(item.data)) for item in TimerItem.batch_get(keys)] if keys else []
        return sorted(timers, key=lambda timer: timer.due)

    @translated
    def forget(self, profile_id: str) -> int:
        keys = self._keys_of(profile_id)
        _delete_items(TimerItem, keys)
        return len(keys)

"""Trigger and template definitions in DynamoDB, with every version kept.

The only module that knows the definitions table's item shapes
(infra/template.yaml, ``DefinitionsTable``):

- ``pk`` = ``trigger#<id>`` or ``template#<id>``.
- ``sk = "current"``: the definition in force. ``source`` (the definition as
  JSON), ``version``, ``deleted``, ``who``/``via``/``changed_at`` of the last
  change; ``kind`` (``trigger``/``template``) puts it in the ``by_kind`` index
  (listing without reading history); ``event_key``, set on live triggers only,
  puts it in the ``by_event`` index the evaluator queries.
- ``sk = "v#000001"``, ...: one immutable item per change, with ``who`` (the
  admin key's name, or ``cli``), ``via`` (``api``/``cli``), ``changed_at`` and
  the whole ``source`` (none for a deletion).

A change writes its version item and the new current item in one
TransactWriteItems, conditioned on the version it replaces: two admins saving
at once cannot both win, and no version is lost or half-written. Deleting marks
the current item deleted and removes it from ``by_event``; history stays, and
saving the id again continues its numbering.

``triggers_for`` (called per event by the evaluator) remembers each answer
for ``NUDGE_DEFINITIONS_CACHE_SECONDS`` (default 5) per process: a change made
through the API reaches running functions within that time (plus the index's
own eventual consistency, usually well under a second). Changes made by this
process clear its cache at once.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, TypeVar

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.dynamodb import translated
from chalicelib.errors import ConcurrentUpdate
from chalicelib.observability import logger
from chalicelib.settings import Settings
from chalicelib.templates import InvalidDefinition, Template, parse_template
from chalicelib.triggers import Trigger, parse_trigger

TRIGGER = "trigger"
TEMPLATE = "template"
CURRENT = "current"
_VERSION_PREFIX = "v#"


class ByEventIndex(GlobalSecondaryIndex["DefinitionItem"]):
    class Meta:
        index_name = "by_event"
        projection = AllProjection()

    event_key = UnicodeAttribute(hash_key=True)


class ByKindIndex(GlobalSecondaryIndex["DefinitionItem"]):
    class Meta:
        index_name = "by_kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class DefinitionItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(null=True)
    event_key = UnicodeAttribute(null=True)
    version = NumberAttribute()
    source = UnicodeAttribute(null=True)
    deleted = BooleanAttribute(default=False)
    who = UnicodeAttribute(null=True)
    via = UnicodeAttribute(null=True)
    changed_at = UnicodeAttribute(null=True)

    by_event = ByEventIndex()
    by_kind = ByKindIndex()


def bind(settings: Settings) -> None:
    """Point the model at this deployment's table (cheap; safe to repeat)."""
    meta = DefinitionItem.Meta
    if meta.table_name != settings.definitions_table or getattr(meta, "region", None) != settings.region:
        meta.table_name = settings.definitions_table
        meta.region = settings.region
        DefinitionItem._connection = None


@dataclass(frozen=True)
class Stored:
    """A definition as stored: its source and who changed it last."""

    kind: str
    id: str
    version: int
    source: Mapping[str, Any] | None
    deleted: bool
    who: str
    via: str
    changed_at: str

    def meta(self) -> dict[str, Any]:
        return {"version": self.version, "updatedAt": self.changed_at, "updatedBy": self.who, "via": self.via}


@dataclass(frozen=True)
class Version:
    """One change: the definition it made current (None for a deletion)."""

    version: int
    who: str
    via: str
    changed_at: str
    deleted: bool
    source: Mapping[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "at": self.changed_at, "by": self.who, "via": self.via,
                "deleted": self.deleted, "definition": self.source}


@dataclass(frozen=True)
class Saved:
    """What a save did: ``created`` (new, or again after a deletion),
    ``updated``, or ``unchanged`` (same definition: no new version)."""

    version: int
    outcome: str


_T = TypeVar("_T")


class DynamoDefinitions:
    """Triggers and templates on the definitions table."""

    def __init__(self, settings: Settings, cache_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        bind(settings)
        self._region = settings.region
        self._connection: Connection | None = None
        self._cache_seconds = settings.definitions_cache_seconds if cache_seconds is None else cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Trigger]]] = {}
        self._lock = threading.Lock()

    # --- triggers ---------------------------------------------------------------------------

    def put_trigger(self, trigger: Trigger, who: str) -> int:
        """Save ``trigger`` as the current definition; returns its version."""
        return self.save_trigger(trigger, who).version

    def save_trigger(self, trigger: Trigger, who: str, *, via: str = "api",
                     expected_version: int | None = None) -> Saved:
        """Save ``trigger``; with ``expected_version``, only if that is still the
        current version (0: only if there is none). Raises ConcurrentUpdate
        when another change got there first."""
        saved = self._save(TRIGGER, trigger.id, trigger.source, who, via, expected_version,
                           event_key=trigger.event_key)
        self.forget_cached()
        return saved

    @translated
    def get_trigger(self, trigger_id: str) -> Trigger | None:
        """The current trigger, or None (never defined, or deleted)."""
        item = self._current(TRIGGER, trigger_id)
        return self._trigger(item) if item is not None and not item.deleted else None

    @translated
    def list_triggers(self) -> list[Trigger]:
        """Every live trigger, by id."""
        triggers = (self._trigger(item) for item in self._list(TRIGGER))
        return [trigger for trigger in triggers if trigger is not None]

    def delete_trigger(self, trigger_id: str, who: str, *, via: str = "api") -> bool:
        """Mark the trigger deleted (its versions stay); False if there was none."""
        deleted = self._delete(TRIGGER, trigger_id, who, via)
        self.forget_cached()
        return deleted

    @translated
    def trigger_versions(self, trigger_id: str) -> list[Version]:
        """Every change to the trigger, oldest first; empty if never defined."""
        return self._versions(TRIGGER, trigger_id)

    def triggers_for(self, event_key: str) -> list[Trigger]:
        """The live triggers (enabled or not) listening for ``event_key`` (a
        track event's name or a call type). One Query on ``by_event``, cached
        for a few seconds per process (see the module docstring)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(event_key)
        if cached is not None and cached[0] > now:
            return list(cached[1])
        found = self._query_event(event_key)
        with self._lock:
            self._cache[event_key] = (now + self._cache_seconds, found)
        return list(found)

    def forget_cached(self) -> None:
        with self._lock:
            self._cache.clear()

    @translated
    def _query_event(self, event_key: str) -> list[Trigger]:
        items = DefinitionItem.by_event.query(event_key)
        triggers = (self._trigger(item) for item in items if not item.deleted)
        return sorted((t for t in triggers if t is not None), key=lambda t: t.id)

    # --- templates --------------------------------------------------------------------------

    def put_template(self, template: Template, who: str) -> int:
        """Save ``template`` as the current definition; returns its version."""
        return self.save_template(template, who).version

    def save_template(self, template: Template, who: str, *, via: str = "api",
                      expected_version: int | None = None) -> Saved:
        return self._save(TEMPLATE, template.id, template.as_dict(), who, via, expected_version)

    @translated
    def get_template(self, template_id: str) -> Template | None:
        """The current template, or None. Read consistently: a send right
        after a change uses the new content."""
        item = self._current(TEMPLATE, template_id)
        return self._template(item) if item is not None and not item.deleted else None

    @translated
    def list_templates(self) -> list[Template]:
        templates = (self._template(item) for item in self._list(TEMPLATE))
        return [template for template in templates if template is not None]

    @translated
    def template_versions(self, template_id: str) -> list[Version]:
        return self._versions(TEMPLATE, template_id)

    # --- either -----------------------------------------------------------------------------

    @translated
    def stored(self, kind: str, definition_id: str) -> Stored | None:
        """The current item of a trigger or template, deleted or not, or None."""
        item = self._current(kind, definition_id)
        return _stored(item) if item is not None else None

    @translated
    def list_stored(self, kind: str) -> list[Stored]:
        """The live triggers or templates as stored, by id."""
        return [_stored(item) for item in self._list(kind)]

    # --- the table --------------------------------------------------------------------------

    @staticmethod
    def _current(kind: str, definition_id: str) -> DefinitionItem | None:
        try:
            return DefinitionItem.get(_pk(kind, definition_id), CURRENT, consistent_read=True)
        except DefinitionItem.DoesNotExist:
            return None

    @staticmethod
    def _list(kind: str) -> list[DefinitionItem]:
        return [item for item in DefinitionItem.by_kind.query(kind) if not item.deleted]

    @staticmethod
    def _versions(kind: str, definition_id: str) -> list[Version]:
        items = DefinitionItem.query(_pk(kind, definition_id), DefinitionItem.sk.startswith(_VERSION_PREFIX),
                                     consistent_read=True)
        return [Version(item.version, item.who or "", item.via or "", item.changed_at or "", bool(item.deleted),
                        json.loads(item.source) if item.source else None) for item in items]

    @translated
    def _save(self, kind: str, definition_id: str, source: Mapping[str, Any], who: str, via: str,
              expected_version: int | None, event_key: str | None = None) -> Saved:
        current = self._current(kind, definition_id)
        previous = current.version if current is not None else 0
        if expected_version is not None and expected_version != previous:
            raise ConcurrentUpdate(f"{kind} {definition_id} is at version {previous}, not {expected_version}")
        live = current is not None and not current.deleted
        if live and current.source and json.loads(current.source) == dict(source):
            return Saved(previous, "unchanged")
        version = previous + 1
        text = json.dumps(source, separators=(",", ":"), ensure_ascii=False)
        self._commit(kind, definition_id, previous, DefinitionItem(
            _pk(kind, definition_id), CURRENT, kind=kind, event_key=event_key, version=version, source=text,
            deleted=False, who=who, via=via, changed_at=_now(),
        ), source=text)
        return Saved(version, "updated" if live else "created")

    @translated
    def _delete(self, kind: str, definition_id: str, who: str, via: str) -> bool:
        current = self._current(kind, definition_id)
        if current is None or current.deleted:
            return False
        self._commit(kind, definition_id, current.version, DefinitionItem(
            _pk(kind, definition_id), CURRENT, kind=kind, version=current.version + 1, source=current.source,
            deleted=True, who=who, via=via, changed_at=_now(),
        ), source=None)
        return True

    def _commit(self, kind: str, definition_id: str, previous: int, current: DefinitionItem,
                source: str | None) -> None:
        """Write the new current item and its version item together, only if
        the current version is still ``previous``."""
        history = DefinitionItem(
            _pk(kind, definition_id), f"{_VERSION_PREFIX}{current.version:06d}", version=current.version,
            source=source, deleted=current.deleted, who=current.who, via=current.via,
            changed_at=current.changed_at,
        )
        still = DefinitionItem.version == previous if previous else DefinitionItem.pk.does_not_exist()
        try:
            with TransactWrite(connection=self._connect()) as transaction:
                transaction.save(current, condition=still)
                transaction.save(history, condition=DefinitionItem.pk.does_not_exist())
        except TransactWriteError as exc:
            reasons = [getattr(r, "code", None) for r in (exc.cancellation_reasons or []) if r is not None]
            if "ConditionalCheckFailed" in reasons:
                raise ConcurrentUpdate(f"{kind} {definition_id} changed while it was being saved") from exc
            raise

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(region=self._region)
        return self._connection

    @staticmethod
    def _trigger(item: DefinitionItem) -> Trigger | None:
        return _parsed(item, lambda doc, origin: parse_trigger(
            doc, templates=None, origin=origin, version=item.version, check_liquid=False))

    @staticmethod
    def _template(item: DefinitionItem) -> Template | None:
        return _parsed(item, lambda doc, origin: parse_template(
            doc, origin, version=item.version, check_liquid=False))


def _parsed(item: DefinitionItem, parse: Callable[[Any, str], _T]) -> _T | None:
    """A stored definition, or None (logged) if it no longer passes the rules
    of this version of Nudge: one bad definition must not stop the others."""
    origin = f"stored {item.pk} v{item.version}"
    try:
        return parse(json.loads(item.source or "null"), origin)
    except InvalidDefinition as exc:
        logger.warning("stored definition no longer valid; ignored", extra={"definition": item.pk,
                                                                            "version": item.version,
                                                                            "problems": str(exc)})
        return None


def _stored(item: DefinitionItem) -> Stored:
    kind, _, definition_id = item.pk.partition("#")
    return Stored(kind, definition_id, item.version, json.loads(item.source) if item.source else None,
                  bool(item.deleted), item.who or "", item.via or "", item.changed_at or "")


def _pk(kind: str, definition_id: str) -> str:
    return f"{kind}#{definition_id}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

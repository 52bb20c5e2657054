"""The consent table (infra/template.yaml, ``ConsentTable``) through PynamoDB:
the ConsentStore port.

Item shapes (``pk``, ``sk``):

- ``person#<profile id>``, ``prefs``: the subscription states as JSON, with a
  ``version`` for optimistic locking.
- ``person#<profile id>``, ``consent#<time>#<key>``: one immutable item per
  consent change (key, subscribed, source, time): the consent history.
- ``person#<profile id>``, ``budget#<channel>``: the send budget's state
  (chalicelib.budget) as JSON, with a ``version``.
- ``suppress#<salted hash of the address>``, ``-``: scope, reason, time. The
  address itself is not kept.
- ``erased#<salted hash of the user id>``, ``-``: the person was erased.
- ``reputation``, ``state``: the reputation guard's pause flag, written by
  chalicelib.feedback_store and read here with a person's standing.

Other modules keep their own counters in the same table under other ``pk``
prefixes (see chalicelib.feedback_store).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from pynamodb.attributes import UnicodeAttribute, VersionAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.consent import Consent, Standing, Suppression, digest
from chalicelib.dynamodb import conditional_failure, translated
from chalicelib.errors import ConcurrentUpdate
from chalicelib.feedback import PAUSE_FLAG, pause_reason
from chalicelib.settings import Settings

MAX_ATTEMPTS = 5


class ConsentItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    data = UnicodeAttribute(null=True)
    scope = UnicodeAttribute(null=True)
    version = VersionAttribute(null=True)


def bind(settings: Settings) -> None:
    if ConsentItem.Meta.table_name != settings.consent_table or getattr(ConsentItem.Meta, "region", None) != settings.region:
        ConsentItem.Meta.table_name = settings.consent_table
        ConsentItem.Meta.region = settings.region
        ConsentItem._connection = None



class DynamoConsentStore:
    """ConsentStore on the consent table."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)
        self._salt = settings.hash_salt
        self._region = settings.region

    def _hash(self, value: str, *, fold_case: bool = True) -> str:
        return digest(self._salt, value, fold_case=fold_case)

    # --- subscriptions ----------------------------------------------------------------

    def _prefs_item(self, profile_id: str) -> ConsentItem | None:
        try:
            return ConsentItem.get(f"person#{profile_id}", "prefs", consistent_read=True)
        except ConsentItem.DoesNotExist:
            return None

    @translated
    def preferences(self, profile_id: str) -> dict[str, Consent]:
        item = self._prefs_item(profile_id)
        raw = json.loads(item.data) if item and item.data else {}
        return {key: Consent.from_dict(value) for key, value in raw.items()}

    @translated
    def set_preferences(self, profile_id: str, changes: Mapping[str, Consent]) -> dict[str, Consent]:
        for attempt in range(MAX_ATTEMPTS):
            current = self._prefs_item(profile_id)
            states = json.loads(current.data) if current and current.data else {}
            states.update({key: consent.as_dict() for key, consent in changes.items()})
            item = ConsentItem(f"person#{profile_id}", "prefs", data=json.dumps(states, separators=(",", ":")))
            if current is not None:
                item.version = current.version
            try:
                with TransactWrite(connection=Connection(region=self._region)) as transaction:
                    transaction.save(item)
                    for key, consent in changes.items():
                        transaction.save(ConsentItem(
                            f"person#{profile_id}", f"consent#{consent.at}#{key}",
                            data=json.dumps({"key": key, **consent.as_dict()}, separators=(",", ":"))))
            except TransactWriteError as exc:
                if conditional_failure(exc) and attempt < MAX_ATTEMPTS - 1:
                    continue
                if conditional_failure(exc):
                    raise ConcurrentUpdate(f"subscriptions of {profile_id} kept changing") from exc
                raise
            return {key: Consent.from_dict(value) for key, value in states.items()}
        raise AssertionError("unreachable")

    @translated
    def consent_history(self, profile_id: str) -> list[dict[str, Any]]:
        items = ConsentItem.query(f"person#{profile_id}", ConsentItem.sk.startswith("consent#"))
        return [json.loads(item.data) for item in items]

    # --- suppressions and erasure -------------------------------------------------------

    @translated
    def suppression(self, address: str) -> Suppression | None:
        try:
            item = ConsentItem.get(f"suppress#{self._hash(address)}", "-", consistent_read=True)
        except ConsentItem.DoesNotExist:
            return None
        body = json.loads(item.data or "{}")
        return Suppression(scope=item.scope or "all", reason=body.get("reason", ""), at=body.get("at", ""))

    @translated
    def suppress(self, address: str, scope: str, reason: str, at: str) -> None:
        if scope not in ("all", "marketing"):
            raise ValueError(f"scope must be all or marketing, not {scope!r}")
        item = ConsentItem(f"suppress#{self._hash(address)}", "-", scope=scope,
                           data=json.dumps({"reason": reason, "at": at}))
        condition = None if scope == "all" else (ConsentItem.pk.does_not_exist() | (ConsentItem.scope != "all"))
        try:
            item.save(condition=condition, add_version_condition=False)
        except PutError as exc:
            if not conditional_failure(exc):
                raise

    @translated
    def lift(self, address: str, reasons: Sequence[str]) -> bool:
        found = self.suppression(address)
        if found is None or found.reason not in reasons:
            return False
        try:
            ConsentItem(f"suppress#{self._hash(address)}", "-").delete(
                condition=ConsentItem.data == json.dumps({"reason": found.reason, "at": found.at}),
                add_version_condition=False)
        except DeleteError as exc:
            if conditional_failure(exc):
                return False
            raise
        return True

    @translated
    def erased(self, user_id: str) -> bool:
        try:
            ConsentItem.get(f"erased#{self._hash(user_id, fold_case=False)}", "-", consistent_read=True)
        except ConsentItem.DoesNotExist:
            return False
        return True

    @translated
    def mark_erased(self, user_id: str, at: str) -> None:
        ConsentItem(f"erased#{self._hash(user_id, fold_case=False)}", "-",
                    data=json.dumps({"at": at})).save(add_version_condition=False)

    @translated
    def forget(self, profile_id: str) -> None:
        with ConsentItem.batch_write() as batch:
            for item in ConsentItem.query(f"person#{profile_id}"):
                batch.delete(item)

    @translated
    def standing(self, profile_id: str, user_id: str | None, address: str, channel: str) -> Standing:
        """One BatchGetItem (consistent) for the prefs, suppression, erased and
        budget items, and for email the reputation guard's pause flag."""
        prefs_key, suppress_key, budget_key = ((f"person#{profile_id}", "prefs"),
                                               (f"suppress#{self._hash(address)}", "-"),
                                               (f"person#{profile_id}", f"budget#{channel}"))
        erased_key = (f"erased#{self._hash(user_id, fold_case=False)}", "-") if user_id else None
        keys = [prefs_key, suppress_key, budget_key]
        keys += [erased_key] if erased_key else []
        keys += [PAUSE_FLAG] if channel == "email" else []
        found = {(item.pk, item.sk): item for item in ConsentItem.batch_get(keys, consistent_read=True)}
        prefs, suppressed, budget = found.get(prefs_key), found.get(suppress_key), found.get(budget_key)
        pause = found.get(PAUSE_FLAG)
        body = json.loads(suppressed.data or "{}") if suppressed else {}
        return Standing(
            states={k: Consent.from_dict(v) for k, v in json.loads(prefs.data).items()} if prefs and prefs.data else {},
            suppression=Suppression(scope=suppressed.scope or "all", reason=body.get("reason", ""),
                                    at=body.get("at", "")) if suppressed else None,
            erased=erased_key in found,
            budget=json.loads(budget.data or "{}") if budget else {},
            budget_version=int(budget.version or 0) if budget else 0,
            paused=pause_reason(pause.data) if pause else None,
        )

    # --- send budget ---------------------------------------------------------------------

    @translated
    def budget(self, profile_id: str, channel: str) -> tuple[dict[str, Any], int]:
        try:
            item = ConsentItem.get(f"person#{profile_id}", f"budget#{channel}", consistent_read=True)
        except ConsentItem.DoesNotExist:
            return {}, 0
        return json.loads(item.data or "{}"), int(item.version or 0)

    @translated
    def save_budget(self, profile_id: str, channel: str, state: Mapping[str, Any], version: int) -> None:
        item = ConsentItem(f"person#{profile_id}", f"budget#{channel}", data=json.dumps(state, separators=(",", ":")))
        if version:
            item.version = version
        try:
            item.save()
        except PutError as exc:
            if conditional_failure(exc):
                raise ConcurrentUpdate(f"budget {profile_id}/{channel}") from exc
            raise

"""Feedback counts and the reputation guard's pause flag, on the consent table
(infra/template.yaml, ``ConsentTable``): chalicelib.feedback.FeedbackStore.

Item shapes (``pk``, ``sk``), next to the consent store's (chalicelib.consent_store):

- ``stats#<trigger id>``, ``<YYYY-MM-DD>``: the trigger's counts of that day
  (UTC), one number attribute per counter (``sent``, ``delivered``,
  ``bounced``, ``complained``, ``opened``, ``clicked``), added to atomically.
- ``reputation``, ``<YYYY-MM-DDTHH>``: sends, hard bounces and complaints of
  that hour, for the guard's window; expire after MAX_WINDOW_HOURS.
- ``reputation``, ``state`` (PAUSE_FLAG): the pause flag (reason and time),
  set by one conditional write so only one notification pauses sending and
  alerts; delivery reads it with a person's standing (chalicelib.consent_store).
- ``feedback#<SES message id>``, ``<counter>``: the email was counted for
  that counter; expires after MARKER_DAYS.

Each count is one transaction: the marker (a conditional put) with the
additions. A notification SNS delivers twice, or one retried after a
failure half-way, is counted once; a transaction costs twice the write
units of plain writes, which buys exact rates for the guard.
"""
from __future__ import annotations

import json
import time
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.dynamodb import conditional_failure, translated
from chalicelib.feedback import (
    COUNTERS, MAX_WINDOW_HOURS, PAUSE_FLAG, REPUTATION_COUNTERS, Totals, day_of, hour_of,
)
from chalicelib.segment import parse_time
from chalicelib.settings import Settings

MARKER_DAYS = 14
REPUTATION, STATE = PAUSE_FLAG


class FeedbackItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    data = UnicodeAttribute(null=True)
    paused_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    sent = NumberAttribute(null=True)
    delivered = NumberAttribute(null=True)
    bounced = NumberAttribute(null=True)
    complained = NumberAttribute(null=True)
    opened = NumberAttribute(null=True)
    clicked = NumberAttribute(null=True)


def bind(settings: Settings) -> None:
    if FeedbackItem.Meta.table_name != settings.consent_table or getattr(FeedbackItem.Meta, "region",
                                                                         None) != settings.region:
        FeedbackItem.Meta.table_name = settings.consent_table
        FeedbackItem.Meta.region = settings.region
        FeedbackItem._connection = None



class DynamoFeedbackStore:
    """FeedbackStore on the consent table."""

    def __init__(self, settings: Settings) -> None:
        bind(settings)
        self._region = settings.region

    @translated
    def count(self, message_id: str, counter: str, trigger_id: str | None, at: str, reputation: bool) -> bool:
        if counter not in COUNTERS:
            raise ValueError(f"unknown counter {counter!r}")
        attribute = getattr(FeedbackItem, counter)
        marker = FeedbackItem(f"feedback#{message_id}", counter, expires_at=int(time.time()) + MARKER_DAYS * 86400)
        try:
            with TransactWrite(connection=Connection(region=self._region)) as transaction:
                transaction.save(marker, condition=FeedbackItem.pk.does_not_exist())
                if trigger_id:
                    transaction.update(FeedbackItem(f"stats#{trigger_id}", day_of(at)), actions=[attribute.add(1)])
                if reputation and counter in REPUTATION_COUNTERS:
                    hour = hour_of(at)
                    expires = int(parse_time(hour + ":00:00Z").timestamp()) + (MAX_WINDOW_HOURS + 24) * 3600
                    transaction.update(FeedbackItem(REPUTATION, hour),
                                       actions=[attribute.add(1), FeedbackItem.expires_at.set(expires)])
        except TransactWriteError as exc:
            if conditional_failure(exc):
                return False
            raise
        return True

    @translated
    def totals(self, first_hour: str, last_hour: str) -> Totals:
        sums = dict.fromkeys(REPUTATION_COUNTERS, 0)
        for item in FeedbackItem.query(REPUTATION, FeedbackItem.sk.between(first_hour, last_hour)):
            for counter in REPUTATION_COUNTERS:
                sums[counter] += int(getattr(item, counter) or 0)
        return Totals(**sums)

    @translated
    def stats(self, trigger_id: str, first_day: str) -> list[dict[str, Any]]:
        return [{"day": item.sk, **{counter: int(getattr(item, counter) or 0) for counter in COUNTERS}}
                for item in FeedbackItem.query(f"stats#{trigger_id}", FeedbackItem.sk >= first_day)]

    @translated
    def trip(self, reason: str, at: str) -> bool:
        item = FeedbackItem(REPUTATION, STATE, data=json.dumps({"reason": reason, "at": at}), paused_at=at)
        try:
            item.save(condition=FeedbackItem.pk.does_not_exist())
        except PutError as exc:
            if conditional_failure(exc):
                return False
            raise
        return True

    @translated
    def untrip(self, at: str) -> None:
        try:
            FeedbackItem(REPUTATION, STATE).delete(condition=FeedbackItem.paused_at == at)
        except DeleteError as exc:
            if not conditional_failure(exc):
                raise

    @translated
    def pause_state(self) -> dict[str, str] | None:
        try:
            item = FeedbackItem.get(REPUTATION, STATE, consistent_read=True)
        except FeedbackItem.DoesNotExist:
            return None
        return json.loads(item.data or "{}")

    @translated
    def resume(self) -> dict[str, str] | None:
        state = self.pause_state()
        if state is not None:
            FeedbackItem(REPUTATION, STATE).delete()
        return state

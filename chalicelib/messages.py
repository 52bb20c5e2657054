"""How the message history shows a ledger record.

A claim that stayed ``sending`` past the delivery time limit means the process
stopped between claiming and recording (see deliver.py): the send may or may
not have happened, and it will not be retried. It is shown as ``unknown``.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from chalicelib.ports import MessageRecord
from chalicelib.segment import iso

#: Longer than the delivery function's timeout plus the queue's visibility timeout.
UNKNOWN_AFTER = timedelta(minutes=15)


def shown(record: MessageRecord, now: datetime) -> dict[str, Any]:
    body = record.as_dict()
    if record.status == "sending" and record.created_at < iso(now - UNKNOWN_AFTER):
        body["status"] = "unknown"
        body["reason"] = "the send was started but its outcome was never recorded; it is not retried"
    return body

"""The send queue adapter: decisions onto SQS for the delivery handler.

Standard queues deliver at least once and in no set order; the send ledger
makes a repeated decision a no-op, so neither matters. Up to ten decisions go
in one SendMessageBatch call; entries SQS reports as failed are raised so the
caller (the stream handler) is retried and nothing decided is lost.
"""
from __future__ import annotations

import json
from typing import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws_clients import client
from chalicelib.errors import StorageUnavailable
from chalicelib.evaluate import Decision
from chalicelib.settings import Settings

BATCH = 10


class SqsSendQueue:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.send_queue_url

    def enqueue(self, decisions: Sequence[Decision]) -> None:
        for start in range(0, len(decisions), BATCH):
            chunk = decisions[start:start + BATCH]
            entries = [{"Id": str(i), "MessageBody": json.dumps(d.as_dict(), separators=(",", ":"))}
                       for i, d in enumerate(chunk)]
            try:
                answer = client("sqs").send_message_batch(QueueUrl=self._url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise StorageUnavailable(f"send queue: {exc}") from exc
            if answer.get("Failed"):
                raise StorageUnavailable(f"send queue refused {len(answer['Failed'])} decisions")

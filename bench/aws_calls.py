"""Count the AWS calls a piece of code makes and the DynamoDB write units they cost.

Write units follow DynamoDB's on-demand rule: one unit per started KiB of the
item written (a conditional write that fails still costs its units). Item
sizes are computed from the request the way DynamoDB sizes items: attribute
names plus values.

Read units follow the on-demand rule too, sized from the response: a GetItem
costs one unit per started 4 KiB of the item (half for an eventually
consistent read, and at least that for an item not found), a BatchGetItem the
same per item, a Query or Scan one unit per started 4 KiB of the items it
returns, added together (half when eventually consistent).
"""
from __future__ import annotations

import math
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator
from unittest import mock

import botocore.client

_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_READ_UNIT_BYTES = 4096


def item_size(item: dict[str, Any]) -> int:
    """Bytes of a DynamoDB item in wire format, by DynamoDB's sizing rules."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(v)) for v in inner)
    raise ValueError(kind)


def read_units(operation: str, params: dict[str, Any], answer: dict[str, Any]) -> float:
    """On-demand read request units a DynamoDB read consumed (0 for other calls)."""
    def units(size: int, consistent: bool) -> float:
        return max(1, math.ceil(size / _READ_UNIT_BYTES)) * (1.0 if consistent else 0.5)

    if operation == "GetItem":
        return units(item_size(answer.get("Item", {})), bool(params.get("ConsistentRead")))
    if operation == "BatchGetItem":
        total = 0.0
        for table, items in answer.get("Responses", {}).items():
            consistent = bool(params["RequestItems"].get(table, {}).get("ConsistentRead"))
            total += sum(units(item_size(item), consistent) for item in items)
        return total
    if operation in ("Query", "Scan"):
        return units(sum(item_size(item) for item in answer.get("Items", [])), bool(params.get("ConsistentRead")))
    return 0.0


@dataclass
class Tally:
    calls: Counter = field(default_factory=Counter)
    write_units: int = 0
    read_units: float = 0.0

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


@contextmanager
def counting() -> Iterator[Tally]:
    """Record every botocore API call made inside the block (any thread)."""
    tally = Tally()
    original = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        tally.calls[f"{service}:{operation}"] += 1
        if service == "dynamodb" and operation in _WRITES:
            size = item_size(params["Item"]) if "Item" in params else item_size(params.get("Key", {}))
            tally.write_units += max(1, math.ceil(size / 1024))
        answer = original(client, operation, params)
        if service == "dynamodb":
            tally.read_units += read_units(operation, params, answer)
        return answer

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", recording):
        yield tally

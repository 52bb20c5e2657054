"""Domain errors that cross from the engine to the handlers.

Handlers map them to HTTP answers; nothing here knows about HTTP or AWS.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One rule broken by one field of the input, e.g. ``batch[2].event``."""

    field: str
    rule: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule}


class InvalidInput(Exception):
    """The caller sent something Nudge will not accept; nothing was written."""

    def __init__(self, problems: list[FieldProblem], status: int = 400) -> None:
        self.problems = problems
        self.status = status
        first = problems[0]
        super().__init__(f"{first.field}: {first.rule}")


class Unauthorized(Exception):
    """No credential, or one that does not grant this call."""


class ConcurrentUpdate(Exception):
    """A conditional write lost a race; the caller may re-read and try again."""


class StorageUnavailable(Exception):
    """The store could not be reached or refused for now (throttling, 5xx,
    timeouts). Retrying later is safe."""


class SendRetryable(Exception):
    """A channel refused for now (throttling, a 5xx, a timeout before sending).
    The message was not sent; delivery is retried, first after ``retry_after``
    seconds when the cause says how long is enough."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SendRejected(Exception):
    """A channel refused for good (invalid address, unverified sender, a 4xx).
    The message is recorded as failed with this reason and never retried."""


"""Logging and metrics, made once per process.

Powertools Logger writes structured JSON with the correlation id of the call;
Metrics writes CloudWatch Embedded Metric Format, flushed after every
invocation: by the HTTP middleware in app.py for the API, and by
:func:`event_handler` for the other handlers, because Lambda imports those from
their own module (Handler ``functions.bus.on_bus_event``) and never loads
app.py's middleware.
"""
from __future__ import annotations

from functools import wraps
from typing import Any, Callable, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="nudge")
metrics = Metrics(namespace="Nudge", service="nudge")


def count(name: str, value: int = 1) -> None:
    """Add to a count metric (accepted, duplicate and rejected events, ...)."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def flush() -> None:
    """Publish what was counted during this invocation, if anything."""
    if metrics.metric_set:
        metrics.flush_metrics()


_H = TypeVar("_H", bound=Callable[..., Any])


def event_handler(handler: _H) -> _H:
    """Publish the metrics of one non-HTTP invocation, whatever its outcome."""

    @wraps(handler)
    def wrapper(event: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return handler(event, *args, **kwargs)
        finally:
            flush()

    return wrapper  # type: ignore[return-value]

"""Logging and metrics, made once per process.

Powertools Logger writes structured JSON with the correlation id of the call;
Metrics writes CloudWatch Embedded Metric Format, flushed after every
invocation by the middleware in app.py.
"""
from __future__ import annotations

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

"""Scheduled handlers: the timer sweep, every minute.

In AWS an EventBridge schedule invokes it; in the local stack the local
runtime does. It fires what is due, in rounds of at most ``ROUND`` timers,
(a broadcast's next pages are due at once, so they count as due), until nothing is due or the invocation nears its time limit (the next minute's
sweep picks up the rest).
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib import dependencies
from chalicelib.clock import utcnow
from chalicelib.observability import count, event_handler, logger
from chalicelib.settings import get_settings
from chalicelib.sweep import SweepResult, sweep

schedules = Blueprint(__name__)

ROUND = 500
#: Stop starting rounds when less than this is left of the invocation.
RESERVE_MS = 15_000


def run_sweep(context: Any = None) -> SweepResult:
    """Sweep now, as the schedule does (also used by local time travel). A
    round in which a timer failed ends the invocation: the next sweep tries it again."""
    total = SweepResult(0, 0, 0)
    while True:
        result = sweep(utcnow(), timers=dependencies.timer_store(), profiles=dependencies.profile_store(),
                       triggers=dependencies.definitions(), decisions=dependencies.decision_log(),
                       queue=dependencies.send_queue(), limit=ROUND,
                       fallback_tz=get_settings().fallback_timezone, runs=dependencies.broadcast_runs())
        for timer, error in result.failed:
            logger.error("timer failed; left for the next sweep", extra={"timer": timer, "error": error})
        total = SweepResult(total.due + result.due, total.acted + result.acted,
                            total.called_off + result.called_off, failed=total.failed + result.failed)
        out_of_time = context is not None and context.get_remaining_time_in_millis() < RESERVE_MS
        if (result.due < ROUND and not result.chained) or out_of_time or result.failed:
            return total


@schedules.schedule(Rate(1, unit=Rate.MINUTES), name="sweep_timers")
@event_handler
def sweep_timers(event: Any) -> dict[str, int]:
    result = run_sweep(getattr(event, "context", None))
    count("TimersDue", result.due)
    count("TimersActed", result.acted)
    count("TimerFailures", len(result.failed))
    if result.due:
        logger.info("swept timers", extra=result.as_dict())
    return result.as_dict()

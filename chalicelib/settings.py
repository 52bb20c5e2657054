"""The one reader of Nudge's configuration.

Every value comes from the process environment and is read when it is asked for,
never at import time: ``chalice.test.Client`` applies a stage's environment only
while a call runs, and Lambda sets it before the first invocation. Nothing here
talks to AWS.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

#: Environment variable -> meaning. The deployed template sets these from its
#: own resources (infra/template.yaml, Globals); the local stack sets them from
#: the stack it creates in the emulator.
TABLE_VARIABLES = {
    "NUDGE_EVENTS_TABLE": "events log, one item per accepted event",
    "NUDGE_PROFILES_TABLE": "profiles and identity links",
    "NUDGE_KEYS_TABLE": "hashed write keys and admin tokens",
    "NUDGE_DELIVERIES_TABLE": "send ledger, message history and trigger decisions",
    "NUDGE_TIMERS_TABLE": "waiting triggers, by due time",
    "NUDGE_DEFINITIONS_TABLE": "trigger and template definitions, with every version",
}


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    events_table: str
    profiles_table: str
    keys_table: str
    event_bus: str
    deliveries_table: str
    timers_table: str
    #: Partitions timers are spread over. Raise it for more than ~1,000 timer
    #: writes a second; never lower it (timers in the dropped shards would not fire).
    timer_shards: int
    send_queue_url: str
    alerts_topic_arn: str
    ses_configuration_set: str
    #: The zone for people whose profile has none (or an unknown one).
    fallback_timezone: str
    #: Per channel, when sending is allowed in the recipient's zone, e.g.
    #: "sms=08:00-21:00,email=off" (NUDGE_QUIET_HOURS); unnamed channels keep the defaults.
    quiet_hours: str
    cors_origins: tuple[str, ...]
    max_event_bytes: int
    max_batch_bytes: int
    key_cache_seconds: float
    definitions_table: str = "nudge-local-definitions"
    #: How long a function reuses the triggers it looked up for an event name.
    definitions_cache_seconds: float = 5.0


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def get_settings() -> Settings:
    """Read the settings now. Cheap enough to call on every request."""
    env = os.environ
    return Settings(
        stage=env.get("NUDGE_STAGE", "local"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        events_table=env.get("NUDGE_EVENTS_TABLE", "nudge-local-events"),
        profiles_table=env.get("NUDGE_PROFILES_TABLE", "nudge-local-profiles"),
        keys_table=env.get("NUDGE_KEYS_TABLE", "nudge-local-keys"),
        event_bus=env.get("NUDGE_EVENT_BUS", "nudge"),
        deliveries_table=env.get("NUDGE_DELIVERIES_TABLE", "nudge-local-deliveries"),
        timers_table=env.get("NUDGE_TIMERS_TABLE", "nudge-local-timers"),
        timer_shards=int(env.get("NUDGE_TIMER_SHARDS", 8)),
        send_queue_url=env.get("NUDGE_SEND_QUEUE_URL", ""),
        alerts_topic_arn=env.get("NUDGE_ALERTS_TOPIC_ARN", ""),
        ses_configuration_set=env.get("NUDGE_SES_CONFIGURATION_SET", ""),
        fallback_timezone=env.get("NUDGE_FALLBACK_TIMEZONE", "UTC"),
        quiet_hours=env.get("NUDGE_QUIET_HOURS", ""),
        cors_origins=_origins(env.get("NUDGE_CORS_ORIGINS", "")),
        max_event_bytes=int(env.get("NUDGE_MAX_EVENT_BYTES", 32 * 1024)),
        max_batch_bytes=int(env.get("NUDGE_MAX_BATCH_BYTES", 500 * 1024)),
        key_cache_seconds=float(env.get("NUDGE_KEY_CACHE_SECONDS", 60)),
        definitions_table=env.get("NUDGE_DEFINITIONS_TABLE", "nudge-local-definitions"),
        definitions_cache_seconds=float(env.get("NUDGE_DEFINITIONS_CACHE_SECONDS", 5)),
    )

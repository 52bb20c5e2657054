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
    "NUDGE_CONSENT_TABLE": "subscriptions and consent history, suppressions, send budgets, feedback counts",
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
    consent_table: str = "nudge-local-consent"
    #: Marketing messages per person and channel, e.g. "email=3/7d,sms=1/1d"
    #: (NUDGE_FATIGUE_BUDGET; chalicelib.budget). "email=off" lifts a channel's cap.
    fatigue_budget: str = ""
    #: The subscription topics people can leave, as JSON (NUDGE_TOPICS; chalicelib.consent.parse_topics).
    topics: str = ""
    #: Keys that sign unsubscribe links, "kid:secret,kid:secret": the first signs,
    #: all verify (rotation). NUDGE_UNSUBSCRIBE_KEYS.
    unsubscribe_keys: str = ""
    #: Days an unsubscribe link stays valid (at least 30; RFC 8058 links live in old mail).
    unsubscribe_token_days: int = 90
    #: The HTTPS base the public pages are reached at (NUDGE_PUBLIC_URL), e.g.
    #: https://example.execute-api.us-east-1.amazonaws.com/api.
    public_url: str = ""
    #: An address whose mail unsubscribes the sender (the mailto of List-Unsubscribe); optional.
    unsubscribe_mailto: str = ""
    #: Salt of the hashes kept for suppressed addresses and erased people (NUDGE_HASH_SALT).
    hash_salt: str = ""
    #: The sending reputation guard (chalicelib.feedback): marketing email is
    #: held when, over the last ``reputation_window_hours`` and with at least
    #: ``reputation_min_sends`` emails sent, the hard-bounce rate passes
    #: NUDGE_BOUNCE_RATE_LIMIT or the complaint rate NUDGE_COMPLAINT_RATE_LIMIT
    #: (fractions: 0.05 is 5 %; SES reviews an account at these levels).
    bounce_rate_limit: float = 0.05
    complaint_rate_limit: float = 0.001
    reputation_window_hours: int = 24
    reputation_min_sends: int = 100


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
        consent_table=env.get("NUDGE_CONSENT_TABLE", "nudge-local-consent"),
        fatigue_budget=env.get("NUDGE_FATIGUE_BUDGET", ""),
        topics=env.get("NUDGE_TOPICS", ""),
        unsubscribe_keys=env.get("NUDGE_UNSUBSCRIBE_KEYS", ""),
        unsubscribe_token_days=max(30, int(env.get("NUDGE_UNSUBSCRIBE_TOKEN_DAYS", 90))),
        public_url=env.get("NUDGE_PUBLIC_URL", "").rstrip("/"),
        unsubscribe_mailto=env.get("NUDGE_UNSUBSCRIBE_MAILTO", ""),
        hash_salt=env.get("NUDGE_HASH_SALT", ""),
        bounce_rate_limit=float(env.get("NUDGE_BOUNCE_RATE_LIMIT", 0.05)),
        complaint_rate_limit=float(env.get("NUDGE_COMPLAINT_RATE_LIMIT", 0.001)),
        reputation_window_hours=int(env.get("NUDGE_REPUTATION_WINDOW_HOURS", 24)),
        reputation_min_sends=int(env.get("NUDGE_REPUTATION_MIN_SENDS", 100)),
    )

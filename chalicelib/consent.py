"""Subscriptions, consent and suppression: who may be sent what. Pure.

Categories (a trigger's ``category``):
    * ``transactional`` (receipts, confirmations): never capped, never stopped
      by a marketing unsubscribe; only a suppression of scope ``all`` (a hard
      bounce, an SMS STOP) stops it.
    * ``marketing``: needs the person to be subscribed to the trigger's topic
      on the channel, and not to have left all marketing on that channel; any
      suppression of the address stops it.
    * ``internal`` (alerts to the team): not addressed to the person; none of
      these rules apply.

Subscription states are kept per ``<channel>:<topic>`` (``email:offers``) and
per ``<channel>:*`` (all marketing on the channel), each with the source and
time of the consent that set it. A topic the person never chose takes the
catalogue's default: email topics are opt-out (subscribed until the person
leaves), SMS topics opt-in (the person must have said yes), as the catalogue
(NUDGE_TOPICS) says.

Suppressions are kept by a salted hash of the address, never the address:
``all`` (hard bounce, SMS STOP) or ``marketing`` (complaint, erasure).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Mapping

#: Where a consent came from (kept with it).
SOURCES = ("api", "preferences-page", "one-click", "unsubscribe-page", "mailto", "sms-stop", "import", "feedback",
           "erasure")
CHANNELS = ("email", "sms")
ALL = "*"


@dataclass(frozen=True)
class Consent:
    subscribed: bool
    source: str
    at: str

    def as_dict(self) -> dict[str, Any]:
        return {"subscribed": self.subscribed, "source": self.source, "at": self.at}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Consent:
        return cls(bool(raw["subscribed"]), str(raw["source"]), str(raw["at"]))


@dataclass(frozen=True)
class Suppression:
    """An address that must not be sent to: ``scope`` all or marketing."""

    scope: str
    reason: str
    at: str

    def stops(self, category: str) -> bool:
        return self.scope == "all" or category == "marketing"

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "reason": self.reason, "at": self.at}


@dataclass(frozen=True)
class Standing:
    """What delivery needs to know about a person and an address, read at once."""

    states: Mapping[str, Consent]
    suppression: Suppression | None
    erased: bool
    budget: Mapping[str, Any]
    budget_version: int
    #: Why marketing email is held now (the reputation guard's pause flag,
    #: chalicelib.feedback), read with the rest for email; None while it may go.
    paused: str | None = None


@dataclass(frozen=True)
class Topic:
    id: str
    channel: str
    label: str
    #: True: opt-out (subscribed until the person leaves); False: opt-in.
    default: bool

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.id}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "label": self.label,
                "default": "subscribed" if self.default else "unsubscribed"}


DEFAULT_TOPICS = (
    Topic("offers", "email", "Offers and promotions", True),
    Topic("news", "email", "Product news", True),
    Topic("lifecycle", "email", "Tips, reminders and account news", True),
    Topic("offers", "sms", "Offers by text message", False),
)


def parse_topics(raw: str) -> tuple[Topic, ...]:
    """The topic catalogue from NUDGE_TOPICS: a JSON list of
    ``{"id", "channel", "label", "default": "subscribed"|"unsubscribed"}``;
    empty means DEFAULT_TOPICS. ValueError names the bad entry."""
    if not raw.strip():
        return DEFAULT_TOPICS
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"NUDGE_TOPICS is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError("NUDGE_TOPICS must be a JSON list of topics")
    topics = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or entry.get("channel") not in CHANNELS or not entry.get("id"):
            raise ValueError(f"NUDGE_TOPICS[{index}] needs an id and a channel ({', '.join(CHANNELS)})")
        default = entry.get("default", "subscribed" if entry["channel"] == "email" else "unsubscribed")
        if default not in ("subscribed", "unsubscribed"):
            raise ValueError(f"NUDGE_TOPICS[{index}].default must be subscribed or unsubscribed")
        topics.append(Topic(str(entry["id"]), entry["channel"], str(entry.get("label") or entry["id"]),
                            default == "subscribed"))
    return tuple(topics)


def subscription_key(channel: str, topic: str) -> str:
    return f"{channel}:{topic}"


def refusal(category: str, channel: str, topic: str | None, states: Mapping[str, Consent],
            catalogue: tuple[Topic, ...]) -> str | None:
    """Why a message of ``category`` on ``channel`` for ``topic`` may not go to a
    person with these subscription ``states``, or None when it may."""
    if category != "marketing" or channel not in CHANNELS:
        return None
    everything = states.get(subscription_key(channel, ALL))
    if everything is not None and not everything.subscribed:
        return f"the person left all {channel} marketing ({everything.source}, {everything.at})"
    if topic is None:
        return f"a marketing {channel} needs a subscription topic"
    state = states.get(subscription_key(channel, topic))
    if state is not None:
        return None if state.subscribed else (
            f"the person left the topic {channel}:{topic} ({state.source}, {state.at})")
    known = next((t for t in catalogue if t.channel == channel and t.id == topic), None)
    default = known.default if known is not None else channel == "email"
    return None if default else f"the topic {channel}:{topic} needs the person's consent first (opt-in)"


def effective(states: Mapping[str, Consent], catalogue: tuple[Topic, ...]) -> list[dict[str, Any]]:
    """Every catalogue topic (and any other the person has a state for) with
    whether the person gets it now, and the consent behind that."""
    rows = []
    keys = [t.key for t in catalogue] + sorted(k for k in states if k not in {t.key for t in catalogue}
                                               and not k.endswith(":" + ALL))
    by_key = {t.key: t for t in catalogue}
    for key in keys:
        channel, _, topic_id = key.partition(":")
        topic = by_key.get(key) or Topic(topic_id, channel, topic_id, channel == "email")
        state = states.get(key)
        everything = states.get(subscription_key(channel, ALL))
        subscribed = state.subscribed if state is not None else topic.default
        if everything is not None and not everything.subscribed:
            subscribed = False
        rows.append({**topic.as_dict(), "subscribed": subscribed, "consent": state.as_dict() if state else None})
    return rows


def digest(salt: str, value: str, *, fold_case: bool = True) -> str:
    """The salted hash kept instead of an address or a user id (HMAC-SHA256;
    addresses are compared case-insensitively, user ids as written)."""
    text = value.strip().lower() if fold_case else value
    return hmac.new(salt.encode(), text.encode(), hashlib.sha256).hexdigest()

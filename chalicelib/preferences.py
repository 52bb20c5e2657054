"""Subscriptions as people and operators change them: leave a topic, leave all
marketing on a channel, choose topics on the preferences page or through the
admin API, and the links that let a person do so from a message.

Every change is kept as a Consent (subscribed or not, source, time) through
the ConsentStore port, so the history says who changed what and how:

=====================  ====================================================
source                 what the person (or operator) did
=====================  ====================================================
``one-click``          a mailbox provider's RFC 8058 one-click POST
``unsubscribe-page``   confirmed on the unsubscribe page
``preferences-page``   saved the preferences page
``mailto``             sent mail to the List-Unsubscribe address
``api`` / ``import``   an operator, through the admin API
=====================  ====================================================

A change that says what is already stored is not written again, so repeating
any of these is harmless. Subscribing (a topic or a whole channel) through the
page or the API is fresh consent: it lifts a suppression of the person's
address whose reason is ``erased`` (an ``import`` does not: imported consent
may predate the erasure). Leaving never lifts anything.

No AWS here and no HTTP: functions/preferences.py maps requests to these.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from chalicelib.consent import ALL, CHANNELS, Consent, Topic, effective, subscription_key
from chalicelib.errors import FieldProblem, InvalidInput
from chalicelib.ports import ConsentStore, ProfileStore
from chalicelib.profiles import Profile
from chalicelib.segment import iso
from chalicelib.settings import Settings
from chalicelib.unsubscribe_tokens import TOPIC_ID, Claim, sign, verify

#: Sources of a fresh consent, which lifts an erasure's suppression of the address.
FRESH_CONSENT_SOURCES = ("api", "preferences-page")
#: Sources the admin API accepts.
API_SOURCES = ("api", "import")
#: The suppression reason that fresh consent lifts.
ERASED = "erased"
#: The profile trait holding the person's address on each channel.
ADDRESS_TRAITS = {"email": "email", "sms": "phone"}
MAX_API_CHOICES = 100
#: "unsubscribe <token>" anywhere in a subject ("Re: unsubscribe ..." too).
_SUBJECT_TOKEN = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)


class UnreadableMail(ValueError):
    """Mail to the unsubscribe address that holds no token to act on."""


@dataclass(frozen=True)
class Outcome:
    """What a change did: the person it was for (None: nobody Nudge knows, so
    nothing was written), their states after it, what was recorded, and the
    channels whose address had an erasure's suppression lifted."""

    profile: Profile | None
    states: dict[str, Consent] = field(default_factory=dict)
    recorded: dict[str, Consent] = field(default_factory=dict)
    lifted: tuple[str, ...] = ()


def links(settings: Settings, profile_id: str, channel: str, topic: str | None, now: datetime) -> dict[str, str | None]:
    """The unsubscribe URL, the preferences URL and the mailto (None when
    NUDGE_UNSUBSCRIBE_MAILTO is not set) for one message to one person. One
    token serves all three; ``topic`` None leaves all marketing on ``channel``.
    ValueError when NUDGE_PUBLIC_URL or NUDGE_UNSUBSCRIBE_KEYS is not set."""
    if not settings.public_url:
        raise ValueError("NUDGE_PUBLIC_URL is empty: unsubscribe links need the public base URL of the API")
    token = sign(settings.unsubscribe_keys, profile_id, channel, topic, now)
    base = settings.public_url.rstrip("/")
    mailto = (f"mailto:{settings.unsubscribe_mailto}?subject=unsubscribe%20{token}"
              if settings.unsubscribe_mailto else None)
    return {
        "unsubscribe_url": f"{base}/v1/unsubscribe?token={token}",
        "preferences_url": f"{base}/v1/preferences?token={token}",
        "mailto": mailto,
    }


def person(profiles: ProfileStore, profile_id: str) -> Profile | None:
    """The person a token names: their profile, or, for a visitor's id that
    has since been merged into a signed-in person's profile, that person's."""
    found = profiles.get(profile_id)
    kind, _, anonymous_id = profile_id.partition(":")
    if found is None and kind == "anon" and anonymous_id:
        user_id = profiles.resolve([anonymous_id]).get(anonymous_id)
        if user_id:
            found = profiles.get(f"user:{user_id}")
    return found


def leave(consent: ConsentStore, profiles: ProfileStore, claim: Claim, source: str, now: datetime) -> Outcome:
    """Leave the claim's topic (or, with no topic, all marketing on its
    channel). Nothing is written for a person Nudge no longer knows (erased:
    their address is suppressed already) or one who has already left."""
    profile = person(profiles, claim.profile_id)
    if profile is None:
        return Outcome(profile=None)
    key = subscription_key(claim.channel, claim.topic or ALL)
    states = consent.preferences(profile.profile_id)
    held = states.get(key)
    if held is not None and not held.subscribed:
        return Outcome(profile=profile, states=states)
    change = {key: Consent(False, source, iso(now))}
    return Outcome(profile=profile, states=consent.set_preferences(profile.profile_id, change), recorded=change)


def mail_token(notification: str) -> str:
    """The token in the subject of mail to the unsubscribe address, from the
    SES "Received" notification SNS delivers (``mail.commonHeaders.subject``,
    "unsubscribe <token>" as the mailto link writes it). UnreadableMail says
    why the notification holds none."""
    try:
        body = json.loads(notification)
    except (TypeError, ValueError):
        raise UnreadableMail("the notification is not JSON") from None
    if not isinstance(body, Mapping) or body.get("notificationType") != "Received":
        raise UnreadableMail("the notification is not an SES Received notification")
    mail = body.get("mail") if isinstance(body.get("mail"), Mapping) else {}
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), Mapping) else {}
    subject = headers.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise UnreadableMail("the mail has no subject")
    found = _SUBJECT_TOKEN.search(subject)
    if found is None:
        raise UnreadableMail("the subject holds no 'unsubscribe <token>'")
    return found.group(1)


def leave_by_mail(consent: ConsentStore, profiles: ProfileStore, settings: Settings, notification: str,
                  now: datetime) -> Outcome:
    """Leave what the token in an unsubscribe mail names (source ``mailto``).
    UnreadableMail when the mail holds no token, InvalidToken when it is not valid."""
    claim = verify(settings.unsubscribe_keys, mail_token(notification), now, settings.unsubscribe_token_days)
    return leave(consent, profiles, claim, "mailto", now)


def choose(consent: ConsentStore, profile: Profile, channel: str, offered: Iterable[str], checked: Iterable[str],
           leave_all: bool, now: datetime, source: str = "preferences-page") -> Outcome:
    """Save the preferences page of one channel: every ``offered`` topic key
    that is ``checked`` is joined, every other one left; ``leave_all`` leaves
    all marketing on the channel (and then only the leaving is recorded:
    nobody joins a topic on a channel they are leaving)."""
    offered = list(offered)
    checked = set(checked)
    unknown = sorted(checked - set(offered))
    if unknown:
        raise InvalidInput([FieldProblem("topic", f"must be one of the topics on the page, not {unknown[0]!r}")])
    current = consent.preferences(profile.profile_id)
    at = iso(now)
    changes: dict[str, Consent] = {}
    all_key = subscription_key(channel, ALL)
    all_left = current.get(all_key) is not None and not current[all_key].subscribed
    if leave_all != all_left:
        changes[all_key] = Consent(not leave_all, source, at)
    for key in offered:
        wanted = key in checked
        if leave_all and wanted:
            continue
        held = current.get(key)
        if held is None or held.subscribed != wanted:
            changes[key] = Consent(wanted, source, at)
    return _apply(consent, profile, changes, source)


def parse_choices(body: Any) -> tuple[dict[str, bool], str]:
    """The admin API's ``{"topics": {"email:offers": true, "email:*": false},
    "source": "api"|"import"}``, checked: InvalidInput names every bad field."""
    if not isinstance(body, Mapping):
        raise InvalidInput([FieldProblem("body", "must be a JSON object")])
    problems = [FieldProblem(str(name), "is not a field of a subscriptions change (expected topics, source)")
                for name in body if name not in ("topics", "source")]
    source = body.get("source", "api")
    if source not in API_SOURCES:
        problems.append(FieldProblem("source", f"must be one of {', '.join(API_SOURCES)}"))
    topics = body.get("topics")
    choices: dict[str, bool] = {}
    if not isinstance(topics, Mapping) or not topics:
        problems.append(FieldProblem("topics", 'must be an object of "<channel>:<topic>": true|false, not empty'))
    elif len(topics) > MAX_API_CHOICES:
        problems.append(FieldProblem("topics", f"must name at most {MAX_API_CHOICES} topics"))
    else:
        for key, wanted in topics.items():
            channel, sep, topic = str(key).partition(":")
            if not sep or not topic:
                problems.append(FieldProblem(f"topics.{key}", 'must be "<channel>:<topic>", e.g. email:offers'))
            elif channel not in CHANNELS:
                problems.append(FieldProblem(f"topics.{key}",
                                             f"names an unknown channel (one of {', '.join(CHANNELS)})"))
            elif topic != ALL and not TOPIC_ID.fullmatch(topic):
                problems.append(FieldProblem(f"topics.{key}", "names a topic id that is not 1-64 characters "
                                                              "A-Z, a-z, 0-9, '.', '-' or '_' (or * for all)"))
            elif not isinstance(wanted, bool):
                problems.append(FieldProblem(f"topics.{key}", "must be true (subscribed) or false (unsubscribed)"))
            else:
                choices[subscription_key(channel, topic)] = wanted
    if problems:
        raise InvalidInput(problems)
    return choices, str(source)


def set_subscriptions(consent: ConsentStore, profile: Profile, choices: Mapping[str, bool], source: str,
                      now: datetime) -> Outcome:
    """Apply an operator's choices (from parse_choices): each one that differs
    from what is stored is recorded with ``source``."""
    current = consent.preferences(profile.profile_id)
    at = iso(now)
    changes = {key: Consent(wanted, source, at) for key, wanted in choices.items()
               if current.get(key) is None or current[key].subscribed != wanted}
    return _apply(consent, profile, changes, source, current)


def view(consent: ConsentStore, profile: Profile, catalogue: tuple[Topic, ...]) -> dict[str, Any]:
    """The person's subscriptions as the admin API shows them: every topic with
    whether they get it now and the consent behind that, and the history."""
    return {
        "userId": profile.user_id,
        "topics": effective(consent.preferences(profile.profile_id), catalogue),
        "history": consent.consent_history(profile.profile_id),
    }


def channel_rows(states: Mapping[str, Consent], catalogue: tuple[Topic, ...], channel: str) -> list[dict[str, Any]]:
    """The effective rows of one channel (chalicelib.consent.effective), with their key."""
    return [{**row, "key": subscription_key(row["channel"], row["id"])}
            for row in effective(states, catalogue) if row["channel"] == channel]


def left_all(states: Mapping[str, Consent], channel: str) -> bool:
    held = states.get(subscription_key(channel, ALL))
    return held is not None and not held.subscribed


def _apply(consent: ConsentStore, profile: Profile, changes: dict[str, Consent], source: str,
           current: dict[str, Consent] | None = None) -> Outcome:
    states = consent.set_preferences(profile.profile_id, changes) if changes else (
        current if current is not None else consent.preferences(profile.profile_id))
    lifted: list[str] = []
    if source in FRESH_CONSENT_SOURCES:
        joined = sorted({key.partition(":")[0] for key, change in changes.items() if change.subscribed})
        for channel in joined:
            address = profile.traits.get(ADDRESS_TRAITS.get(channel, ""))
            if isinstance(address, str) and address.strip() and consent.lift(address, (ERASED,)):
                lifted.append(channel)
    return Outcome(profile=profile, states=states, recorded=changes, lifted=tuple(lifted))

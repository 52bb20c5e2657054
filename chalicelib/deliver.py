"""The delivery use case: carry out one decision, once.

For a message the order is: find the address, render, claim the decision in
the send ledger (a conditional write), call the channel, record the outcome.
Everything that can fail for good (no address, a missing template variable)
happens before the claim, so it is recorded without a send; a redelivered
decision finds its claim and does nothing.

A channel error that is known to mean "not sent" (throttling, a 5xx answered
by the provider) releases the claim and is raised, so the queue retries it.
When the outcome is unknown (the process died or timed out between the claim
and the answer), the claim stays in ``sending``: a later delivery of the same
decision sees it and does not send again. Nudge prefers a rare lost message to
a duplicate one; ``sending`` records older than a delivery's time limit are
reported as ``unknown`` in the message history.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Mapping

from chalicelib import webhook_signature
from chalicelib.errors import ConcurrentUpdate, SendRejected, SendRetryable
from chalicelib.evaluate import Decision
from chalicelib.ports import Channels, Ledger, MessageRecord, ProfileStore, TemplateSource, TimerStore
from chalicelib.profiles import Profile, apply_update
from chalicelib.segment import iso
from chalicelib.timers import deferral

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PROFILE_ATTEMPTS = 5
#: Deliveries of one decision that wait for a profile not yet written (then: skipped).
MAX_PROFILE_WAITS = 4


class Skip(Exception):
    """The decision cannot be carried out for this person; recorded, not retried."""


def template_context(decision: Decision, profile: Profile) -> dict[str, Any]:
    """What a template sees: the event, the profile, and shortcuts to the parts
    used most (``traits``, ``properties``)."""
    profile_dict = profile.as_dict()
    return {
        "event": dict(decision.event),
        "profile": profile_dict,
        "traits": profile_dict["traits"],
        "properties": dict(decision.event.get("properties") or {}),
        "trigger": {"id": decision.trigger_id, "category": decision.category},
    }


def deliver(
    decision: Decision,
    *,
    profiles: ProfileStore,
    ledger: Ledger,
    templates: TemplateSource,
    channels: Channels,
    now: Callable[[], datetime],
    ses_tags: Mapping[str, str] | None = None,
    timers: TimerStore | None = None,
    quiet_hours: Mapping[str, Any] | None = None,
    fallback_timezone: str = "UTC",
    attempt: int = 1,
) -> MessageRecord:
    """Carry out ``decision`` at most once and return its record.

    With ``timers``, a marketing message due inside the channel's quiet hours
    in the recipient's zone (``quiet_hours`` overrides the defaults of
    chalicelib.quiet_hours) is not sent now: a timer hands it back at the first
    allowed minute, and the message history shows it ``deferred`` until then
    (a deferred record may be claimed again; nothing else may). Transactional
    and internal messages are never held.
    """
    existing = ledger.get(decision.profile_id, decision.ledger_key)
    if existing is not None and existing.status != "deferred":
        return existing
    kind = decision.action.kind
    params = decision.action.params
    record = MessageRecord(
        profile_id=decision.profile_id, key=decision.ledger_key, trigger_id=decision.trigger_id,
        channel=kind, status="sending", created_at=iso(now()),
    )
    profile = _person(profiles, decision.profile_id)
    if profile is None and attempt < MAX_PROFILE_WAITS:
        # The stream can hand over a new person's first event before the ingest
        # request has written their profile; the queue retries shortly.
        raise SendRetryable("the person's profile is not written yet", retry_after=1)
    try:
        if profile is None:
            raise Skip("the person's profile does not exist")
        if kind == "update_profile":
            return _claimed(ledger, record, lambda: _update_profile(profiles, profile.profile_id, params), now)
        if kind == "emit":
            detail = {"userId": profile.user_id, "anonymousId": None if profile.user_id else profile.anonymous_ids[0],
                      "event": params["event"], "properties": dict(params.get("properties") or {}),
                      "messageId": f"emit-{decision.ledger_key}"}
            detail = {k: v for k, v in detail.items() if v is not None}
            prior = (decision.event.get("context") or {}).get("nudge", {}).get("hops", 0)
            detail["context"] = {"nudge": {"hops": prior + 1, "trigger": decision.trigger_id}}
            return _claimed(ledger, replace(record, subject=params["event"]),
                            lambda: channels.emit("track", detail), now)
        to = _address(kind, params, profile)
        rendered = _render(decision, profile, templates)
    except Skip as reason:
        skipped = replace(record, status="skipped", reason=str(reason), updated_at=record.created_at)
        return skipped if ledger.claim(skipped) else ledger.get(decision.profile_id, decision.ledger_key) or skipped
    except SendRejected as reason:
        failed = replace(record, status="failed", reason=str(reason), updated_at=record.created_at)
        return failed if ledger.claim(failed) else ledger.get(decision.profile_id, decision.ledger_key) or failed

    if timers is not None and decision.category == "marketing":
        from chalicelib.quiet_hours import next_allowed, window_for

        allowed = next_allowed(now(), profile.timezone, window_for(kind, quiet_hours), fallback_timezone)
        if allowed > now():
            held = replace(record, status="deferred", to=to, subject=rendered.subject, updated_at=record.created_at,
                           reason=f"quiet hours in {profile.timezone or fallback_timezone}; sends at {iso(allowed)}")
            if ledger.claim(held):
                timers.put(deferral(decision, now(), allowed))
            return held
    record = replace(record, to=to, subject=rendered.subject)
    send: Callable[[], str]
    if kind == "email":
        send = lambda: channels.send_email(  # noqa: E731
            to, params["from"], params.get("reply_to"), rendered.subject or "", rendered.html, rendered.text,
            {**(ses_tags or {}), "trigger": decision.trigger_id})
    elif kind == "sms":
        send = lambda: channels.send_sms(to, rendered.text or "")  # noqa: E731
    elif kind == "alert":
        send = lambda: channels.send_alert(to, rendered.subject or decision.trigger_id, rendered.text or "")  # noqa: E731
    elif kind == "webhook":
        body = (rendered.text or "").encode()
        secret = os.environ.get(params.get("secret_env") or "NUDGE_WEBHOOK_SECRET", "")
        headers = {"Content-Type": "application/json", "Nudge-Delivery": decision.ledger_key}
        if secret:
            headers[webhook_signature.HEADER] = webhook_signature.sign(secret, body, int(now().timestamp()))
        send = lambda: channels.post_webhook(to, body, headers, float(params.get("timeout_seconds", 5)))  # noqa: E731
    else:  # parse_trigger refuses unknown kinds; a stored decision from a newer version may still arrive
        raise SendRejected(f"unknown action kind {kind!r}")
    return _claimed(ledger, record, send, now)


def _claimed(ledger: Ledger, record: MessageRecord, act: Callable[[], Any], now: Callable[[], datetime]) -> MessageRecord:
    """Claim, act, record. Returns the existing record if the claim is lost."""
    if not ledger.claim(record):
        return ledger.get(record.profile_id, record.key) or record
    try:
        result = act()
    except SendRetryable:
        ledger.release(record.profile_id, record.key)
        raise
    except SendRejected as reason:
        failed = replace(record, status="failed", reason=str(reason), updated_at=iso(now()))
        ledger.finish(failed)
        return failed
    sent = replace(record, status="sent", provider_id=result if isinstance(result, str) else None,
                   updated_at=iso(now()))
    ledger.finish(sent)
    return sent


def _person(profiles: ProfileStore, profile_id: str) -> Profile | None:
    """The profile a decision is for; an anonymous one merged into a person's
    since the decision was made is followed to that person."""
    profile = profiles.get(profile_id)
    if profile is None and profile_id.startswith("anon:"):
        anonymous_id = profile_id.removeprefix("anon:")
        user_id = profiles.resolve([anonymous_id]).get(anonymous_id)
        profile = profiles.get(f"user:{user_id}") if user_id else None
    return profile


def _address(kind: str, params: Mapping[str, Any], profile: Profile) -> str:
    if kind == "email":
        to = params.get("to") or profile.traits.get("email")
        if not isinstance(to, str) or not EMAIL.match(to):
            raise Skip("the person has no valid email address")
        return to
    if kind == "sms":
        to = params.get("to") or profile.traits.get("phone")
        if not isinstance(to, str) or not E164.match(to):
            raise Skip("the person has no phone number in E.164 form")
        return to
    if kind == "alert":
        return str(params["topic"])
    if kind == "webhook":
        return str(params["url"])
    raise SendRejected(f"unknown action kind {kind!r}")


def _render(decision: Decision, profile: Profile, templates: TemplateSource) -> Any:
    from chalicelib import templates as liquid  # deferred: Liquid is heavy to import

    params = decision.action.params
    context = template_context(decision, profile)
    if params.get("template"):
        template = templates.get_template(params["template"])
        if template is None:
            raise SendRejected(f"template {params['template']!r} does not exist")
    elif decision.action.kind == "webhook":
        payload = {"trigger": decision.trigger_id, "event": dict(decision.event), "profile": context["profile"]}
        return liquid.Rendered(subject=None, html=None, text=json.dumps(payload, separators=(",", ":")))
    else:
        template = liquid.inline(decision.action.kind, params.get("text", ""), params.get("subject"))
    try:
        return liquid.render(template, context)
    except liquid.MissingVariable as missing:
        raise SendRejected(f"template variable {missing} is missing") from missing


def _update_profile(profiles: ProfileStore, profile_id: str, params: Mapping[str, Any]) -> str:
    for attempt in range(MAX_PROFILE_ATTEMPTS):
        current = profiles.get(profile_id)
        if current is None:
            raise SendRejected("the person's profile no longer exists")
        try:
            saved = profiles.save(apply_update(current, params))
            return f"profile-version-{saved.version}"
        except ConcurrentUpdate:
            if attempt == MAX_PROFILE_ATTEMPTS - 1:
                raise SendRetryable("the profile kept changing; retry") from None
    raise AssertionError("unreachable")

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
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Mapping

from chalicelib import message_ref, webhook_signature
from chalicelib.delivery_policy import DeliveryPolicy
from chalicelib.errors import ConcurrentUpdate, SendRejected, SendRetryable, StorageUnavailable
from chalicelib.evaluate import Decision
from chalicelib.ports import Channels, DecisionLog, Ledger, MessageRecord, ProfileStore, TemplateSource
from chalicelib.profiles import Profile, apply_update
from chalicelib.segment import iso, parse_time
from chalicelib.timers import deferral

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PROFILE_ATTEMPTS = 5
#: Deliveries of one decision that wait for a profile not yet written (then: skipped).
MAX_PROFILE_WAITS = 4
#: Tries of the ledger write that records a known outcome, and the pause
#: before the n-th retry (n times this); see ``_recorded``.
RECORD_ATTEMPTS = 5
RECORD_PAUSE_SECONDS = 0.05


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
    policy: DeliveryPolicy | None = None,
    notes: DecisionLog | None = None,
    links: Callable[[str, str, str | None], Mapping[str, str | None]] | None = None,
    attempt: int = 1,
) -> MessageRecord:
    """Carry out ``decision`` at most once and return its record.

    With a ``policy`` (chalicelib.delivery_policy), an email or SMS first passes
    the person's limits: a message that must not go is recorded ``skipped``
    with the reason; one that must wait (quiet hours, the fatigue budget, a
    paused sender) is recorded ``deferred`` and a timer hands it back when it
    may go (a deferred record may be claimed again; nothing else may). Each
    skip and deferral is also kept in the person's decisions (``notes``).

    Every email carries the ``X-Nudge-Message`` header (chalicelib.message_ref);
    a marketing email also carries ``List-Unsubscribe`` (https and, when
    configured, mailto) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
    (RFC 8058), and an unsubscribe footer in its HTML and text, from ``links``
    (person, channel, topic -> unsubscribe_url, preferences_url, mailto).
    """
    existing = ledger.get(decision.profile_id, decision.ledger_key)
    if existing is not None and existing.status != "deferred":
        return existing
    kind = decision.action.kind
    params = decision.action.params
    record = MessageRecord(
        profile_id=decision.profile_id, key=decision.ledger_key, trigger_id=decision.trigger_id,
        channel=kind, status="sending", created_at=existing.created_at if existing else iso(now()),
    )
    profile = _person(profiles, decision.profile_id)
    if profile is None and policy is not None and policy.erased(decision.profile_id):
        attempt = MAX_PROFILE_WAITS  # erased: there is nothing to wait for
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

    if policy is not None:
        verdict = policy.check(decision, profile, kind, to, parse_time(record.created_at), now())
        if verdict.kind != "send":
            return _not_now(decision, replace(record, to=to, subject=rendered.subject), verdict, ledger, policy,
                            notes, now)
    record = replace(record, to=to, subject=rendered.subject)
    send: Callable[[], str]
    if kind == "email":
        try:
            html, text, headers = _email_parts(decision, rendered, links, now())
        except ValueError as problem:  # no way to build the unsubscribe links: never send marketing without them
            failed = replace(record, status="failed", reason=f"unsubscribe links: {problem}", updated_at=iso(now()))
            if policy is not None:
                policy.give_back(decision, kind)
            return failed if ledger.claim(failed) else ledger.get(decision.profile_id, decision.ledger_key) or failed
        send = lambda: channels.send_email(  # noqa: E731
            to, params["from"], params.get("reply_to"), rendered.subject or "", html, text,
            {**(ses_tags or {}), "trigger": decision.trigger_id}, headers)
    elif kind == "sms":
        body = rendered.text or ""
        if decision.category == "marketing" and "STOP" not in body.upper():
            body += " Reply STOP to opt out."
        send = lambda: channels.send_sms(to, body)  # noqa: E731
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
    try:
        outcome = _claimed(ledger, record, send, now)
    except SendRetryable:
        if policy is not None:
            policy.give_back(decision, kind)
        raise
    if outcome.status == "failed" and policy is not None:
        policy.give_back(decision, kind)
    return outcome


def _not_now(decision: Decision, record: MessageRecord, verdict: Any, ledger: Ledger, policy: DeliveryPolicy,
             notes: DecisionLog | None, now: Callable[[], datetime]) -> MessageRecord:
    """Record a message the policy skipped or held (and set the timer that hands it back)."""
    at = iso(now())
    if verdict.kind == "skip":
        result = replace(record, status="skipped", reason=verdict.reason, updated_at=at)
    else:
        result = replace(record, status="deferred", reason=verdict.reason, updated_at=at)
    if not ledger.claim(result):
        return ledger.get(record.profile_id, record.key) or result
    if verdict.kind == "hold":
        policy.timers.put(deferral(decision, now(), verdict.until))
    if notes is not None:
        notes.note(decision.profile_id, at, {
            "trigger": decision.trigger_id, "message": decision.ledger_key, "channel": record.channel,
            "outcome": result.status, "reason": verdict.reason,
            **({"until": iso(verdict.until)} if verdict.until else {})})
    return result


def _email_parts(decision: Decision, rendered: Any, links: Callable[..., Mapping[str, str | None]] | None,
                 now: datetime) -> tuple[str | None, str | None, dict[str, str]]:
    """The HTML and text bodies and the headers of an email (see ``deliver``)."""
    from html import escape

    headers = {message_ref.HEADER: message_ref.message_ref(decision.profile_id, decision.ledger_key)}
    html, text = rendered.html, rendered.text
    if decision.category != "marketing" or links is None:
        return html, text, headers
    found = links(decision.profile_id, "email", decision.policy.get("topic"))
    unsubscribe, preferences = found["unsubscribe_url"], found.get("preferences_url")
    headers["List-Unsubscribe"] = ", ".join(f"<{url}>" for url in (unsubscribe, found.get("mailto")) if url)
    headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if html is not None and unsubscribe not in html:
        extra = f' · <a href="{escape(preferences)}">Manage preferences</a>' if preferences else ""
        html += (f'\n<p style="font-size:12px;color:#666">You receive this because you subscribed. '
                 f'<a href="{escape(unsubscribe)}">Unsubscribe</a>{extra}</p>')
    if text is not None and unsubscribe not in text:
        text += f"\n\n--\nUnsubscribe: {unsubscribe}" + (f"\nManage preferences: {preferences}" if preferences else "")
    return html, text, headers


def _claimed(ledger: Ledger, record: MessageRecord, act: Callable[[], Any], now: Callable[[], datetime]) -> MessageRecord:
    """Claim, act, record. Returns the existing record if the claim is lost."""
    if not ledger.claim(record):
        return ledger.get(record.profile_id, record.key) or record
    try:
        result = act()
    except SendRetryable:
        _recorded(lambda: ledger.release(record.profile_id, record.key))
        raise
    except SendRejected as reason:
        failed = replace(record, status="failed", reason=str(reason), updated_at=iso(now()))
        _recorded(lambda: ledger.finish(failed))
        return failed
    sent = replace(record, status="sent", provider_id=result if isinstance(result, str) else None,
                   updated_at=iso(now()))
    _recorded(lambda: ledger.finish(sent))
    return sent


def _recorded(write: Callable[[], Any]) -> None:
    """Write an outcome that is known now and lost if the write fails: a claim
    left in ``sending`` is never sent again, so a released claim that stayed
    would lose the message, and an unrecorded send shows as ``unknown``. The
    write is tried RECORD_ATTEMPTS times, pausing a little longer each time,
    before the error is raised."""
    for attempt in range(RECORD_ATTEMPTS):
        try:
            write()
            return
        except StorageUnavailable:
            if attempt == RECORD_ATTEMPTS - 1:
                raise
            time.sleep(RECORD_PAUSE_SECONDS * (attempt + 1))


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
        try:
            current = profiles.get(profile_id)
            if current is None:
                raise SendRejected("the person's profile no longer exists")
            saved = profiles.save(apply_update(current, params))
            return f"profile-version-{saved.version}"
        except ConcurrentUpdate:
            if attempt == MAX_PROFILE_ATTEMPTS - 1:
                raise SendRetryable("the profile kept changing; retry") from None
        except StorageUnavailable as exc:
            # Not applied (throttled, or a 5xx before the write): release the
            # claim and retry, or the update would stay claimed and never happen.
            raise SendRetryable(f"the profile could not be updated: {exc}") from exc
    raise AssertionError("unreachable")

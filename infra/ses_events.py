"""The local stand-in for SES event publishing.

In AWS, every email sent with Nudge's configuration set makes SES publish
events (Send, Delivery, Bounce, Complaint, Open, Click, ...) to the feedback
topic (infra/template.yaml, ``SesFeedbackDestination``). The emulator (moto)
records sent email but publishes nothing, so the local stack runs this
publisher: it watches moto's record of sent email (the emulator runs in the
same process, so ``moto.ses.models.ses_backends[account][region].sent_messages``
is in reach) and, a moment after each new email, publishes to the feedback
topic the events SES would, in SES's event-publishing JSON:

- ``mail``: ``messageId`` (the id SES returned to the sender), ``source``,
  ``destination``, ``headers`` parsed from the raw MIME message (SES repeats
  them; that is how feedback finds the message by its X-Nudge-Message
  header), ``commonHeaders`` and ``tags``: the sender's ``EmailTags`` and
  SES's own ``ses:configuration-set`` etc., taken from the SESv2 SendEmail
  request (moto does not keep them; :class:`SendRequests` notes them as the
  emulator answers);
- then per recipient what the SES mailbox simulator does:

  ======================================  ==================================================
  recipient (``+label`` allowed)          events
  ======================================  ==================================================
  any ordinary address                    Send, Delivery
  success@simulator.amazonses.com         Send, Delivery
  ooto@simulator.amazonses.com            Send, Delivery (the auto-reply is not simulated)
  bounce@simulator.amazonses.com          Send, Bounce (Permanent, General)
  suppressionlist@simulator.amazonses.com Send, Bounce (Permanent, OnAccountSuppressionList)
  complaint@simulator.amazonses.com       Send, Delivery, Complaint (abuse)
  ======================================  ==================================================

Opens and clicks need a person: a test publishes them itself with
:func:`event` and boto3 (the local runtime delivers the topic to the feedback
handler as SNS would). Times come from the engine's clock
(chalicelib.clock), so they follow local time travel.
"""
from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from typing import Any, Callable, Iterator, Mapping, Sequence

from chalicelib.clock import utcnow
from chalicelib.segment import iso

log = logging.getLogger("local_stack")

SIMULATOR_DOMAIN = "simulator.amazonses.com"
#: How long after SES accepted an email its events are published (SES takes seconds).
PUBLISH_DELAY_SECONDS = 0.5
POLL_SECONDS = 0.2
_BOUNCES = {
    "bounce": ("General", "5.1.1", "smtp; 550 5.1.1 user unknown"),
    "suppressionlist": ("OnAccountSuppressionList", "5.1.1",
                        "Amazon SES did not send the message to this address because it is on the suppression "
                        "list for your account."),
}


# --- the events, as SES writes them --------------------------------------------------------------


def simulated(address: str) -> str:
    """What the SES mailbox simulator does with ``address``: delivery,
    bounce, suppressionlist or complaint."""
    local, _, domain = parseaddr(address)[1].lower().rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return "delivery"
    box = local.split("+", 1)[0]
    if box in _BOUNCES:
        return "bounce" if box == "bounce" else "suppressionlist"
    return "complaint" if box == "complaint" else "delivery"


def parse_headers(raw: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """``mail.headers`` and ``mail.commonHeaders`` of a raw MIME message."""
    message = email.message_from_string(raw, policy=email.policy.compat32)
    # Values unfolded (a long header is written on several lines), otherwise as written.
    headers = [{"name": name, "value": " ".join(str(value).split())} for name, value in message.items()]
    common: dict[str, Any] = {}
    for name, key in (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Reply-To", "replyTo")):
        if message.get_all(name):
            common[key] = [str(value) for value in message.get_all(name)]
    for name, key in (("Subject", "subject"), ("Date", "date"), ("Message-ID", "messageId")):
        if message.get(name) is not None:
            common[key] = str(message[name])
    return headers, common


def mail_object(*, message_id: str, source: str, destination: Sequence[str], headers: list[dict[str, str]],
                common_headers: Mapping[str, Any], tags: Mapping[str, Sequence[str]], timestamp: str,
                account: str, region: str) -> dict[str, Any]:
    """The ``mail`` part every event repeats."""
    sender = parseaddr(source)[1] or source
    return {
        "timestamp": timestamp,
        "source": source,
        "sourceArn": f"arn:aws:ses:{region}:{account}:identity/{sender.rpartition('@')[2]}",
        "sendingAccountId": account,
        "messageId": message_id,
        "destination": list(destination),
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": dict(common_headers),
        "tags": {name: list(values) for name, values in tags.items()},
    }


def event(event_type: str, mail: Mapping[str, Any], at: str, recipients: Sequence[str] = (),
          **details: Any) -> dict[str, Any]:
    """One SES event-publishing record. ``event_type`` is SES's (Send,
    Delivery, Bounce, Complaint, Open, Click, Reject, DeliveryDelay,
    Rendering Failure); ``details`` override the defaults of its section."""
    if event_type == "Send":
        section: tuple[str, dict[str, Any]] = ("send", {})
    elif event_type == "Delivery":
        section = ("delivery", {"timestamp": at, "processingTimeMillis": 412, "recipients": list(recipients),
                                "smtpResponse": "250 2.6.0 Message received",
                                "reportingMTA": "a8-70.smtp-out.amazonses.com"})
    elif event_type == "Bounce":
        subtype, status, diagnostic = _BOUNCES["bounce"]
        section = ("bounce", {"feedbackId": f"{uuid.uuid4()}-000000", "bounceType": "Permanent",
                              "bounceSubType": subtype, "timestamp": at, "reportingMTA": "dns; amazonses.com",
                              "bouncedRecipients": [{"emailAddress": r, "action": "failed", "status": status,
                                                     "diagnosticCode": diagnostic} for r in recipients]})
    elif event_type == "Complaint":
        section = ("complaint", {"feedbackId": f"{uuid.uuid4()}-000000", "timestamp": at, "arrivalDate": at,
                                 "complaintSubType": None, "complaintFeedbackType": "abuse",
                                 "userAgent": "Amazon SES Mailbox Simulator",
                                 "complainedRecipients": [{"emailAddress": r} for r in recipients]})
    elif event_type == "Open":
        section = ("open", {"timestamp": at, "ipAddress": "192.0.2.1", "userAgent": "Mozilla/5.0"})
    elif event_type == "Click":
        section = ("click", {"timestamp": at, "ipAddress": "192.0.2.1", "userAgent": "Mozilla/5.0",
                             "link": "https://example.com/", "linkTags": {}})
    elif event_type == "Reject":
        section = ("reject", {"reason": "Bad content"})
    elif event_type == "DeliveryDelay":
        section = ("deliveryDelay", {"timestamp": at, "delayType": "TransientCommunicationFailure",
                                     "delayedRecipients": [{"emailAddress": r} for r in recipients]})
    elif event_type in ("Rendering Failure", "RenderingFailure"):
        section = ("failure", {"errorMessage": "Attribute 'name' is not present", "templateName": "unknown"})
    else:
        raise ValueError(f"SES publishes no {event_type!r} event")
    name, body = section
    body.update(details)
    return {"eventType": event_type, "mail": dict(mail), name: body}


def events_for(mail: Mapping[str, Any], at: str) -> list[dict[str, Any]]:
    """What SES publishes for one accepted email, by what the mailbox
    simulator does with each of its recipients."""
    outcomes: dict[str, list[str]] = {}
    for recipient in mail["destination"]:
        outcomes.setdefault(simulated(recipient), []).append(recipient)
    published = [event("Send", mail, at)]
    delivered = outcomes.get("delivery", []) + outcomes.get("complaint", [])
    if delivered:
        published.append(event("Delivery", mail, at, delivered))
    for box in ("bounce", "suppressionlist"):
        if outcomes.get(box):
            subtype, status, diagnostic = _BOUNCES[box]
            bounced = [{"emailAddress": r, "action": "failed", "status": status, "diagnosticCode": diagnostic}
                       for r in outcomes[box]]
            published.append(event("Bounce", mail, at, outcomes[box], bounceSubType=subtype,
                                   bouncedRecipients=bounced))
    if outcomes.get("complaint"):
        published.append(event("Complaint", mail, at, outcomes["complaint"]))
    return published


# --- what moto knows about a sent email ------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """What SESv2 SendEmail was asked, beyond what moto keeps."""

    configuration_set: str | None
    tags: dict[str, str]
    destination: tuple[str, ...]


class SendRequests:
    """Notes each SESv2 SendEmail request's configuration set, tags and
    envelope recipients by the message id the emulator answered with.

    moto keeps none of these, and SES's events carry them. It wraps moto's
    own SendEmail answer while installed (``install``/``uninstall``).
    """

    def __init__(self) -> None:
        self.by_id: dict[str, SendRequest] = {}
        self._original: Callable[..., Any] | None = None

    def install(self) -> None:
        from moto.sesv2.responses import SESV2Response

        if self._original is not None:
            return
        original = SESV2Response.send_email
        requests = self

        def send_email(response: Any) -> Any:
            answer = original(response)
            requests.note(response.body, answer)
            return answer

        self._original = original
        SESV2Response.send_email = send_email  # type: ignore[method-assign]

    def uninstall(self) -> None:
        from moto.sesv2.responses import SESV2Response

        if self._original is not None:
            SESV2Response.send_email = self._original  # type: ignore[method-assign]
            self._original = None

    def note(self, body: Any, answer: Any) -> None:
        try:
            params = json.loads(body)
            message_id = json.loads(answer)["MessageId"]
        except (TypeError, ValueError, KeyError):
            return
        destination = params.get("Destination") or {}
        self.by_id[message_id] = SendRequest(
            configuration_set=params.get("ConfigurationSetName"),
            tags={tag["Name"]: tag["Value"] for tag in params.get("EmailTags") or [] if "Name" in tag},
            destination=tuple(a for key in ("ToAddresses", "CcAddresses", "BccAddresses")
                              for a in destination.get(key) or ()),
        )


def _addresses(values: Any) -> list[str]:
    if isinstance(values, Mapping):
        values = [a for key in ("ToAddresses", "CcAddresses", "BccAddresses") for a in values.get(key) or ()]
    found: list[str] = []
    for _, address in getaddresses([str(v) for v in values or ()]):
        if address and address not in found:
            found.append(address)
    return found


def mail_of(message: Any, request: SendRequest | None, default_configuration_set: str, at: str,
            account: str, region: str) -> dict[str, Any]:
    """The ``mail`` object of one message moto recorded (raw or simple)."""
    source = getattr(message, "source", "") or ""
    raw = getattr(message, "raw_data", None)
    if raw is not None:
        headers, common = parse_headers(raw)
    else:
        destinations = getattr(message, "destinations", {}) or {}
        headers = [{"name": "From", "value": source}]
        headers += [{"name": "To", "value": ", ".join(destinations.get("ToAddresses") or ())}]
        headers += [{"name": "Subject", "value": getattr(message, "subject", "")},
                    {"name": "MIME-Version", "value": "1.0"}]
        common = {"from": [source], "to": list(destinations.get("ToAddresses") or ()),
                  "subject": getattr(message, "subject", "")}
    destination = _addresses(request.destination if request and request.destination
                             else getattr(message, "destinations", ()))
    configuration_set = (request.configuration_set if request else None) or default_configuration_set
    sender = parseaddr(source)[1]
    tags: dict[str, list[str]] = {
        "ses:operation": ["SendEmail"],
        "ses:configuration-set": [configuration_set],
        "ses:source-ip": ["127.0.0.1"],
        "ses:from-domain": [sender.rpartition("@")[2]],
        "ses:caller-identity": ["local"],
    }
    tags.update({name: [value] for name, value in (request.tags if request else {}).items()})
    return mail_object(message_id=message.id, source=source, destination=destination, headers=headers,
                       common_headers=common, tags=tags, timestamp=at, account=account, region=region)


# --- the publisher --------------------------------------------------------------------------------


class SesEventPublisher:
    """Publishes SES's events for each email the emulator accepts, to ``topic_arn``.

    ``start`` installs :class:`SendRequests` and starts a thread; ``stop``
    undoes both. Only emails sent after ``start`` are reported.
    """

    def __init__(self, sns: Any, topic_arn: str, configuration_set: str, *,
                 delay_seconds: float = PUBLISH_DELAY_SECONDS, poll_seconds: float = POLL_SECONDS) -> None:
        self.sns = sns
        self.topic_arn = topic_arn
        self.configuration_set = configuration_set
        self.delay_seconds = delay_seconds
        self.poll_seconds = poll_seconds
        self.requests = SendRequests()
        self.published = 0
        self._seen: dict[tuple[str, str], int] = {}
        self._pending: list[tuple[float, str, str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.requests.install()
        for account, region, backend in self._backends():
            self._seen[(account, region)] = len(backend.sent_messages)
        self._thread = threading.Thread(target=self._run, name="ses-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.requests.uninstall()

    def describe(self) -> str:
        return f"SES events of sent email -> {self.topic_arn.rsplit(':', 1)[-1]} (mailbox simulator addresses honoured)"

    @staticmethod
    def _backends() -> Iterator[tuple[str, str, Any]]:
        from moto.ses.models import ses_backends

        for account, regions in list(ses_backends.items()):
            for region, backend in list(regions.items()):
                yield account, region, backend

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a failing publisher must be visible and keep going
                if self._stop.is_set():
                    return
                log.exception("publishing SES events failed; trying again")

    def poll(self) -> int:
        """Note newly sent emails; publish the events of those sent at least
        ``delay_seconds`` ago. Returns how many emails were reported."""
        now = time.monotonic()
        for account, region, backend in self._backends():
            start = self._seen.get((account, region), 0)
            sent = backend.sent_messages[start:]
            self._seen[(account, region)] = start + len(sent)
            self._pending.extend((now, account, region, message) for message in sent)
        due = [entry for entry in self._pending if entry[0] + self.delay_seconds <= now]
        self._pending = [entry for entry in self._pending if entry[0] + self.delay_seconds > now]
        for _, account, region, message in due:
            self.report(message, account, region)
        return len(due)

    def report(self, message: Any, account: str, region: str) -> None:
        if not getattr(message, "id", None):
            return  # a bulk templated send: not something Nudge does
        at = iso(utcnow())
        mail = mail_of(message, self.requests.by_id.pop(message.id, None), self.configuration_set, at,
                       account, region)
        for record in events_for(mail, at):
            self.sns.publish(TopicArn=self.topic_arn, Message=json.dumps(record))
            self.published += 1

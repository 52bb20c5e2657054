"""What the emulator itself recorded as sent, read from moto server's
``GET /moto-api/data.json`` (moto 5.2.5).

That document lists every tracked model instance by service and model name.
The parts read here:

- ``ses`` -> ``RawMessage``: one entry per email sent as raw MIME (how Nudge
  sends, so that its own headers travel), with ``id`` (the MessageId returned
  to the sender), ``source``, ``destinations`` (a list) and ``raw_data`` (the
  MIME text, read by tests.sent_mail);
- ``ses`` -> ``Message``: likewise for Simple content, with ``subject``,
  ``body`` and ``destinations`` (``ToAddresses``, ``CcAddresses``, ``BccAddresses``);
- ``sns`` -> ``Topic``: each topic with its ``arn`` and ``sent_notifications``,
  a list of ``[message_id, message, subject, message_attributes, group_id]``
  where ``message_attributes`` maps a name to ``{"Type": ..., "Value": ...}``;
- ``sns`` -> ``SMS``: one entry per SMS published to a phone number, with
  ``message_id``, ``phone_number`` and ``message``.

Nothing is ever removed from these lists while the server runs, so tests on a
shared emulator should look for their own unique addresses or contents.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

from tests import sent_mail

#: data.json walks live objects; a read racing a write can fail, so it is retried.
READ_ATTEMPTS = 5


@dataclass(frozen=True)
class Email:
    id: str
    source: str
    subject: str
    #: The HTML part when there is one, else the text part.
    body: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    #: Raw messages: every header as the recipient sees it, and the text part.
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc


@dataclass(frozen=True)
class Notification:
    topic_arn: str
    message_id: str
    message: str
    subject: str | None
    #: Message attributes by name, as their string values.
    attributes: dict[str, str]


@dataclass(frozen=True)
class Sms:
    message_id: str
    phone_number: str
    message: str


class MotoRecords:
    """Reads the emulator's record of sent email, notifications and SMS."""

    def __init__(self, endpoint_url: str) -> None:
        self.url = endpoint_url.rstrip("/") + "/moto-api/data.json"

    def data(self) -> dict[str, Any]:
        for attempt in range(READ_ATTEMPTS):
            try:
                response = requests.get(self.url, timeout=10)
                if response.status_code == 200:
                    return response.json()
                problem = f"{response.status_code}: {response.text[:200]}"
            except (requests.ConnectionError, ValueError) as exc:
                problem = str(exc)
            time.sleep(0.05 * (attempt + 1))
        raise AssertionError(f"moto server's data.json could not be read ({problem})")

    def emails(self, to: str | None = None) -> list[Email]:
        """Every email SES accepted, or those with ``to`` among the recipients."""
        found = []
        ses = self.data().get("ses", {})
        for item in ses.get("RawMessage", []):
            mail = sent_mail.read(item["id"], item["raw_data"])
            email = Email(id=item["id"], source=item["source"], subject=mail.subject, body=mail.body,
                          to=mail.to, cc=(), bcc=(), headers=mail.headers, text=mail.text)
            if to is None or to in email.recipients:
                found.append(email)
        for item in ses.get("Message", []):
            destinations = item.get("destinations") or {}
            email = Email(id=item["id"], source=item["source"], subject=item["subject"], body=item["body"],
                          to=tuple(destinations.get("ToAddresses") or ()),
                          cc=tuple(destinations.get("CcAddresses") or ()),
                          bcc=tuple(destinations.get("BccAddresses") or ()))
            if to is None or to in email.recipients:
                found.append(email)
        return found

    def notifications(self, topic_arn: str | None = None) -> list[Notification]:
        """Every message published to a topic, or to ``topic_arn`` only."""
        found = []
        for topic in self.data().get("sns", {}).get("Topic", []):
            if topic_arn is not None and topic["arn"] != topic_arn:
                continue
            for message_id, message, subject, attributes, _group_id in topic.get("sent_notifications", []):
                found.append(Notification(
                    topic_arn=topic["arn"], message_id=message_id, message=message, subject=subject,
                    attributes={name: value.get("Value") for name, value in (attributes or {}).items()}))
        return found

    def sms(self, phone_number: str | None = None) -> list[Sms]:
        """Every SMS published to a phone number, or to ``phone_number`` only."""
        return [Sms(message_id=item["message_id"], phone_number=item["phone_number"], message=item["message"])
                for item in self.data().get("sns", {}).get("SMS", [])
                if phone_number is None or item["phone_number"] == phone_number]

"""Email as the emulator recorded it, read back as a reader sees it.

Nudge sends raw MIME (so that its own headers travel with the message); moto
keeps each such message's bytes (``RawMessage.raw_data``). ``read`` parses
them into the parts tests look at: recipients, subject, headers, text, HTML.
"""
from __future__ import annotations

import email
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from typing import Any


@dataclass(frozen=True)
class Mail:
    id: str
    to: tuple[str, ...]
    subject: str
    headers: dict[str, str]
    text: str
    html: str

    @property
    def body(self) -> str:
        """The HTML part when there is one, else the text."""
        return self.html or self.text


def read(message_id: str, raw_data: str) -> Mail:
    parsed: EmailMessage = email.message_from_string(raw_data, policy=default)  # type: ignore[assignment]
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    return Mail(
        id=message_id,
        to=tuple(address.strip() for address in str(parsed.get("To", "")).split(",") if address.strip()),
        subject=str(parsed.get("Subject", "")),
        headers={name: " ".join(str(value).split()) for name, value in parsed.items()},
        text=text_part.get_content() if text_part is not None else "",
        html=html_part.get_content() if html_part is not None else "",
    )


def in_backend() -> list[Mail]:
    """Every raw email moto's in-process SES backend holds (tests under ``mock_aws``)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    found: list[Any] = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    return [read(m.id, m.raw_data) for m in found if hasattr(m, "raw_data")]

"""Channel adapters: email by SES v2, SMS and team alerts by SNS, events onto
EventBridge, webhooks over HTTPS.

Each call returns the provider's message id, or raises SendRetryable (not sent,
try again: throttling, 5xx, a connection that failed before the request went
out) or SendRejected (will never succeed: invalid address, unverified sender,
an opted-out phone, a 4xx from a webhook).
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any, Mapping

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from chalicelib.aws_clients import client
from chalicelib.errors import SendRejected, SendRetryable
from chalicelib.settings import Settings

_RETRYABLE_CODES = {
    "Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException",
    "ServiceUnavailable", "InternalFailure", "InternalError", "InternalServerError", "RequestTimeout",
    # SNS answers throttling with code "Throttled" and HTTP 429 (ThrottledException).
    "Throttled",
}


def _classified(exc: Exception) -> Exception:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            return SendRetryable(f"{code}: {exc}")
        return SendRejected(f"{code}: {exc.response.get('Error', {}).get('Message', '')}".strip())
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return SendRetryable(str(exc))
    return SendRetryable(str(exc))


class AwsChannels:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def send_email(self, to: str, sender: str, reply_to: str | None, subject: str,
                   html: str | None, text: str | None, tags: Mapping[str, str],
                   headers: Mapping[str, str]) -> str:
        """Send a MIME message (SES v2 raw content): the only form that carries
        our own headers (List-Unsubscribe, X-Nudge-Message) on every SES API."""
        request: dict[str, Any] = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": mime_message(to, sender, reply_to, subject, html, text, headers)}},
            "EmailTags": [{"Name": k, "Value": _tag(v)} for k, v in tags.items()],
        }
        if self._settings.ses_configuration_set:
            request["ConfigurationSetName"] = self._settings.ses_configuration_set
        try:
            return client("sesv2").send_email(**request)["MessageId"]
        except (ClientError, BotoCoreError) as exc:
            raise _classified(exc) from exc

    def sms_opted_out(self, phone: str) -> bool:
        try:
            return bool(client("sns").check_if_phone_number_is_opted_out(phoneNumber=phone)["isOptedOut"])
        except (ClientError, BotoCoreError) as exc:
            raise _classified(exc) from exc

    def send_sms(self, phone: str, text: str) -> str:
        try:
            return client("sns").publish(
                PhoneNumber=phone, Message=text,
                MessageAttributes={"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}},
            )["MessageId"]
        except (ClientError, BotoCoreError) as exc:
            raise _classified(exc) from exc

    def send_alert(self, topic: str, subject: str, text: str) -> str:
        try:
            return client("sns").publish(
                TopicArn=self._settings.alerts_topic_arn, Subject=subject[:100], Message=text,
                MessageAttributes={"team": {"DataType": "String", "StringValue": topic}},
            )["MessageId"]
        except (ClientError, BotoCoreError) as exc:
            raise _classified(exc) from exc

    def emit(self, detail_type: str, detail: Mapping[str, Any]) -> str:
        try:
            answer = client("events").put_events(Entries=[{
                "EventBusName": self._settings.event_bus, "Source": "nudge",
                "DetailType": detail_type, "Detail": json.dumps(detail),
            }])
        except (ClientError, BotoCoreError) as exc:
            raise _classified(exc) from exc
        entry = answer["Entries"][0]
        if answer.get("FailedEntryCount") or "EventId" not in entry:
            raise SendRetryable(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
        return entry["EventId"]

    def post_webhook(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> str:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - https enforced at validation
                return f"{answer.status} {answer.headers.get('x-request-id', '')}".strip()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise SendRetryable(f"webhook answered {exc.code}") from exc
            raise SendRejected(f"webhook answered {exc.code}") from exc
        except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
            raise SendRetryable(f"webhook unreachable: {exc}") from exc


def mime_message(to: str, sender: str, reply_to: str | None, subject: str, html: str | None, text: str | None,
                 headers: Mapping[str, str]) -> bytes:
    """The email as MIME bytes: multipart/alternative with text and HTML (or
    the one part there is), UTF-8, and ``headers`` added as given."""
    from email.message import EmailMessage
    from email.policy import SMTP
    from email.utils import formatdate, make_msgid

    # Header lines up to RFC 5322's 998 characters: the default 78 would fold and
    # RFC 2047-encode long values (List-Unsubscribe, X-Nudge-Message) and break them.
    message = EmailMessage(policy=SMTP.clone(max_line_length=998))
    message["From"] = sender
    message["To"] = to
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    for name, value in headers.items():
        message[name] = value
    message.set_content(text if text is not None else "", charset="utf-8", cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


def _tag(value: str) -> str:
    """SES tag values allow only letters, digits, '_', '-', '.', '@'."""
    return "".join(c if c.isalnum() or c in "_-.@" else "_" for c in value)[:256] or "_"

"""The public unsubscribe and preferences pages: HTML that works without
JavaScript, rendered from the Liquid files in chalicelib/pages/ with
autoescaping on, so nothing that comes from data (topic labels, a person's
address) can become markup. Also reads the forms those pages (and mailbox
providers' RFC 8058 one-click requests) post.

Nothing here decides anything about subscriptions (chalicelib.preferences
does) or talks to AWS. python-liquid is imported on first render: most
handlers never show a page.
"""
from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import parse_qs

if TYPE_CHECKING:  # pragma: no cover
    from liquid import Environment

PAGES = Path(__file__).with_name("pages")
#: A page with no script, no frames, no outside resources, posting only to itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HTML = "text/html; charset=utf-8"
#: Larger form bodies are not from these pages (nor from a one-click POST).
MAX_FORM_BYTES = 64 * 1024
SAVED = "Your preferences are saved."
#: How a channel is named in a sentence.
CHANNEL_NAMES = {"email": "email", "sms": "text messages"}


def channel_name(channel: str) -> str:
    return CHANNEL_NAMES.get(channel, channel)


def unsubscribe_page(token: str, channel: str, what: str, status: str | None = None) -> str:
    """The confirmation page of an unsubscribe link (``status`` None), or the
    answer once the person is unsubscribed (``status`` says from what).
    ``what`` names what they leave, e.g. "Offers and promotions emails"."""
    return _page("Unsubscribe", "unsubscribe.html", token=token, channel_name=channel_name(channel), what=what,
                 status=status)


def preferences_page(channel: str, rows: Sequence[Mapping[str, Any]], all_left: bool, address: str | None,
                     status: str | None = None) -> str:
    """The preferences form of one channel: a checkbox per topic row (from
    chalicelib.preferences.channel_rows, ticked when the person gets it now),
    and one to leave all marketing on the channel."""
    return _page("Your preferences", "preferences.html", channel=channel, channel_name=channel_name(channel),
                 rows=[dict(row) for row in rows], all_left=all_left, address=address or "", status=status)


#: What a person is told when a page's request fails, by status: heading and advice.
PROBLEMS = {
    400: ("This link cannot be used",
          "Open the link in the most recent message you received from us, or reply to that message "
          "and ask to be removed."),
    404: ("We no longer hold your details",
          "There are no preferences of yours to change."),
    503: ("Please try again in a moment",
          "Nothing was changed. Reload this page to try again."),
}


def wants_html(accept: str | None) -> bool:
    """True when the caller asked for a page (a browser's navigation or form
    post names ``text/html`` in ``Accept``); API callers and mailbox providers'
    one-click POSTs get JSON."""
    return "text/html" in (accept or "").lower()


def problem_page(status: int, error: Mapping[str, Any]) -> str:
    """The page shown to a person instead of an error in the JSON shape
    (chalicelib.http.error's ``error`` object): what went wrong, in words, and
    what they can do; nothing changed."""
    heading, advice = PROBLEMS.get(status, PROBLEMS[503] if status >= 500 else PROBLEMS[400])
    rules = [f"The link's token {p['rule']}." if p.get("field") == "token" else f"{p['field']}: {p['rule']}."
             for p in error.get("problems", [])]
    return _page(heading, "problem.html", heading=heading, detail=" ".join(rules) or error.get("message", ""),
                 advice=advice)


def leaving(channel: str, topic_label: str | None) -> str:
    """What an unsubscribe link leaves, in words: "Offers and promotions
    emails", or "all marketing email" for a whole channel."""
    if topic_label is None:
        return f"all marketing {channel_name(channel)}"
    noun = "emails" if channel == "email" else channel_name(channel)
    return f"{topic_label} {noun}"


def form_fields(raw: bytes | str | None, content_type: str | None) -> dict[str, list[str]]:
    """The fields of a posted form, ``application/x-www-form-urlencoded`` or
    ``multipart/form-data`` (RFC 8058 allows both for a one-click POST).
    ValueError when the body is too large or cannot be read."""
    if isinstance(raw, str):
        raw = raw.encode()
    raw = raw or b""
    if len(raw) > MAX_FORM_BYTES:
        raise ValueError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return _multipart(raw, content_type or "")
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the form cannot be read ({exc})") from None


def _multipart(raw: bytes, content_type: str) -> dict[str, list[str]]:
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise ValueError("the multipart form has no parts (is the boundary right?)")
    fields: dict[str, list[str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        fields.setdefault(name, []).append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return fields


def _page(title: str, name: str, **context: Any) -> str:
    from markupsafe import Markup

    environment = _environment()
    content = environment.get_template(name).render(**context)
    return environment.get_template("layout.html").render(title=title, content=Markup(content))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    from liquid import CachingFileSystemLoader, Environment, StrictUndefined

    return Environment(loader=CachingFileSystemLoader(PAGES), autoescape=True, undefined=StrictUndefined)

"""What a person's data can do to the HTML Nudge makes: nothing.

Traits and event properties come from whoever holds the write key (often a
browser). Rendered into an email's HTML part or the public preferences and
unsubscribe pages, every one of them must come out as text: no tag, no event
handler attribute, no ``javascript:`` link, no Liquid evaluated a second time.
``PAYLOADS`` is shared with the end-to-end tests (tests/e2e/test_security_e2e.py).
"""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.preferences_page import preferences_page, unsubscribe_page
from chalicelib.templates import parse_template, render

PROJECT_DIR = Path(__file__).resolve().parents[2]
PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "<svg/onload=alert(1)>",
    "javascript:alert(1)",
    '<a href="javascript:alert(1)">click</a>',
    "<iframe src=//evil.example></iframe>",
    "</p><form action=//evil.example><input name=x></form>",
    "{{ 7*7 }}",
    "{{ 7 | times: 7 }}",
    "{% raw %}{{ profile }}{% endraw %}",
    "${7*7} <%= 7*7 %> #{7*7}",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
]
#: Tags and attributes the shipped templates and pages use; anything else came from data.
EVENT_HANDLER = "on"


class Markup(HTMLParser):
    """The tags, attributes and text of an HTML document, as a browser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def assert_inert(html: str, payloads: list[str], allowed_tags: set[str]) -> Markup:
    """No markup in ``html`` came from the payloads, and each payload is there, as text."""
    markup = Markup(html)
    assert set(markup.tags) <= allowed_tags, f"tags from data: {set(markup.tags) - allowed_tags}"
    assert not [name for name, _ in markup.attributes if name.startswith(EVENT_HANDLER)], markup.attributes
    assert not [value for _, value in markup.attributes if value.strip().lower().startswith("javascript:")]
    text = " ".join(markup.all_text.split())
    for payload in payloads:
        assert " ".join(payload.split()) in text, f"{payload!r} is not shown as text"
    assert "49" not in text, "a template in the data was evaluated"
    return markup


def shipped(name: str) -> Any:
    source = yaml.safe_load((PROJECT_DIR / "templates" / f"{name}.yaml").read_text())
    return parse_template(source, f"templates/{name}.yaml")


def context(properties: dict[str, Any], traits: dict[str, Any]) -> dict[str, Any]:
    return {"event": {"type": "track", "event": "Support Request Submitted", "properties": properties},
            "profile": {"traits": traits}}


# --- email ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_traits_and_properties_are_text_in_a_transactional_emails_html(payload):
    rendered = render(shipped("support-acknowledgement"),
                      context({"subject": payload, "ticket_id": payload}, {"firstName": payload}))
    assert_inert(rendered.html, [payload], {"p", "em", "strong"})


@pytest.mark.parametrize("payload", PAYLOADS)
def test_product_names_are_text_in_the_order_emails(payload):
    products = [{"product_id": payload, "name": payload, "sku": "s", "price": 1, "quantity": 1}]
    for name in ("order-confirmation", "order-cross-sell"):
        rendered = render(shipped(name), context({"order_id": payload, "products": products, "total": 1},
                                                 {"firstName": payload}))
        markup = assert_inert(rendered.html, [payload], {"p", "strong", "table", "tr", "td", "ul", "li", "a"})
        for attribute, value in markup.attributes:
            assert attribute != "href" or value.startswith("https://example.com/"), value


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JavaScript:alert(1)",
                                 "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "//evil.example/x"])
def test_a_download_link_from_the_event_is_used_only_when_it_is_https(url):
    rendered = render(shipped("whitepaper-thank-you"),
                      context({"asset": "guide.pdf", "asset_url": url, "title": "<b>Guide</b>"}, {}))
    markup = assert_inert(rendered.html, ["<b>Guide</b>"], {"p", "a"})
    assert dict(markup.attributes)["href"] == "https://example.com/assets/guide.pdf"


def test_an_https_download_link_from_the_event_is_kept():
    rendered = render(shipped("whitepaper-thank-you"),
                      context({"asset": "guide.pdf", "asset_url": "https://cdn.example.com/guide.pdf?v=2&x=1"}, {}))
    assert dict(Markup(rendered.html).attributes)["href"] == "https://cdn.example.com/guide.pdf?v=2&x=1"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_text_part_and_subject_keep_the_data_as_written(payload):
    rendered = render(shipped("support-acknowledgement"),
                      context({"subject": payload, "ticket_id": "7"}, {"firstName": "Ana"}))
    assert payload in (rendered.text or "")
    assert "49" not in (rendered.text or "")
    assert rendered.subject == "We received your request (#7)"


# --- the public pages ------------------------------------------------------------------------

PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "p", "form", "fieldset", "legend",
             "label", "input", "button", "a"}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_address_on_the_preferences_page_is_text(payload):
    rows = [{"key": "email:offers", "label": "Offers", "subscribed": True}]
    page = preferences_page("email", rows, False, f"{payload}@example.com", None)
    assert_inert(page, [f"{payload}@example.com"], PAGE_TAGS)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_topic_label_on_the_pages_is_text(payload):
    rows = [{"key": "email:offers", "label": payload, "subscribed": False}]
    assert_inert(preferences_page("email", rows, True, "ana@example.com", None), [payload], PAGE_TAGS)
    assert_inert(unsubscribe_page("kid.payload.signature", "email", f"{payload} emails"), [payload], PAGE_TAGS)


def test_the_checker_sees_markup_that_was_not_escaped():
    """The check above can fail: raw markup from data is caught."""
    with pytest.raises(AssertionError):
        assert_inert('<p>Hi <img src=x onerror=alert(1)></p>', ['"><img src=x onerror=alert(1)>'], {"p"})
    with pytest.raises(AssertionError):
        assert_inert('<p><a href="javascript:alert(1)">x</a></p>', [], {"p", "a"})


@pytest.mark.parametrize("ticket", ["42\r\nBcc: thief@example.com", "42\nX-Injected: 1", "42\r\r\n"])
def test_a_line_break_in_data_cannot_add_a_header_or_stop_the_email(ticket):
    """The subject is one header line; the email is still built and sent."""
    from chalicelib.channels import mime_message

    rendered = render(shipped("support-acknowledgement"), context({"ticket_id": ticket}, {"firstName": "Ana"}))
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    raw = mime_message("ana@example.com", "Support <support@example.com>", None, rendered.subject,
                       rendered.html, rendered.text, {})
    headers = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "\nBcc:" not in headers and "\nX-Injected:" not in headers
    assert "We received your request (#42" in headers

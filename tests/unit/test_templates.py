"""Templates: checked when defined, rendered strictly, HTML escaped and text not."""
import pytest

from chalicelib.templates import (
    InvalidDefinition,
    MissingVariable,
    RenderError,
    inline,
    liquid_problem,
    parse_template,
    render,
    render_text,
)

WELCOME = {"id": "welcome", "channel": "email", "subject": "Welcome, {{ profile.traits.firstName }}",
           "html": "<p>Hi {{ profile.traits.firstName }}, you chose {{ event.properties.plan }}.</p>",
           "text": "Hi {{ profile.traits.firstName }}, you chose {{ event.properties.plan }}."}
CONTEXT = {"profile": {"traits": {"firstName": "Ana <3 & co"}}, "event": {"properties": {"plan": "<b>pro</b>"}}}


def problems(doc):
    with pytest.raises(InvalidDefinition) as caught:
        parse_template(doc, "templates/welcome.yaml")
    return {problem.field: problem.rule for problem in caught.value.problems}


def test_html_is_escaped_and_subject_and_text_are_not():
    rendered = render(parse_template(WELCOME, "x"), CONTEXT)
    assert rendered.subject == "Welcome, Ana <3 & co"
    assert rendered.html == "<p>Hi Ana &lt;3 &amp; co, you chose &lt;b&gt;pro&lt;/b&gt;.</p>"
    assert rendered.text == "Hi Ana <3 & co, you chose <b>pro</b>."


def test_a_missing_variable_is_a_permanent_error_naming_it():
    template = parse_template(WELCOME, "x")
    with pytest.raises(MissingVariable) as caught:
        render(template, {"profile": {"traits": {}}, "event": {"properties": {"plan": "pro"}}})
    assert caught.value.name == "profile.traits.firstName"
    assert caught.value.part == "subject"
    assert isinstance(caught.value, RenderError)


def test_default_and_if_let_a_template_handle_what_may_be_missing():
    template = parse_template({
        "id": "t", "channel": "email", "subject": "Hi {{ profile.traits.firstName | default: 'there' }}",
        "text": "{% if event.properties.coupon %}Use {{ event.properties.coupon }}{% else %}No coupon{% endif %}"},
        "x")
    rendered = render(template, {"profile": {"traits": {}}, "event": {"properties": {}}})
    assert (rendered.subject, rendered.html, rendered.text) == ("Hi there", None, "No coupon")


def test_other_render_failures_are_permanent_too():
    template = parse_template({"id": "t", "channel": "sms", "text": "{{ 10 | divided_by: event.n }}"}, "x")
    with pytest.raises(RenderError):
        render(template, {"event": {"n": 0}})


def test_inline_texts_render_like_templates():
    assert render(inline("sms", "Hi {{ name }}"), {"name": "<Ana>"}).text == "Hi <Ana>"
    assert render_text("Order {{ id }}", {"id": 7}) == "Order 7"
    assert render_text(None, {}) is None


@pytest.mark.parametrize("source, rule", [
    ("{% if %}x{% endif %}", "is not valid Liquid: missing expression (line 1, column 4)"),
    ("Hi\n{{ name", "is not valid Liquid: expected '}}', found end of file (line 2, column 1)"),
    ("{{ name | shout }}", "uses an unknown Liquid filter: shout"),
    ("{% include 'footer' %}",
     "includes another template, which Nudge does not allow: templates are self-contained"),
])
def test_liquid_problems_are_found_when_the_template_is_defined(source, rule):
    assert liquid_problem(source) == rule
    assert problems({**WELCOME, "html": source})["html"] == rule


def test_plain_text_needs_no_liquid_at_all():
    assert liquid_problem("Thanks for your order!") is None


@pytest.mark.parametrize("doc, field, rule", [
    ({**WELCOME, "subject": None}, "subject", "is required for an email template"),
    ({**WELCOME, "html": None, "text": None}, "html", "an email template needs html or text (or both)"),
    ({**WELCOME, "channel": "push"}, "channel", "must be one of email, sms, alert, webhook"),
    ({**WELCOME, "id": "Welcome Mail"}, "id",
     "must be 1-64 characters a-z, 0-9, '-' or '_', starting with a letter or digit"),
    ({**WELCOME, "footer": "x"}, "footer",
     "is not a template field (expected one of id, channel, description, subject, html, text)"),
    ({**WELCOME, "text": ""}, "text", "must be a non-empty string"),
    ({"id": "hi", "channel": "sms", "text": "Hi", "subject": "Hello"}, "subject",
     "is not part of an sms template (it has text)"),
    ({"id": "hi", "channel": "sms"}, "text", "is required for an sms template"),
    ({"id": "hook", "channel": "webhook", "html": "<p>"}, "html", "is not part of a webhook template (it has text)"),
    ({"id": "lead", "channel": "alert", "subject": "Lead"}, "text", "is required for an alert template"),
    ("channel: email", "(document)", "must be a mapping with id, channel and content"),
])
def test_template_refusals_say_why(doc, field, rule):
    assert problems(doc)[field] == rule


def test_a_template_reads_back_in_its_file_shape():
    doc = {"id": "lead", "channel": "alert", "description": "For sales", "subject": "Lead", "text": "{{ who }}"}
    template = parse_template(doc, "x", version=3)
    assert template.as_dict() == doc and template.version == 3


@pytest.mark.parametrize("channel", [["email"], {"email": True}, 7, None])
def test_a_channel_that_is_not_a_name_is_refused_naming_it(channel):
    """Found by fuzzing PUT /v1/templates: a list here was a 500."""
    assert problems({**WELCOME, "channel": channel})["channel"] == "must be one of email, sms, alert, webhook"

"""What a trigger definition may say, and the reason given when it may not."""
import datetime

import pytest

from chalicelib.triggers import InvalidDefinition, event_key_for, parse_trigger, referenced_templates

TEMPLATES = {"welcome": "email", "sms-hi": "sms", "lead": "alert", "hook-body": "webhook"}


def trigger(**changes):
    doc = {"id": "welcome", "description": "Welcome new sign-ups", "category": "marketing", "topic": "offers",
           "when": {"event": "Signed Up"},
           "then": [{"email": {"template": "welcome", "from": "Shop <hello@example.com>"}}]}
    doc.update(changes)
    return {key: value for key, value in doc.items() if value is not None}


def problems(doc, templates=TEMPLATES):
    with pytest.raises(InvalidDefinition) as caught:
        parse_trigger(doc, templates=templates, origin="triggers/welcome.yaml")
    assert caught.value.origin == "triggers/welcome.yaml"
    return {problem.field: problem.rule for problem in caught.value.problems}


def action(kind, params):
    return trigger(then=[{kind: params}])


def test_a_valid_trigger_reads_back_as_written():
    doc = trigger(enabled=False)
    parsed = parse_trigger(doc, templates=TEMPLATES, origin="x.yaml")
    assert (parsed.id, parsed.category, parsed.event_key, parsed.call_type) == (
        "welcome", "marketing", "Signed Up", "track")
    assert parsed.enabled is False and parsed.version == 0 and parsed.match is None
    assert parsed.source == doc
    (email,) = parsed.actions
    assert (email.kind, email.index, email.params["template"]) == ("email", 0, "welcome")
    assert parsed.template_ids == {"welcome"}


def test_every_problem_is_reported_at_once_with_its_field():
    found = problems({"id": "Welcome!", "category": "newsletter", "when": {}, "then": [], "owner": "ana"})
    assert found == {
        "owner": "is not a trigger field (expected one of id, description, category, when, then, enabled, wait, unless, steps, exit, reentry, topic, priority, expires, quiet_hours, budget)",
        "id": "must be 1-64 characters a-z, 0-9, '-' or '_', starting with a letter or digit",
        "category": "must be one of transactional, marketing, internal",
        "when": "must have exactly one of event (a track event's name), type (page, screen, identify, group, "
                "alias), anniversary (a date trait), inactive (a silence) or schedule (a broadcast)",
        "then": "is required: a list of actions, e.g. - email: {template: welcome, from: ...}",
    }


def test_the_error_message_names_file_field_and_reason():
    with pytest.raises(InvalidDefinition) as caught:
        parse_trigger(trigger(category="promo"), templates=TEMPLATES, origin="triggers/welcome.yaml")
    assert str(caught.value) == ("triggers/welcome.yaml: category: must be one of transactional, marketing, "
                                 "internal")


@pytest.mark.parametrize("doc, field, rule", [
    ("just text", "(document)", "must be a mapping with id, when and then"),
    (trigger(id="x" * 65), "id", "must be 1-64 characters a-z, 0-9, '-' or '_', starting with a letter or digit"),
    (trigger(id="-lead"), "id", "must be 1-64 characters a-z, 0-9, '-' or '_', starting with a letter or digit"),
    (trigger(enabled="yes please"), "enabled", "must be true or false"),
    (trigger(description=3), "description", "must be a string: a sentence saying what the trigger is for"),
    (trigger(when={"type": "page", "event": "Signed Up"}), "when",
     "must have exactly one of event (a track event's name), type (page, screen, identify, group, alias), "
     "anniversary (a date trait), inactive (a silence) or schedule (a broadcast)"),
    (trigger(when={"event": ""}), "when.event", "must be a track event's name (1-200 characters)"),
    (trigger(when={"event": "page"}), "when.event",
     "is a Segment call type: write when: {type: page} for page calls"),
    (trigger(when={"type": "track"}), "when.type",
     "track calls are matched by name: write when: {event: <event name>}"),
    (trigger(when={"type": "pageview"}), "when.type", "must be one of page, screen, identify, group, alias"),
    (trigger(when={"event": "Signed Up", "if": {}}), "when.if",
     "is not a when field (expected one of event, type, anniversary, inactive, schedule, audience, match, count)"),
    (trigger(when="Signed Up"), "when",
     "is required: {event: <track event name>} or {type: page|screen|identify|group|alias}"),
    (trigger(when={"event": "Signed Up"}, then=[{"email": {}, "sms": {}}]), "then[0]",
     "must be one action: a mapping with one key (email, sms, alert, webhook, update_profile, emit)"),
    (trigger(then=[{"push": {"text": "hi"}}]), "then[0].push",
     "is not an action (expected one of email, sms, alert, webhook, update_profile, emit)"),
    (trigger(then=[{"email": "welcome"}]), "then[0].email", "must be a mapping of the action's parameters"),
    (trigger(then=[{"emit": {"event": "Nudged"}}] * 11), "then", "must have at most 10 actions"),
    (trigger(starts="2026-12-01"), "starts",
     "is not a trigger field (expected one of id, description, category, when, then, enabled, wait, unless, steps, exit, reentry, topic, priority, expires, quiet_hours, budget)"),
])
def test_refusals_say_why(doc, field, rule):
    assert problems(doc)[field] == rule


def test_yaml_values_json_cannot_carry_are_refused():
    doc = action("update_profile", {"set": {"renewal": datetime.date(2027, 1, 1)}})
    assert problems(doc)["then[0].update_profile.set.renewal"] == (
        "must be a JSON value, not a date (quote dates and times)")


def test_page_and_other_calls_are_matched_by_type():
    for call_type in ("page", "screen", "identify", "group", "alias"):
        parsed = parse_trigger(trigger(when={"type": call_type}), templates=TEMPLATES, origin="x")
        assert parsed.event_key == parsed.call_type == call_type
    assert event_key_for("track", "Signed Up") == "Signed Up"
    assert event_key_for("page", None) == "page"


# --- conditions -------------------------------------------------------------------------------


def test_a_condition_is_an_eventbridge_pattern_over_event_and_profile():
    doc = trigger(when={"type": "page", "match": {"event": {"properties": {"path": [{"prefix": "/pricing"}]}},
                                                  "profile": {"traits": {"plan": ["free"]}}}})
    parsed = parse_trigger(doc, templates=TEMPLATES, origin="x")
    assert parsed.match_source == doc["when"]["match"]
    free_on_pricing = {"event": {"properties": {"path": "/pricing/teams"}}, "profile": {"traits": {"plan": "free"}}}
    assert parsed.match.matches(free_on_pricing)
    assert not parsed.match.matches({**free_on_pricing, "profile": {"traits": {"plan": "pro"}}})
    assert not parsed.match.matches({**free_on_pricing, "event": {"properties": {"path": "/blog"}}})


def test_a_condition_may_be_given_as_json_text():
    doc = trigger(when={"event": "Signed Up", "match": '{"event": {"properties": {"plan": ["pro"]}}}'})
    assert parse_trigger(doc, templates=TEMPLATES, origin="x").match_source == {
        "event": {"properties": {"plan": ["pro"]}}}


@pytest.mark.parametrize("match, field, rule", [
    ({"properties": {"plan": ["pro"]}}, "when.match.properties",
     "is not matched against: patterns start with event (the Segment call) or profile (the person), "
     "e.g. {event: {properties: {plan: [pro]}}}"),
    ({}, "when.match", "must be a non-empty EventBridge event pattern over event and profile, "
                       "e.g. {event: {properties: {plan: [pro]}}}"),
    ("{not json", "when.match", "must be an event pattern (a mapping, or JSON text of one)"),
])
def test_conditions_that_could_never_match_as_meant_are_refused(match, field, rule):
    assert problems(trigger(when={"event": "Signed Up", "match": match}))[field] == rule


def test_an_invalid_pattern_is_refused_with_the_matchers_reason():
    rule = problems(trigger(when={"event": "Signed Up", "match": {"event": {"properties": {"plan": "pro"}}}}))[
        "when.match"]
    assert rule.startswith("is not a valid event pattern: event.properties.plan: ")


# --- actions ----------------------------------------------------------------------------------


def test_every_action_kind_in_its_documented_shape_is_accepted():
    doc = trigger(then=[
        {"email": {"template": "welcome", "from": "hello@example.com", "reply_to": "Help <help@example.com>",
                   "to": "ops@example.com"}},
        {"sms": {"text": "Hi {{ profile.traits.firstName | default: 'there' }}", "to": "+14155550100"}},
        {"sms": {"template": "sms-hi"}},
        {"alert": {"topic": "sales", "template": "lead"}},
        {"alert": {"topic": "sales", "text": "{{ profile.userId }} signed up"}},
        {"webhook": {"url": "https://hooks.example.com/nudge", "template": "hook-body", "secret_env": "CRM_SECRET",
                     "timeout_seconds": 2.5}},
        {"webhook": {"url": "http://localhost:9000/hook"}},
        {"update_profile": {"set": {"plan": "trial"}, "add_tags": ["new"], "remove_tags": ["lead"],
                            "increment": {"lead_score": 5}}},
        {"emit": {"event": "Welcome Sent", "properties": {"campaign": "welcome"}}},
    ])
    parsed = parse_trigger(doc, templates=TEMPLATES, origin="x")
    assert [(a.index, a.kind) for a in parsed.actions] == [
        (0, "email"), (1, "sms"), (2, "sms"), (3, "alert"), (4, "alert"), (5, "webhook"), (6, "webhook"),
        (7, "update_profile"), (8, "emit")]
    assert parsed.template_ids == {"welcome", "sms-hi", "lead", "hook-body"}


@pytest.mark.parametrize("kind, params, field, rule", [
    ("email", {"template": "welcome"}, "then[0].email.from", "is required for email"),
    ("email", {"from": "hello@example.com"}, "then[0].email.template", "is required for email"),
    ("email", {"template": "welcome", "from": "hello@example.com", "cc": "x@example.com"}, "then[0].email.cc",
     "is not a parameter of email (expected one of template, from, reply_to, to)"),
    ("email", {"template": "welcome", "from": "hello"}, "then[0].email.from",
     'must be an email address, e.g. "Shop <orders@example.com>"'),
    ("email", {"template": "welcome", "from": "hello@example.com", "to": "Ana <ana@example.com>"},
     "then[0].email.to", "must be an email address"),
    ("email", {"template": "welcome", "from": "hello@example.com", "to": "{{ event.properties.email }}"},
     "then[0].email.to", "must be an email address"),
    ("email", {"template": "ghost", "from": "hello@example.com"}, "then[0].email.template",
     "names no known template: add templates/ghost.yaml or PUT /v1/templates/ghost first"),
    ("email", {"template": "sms-hi", "from": "hello@example.com"}, "then[0].email.template",
     "is an sms template, but email needs an email template"),
    ("email", {"template": "Not An Id", "from": "hello@example.com"}, "then[0].email.template",
     "must be a template id (must be 1-64 characters a-z, 0-9, '-' or '_', starting with a letter or digit)"),
    ("sms", {"text": "hi", "template": "sms-hi"}, "then[0].sms", "sms needs exactly one of template or text"),
    ("sms", {}, "then[0].sms", "sms needs exactly one of template or text"),
    ("sms", {"text": "hi {{ name"}, "then[0].sms.text",
     "is not valid Liquid: expected '}}', found end of file (line 1, column 4)"),
    ("sms", {"text": "hi", "to": "4155550100"}, "then[0].sms.to",
     "must be a phone number in E.164 form, e.g. +14155550100"),
    ("sms", {"template": "welcome"}, "then[0].sms.template", "is an email template, but sms needs an sms template"),
    ("alert", {"text": "hi"}, "then[0].alert.topic", "is required for alert"),
    ("alert", {"topic": "sales team", "text": "hi"}, "then[0].alert.topic",
     "must be a topic name: letters, digits, '-' or '_'"),
    ("alert", {"topic": "sales", "template": "welcome"}, "then[0].alert.template",
     "is an email template, but alert needs an alert template"),
    ("webhook", {"url": "http://hooks.example.com"}, "then[0].webhook.url",
     "must be an https URL (http is allowed only for localhost)"),
    ("webhook", {"url": "ftp://example.com"}, "then[0].webhook.url",
     "must be an https URL (http is allowed only for localhost)"),
    ("webhook", {"url": "https://"}, "then[0].webhook.url", "must be an https URL with a host"),
    ("webhook", {"url": "https://{{ event.properties.host }}/x"}, "then[0].webhook.url",
     "is used as written, Liquid is not rendered here"),
    ("webhook", {"url": "https://example.com", "timeout_seconds": 30}, "then[0].webhook.timeout_seconds",
     "must be a number of seconds above 0 and at most 10"),
    ("webhook", {"url": "https://example.com", "timeout_seconds": True}, "then[0].webhook.timeout_seconds",
     "must be a number of seconds above 0 and at most 10"),
    ("webhook", {"url": "https://example.com", "secret_env": "my secret"}, "then[0].webhook.secret_env",
     "must name an environment variable (A-Z, 0-9, _) that holds the signing secret"),
    ("webhook", {"url": "https://example.com", "template": "welcome"}, "then[0].webhook.template",
     "is an email template, but webhook needs a webhook template"),
    ("webhook", {"url": "https://example.com", "headers": {}}, "then[0].webhook.headers",
     "is not a parameter of webhook (expected one of url, template, secret_env, timeout_seconds)"),
    ("update_profile", {}, "then[0].update_profile",
     "must change something: set, add_tags, remove_tags or increment"),
    ("update_profile", {"increment": {"lead_score": "10"}}, "then[0].update_profile.increment.lead_score",
     "must be a number"),
    ("update_profile", {"set": {"score": 1}, "increment": {"score": 1}}, "then[0].update_profile.increment.score",
     "is also in set: set it or increment it, not both"),
    ("update_profile", {"add_tags": ["vip"], "remove_tags": ["vip"]}, "then[0].update_profile.remove_tags",
     "removes a tag it also adds: vip"),
    ("update_profile", {"add_tags": "vip"}, "then[0].update_profile.add_tags",
     "must be a list of non-empty tag names"),
    ("update_profile", {"set": {"last_order": "{{ event.properties.order_id }}"}},
     "then[0].update_profile.set.last_order", "is used as written, Liquid is not rendered here (use a template)"),
    ("update_profile", {"set": ["plan"]}, "then[0].update_profile.set", "must be a mapping of trait name to value"),
    ("emit", {}, "then[0].emit.event", "is required for emit"),
    ("emit", {"event": "Signed Up"}, "then[0].emit.event",
     "is the event this trigger listens for: it would set itself off"),
    ("emit", {"event": "Nudged", "properties": ["a"]}, "then[0].emit.properties", "must be a mapping"),
])
def test_action_refusals_say_why(kind, params, field, rule):
    assert problems(action(kind, params))[field] == rule


def test_template_references_are_checked_only_when_templates_are_known():
    doc = action("email", {"template": "ghost", "from": "hello@example.com"})
    assert parse_trigger(doc, templates=None, origin="x").template_ids == {"ghost"}
    assert problems(doc, templates={"welcome"}) == {
        "then[0].email.template": "names no known template: add templates/ghost.yaml or PUT /v1/templates/ghost "
                                  "first"}
    # a plain set of ids checks existence only, not the channel
    assert parse_trigger(action("sms", {"template": "welcome"}), templates={"welcome"}, origin="x")


def test_stored_definitions_parse_without_loading_liquid_checks():
    doc = action("sms", {"text": "hi {{ name"})
    assert parse_trigger(doc, templates=None, origin="stored", version=4, check_liquid=False).version == 4


def test_the_templates_a_definition_names_are_found_before_checking_it():
    doc = trigger(then=[{"email": {"template": "welcome"}}, {"sms": {"text": "hi"}}, {"alert": {"template": "lead"}},
                        "garbage", {"webhook": "also garbage"}])
    assert referenced_templates(doc) == {"welcome", "lead"}
    assert referenced_templates("not a mapping") == set()

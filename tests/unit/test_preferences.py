"""Subscription use cases: leaving a topic or a channel, saving the preferences
page, an operator's changes, fresh consent after an erasure, mail to the
unsubscribe address, and the links a message carries."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.consent import DEFAULT_TOPICS, Consent, refusal
from chalicelib.errors import InvalidInput
from chalicelib.preferences import (
    UnreadableMail, channel_rows, choose, leave, leave_by_mail, links, mail_token, parse_choices, set_subscriptions,
    view,
)
from chalicelib.profiles import Profile
from chalicelib.settings import get_settings
from chalicelib.unsubscribe_tokens import Claim, InvalidToken, sign, verify
from tests.fakes import MemoryConsentStore, MemoryProfileStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
KEYS = "k1:unit-test-signing-secret"


@pytest.fixture
def consent() -> MemoryConsentStore:
    return MemoryConsentStore()


@pytest.fixture
def profiles() -> MemoryProfileStore:
    store = MemoryProfileStore()
    store.save(Profile("user:ana", user_id="ana", traits={"email": "Ana@Example.com", "phone": "+351912345678"}))
    return store


def ana(profiles: MemoryProfileStore) -> Profile:
    found = profiles.get("user:ana")
    assert found is not None
    return found


def claim(topic: str | None = "offers", channel: str = "email", profile_id: str = "user:ana") -> Claim:
    return Claim(profile_id=profile_id, channel=channel, topic=topic, issued_at=NOW)


def gets(consent: MemoryConsentStore, topic: str, channel: str = "email") -> bool:
    """Would a marketing message of this topic go to Ana?"""
    return refusal("marketing", channel, topic, consent.preferences("user:ana"), DEFAULT_TOPICS) is None


# --- leaving ---------------------------------------------------------------------------------


def test_leaving_a_topic_stops_that_topic_only(consent, profiles) -> None:
    outcome = leave(consent, profiles, claim("offers"), "one-click", NOW)

    assert outcome.recorded == {"email:offers": Consent(False, "one-click", "2026-03-01T12:00:00.000Z")}
    assert not gets(consent, "offers")
    assert gets(consent, "news")


def test_leaving_everything_on_a_channel_stops_every_topic_of_it(consent, profiles) -> None:
    leave(consent, profiles, claim(None), "unsubscribe-page", NOW)

    assert consent.preferences("user:ana")["email:*"] == Consent(False, "unsubscribe-page", "2026-03-01T12:00:00.000Z")
    assert not gets(consent, "offers") and not gets(consent, "news")


def test_leaving_again_changes_nothing_and_keeps_the_first_consent(consent, profiles) -> None:
    leave(consent, profiles, claim("offers"), "one-click", NOW)
    again = leave(consent, profiles, claim("offers"), "unsubscribe-page", NOW + timedelta(hours=1))

    assert again.recorded == {}
    assert consent.preferences("user:ana")["email:offers"].source == "one-click"
    assert len(consent.consent_history("user:ana")) == 1


def test_leaving_for_a_person_nobody_knows_writes_nothing(consent, profiles) -> None:
    outcome = leave(consent, profiles, claim(profile_id="user:erased"), "one-click", NOW)

    assert outcome.profile is None
    assert consent.states == {} and consent.history == {}


def test_a_visitors_link_reaches_the_person_they_became(consent, profiles) -> None:
    # Given a link made for a visitor, who later signed in as Ana (the visitor's profile merged away)
    profiles.link("visitor-1", "ana")

    outcome = leave(consent, profiles, claim(profile_id="anon:visitor-1"), "one-click", NOW)

    assert outcome.profile is not None and outcome.profile.profile_id == "user:ana"
    assert not gets(consent, "offers")


# --- the preferences page ----------------------------------------------------------------


def offered(consent: MemoryConsentStore, channel: str = "email") -> list[str]:
    return [row["key"] for row in channel_rows(consent.preferences("user:ana"), DEFAULT_TOPICS, channel)]


def test_saving_the_page_leaves_unchecked_topics_and_joins_checked_ones(consent, profiles) -> None:
    consent.set_preferences("user:ana", {"email:news": Consent(False, "one-click", "2026-01-01T00:00:00.000Z")})

    choose(consent, ana(profiles), "email", offered(consent), ["email:news", "email:lifecycle"], False, NOW)

    assert not gets(consent, "offers")
    assert gets(consent, "news") and gets(consent, "lifecycle")
    assert consent.preferences("user:ana")["email:news"] == Consent(True, "preferences-page",
                                                                    "2026-03-01T12:00:00.000Z")


def test_saving_the_page_unchanged_records_nothing_new(consent, profiles) -> None:
    choose(consent, ana(profiles), "email", offered(consent), ["email:offers"], False, NOW)
    before = consent.consent_history("user:ana")

    again = choose(consent, ana(profiles), "email", offered(consent), ["email:offers"], False, NOW + timedelta(days=1))

    assert again.recorded == {}
    assert consent.consent_history("user:ana") == before


def test_unsubscribing_from_all_on_the_page_records_the_leaving_but_no_joining(consent, profiles) -> None:
    outcome = choose(consent, ana(profiles), "email", offered(consent), ["email:offers", "email:lifecycle"], True, NOW)

    assert set(outcome.recorded) == {"email:*", "email:news"}
    assert not any(change.subscribed for change in outcome.recorded.values())
    assert not gets(consent, "offers") and not gets(consent, "lifecycle")


def test_unticking_all_again_rejoins_the_channel(consent, profiles) -> None:
    choose(consent, ana(profiles), "email", offered(consent), [], True, NOW)

    choose(consent, ana(profiles), "email", offered(consent), ["email:news"], False, NOW + timedelta(days=1))

    assert consent.preferences("user:ana")["email:*"].subscribed
    assert gets(consent, "news") and not gets(consent, "offers")


def test_the_page_refuses_a_topic_it_did_not_offer(consent, profiles) -> None:
    with pytest.raises(InvalidInput) as refused:
        choose(consent, ana(profiles), "email", offered(consent), ["sms:offers"], False, NOW)
    assert refused.value.problems[0].field == "topic"
    assert consent.history == {}


# --- fresh consent after an erasure --------------------------------------------------------


def test_joining_on_the_page_lifts_an_erasures_suppression_of_the_address(consent, profiles) -> None:
    consent.suppress("ana@example.com", "marketing", "erased", "2026-02-01T00:00:00.000Z")

    outcome = choose(consent, ana(profiles), "email", offered(consent), ["email:offers"], False, NOW)

    assert outcome.lifted == ("email",)
    assert consent.suppression("ana@example.com") is None


def test_joining_through_the_api_lifts_an_erasures_suppression(consent, profiles) -> None:
    consent.suppress("+351912345678", "marketing", "erased", "2026-02-01T00:00:00.000Z")

    outcome = set_subscriptions(consent, ana(profiles), {"sms:offers": True}, "api", NOW)

    assert outcome.lifted == ("sms",)
    assert consent.suppression("+351912345678") is None


@pytest.mark.parametrize("reason", ["complaint", "bounce"])
def test_joining_never_lifts_a_suppression_for_another_reason(consent, profiles, reason: str) -> None:
    scope = "all" if reason == "bounce" else "marketing"
    consent.suppress("ana@example.com", scope, reason, "2026-02-01T00:00:00.000Z")

    set_subscriptions(consent, ana(profiles), {"email:offers": True}, "api", NOW)

    assert consent.suppression("ana@example.com").reason == reason


def test_an_import_or_a_leaving_does_not_lift_an_erasures_suppression(consent, profiles) -> None:
    consent.suppress("ana@example.com", "marketing", "erased", "2026-02-01T00:00:00.000Z")

    set_subscriptions(consent, ana(profiles), {"email:offers": True}, "import", NOW)
    choose(consent, ana(profiles), "email", offered(consent), [], True, NOW)

    assert consent.suppression("ana@example.com") is not None


# --- the admin API's changes ---------------------------------------------------------------


def test_an_operators_change_is_kept_with_its_source_and_shows_in_the_view(consent, profiles) -> None:
    choices, source = parse_choices({"topics": {"email:offers": False, "sms:offers": True}, "source": "import"})

    set_subscriptions(consent, ana(profiles), choices, source, NOW)
    shown = view(consent, ana(profiles), DEFAULT_TOPICS)

    rows = {(row["channel"], row["id"]): row for row in shown["topics"]}
    assert rows[("email", "offers")]["subscribed"] is False
    assert rows[("sms", "offers")]["subscribed"] is True
    assert rows[("email", "news")]["subscribed"] is True and rows[("email", "news")]["consent"] is None
    assert {(h["key"], h["source"]) for h in shown["history"]} == {("email:offers", "import"), ("sms:offers", "import")}
    assert shown["userId"] == "ana"


@pytest.mark.parametrize("body, field", [
    ({"topics": {"fax:offers": True}}, "topics.fax:offers"),
    ({"topics": {"offers": True}}, "topics.offers"),
    ({"topics": {"email:<b>": True}}, "topics.email:<b>"),
    ({"topics": {"email:offers": "yes"}}, "topics.email:offers"),
    ({"topics": {"email:offers": 1}}, "topics.email:offers"),
    ({"topics": {}}, "topics"),
    ({"topics": ["email:offers"]}, "topics"),
    ({"topics": {"email:offers": True}, "source": "one-click"}, "source"),
    ({"topics": {"email:offers": True}, "reason": "x"}, "reason"),
])
def test_a_bad_change_is_refused_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_choices(body)
    assert field in [problem.field for problem in refused.value.problems]


def test_all_of_a_channel_can_be_set_through_the_api() -> None:
    assert parse_choices({"topics": {"email:*": False}}) == ({"email:*": False}, "api")


# --- mail to the unsubscribe address ------------------------------------------------------


def received(subject: str | None) -> str:
    headers = {"from": ["Ana <ana@example.com>"], "to": ["unsubscribe@example.com"]}
    if subject is not None:
        headers["subject"] = subject
    return json.dumps({"notificationType": "Received", "mail": {"messageId": "m1", "commonHeaders": headers},
                       "receipt": {"action": {"type": "SNS"}}})


def test_mail_with_the_token_in_its_subject_unsubscribes_with_source_mailto(consent, profiles, monkeypatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEYS", KEYS)
    token = sign(KEYS, "user:ana", "email", "news", NOW)

    outcome = leave_by_mail(consent, profiles, get_settings(), received(f"Re: unsubscribe {token}"), NOW)

    assert outcome.recorded["email:news"].source == "mailto"
    assert not gets(consent, "news")


@pytest.mark.parametrize("notification", [
    "not json", json.dumps({"notificationType": "Bounce"}), received(None), received("please stop"),
    json.dumps(["Received"]),
])
def test_mail_without_a_token_is_unreadable(notification: str) -> None:
    with pytest.raises(UnreadableMail):
        mail_token(notification)


def test_mail_with_a_forged_token_changes_nothing(consent, profiles, monkeypatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEYS", KEYS)
    forged = sign("k1:not-the-secret", "user:ana", "email", "news", NOW)

    with pytest.raises(InvalidToken):
        leave_by_mail(consent, profiles, get_settings(), received(f"unsubscribe {forged}"), NOW)
    assert consent.history == {}


# --- links ----------------------------------------------------------------------------------


def test_links_carry_one_token_for_the_person_channel_and_topic(monkeypatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEYS", KEYS)
    monkeypatch.setenv("NUDGE_PUBLIC_URL", "https://nudge.example.com/api/")
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_MAILTO", "unsubscribe@example.com")
    settings = get_settings()

    made = links(settings, "user:ana", "email", "offers", NOW)

    token = made["unsubscribe_url"].split("token=", 1)[1]
    assert made["unsubscribe_url"] == f"https://nudge.example.com/api/v1/unsubscribe?token={token}"
    assert made["preferences_url"] == f"https://nudge.example.com/api/v1/preferences?token={token}"
    assert made["mailto"] == f"mailto:unsubscribe@example.com?subject=unsubscribe%20{token}"
    assert verify(KEYS, token, NOW, 90) == claim("offers")


def test_links_without_a_mailto_address_have_none(monkeypatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEYS", KEYS)
    monkeypatch.setenv("NUDGE_PUBLIC_URL", "https://nudge.example.com")
    monkeypatch.delenv("NUDGE_UNSUBSCRIBE_MAILTO", raising=False)
    assert links(get_settings(), "user:ana", "sms", None, NOW)["mailto"] is None


def test_links_need_the_public_url(monkeypatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEYS", KEYS)
    monkeypatch.delenv("NUDGE_PUBLIC_URL", raising=False)
    with pytest.raises(ValueError, match="NUDGE_PUBLIC_URL"):
        links(get_settings(), "user:ana", "email", "offers", NOW)


def test_rows_of_a_channel_show_the_catalogue_in_order_with_their_keys() -> None:
    rows = channel_rows({"email:*": Consent(False, "one-click", "t")}, DEFAULT_TOPICS, "email")
    assert [row["key"] for row in rows] == ["email:offers", "email:news", "email:lifecycle"]
    assert not any(row["subscribed"] for row in rows)

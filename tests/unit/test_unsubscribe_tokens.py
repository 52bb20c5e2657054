"""Unsubscribe tokens: only Nudge can make them, nobody can change them, and
they stop working after the configured number of days."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from chalicelib.unsubscribe_tokens import Claim, InvalidToken, parse_keys, sign, verify

KEYS = "k2:new-secret-for-signing,k1:old-secret-still-verifies"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_a_signed_token_verifies_to_what_was_signed() -> None:
    token = sign(KEYS, "user:ana", "email", "offers", NOW)

    claim = verify(KEYS, token, NOW + timedelta(minutes=5), 90)

    assert claim == Claim(profile_id="user:ana", channel="email", topic="offers", issued_at=NOW)


def test_a_token_without_a_topic_means_all_marketing_on_the_channel() -> None:
    claim = verify(KEYS, sign(KEYS, "user:ana", "sms", None, NOW), NOW, 90)
    assert (claim.channel, claim.topic) == ("sms", None)


def test_the_token_is_url_safe_and_carries_the_signing_key_id() -> None:
    token = sign(KEYS, "user:ana ü/&?=", "email", "offers", NOW)
    assert token.startswith("k2.")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@given(position=st.integers(min_value=0, max_value=10_000), replacement=st.sampled_from("AQgw-_x"))
def test_changing_any_character_makes_the_token_invalid(position: int, replacement: str) -> None:
    token = sign(KEYS, "user:ana", "email", "offers", NOW)
    index = position % len(token)
    if token[index] == replacement:
        replacement = "B" if replacement != "B" else "C"
    altered = token[:index] + replacement + token[index + 1:]

    with pytest.raises(InvalidToken):
        verify(KEYS, altered, NOW, 90)


def test_a_claim_rewritten_for_someone_else_is_refused() -> None:
    kid, payload, signature = sign(KEYS, "user:ana", "email", "offers", NOW).split(".")
    claim = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claim["p"] = "user:bob"
    forged = base64.urlsafe_b64encode(json.dumps(claim).encode()).rstrip(b"=").decode()

    with pytest.raises(InvalidToken, match="signature"):
        verify(KEYS, f"{kid}.{forged}.{signature}", NOW, 90)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = sign("k2:somebody-elses-secret", "user:ana", "email", "offers", NOW)
    with pytest.raises(InvalidToken, match="signature"):
        verify(KEYS, other, NOW, 90)


def test_a_token_of_an_unknown_key_id_is_refused() -> None:
    other = sign("k9:new-secret-for-signing", "user:ana", "email", "offers", NOW)
    with pytest.raises(InvalidToken, match="unknown key id"):
        verify(KEYS, other, NOW, 90)


def test_a_rotated_out_signing_key_still_verifies_while_it_is_listed() -> None:
    # Given a link signed before rotation, when k1 was the signing key
    before = sign("k1:old-secret-still-verifies", "user:ana", "email", "news", NOW)
    # When k2 is put in front, new links use k2 and the old link still works
    assert sign(KEYS, "user:ana", "email", "news", NOW).startswith("k2.")
    assert verify(KEYS, before, NOW + timedelta(days=10), 90).topic == "news"
    # Once k1 is dropped, its links stop working
    with pytest.raises(InvalidToken, match="unknown key id"):
        verify("k2:new-secret-for-signing", before, NOW + timedelta(days=10), 90)


def test_a_token_expires_after_the_configured_days() -> None:
    token = sign(KEYS, "user:ana", "email", "offers", NOW)
    assert verify(KEYS, token, NOW + timedelta(days=90), 90)
    with pytest.raises(InvalidToken, match="expired"):
        verify(KEYS, token, NOW + timedelta(days=90, seconds=1), 90)


def test_a_token_is_still_valid_at_30_days_with_the_shortest_lifetime() -> None:
    token = sign(KEYS, "user:ana", "email", "offers", NOW)
    assert verify(KEYS, token, NOW + timedelta(days=30), 30).profile_id == "user:ana"
    with pytest.raises(InvalidToken, match="expired"):
        verify(KEYS, token, NOW + timedelta(days=31), 30)


def test_a_token_from_the_future_is_refused() -> None:
    token = sign(KEYS, "user:ana", "email", "offers", NOW + timedelta(days=3))
    with pytest.raises(InvalidToken, match="future"):
        verify(KEYS, token, NOW, 90)


@pytest.mark.parametrize("token", ["", "abc", "k2.abc", "k2..sig", "k2.a.b.c", "k2.!!!.sig", "x" * 5000])
def test_malformed_tokens_are_refused_with_a_reason(token: str) -> None:
    with pytest.raises(InvalidToken) as refused:
        verify(KEYS, token, NOW, 90)
    assert refused.value.rule


def test_a_correctly_signed_payload_that_is_not_a_claim_is_refused() -> None:
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b'{"p": "user:ana"}').rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(
        hmac.new(b"new-secret-for-signing", f"k2.{payload}".encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="malformed"):
        verify(KEYS, f"k2.{payload}.{signature}", NOW, 90)


def test_signing_without_a_key_says_which_setting_is_missing() -> None:
    with pytest.raises(ValueError, match="NUDGE_UNSUBSCRIBE_KEYS"):
        sign("", "user:ana", "email", "offers", NOW)


@pytest.mark.parametrize("keys", ["no-colon-s3cr3t", "bad kid:s3cr3t", "k1:", "k1:s3cr3t,k1:s3cr3t"])
def test_malformed_keys_are_named_without_showing_the_secret(keys: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_keys(keys)
    assert "NUDGE_UNSUBSCRIBE_KEYS" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)


def test_signing_refuses_an_unknown_channel() -> None:
    with pytest.raises(ValueError, match="channel"):
        sign(KEYS, "user:ana", "pigeon", "offers", NOW)

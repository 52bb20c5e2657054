"""What a webhook receiver can rely on: a Nudge-Signature it checks with its
secret proves the body came from Nudge, unchanged, and recently."""
from __future__ import annotations

import pytest

from chalicelib.webhook_signature import DEFAULT_TOLERANCE_SECONDS, sign, verify

SECRET = "whsec-0123456789"
BODY = b'{"userId":"ana","event":"Order Completed","properties":{"total":129.5}}'
SENT = 1_796_000_000


def test_a_signed_body_is_accepted_at_once_and_within_the_tolerance():
    header = sign(SECRET, BODY, SENT)
    assert verify(SECRET, BODY, header, now=SENT)
    assert verify(SECRET, BODY, header, now=SENT + DEFAULT_TOLERANCE_SECONDS)
    assert verify(SECRET, BODY, header, now=SENT - DEFAULT_TOLERANCE_SECONDS)  # receiver's clock a little behind


@pytest.mark.parametrize("tampered", [
    BODY.replace(b"129.5", b"1295"),
    BODY + b" ",
    b"",
    BODY.replace(b"ana", b"eve"),
])
def test_a_tampered_body_is_refused(tampered):
    assert not verify(SECRET, tampered, sign(SECRET, BODY, SENT), now=SENT)


@pytest.mark.parametrize("secret", ["whsec-0123456788", "", SECRET.upper(), SECRET + " "])
def test_a_signature_made_with_another_secret_is_refused(secret):
    assert not verify(SECRET, BODY, sign(secret, BODY, SENT), now=SENT)


@pytest.mark.parametrize("late", [DEFAULT_TOLERANCE_SECONDS + 1, 3600, 86_400 * 30])
def test_a_stale_or_future_timestamp_is_refused_as_a_replay(late):
    header = sign(SECRET, BODY, SENT)
    assert not verify(SECRET, BODY, header, now=SENT + late)
    assert not verify(SECRET, BODY, header, now=SENT - late)


def test_moving_the_timestamp_forward_breaks_the_signature():
    """A replayer cannot refresh an old signature by editing t=."""
    old = sign(SECRET, BODY, SENT)
    digest = old.split("v1=", 1)[1]
    assert not verify(SECRET, BODY, f"t={SENT + 3600},v1={digest}", now=SENT + 3600)


@pytest.mark.parametrize("header", ["", "garbage", "t=,v1=", f"t={SENT}", f"v1={'0' * 64}",
                                    f"t=soon,v1={'0' * 64}", f"t={SENT},v1=", f"t={SENT},v1={'0' * 64}"])
def test_a_malformed_header_is_refused_without_an_error(header):
    assert not verify(SECRET, BODY, header, now=SENT)

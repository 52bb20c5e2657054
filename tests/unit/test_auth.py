"""Who may call: write keys the Segment way, admin tokens by Bearer."""
import base64

import pytest

from chalicelib import auth
from chalicelib.errors import Unauthorized
from tests.fakes import MemoryKeyStore


@pytest.fixture(autouse=True)
def fresh_cache():
    auth.forget_cached_keys()
    yield
    auth.forget_cached_keys()


def basic(user: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}


def test_write_key_from_basic_auth_or_body():
    assert auth.write_key(basic("wk1"), {}) == "wk1"
    assert auth.write_key({}, {"writeKey": "wk2"}) == "wk2"
    assert auth.write_key(basic("wk1"), {"writeKey": "wk2"}) == "wk1"
    assert auth.write_key({"authorization": "Basic !!!"}, None) is None


def test_bearer_token():
    assert auth.bearer_token({"authorization": "Bearer abc"}) == "abc"
    assert auth.bearer_token({"authorization": "Basic abc"}) is None
    assert auth.bearer_token({}) is None


def test_a_write_key_does_not_open_admin_routes():
    store = MemoryKeyStore({"wk": auth.WRITE, "adm": auth.ADMIN})
    auth.require(auth.ADMIN, "adm", store, ttl=60)
    for secret in ("wk", "nope", None, ""):
        with pytest.raises(Unauthorized):
            auth.require(auth.ADMIN, secret, store, ttl=60)


def test_known_keys_are_remembered_between_requests():
    store = MemoryKeyStore({"wk": auth.WRITE})
    for _ in range(5):
        auth.require(auth.WRITE, "wk", store, ttl=60)
    assert store.lookups == 1

"""Which browser origins may call the API."""
from chalicelib.http import cors_headers


def test_only_listed_origins_are_echoed_and_vary_on_origin():
    allowed = ("https://shop.example.com", "https://www.example.com")
    headers = cors_headers("https://www.example.com", allowed)
    assert headers["Access-Control-Allow-Origin"] == "https://www.example.com"
    assert headers["Vary"] == "Origin"
    assert cors_headers("https://evil.example", allowed) == {}


def test_wildcard_and_no_configuration():
    assert cors_headers("https://any.example", ("*",))["Access-Control-Allow-Origin"] == "*"
    assert cors_headers("https://any.example", ()) == {}
    assert cors_headers(None, ("*",)) == {}

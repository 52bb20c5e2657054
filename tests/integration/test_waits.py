"""Triggers that wait, with the local stage's time travel: the abandoned cart."""
import json
from datetime import timedelta

import pytest

from tests.integration.conftest import admin_headers, get_json, opt_in, post
from tests.integration.pipeline import record_calls, tick
from tests.integration.test_pipeline import messages, pipeline  # noqa: F401 (fixture)


def advance(client, by):
    response = client.http.post("/v1/clock", headers={**admin_headers(), "Content-Type": "application/json"},
                                body=json.dumps({"advance": by}))
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def shopper(client, user_id):
    post(client, "/v1/identify", {"userId": user_id, "traits": {"email": f"{user_id}@example.org",
                                                                "firstName": "Cy"}})
    post(client, "/v1/track", {"userId": user_id, "event": "Product Added", "messageId": f"{user_id}-add",
                               "properties": {"name": "Trail Boots", "price": 120}})


def test_a_cart_left_for_an_hour_gets_one_reminder(client, pipeline):  # noqa: F811
    shopper(client, "cart1")
    pipeline.run()
    assert messages(client, "cart1") == []  # nothing before the hour is up
    assert advance(client, "59m")["swept"]["acted"] == 0
    swept = advance(client, "2m")["swept"]
    assert swept["acted"] == 1
    pipeline.run()
    [message] = messages(client, "cart1")
    assert message["status"] == "sent" and "Trail Boots" in message["subject"]
    assert advance(client, "1h")["swept"]["due"] == 0  # fired once, cleared


def test_an_order_within_the_hour_means_no_reminder(client, pipeline):  # noqa: F811
    shopper(client, "cart2")
    pipeline.run()
    advance(client, "20m")
    post(client, "/v1/track", {"userId": "cart2", "event": "Order Completed", "properties": {"order_id": "1"}})
    pipeline.run()
    swept = advance(client, "1h")["swept"]
    assert (swept["due"], swept["acted"]) == (1, 0)
    pipeline.run()
    assert [m["trigger"] for m in messages(client, "cart2")] == ["order-confirmation"]
    status, body = get_json(client, "/v1/profiles/cart2/decisions")
    assert any("called off: 'Order Completed'" in t["reason"] for d in body["decisions"] for t in d.get("triggers", []))


def test_the_scheduled_sweep_reads_by_query_and_never_scans(client, pipeline, monkeypatch):  # noqa: F811
    from chalicelib import clock

    shopper(client, "cart3")
    pipeline.run()
    calls = record_calls(monkeypatch)
    clock.advance(timedelta(hours=2))
    result = tick(client)
    assert result["due"] >= 1 and result["acted"] >= 1
    operations = {operation for operation, _ in calls}
    assert "Query" in operations and "Scan" not in operations


def test_time_travel_is_refused_outside_the_local_stage(stack):
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="prod") as prod:
        response = prod.http.post("/v1/clock", headers={**admin_headers(), "Content-Type": "application/json"},
                                  body=json.dumps({"advance": "1d"}))
        assert response.status_code == 403
        assert json.loads(response.body)["error"]["problems"][0]["field"] == "stage"


@pytest.mark.parametrize("body", [{"advance": "soon"}, {"advance": "-1h"}, {}])
def test_bad_durations_name_the_field(client, body):
    response = client.http.post("/v1/clock", headers={**admin_headers(), "Content-Type": "application/json"},
                                body=json.dumps(body))
    assert response.status_code == 400
    assert json.loads(response.body)["error"]["problems"][0]["field"] == "advance"


def test_a_marketing_text_at_night_is_held_until_eight_in_the_morning_local_time(client, pipeline):  # noqa: F811
    from datetime import datetime

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    # Given it is 23:30 in Berlin on the engine's clock
    from zoneinfo import ZoneInfo

    status, now = get_json(client, "/v1/clock")
    current = datetime.fromisoformat(now["now"].replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Berlin"))
    night = current.replace(hour=23, minute=30, second=0, microsecond=0)
    if night <= current:
        night += timedelta(days=1)
    advance(client, f"{int((night - current).total_seconds() // 60) + 1}m")
    post(client, "/v1/identify", {"userId": "sms1", "traits": {"phone": "+4915112345678",
                                                               "timezone": "Europe/Berlin"}})
    opt_in(client, "sms1", "sms:offers")  # marketing texts need the person's consent first
    # When a product they wanted is back in stock
    post(client, "/v1/track", {"userId": "sms1", "event": "Back In Stock",
                               "properties": {"name": "Trail Boots", "sku": "B1"}})
    pipeline.run()
    # Then the text waits, visibly
    [held] = messages(client, "sms1")
    assert held["status"] == "deferred" and "Europe/Berlin" in held["reason"]
    texts = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sms_messages
    assert not any(number == "+4915112345678" for number, *_ in texts.values())
    # And goes out once at 08:00 Berlin time
    assert advance(client, "9h")["swept"]["acted"] == 1
    pipeline.run()
    [sent] = messages(client, "sms1")
    assert sent["status"] == "sent"
    assert [m for number, m, *_ in texts.values() if number == "+4915112345678"] == [
        "Trail Boots is back in stock: https://example.com/p/B1 Reply STOP to opt out."]


def test_the_welcome_series_plays_out_over_a_week_and_stops_at_the_upgrade(client, pipeline):  # noqa: F811
    # Given two people who sign up on a free plan
    for user in ("wel1", "wel2"):
        post(client, "/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.org", "plan": "free"}})
        post(client, "/v1/track", {"userId": user, "event": "Signed Up"})
    pipeline.run()
    # When a week passes, and one of them upgrades on day 3
    advance(client, "2d")
    pipeline.run()
    post(client, "/v1/track", {"userId": "wel2", "event": "Upgraded"})
    pipeline.run()
    advance(client, "6d")
    pipeline.run()
    # Then the first gets all three emails, the second only the first two
    subjects = {user: sorted(m["trigger"] + ":" + m["id"].rsplit("#", 1)[1] for m in messages(client, user)
                             if m["status"] == "sent") for user in ("wel1", "wel2")}
    assert subjects == {"wel1": ["welcome-series:0", "welcome-series:1", "welcome-series:2"],
                        "wel2": ["welcome-series:0", "welcome-series:1"]}


def test_three_pricing_views_in_a_week_alert_sales_once(client, pipeline):  # noqa: F811
    post(client, "/v1/identify", {"userId": "hot1", "traits": {"email": "hot1@example.org"}})
    for _ in range(4):
        post(client, "/v1/page", {"userId": "hot1", "name": "Pricing", "properties": {"path": "/pricing"}})
        advance(client, "1d")
    pipeline.run()
    hot = [m for m in messages(client, "hot1") if m["trigger"] == "pricing-hot-lead"]
    assert [m["status"] for m in hot] == ["sent"]


def test_a_timer_that_cannot_fire_holds_back_no_other_and_fires_once_it_can(client, pipeline, monkeypatch):  # noqa: F811
    from chalicelib import sweep

    shopper(client, "cart-stuck")
    shopper(client, "cart-free")
    pipeline.run()
    real_fire = sweep.fire

    def fire(timer, *args, **kwargs):
        if timer.profile_id == "user:cart-stuck":
            raise KeyError("a field this version cannot read")
        return real_fire(timer, *args, **kwargs)

    monkeypatch.setattr(sweep, "fire", fire)
    swept = advance(client, "61m")["swept"]
    assert (swept["due"], swept["acted"], swept["failed"]) == (2, 1, 1)
    pipeline.run()
    assert [m["status"] for m in messages(client, "cart-free")] == ["sent"]
    assert messages(client, "cart-stuck") == []
    # Once the cause is fixed, the next sweep sends the stuck reminder, once
    monkeypatch.setattr(sweep, "fire", real_fire)
    swept = advance(client, "1m")["swept"]
    assert (swept["due"], swept["acted"], swept["failed"]) == (1, 1, 0)
    pipeline.run()
    assert [m["status"] for m in messages(client, "cart-stuck")] == ["sent"]
    assert advance(client, "1m")["swept"]["due"] == 0

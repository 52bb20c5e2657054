"""Date triggers end to end, with the local stage's time travel: birthdays at 09:00
in each person's own zone, and the win-back after 30 silent days."""
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from tests.integration.conftest import get_json, post
from tests.integration.pipeline import record_calls, tick
from tests.integration.test_pipeline import messages, pipeline  # noqa: F401 (fixture)
from tests.integration.test_waits import advance


def engine_now(client):
    status, body = get_json(client, "/v1/clock")
    assert status == 200, body
    return datetime.fromisoformat(body["now"].replace("Z", "+00:00"))


def advance_to(client, moment):
    """Move the engine's clock just past ``moment`` and sweep."""
    return advance(client, f"{int((moment - engine_now(client)).total_seconds() // 60) + 1}m")


def nine_local(day, zone):
    return datetime.combine(day, time(9), ZoneInfo(zone)).astimezone(timezone.utc)


def test_a_birthday_is_greeted_at_nine_in_berlin_hours_before_los_angeles(client, pipeline):  # noqa: F811
    # Given two people whose birthday is the day after tomorrow, in Berlin and in Los Angeles
    day = (engine_now(client) + timedelta(days=2)).date()
    birthday = f"1990-{day:%m-%d}"
    for user, zone in (("bday-berlin", "Europe/Berlin"), ("bday-la", "America/Los_Angeles")):
        post(client, "/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.org", "firstName": "Io",
                                                                 "birthday": birthday, "timezone": zone}})
    pipeline.run()
    status, body = get_json(client, "/v1/profiles/bday-berlin/decisions")
    assert any(t["trigger"] == "birthday" and t["reason"].startswith(f"scheduled for {day} 09:00 Europe/Berlin")
               for d in body["decisions"] for t in d.get("triggers", []))
    # When the clock reaches 09:00 in Berlin
    assert advance_to(client, nine_local(day, "Europe/Berlin"))["swept"]["acted"] == 1
    pipeline.run()
    # Then Berlin has its greeting and Los Angeles, where it is still night, not yet
    [greeting] = messages(client, "bday-berlin")
    assert greeting["status"] == "sent" and greeting["subject"] == "Happy birthday, Io! A gift inside"
    assert messages(client, "bday-la") == []
    # And nine hours later, at 09:00 in Los Angeles, the second one goes out
    los_angeles = nine_local(day, "America/Los_Angeles")
    assert los_angeles - nine_local(day, "Europe/Berlin") == timedelta(hours=9)
    assert advance_to(client, los_angeles - timedelta(minutes=5))["swept"]["acted"] == 0
    assert advance_to(client, los_angeles)["swept"]["acted"] == 1
    pipeline.run()
    assert [m["status"] for m in messages(client, "bday-la")] == ["sent"]
    # Next year's greetings are already set, nothing more today
    assert advance(client, "1d")["swept"]["due"] == 0


def test_a_win_back_offer_after_thirty_silent_days_but_not_for_someone_who_came_back(client, pipeline):  # noqa: F811
    # Given two customers active today
    for user in ("quiet", "returning"):
        post(client, "/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.org", "firstName": "Al",
                                                                 "timezone": "Europe/Berlin"}})
        post(client, "/v1/track", {"userId": user, "event": "Product Viewed", "properties": {"sku": "B1"}})
    pipeline.run()
    # When one of them comes back on day 20
    advance(client, "20d")
    post(client, "/v1/track", {"userId": "returning", "event": "Product Viewed", "properties": {"sku": "B2"}})
    pipeline.run()
    assert advance(client, "9d")["swept"]["acted"] == 0
    # Then after 30 silent days only the quiet one gets the offer
    advance(client, "3d")
    pipeline.run()
    [offer] = messages(client, "quiet")
    assert offer["trigger"] == "win-back" and offer["status"] == "sent"
    assert "we miss you" in offer["subject"]
    assert messages(client, "returning") == []
    status, body = get_json(client, "/v1/profiles/returning/decisions")
    assert any(t["trigger"] == "win-back" and t["reason"].startswith("superseded")
               for d in body["decisions"] for t in d.get("triggers", []))
    # And the returning one's own silence ends 30 days after day 20
    advance(client, "20d")
    pipeline.run()
    assert [m["trigger"] for m in messages(client, "returning")] == ["win-back"]
    assert [m["trigger"] for m in messages(client, "quiet")] == ["win-back"]  # one offer per silence


def test_the_sweep_of_date_triggers_never_scans(client, pipeline, monkeypatch):  # noqa: F811
    from chalicelib import clock

    day = (engine_now(client) + timedelta(days=1)).date()
    post(client, "/v1/identify", {"userId": "scan1", "traits": {"email": "scan1@example.org", "timezone": "UTC",
                                                                "birthday": f"--{day:%m-%d}"}})
    pipeline.run()
    calls = record_calls(monkeypatch)
    clock.advance(timedelta(days=2))
    result = tick(client)
    assert result["acted"] >= 1
    operations = {operation for operation, _ in calls}
    assert "Query" in operations and "PutItem" in operations and "Scan" not in operations  # next year's timer

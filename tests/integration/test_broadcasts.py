"""Scheduled broadcasts end to end, with the local stage's time travel: the holiday
offer goes once to everyone in its audience, read page by page, never by Scan."""
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import admin_headers, get_json, post
from tests.integration.pipeline import Pipeline, record_calls
from tests.integration.test_date_triggers import advance_to, engine_now
from tests.integration.test_pipeline import messages
from tests.integration.test_waits import advance

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def holiday(client, stack):
    for kind in ("templates", "triggers"):
        definition = yaml.safe_load((ROOT / kind / "holiday-offer.yaml").read_text())
        response = client.http.put(f"/v1/{kind}/holiday-offer", body=json.dumps(definition),
                                   headers={**admin_headers(), "Content-Type": "application/json"})
        assert response.status_code < 300, response.body
    for user, traits in (("hol-ana", {"email": "ana@example.org", "firstName": "Ana"}),
                         ("hol-bo", {"firstName": "Bo"}),  # no email: not in the audience
                         ("hol-cy", {"email": "cy@example.org"})):
        post(client, "/v1/identify", {"userId": user, "traits": traits})
    pipeline = Pipeline(client, stack)
    pipeline.run()
    advance(client, "1m")  # the sweep sees the broadcast for the first time
    return pipeline


def next_holiday(client):
    now = engine_now(client)
    this_year = datetime(now.year, 12, 24, 9, tzinfo=timezone.utc)
    return this_year if this_year > now else this_year.replace(year=now.year + 1)


def test_the_holiday_offer_goes_once_to_everyone_in_its_audience(client, holiday):
    # Nothing before the time
    advance_to(client, next_holiday(client).replace(hour=8, minute=58))
    holiday.run()
    assert [messages(client, u) for u in ("hol-ana", "hol-bo", "hol-cy")] == [[], [], []]
    # Then at 09:00 on 24 December, the two people with an email address get it
    swept = advance_to(client, next_holiday(client))["swept"]
    assert swept["due"] == 16 and swept["acted"] >= 1  # a page per shard
    holiday.run()
    [ana] = messages(client, "hol-ana")
    assert ana["trigger"] == "holiday-offer" and ana["status"] == "sent"
    assert ana["subject"] == "Happy holidays, Ana: 25% off until New Year"
    assert [m["status"] for m in messages(client, "hol-cy")] == ["sent"]
    assert messages(client, "hol-bo") == []
    # And the run's counts are there to see
    status, body = get_json(client, "/v1/broadcasts/holiday-offer/runs")
    assert status == 200, body
    [run] = body["runs"]
    assert run["at"].endswith("-12-24T09:00:00.000Z") and run["status"] == "done"
    assert run["counts"] == {"profiles": 3, "matched": 2, "queued": 2, "done": 16}
    # Advancing again within the same year sends nothing more
    assert advance(client, "1d")["swept"]["due"] == 0
    assert advance(client, "3d")["swept"]["due"] == 0
    holiday.run()
    assert [len(messages(client, u)) for u in ("hol-ana", "hol-bo", "hol-cy")] == [1, 0, 1]
    assert len(get_json(client, "/v1/broadcasts/holiday-offer/runs")[1]["runs"]) == 1


def test_the_runs_need_the_admin_token(client, stack):
    status, body = get_json(client, "/v1/broadcasts/holiday-offer/runs", headers={})
    assert status == 401, body
    status, body = get_json(client, "/v1/broadcasts/holiday-offer/runs")
    assert (status, body["runs"]) == (200, [])


def test_the_sweep_reads_the_audience_by_query_and_never_scans(client, holiday, monkeypatch):
    calls = record_calls(monkeypatch)
    advance_to(client, next_holiday(client))
    operations = {operation for operation, _ in calls}
    assert ("Query", "by_shard") in calls and "BatchGetItem" in operations and "UpdateItem" in operations
    assert "Scan" not in operations

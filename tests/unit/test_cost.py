"""The cost table's arithmetic: measured AWS usage priced per million events and messages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cost

PRICES = cost.PriceList(
    recorded="2026-12-02", region="us-east-1",
    write_unit=0.625 / 1e6, read_unit=0.125 / 1e6,
    lambda_request=0.20 / 1e6, lambda_gb_second=0.0000166667,
    api_request=3.50 / 1e6, queue_request=0.40 / 1e6, email=0.10 / 1000, bus_event=1.00 / 1e6,
)
ASSUME = cost.Assumptions(
    lambda_memory_mb=128, lambda_architecture="x86_64", aws_call_ms=10, provider_call_ms=50,
    compute_ms_per_event=5, compute_ms_per_message=30, evaluator_invocations_per_message=1,
    delivery_invocations_per_message=1, queue_requests_per_message_by_lambda=2,
)
MESSAGE = {"calls": 6, "channel_calls": 1, "wcu": 2, "rru": 1.5, "emails": 1,
           "evaluation_calls": 4, "evaluation_queue_calls": 1, "evaluation_wcu": 3, "evaluation_rru": 1}


def test_an_event_sent_alone_pays_a_whole_api_request_and_invocation():
    # Given an event that costs 3 AWS calls, 2 write units and half a read unit
    usage = cost.ingest_usage(calls=3, write_units=2, read_units=0.5, events_per_request=1, assumptions=ASSUME)

    # When a million of them are priced
    costs = cost.per_million(usage, PRICES, memory_mb=128)

    # Then API Gateway and Lambda requests are paid per event, and Lambda time is
    # 3 calls x 10 ms + 5 ms = 35 ms at 1/8 GB
    assert costs["API Gateway"] == pytest.approx(3.50)
    assert costs["Lambda"] == pytest.approx(0.20 + 1e6 * 0.035 * 0.125 * 0.0000166667)
    assert costs["DynamoDB"] == pytest.approx(2 * 0.625 + 0.5 * 0.125)
    assert costs["SQS"] == costs["SES"] == costs["EventBridge"] == 0


def test_a_batch_of_100_shares_one_request_and_one_invocation():
    # Given events sent 100 to a request, each costing 1.02 calls and 1.01 write units
    usage = cost.ingest_usage(calls=1.02, write_units=1.01, read_units=0.005, events_per_request=100,
                              assumptions=ASSUME)

    # When a million of them are priced
    costs = cost.per_million(usage, PRICES, memory_mb=128)

    # Then a hundredth of a request and an invocation is paid per event
    assert costs["API Gateway"] == pytest.approx(0.035)
    assert costs["Lambda"] == pytest.approx(0.002 + 1e6 * (1.02 * 0.010 + 0.005) * 0.125 * 0.0000166667)
    assert costs["DynamoDB"] == pytest.approx(1.01 * 0.625 + 0.005 * 0.125)


def test_lambda_time_is_priced_by_the_memory_configured():
    usage = cost.Usage(lambda_seconds=1.0)

    small = cost.per_million(usage, PRICES, memory_mb=128)["Lambda"]
    large = cost.per_million(usage, PRICES, memory_mb=1024)["Lambda"]

    assert large == pytest.approx(8 * small)
    assert large == pytest.approx(1e6 * 0.0000166667)


def test_a_message_adds_the_evaluator_and_the_delivery_function_and_one_email():
    # Given the measured figures of one email sent
    usage = cost.message_usage(MESSAGE, ASSUME)

    # Then both functions' units and calls count, and the send is billed as a provider call
    assert usage.write_units == 5 and usage.read_units == 2.5
    assert usage.lambda_invocations == 2
    assert usage.lambda_seconds == pytest.approx(((6 - 1 + 4) * 10 + 1 * 50 + 30) / 1000)
    assert usage.queue_requests == 3
    assert usage.api_requests == 0

    # And a million of them cost a hundred dollars of SES, at $0.10 per 1,000 emails
    costs = cost.per_million(usage, PRICES, memory_mb=128)
    assert costs["SES"] == pytest.approx(100.0)
    assert costs["SQS"] == pytest.approx(1.20)
    assert costs["DynamoDB"] == pytest.approx(5 * 0.625 + 2.5 * 0.125)


def test_the_summary_gives_the_total_then_each_service_largest_first():
    costs = {"API Gateway": 3.5, "Lambda": 0.2729, "DynamoDB": 1.3125, "SQS": 0.0, "SES": 0.001}

    assert cost.summary(costs) == "$5.09 (API Gateway $3.50, DynamoDB $1.31, Lambda $0.27)"


def test_the_price_file_is_read_per_single_unit_with_its_sources():
    # Given the price file the bench uses
    document = json.loads(cost.PRICES_FILE.read_text())

    # When it is loaded
    prices, assumptions = cost.load()

    # Then each price is per one unit, Lambda time at the architecture assumed
    assert prices.write_unit == pytest.approx(document["prices"]["dynamodb_write_request_unit"]["usd"] / 1e6)
    assert prices.email == pytest.approx(document["prices"]["ses_email"]["usd"] / 1000)
    arch = assumptions.lambda_architecture
    assert prices.lambda_gb_second == document["prices"][f"lambda_gb_second_{arch}"]["usd"]
    assert prices.region == "us-east-1" and prices.recorded
    assert all(entry["source"].startswith("https://aws.amazon.com/") for entry in document["prices"].values())


def test_measure_prices_single_events_batches_and_messages(tmp_path: Path):
    # Given a price file with the prices above
    document = json.loads(cost.PRICES_FILE.read_text())
    document["prices"]["api_gateway_rest_request"]["usd"] = 3.50
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(document))
    ingest = {"single_calls": 3, "single_wcu": 2, "single_rru": 0.5,
              "batch_calls": 1.02, "batch_wcu": 1.01, "batch_rru": 0.005, "events_per_batch": 100}

    # When the measured figures are priced
    table = cost.measure(ingest, MESSAGE, path)

    # Then batching makes an event cheaper, and a message costs at least its email
    assert sum(table["batch"].values()) < sum(table["single"].values())
    assert table["single"]["API Gateway"] == pytest.approx(3.50)
    assert table["batch"]["API Gateway"] == pytest.approx(0.035)
    assert sum(table["message"].values()) > table["message"]["SES"] > 0

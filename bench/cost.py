"""Cost per million events and per million messages at AWS list prices.

The bench measures what an event and a message ask of AWS (calls, DynamoDB
write and read units: bench.ingest_cost and bench.trigger_cost); this module
prices that with bench/prices.json, which holds the us-east-1 on-demand list
prices, the pages they come from and the date they were recorded, and the few
assumptions that are not measured (see its ``assumptions``):

- an ingested event: one API Gateway REST request and one Lambda invocation
  per HTTP request (so 1/100 of each in a batch of 100), the ingest function's
  DynamoDB write and read units, and its billed time. The evaluation of the
  event on the stream is not included here: DynamoDB Streams reads by Lambda
  are free, and what evaluation costs depends on the triggers that match;
- a message sent: the evaluator's part (its calls, write and read units, the
  SQS request that queues the decision) and the delivery function's (calls,
  units, the SES email), one invocation of each, and the two SQS requests
  Lambda's queue poller makes to receive and delete the message.

Lambda billed time is modelled: each counted AWS call costs ``aws_call_ms``
(an SES or SNS send ``provider_call_ms``), plus ``compute_ms_per_event`` or
``compute_ms_per_message`` of the function's own work, at the memory size and
architecture given. Everything here is plain arithmetic on those figures.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

PRICES_FILE = Path(__file__).resolve().with_name("prices.json")
MILLION = 1_000_000


@dataclass(frozen=True)
class PriceList:
    """US dollars per single unit of each billed dimension."""

    recorded: str
    region: str
    write_unit: float
    read_unit: float
    lambda_request: float
    lambda_gb_second: float
    api_request: float
    queue_request: float
    email: float
    bus_event: float


@dataclass(frozen=True)
class Assumptions:
    lambda_memory_mb: int
    lambda_architecture: str
    aws_call_ms: float
    provider_call_ms: float
    compute_ms_per_event: float
    compute_ms_per_message: float
    evaluator_invocations_per_message: float
    delivery_invocations_per_message: float
    queue_requests_per_message_by_lambda: float


@dataclass(frozen=True)
class Usage:
    """What one event, or one message, asks of AWS."""

    api_requests: float = 0.0
    lambda_invocations: float = 0.0
    lambda_seconds: float = 0.0
    write_units: float = 0.0
    read_units: float = 0.0
    queue_requests: float = 0.0
    emails: float = 0.0
    bus_events: float = 0.0


def load(path: Path = PRICES_FILE) -> tuple[PriceList, Assumptions]:
    """The price list (per single unit) and the assumptions of ``path``."""
    document = json.loads(Path(path).read_text())
    assumptions = Assumptions(**{name: value for name, value in document["assumptions"].items() if name != "note"})

    def each(name: str) -> float:
        entry = document["prices"][name]
        return entry["usd"] / entry["per"]

    prices = PriceList(
        recorded=document["recorded"],
        region=document["region"],
        write_unit=each("dynamodb_write_request_unit"),
        read_unit=each("dynamodb_read_request_unit"),
        lambda_request=each("lambda_request"),
        lambda_gb_second=each(f"lambda_gb_second_{assumptions.lambda_architecture}"),
        api_request=each("api_gateway_rest_request"),
        queue_request=each("sqs_standard_request"),
        email=each("ses_email"),
        bus_event=each("eventbridge_custom_event"),
    )
    return prices, assumptions


def per_million(usage: Usage, prices: PriceList, memory_mb: int) -> dict[str, float]:
    """Dollars per million units of ``usage``, by service."""
    gb_seconds = usage.lambda_seconds * memory_mb / 1024
    return {
        "API Gateway": usage.api_requests * prices.api_request * MILLION,
        "Lambda": (usage.lambda_invocations * prices.lambda_request + gb_seconds * prices.lambda_gb_second) * MILLION,
        "DynamoDB": (usage.write_units * prices.write_unit + usage.read_units * prices.read_unit) * MILLION,
        "SQS": usage.queue_requests * prices.queue_request * MILLION,
        "SES": usage.emails * prices.email * MILLION,
        "EventBridge": usage.bus_events * prices.bus_event * MILLION,
    }


def ingest_usage(calls: float, write_units: float, read_units: float, events_per_request: int,
                 assumptions: Assumptions) -> Usage:
    """One event arriving over HTTP, ``events_per_request`` to a request;
    ``calls``, ``write_units`` and ``read_units`` are per event."""
    billed_ms = calls * assumptions.aws_call_ms + assumptions.compute_ms_per_event
    return Usage(api_requests=1 / events_per_request, lambda_invocations=1 / events_per_request,
                 lambda_seconds=billed_ms / 1000, write_units=write_units, read_units=read_units)


def message_usage(measured: Mapping[str, float], assumptions: Assumptions) -> Usage:
    """One message, from bench.trigger_cost.per_message's figures (per message):
    ``calls`` (the delivery function's, SQS excluded), ``channel_calls`` (SES or
    SNS sends among them), ``wcu``, ``rru``, ``emails``, and the evaluator's
    ``evaluation_calls``, ``evaluation_queue_calls``, ``evaluation_wcu``,
    ``evaluation_rru``."""
    other_calls = measured["calls"] - measured["channel_calls"] + measured["evaluation_calls"]
    billed_ms = (other_calls * assumptions.aws_call_ms + measured["channel_calls"] * assumptions.provider_call_ms
                 + assumptions.compute_ms_per_message)
    return Usage(
        lambda_invocations=assumptions.evaluator_invocations_per_message + assumptions.delivery_invocations_per_message,
        lambda_seconds=billed_ms / 1000,
        write_units=measured["wcu"] + measured["evaluation_wcu"],
        read_units=measured["rru"] + measured["evaluation_rru"],
        queue_requests=measured["evaluation_queue_calls"] + assumptions.queue_requests_per_message_by_lambda,
        emails=measured["emails"],
    )


def summary(costs: Mapping[str, float]) -> str:
    """``$4.73 (API Gateway $3.50, DynamoDB $1.00, ...)``: the total, then each
    service that costs at least half a cent, largest first."""
    shown = sorted(((amount, service) for service, amount in costs.items() if amount >= 0.005), reverse=True)
    parts = ", ".join(f"{service} ${amount:,.2f}" for amount, service in shown)
    return f"${sum(costs.values()):,.2f} ({parts})"


def measure(ingest: Mapping[str, float], message: Mapping[str, float],
            path: Path = PRICES_FILE) -> dict[str, Any]:
    """Per-million costs by service for events one at a time, events in
    batches, and messages, from bench.ingest_cost.measure's and
    bench.trigger_cost.per_message's figures."""
    prices, assumptions = load(path)
    memory = assumptions.lambda_memory_mb
    single = ingest_usage(ingest["single_calls"], ingest["single_wcu"], ingest["single_rru"], 1, assumptions)
    batched = ingest_usage(ingest["batch_calls"], ingest["batch_wcu"], ingest["batch_rru"],
                           int(ingest["events_per_batch"]), assumptions)
    return {
        "prices": prices,
        "assumptions": assumptions,
        "single": per_million(single, prices, memory),
        "batch": per_million(batched, prices, memory),
        "message": per_million(message_usage(message, assumptions), prices, memory),
    }

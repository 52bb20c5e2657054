"""Run every benchmark, print the table, and write it into README.md.

Most figures are ratios taken in this one run (calls or write units per event,
one import time over another), so they mean the same on any machine. Costs
price those counts with bench/prices.json (bench.cost). Latency and load are
measured on a running local stack (bench.latency, bench.load): they are this
machine's figures, reported rather than targets.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any, Callable, Sequence

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
LATENCY_SAMPLES = 40
#: Where the log of the local stack that latency and load run on is kept (local_stack.log).
STACK_LOG = README.parent / "build" / "bench" / "local_stack.log"

Row = tuple[str, str, str]


def _quietly(measure: Callable[..., Any], *args: Any) -> Any:
    """Run a measurement with the handlers' logs and metrics kept off the table."""
    with contextlib.redirect_stdout(io.StringIO()):
        return measure(*args)


def _step(name: str, measure: Callable[..., Any], *args: Any) -> Any:
    """Run one measurement, saying on stderr what runs and how long it took."""
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    began = time.monotonic()
    result = _quietly(measure, *args)
    print(f"bench: {name} took {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    return result


def _on_local_stack() -> tuple[Any, Any, list[str]]:
    """Latency, then load, on one local stack started without the example
    triggers: the latency run applies the order confirmation it needs, and
    nothing acts on the load's events. Also returns the errors the stack
    logged (its whole log stays in STACK_LOG); the figures are kept either way."""
    from bench import latency, load
    from tests.e2e.conftest import running_stack

    latencies = loaded = None
    STACK_LOG.parent.mkdir(parents=True, exist_ok=True)
    try:
        with running_stack(STACK_LOG.parent, name="the bench's local stack",
                           env={"NUDGE_LOCAL_EXAMPLES": "0"}) as stack:
            latencies = latency.run(stack, samples=LATENCY_SAMPLES)
            loaded = load.run(stack, load.LoadPlan())
    except AssertionError:  # raised on stopping: the stack logged a traceback or did not exit cleanly
        if loaded is None:
            raise
        return latencies, loaded, logged_errors(STACK_LOG.read_text(errors="replace")) or ["it did not stop cleanly"]
    return latencies, loaded, []


def logged_errors(log: str) -> list[str]:
    """The exception line that ends each traceback in a log."""
    lines, errors = log.splitlines(), []
    for index, line in enumerate(lines):
        if line.startswith("Traceback"):
            ending = next((later for later in lines[index + 1:]
                           if later and not later[0].isspace() and not later.startswith("Traceback")), "")
            if ending and ending not in errors:
                errors.append(ending)
    return errors


def measure() -> dict[str, Any]:
    from bench import cost, import_time, ingest_cost, sweep_cost, trigger_cost
    from layers import package

    figures: dict[str, Any] = {}
    # First, while this process's environment is still the caller's: the measurements below put
    # their emulated stacks' settings into it, and the local stack's process inherits it.
    figures["latency"], figures["load"], figures["stack_errors"] = _step("latency and load on the local stack",
                                                                        _on_local_stack)
    figures["ingest"] = _step("ingest cost", ingest_cost.measure)
    figures["scale"] = _step("evaluation scale", trigger_cost.evaluation_scale)
    figures["message"] = _step("cost per message", trigger_cost.per_message)
    figures["cost"] = cost.measure(figures["ingest"], figures["message"])
    figures["sweep"] = _step("daily sweep", sweep_cost.measure)
    _step("package", lambda: package.package("dev", import_time.DEFAULT_PACKAGE, use_cache=True))
    figures["import"] = _step("import time", import_time.measure)
    return figures


def _email_cost(message: dict[str, float], costs: dict[str, float]) -> str:
    """The priced row, flagged when the measurement's decisions did not all end in an email."""
    from bench import cost

    if message["emails"] < 1:
        return f"{cost.summary(costs)}: only {message['emails']:.2f} emails sent per decision, see the rows below"
    return cost.summary(costs)


def rows(figures: dict[str, Any]) -> list[Row]:
    from bench import cost

    ingest, message, priced = figures["ingest"], figures["message"], figures["cost"]
    scale, swept, timing = figures["scale"], figures["sweep"], figures["import"]
    latencies, loaded = figures["latency"], figures["load"]
    plan = loaded.plan
    return [
        ("AWS calls per event, one at a time", f"{ingest['single_calls']:.2f}", "-"),
        ("DynamoDB write units per event, one at a time", f"{ingest['single_wcu']:.2f}", "<= 2"),
        ("AWS calls per event, /v1/batch of 100 from one person", f"{ingest['batch_calls']:.2f}", "-"),
        ("DynamoDB write units per event, /v1/batch of 100 from one person", f"{ingest['batch_wcu']:.2f}", "<= 1.2"),
        ("Cost per million events, one at a time", cost.summary(priced["single"]), "-"),
        ("Cost per million events, /v1/batch of 100", cost.summary(priced["batch"]), "-"),
        ("Cost per million emails sent (evaluation and delivery)", _email_cost(message, priced["message"]), "-"),
        ("Evaluation time per event, 10,000 / 10 triggers naming other events",
         f"{scale['ratio']:.2f} ({scale['large_us']:.0f} us / {scale['small_us']:.0f} us)", "<= 1.5"),
        ("SES or SNS calls per message sent", f"{message['channel_calls']:.2f}", "1"),
        ("AWS calls by the delivery function per message sent", f"{message['calls']:.2f}", "-"),
        ("DynamoDB write units per message sent", f"{message['wcu']:.2f}", "<= 3 (marketing: claim, outcome, budget slot)"),
        ("Items read by the daily sweep / items due, 100,000 profiles with 100 birthdays today",
         f"{swept['ratio']:.2f}", "<= 1.2"),
        ("Cold import of the packaged app / bare `import boto3`",
         f"{timing['ratio']:.2f} ({timing['app_import_s'] * 1000:.0f} ms / {timing['boto3_import_s'] * 1000:.0f} ms)",
         "<= 1.5"),
        (f"Event-to-send latency on the local stack, order confirmation email, {len(latencies.samples_ms)} orders",
         f"p50 {latencies.p50_ms:.0f} ms, p95 {latencies.p95_ms:.0f} ms"
         + (f", {latencies.not_sent} not sent" if latencies.not_sent else ""), "-"),
        (f"Load on the local stack: {plan.clients} clients x {plan.events_per_client:,} events, "
         f"/v1/batch of {plan.batch_size}",
         f"{loaded.events_per_second:,.0f} events/s ({loaded.accepted:,} in {loaded.elapsed_s:.1f} s), "
         f"{loaded.errors} errors, {loaded.lost} lost", "0 errors, 0 lost"),
    ]


def notes(figures: dict[str, Any]) -> list[str]:
    prices, assumptions = figures["cost"]["prices"], figures["cost"]["assumptions"]
    return [
        f"Costs: {prices.region} on-demand list prices recorded {prices.recorded} (`bench/prices.json`, with "
        "their sources), applied to the calls and units counted above; the event rows price the HTTP request, "
        "the ingest function and its DynamoDB units, the email row the evaluator, the send queue, the delivery "
        f"function and SES. Lambda time is modelled ({assumptions.aws_call_ms:g} ms per AWS call, "
        f"{assumptions.provider_call_ms:g} ms per SES send, at {assumptions.lambda_memory_mb} MB "
        f"{assumptions.lambda_architecture}), not measured. SMS are priced per country and left out.",
        "Latency and load are measured on `make run`'s local stack on this machine, started without the example "
        "triggers (the latency run applies the order confirmation): one Python process serving the API, the "
        "emulator and the event sources, whose runtime polls the stream (every 0.25 s when idle) and the queues. "
        "They are the local stack's figures, not Lambda's.",
    ] + ([f"The local stack logged {len(figures['stack_errors'])} kind(s) of error during latency and load "
          f"(`build/bench/local_stack.log`): " + "; ".join(f"`{error}`" for error in figures["stack_errors"]) + "."]
         if figures["stack_errors"] else [])


def render(table: list[Row], footnotes: Sequence[str] = ()) -> str:
    lines = [f"Measured {date.today().isoformat()} with `make bench`.", "",
             "| measure | result | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in table]
    for note in footnotes:
        lines += ["", note]
    return "\n".join(lines)


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.getLogger("moto").setLevel(logging.ERROR)
    began = time.monotonic()
    figures = measure()
    text = render(rows(figures), notes(figures))
    print(text)
    if README.exists():
        readme = README.read_text()
        if START in readme and END in readme:
            updated = re.sub(f"{re.escape(START)}.*?{re.escape(END)}",
                             lambda _: f"{START}\n{text}\n{END}", readme, flags=re.S)
            README.write_text(updated)
            print("\nREADME.md table updated.", file=sys.stderr)
    print(f"bench: done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    loaded, latencies = figures["load"], figures["latency"]
    problems = loaded.errors + loaded.lost + loaded.extra + loaded.miscounted + latencies.not_sent
    for error in figures["stack_errors"]:
        print(f"bench: the local stack logged: {error} (see {STACK_LOG})", file=sys.stderr)
    problems += len(figures["stack_errors"])
    if problems:
        print(f"bench: the load had {loaded.errors} errors, {loaded.lost} lost, {loaded.extra} stored twice, "
              f"{loaded.miscounted} people miscounted; {latencies.not_sent} orders went unconfirmed",
              file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark, print the table, and write it into README.md.

Each figure is a ratio taken in this one run (calls or write units per event,
one import time over another), so it means the same on any machine.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from datetime import date
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _quietly(measure, *args):
    """Run a measurement with the handlers' logs and metrics kept off the table."""
    with contextlib.redirect_stdout(io.StringIO()):
        return measure(*args)


def rows() -> list[tuple[str, str, str]]:
    from bench import ingest_cost

    cost = _quietly(ingest_cost.measure)
    table = [
        ("AWS calls per event, one at a time", f"{cost['single_calls']:.2f}", "-"),
        ("DynamoDB write units per event, one at a time", f"{cost['single_wcu']:.2f}", "<= 2"),
        ("AWS calls per event, /v1/batch of 100 from one person", f"{cost['batch_calls']:.2f}", "-"),
        ("DynamoDB write units per event, /v1/batch of 100 from one person", f"{cost['batch_wcu']:.2f}", "<= 1.2"),
    ]
    from bench import trigger_cost

    scale = trigger_cost.evaluation_scale()
    message = _quietly(trigger_cost.per_message)
    table += [
        ("Evaluation time per event, 10,000 / 10 triggers naming other events",
         f"{scale['ratio']:.2f} ({scale['large_us']:.0f} us / {scale['small_us']:.0f} us)", "<= 1.5"),
        ("SES or SNS calls per message sent", f"{message['channel_calls']:.2f}", "1"),
        ("AWS calls by the delivery function per message sent", f"{message['calls']:.2f}", "-"),
        ("DynamoDB write units per message sent", f"{message['wcu']:.2f}", "<= 2"),
    ]
    from bench import sweep_cost

    swept = _quietly(sweep_cost.measure)
    table.append(("Items read by the daily sweep / items due, 100,000 profiles with 100 birthdays today",
                  f"{swept['ratio']:.2f}", "<= 1.2"))
    from bench import import_time
    from layers import package

    package.package("dev", import_time.DEFAULT_PACKAGE, use_cache=True)
    timing = _quietly(import_time.measure)
    table.append((
        "Cold import of the packaged app / bare `import boto3`",
        f"{timing['ratio']:.2f} ({timing['app_import_s'] * 1000:.0f} ms / {timing['boto3_import_s'] * 1000:.0f} ms)",
        "<= 1.5",
    ))
    return table


def render(table: list[tuple[str, str, str]]) -> str:
    lines = [f"Measured {date.today().isoformat()} with `make bench`.", "",
             "| measure | result | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in table]
    return "\n".join(lines)


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.getLogger("moto").setLevel(logging.ERROR)
    text = render(rows())
    print(text)
    if README.exists():
        readme = README.read_text()
        if START in readme and END in readme:
            updated = re.sub(f"{re.escape(START)}.*?{re.escape(END)}",
                             f"{START}\n{text}\n{END}", readme, flags=re.S)
            README.write_text(updated)
            print("\nREADME.md table updated.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

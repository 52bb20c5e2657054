"""Concurrent load on a running local stack: nothing refused, nothing lost.

Four clients send at once, each 250 track events through ``/v1/batch`` in
batches of 50, spread over three people of its own (bench.load, the same code
``make bench`` runs at 8 x 2,000). Every accepted ``messageId`` must then be in
its person's history exactly once, and each profile must count the event as
many times as it was accepted for that person.

The stack is this module's own, started without the example triggers
(``NUDGE_LOCAL_EXAMPLES=0``), so no trigger acts on the load and the module
disturbs no other test's stack. Nothing here depends on how long the load
takes: speed is reported by ``make bench`` only.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from bench import load
from tests.e2e.conftest import Stack, running_stack

PLAN = load.LoadPlan(clients=4, events_per_client=250, batch_size=50, people_per_client=3)


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("load-stack"), name="the load test's stack",
                       env={"NUDGE_LOCAL_EXAMPLES": "0"}) as running:
        yield running


def test_concurrent_batches_are_all_accepted_and_all_stored_once(quiet_stack: Stack):
    # Given four clients sending 250 events each at the same time
    # When they are done
    result = load.run(quiet_stack, PLAN)

    # Then no request was refused or went unanswered
    assert result.errors == 0, result.error_kinds
    assert result.sent == result.accepted == PLAN.events == 1000

    # And every accepted event is in its person's history, once
    assert result.lost == 0
    assert result.extra == 0

    # And every person's profile counts all of their events
    assert result.miscounted == 0


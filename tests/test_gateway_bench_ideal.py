"""The gateway bench's minimum after the arrivals (`bench/gateway_ideal.py`): with every
request in hand at the start it is acceptance's clairvoyant client to the float; a request
sent later is admitted no sooner, and a driver that sends the burst late costs the minimum
only what the full bucket's refill wastes meanwhile."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import acceptance
from gateway_ideal import ideal_after_arrivals

from asyncthrift.tools.workload import mixed_workload

BODIES = mixed_workload(120, seed=11, max_tokens=acceptance.MAX_TOKENS)


@pytest.fixture(scope="module")
def limits():  # type: ignore[no-untyped-def]
    return acceptance.sized_limits(BODIES)


def test_all_in_hand_at_the_start_is_acceptance_ideal(limits) -> None:  # type: ignore[no-untyped-def]
    ideal = acceptance.ideal_makespan(BODIES, limits, "fast")
    assert ideal_after_arrivals(BODIES, limits, "fast", [0.0] * len(BODIES)) == ideal


def test_late_arrivals_are_admitted_no_sooner(limits) -> None:  # type: ignore[no-untyped-def]
    ideal = acceptance.ideal_makespan(BODIES, limits, "fast")
    # the burst on the wire over 3 s: the full bucket admits each as it comes, so the
    # minimum moves by a little, not by 3 s
    spread = [3.0 * i / len(BODIES) for i in range(len(BODIES))]
    late = ideal_after_arrivals(BODIES, limits, "fast", spread)
    assert ideal <= late < ideal + 1.0
    # one request sent after everything else would have finished ends its own time later
    last = [0.0] * (len(BODIES) - 1) + [200.0]
    base, per_token = acceptance.VARIANTS["fast"]
    end = ideal_after_arrivals(BODIES, limits, "fast", last)
    answer = acceptance.demand(BODIES)[-1][2]
    assert end == pytest.approx(200.0 + base + per_token * answer)

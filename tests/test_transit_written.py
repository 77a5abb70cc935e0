"""`Transit.written`: a request the transport wrote is seen by the readings of requests
written `WIRE` after it; without word from the transport, nothing changes."""

from __future__ import annotations

import math
import random

import pytest

from asyncthrift.scheduling.bucket import Cost, ServerView, TokenBucket
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.transit import HORIZON, WIRE, Transit


def burst(transit: Transit, n: int, at: float, first: int = 0) -> list[Cost]:
    """`n` requests of one request and 100 output tokens each, admitted at `at`."""
    marks = []
    for k in range(first, first + n):
        mark = Cost(k + 1.0, 0.0, (k + 1) * 100.0)
        transit.sent(mark, Cost(1.0, 0.0, 100.0), at)
        marks.append(mark)
    return marks


def test_requests_written_wire_before_a_request_count_as_seen_by_its_reading() -> None:
    transit = Transit()
    marks = burst(transit, 10, 0.0)
    for m in marks[:6]:
        transit.written(m, 0.1)
    mine = burst(transit, 1, 1.5, first=10)[0]
    transit.written(mine, 1.5)
    assert HORIZON < 1.5 and 1.5 - WIRE > 0.1
    # the four never written may still be held in this process: they count
    assert transit.before(mine, 1.5) == pytest.approx((4.0, 0.0, 400.0))


def test_without_word_from_the_transport_every_request_still_out_counts() -> None:
    transit = Transit()
    marks = burst(transit, 10, 0.0)
    mine = burst(transit, 1, 1.5, first=10)[0]
    assert transit.before(mine, 1.5) == pytest.approx((10.0, 0.0, 1_000.0))
    del marks


def test_a_request_written_within_wire_of_the_reading_request_still_counts() -> None:
    # it may reach the server after the later one (another connection, the network)
    transit = Transit()
    marks = burst(transit, 4, 0.0)
    mine = burst(transit, 1, 1.0, first=4)[0]
    for m in marks:
        transit.written(m, 1.2)
    transit.written(mine, 1.2 + WIRE * 0.9)
    assert transit.before(mine, 1.0) == pytest.approx((4.0, 0.0, 400.0))
    transit = Transit()
    marks = burst(transit, 4, 0.0)
    mine = burst(transit, 1, 1.0, first=4)[0]
    for m in marks:
        transit.written(m, 1.2)
    transit.written(mine, 1.2 + WIRE * 1.1)
    assert transit.before(mine, 1.0) == (0.0, 0.0, 0.0)


def test_a_request_not_yet_written_is_placed_at_its_admission() -> None:
    # its reading describes an instant after it reached the server, so after its admission
    transit = Transit()
    marks = burst(transit, 3, 0.0)
    transit.written(marks[0], 0.05)
    transit.written(marks[1], 0.8)
    mine = burst(transit, 1, 0.6, first=3)[0]
    assert transit.before(mine, 0.6) == pytest.approx((2.0, 0.0, 200.0))


def test_requests_admitted_after_but_written_wire_before_are_seen() -> None:
    # a burst whose first request waited for a connection while the rest went out: its
    # reading saw those (the caller counts everything sent after it; this takes them off)
    transit = Transit()
    marks = burst(transit, 8, 0.0)
    for k, m in enumerate(marks[1:]):
        transit.written(m, 0.1 + 0.01 * k)
    transit.written(marks[0], 1.0)
    assert transit.before(marks[0], 0.0) == pytest.approx((-7.0, 0.0, -700.0))
    # one written too close to it is not
    transit = Transit()
    marks = burst(transit, 3, 0.0)
    transit.written(marks[1], 0.2)
    transit.written(marks[2], 1.0 - WIRE / 2)
    transit.written(marks[0], 1.0)
    assert transit.before(marks[0], 0.0) == pytest.approx((-1.0, 0.0, -100.0))


def test_only_the_first_word_counts_and_unknown_marks_are_ignored() -> None:
    transit = Transit()
    marks = burst(transit, 2, 0.0)
    transit.written(marks[0], 0.1)
    transit.written(marks[0], 5.0)  # a redirect's second request proves nothing more
    transit.written(Cost(99.0, 0.0, 0.0), 0.1)
    mine = burst(transit, 1, 2.0, first=2)[0]
    assert transit.before(mine, 2.0) == pytest.approx((1.0, 0.0, 100.0))


def test_requests_kept_past_the_horizon_keep_when_they_were_written() -> None:
    # over 64 requests, so the horizon's window is pruned and the still-out move aside
    transit = Transit()
    marks = burst(transit, 100, 0.0)
    for m in marks[:70]:
        transit.written(m, 0.3)
    later = burst(transit, 1, 2.0, first=100)[0]
    for m in marks[70:]:
        transit.written(m, 2.2)  # written after they left the window
    transit.written(later, 2.1)
    mine = burst(transit, 1, 3.0, first=101)[0]
    transit.written(mine, 3.0)
    # all of them written WIRE before `mine` was: seen, past the horizon or not
    assert transit.before(mine, 3.0) == (0.0, 0.0, 0.0)
    last = burst(transit, 1, 3.1, first=102)[0]
    transit.written(last, 2.6)  # impossible order, read as no earlier than its admission
    assert transit.before(last, 3.1) == pytest.approx((1.0, 0.0, 100.0))  # `mine`, 3.0


def _burst_from_full(budget: LocalBudget) -> list[Cost]:
    """600 requests admitted at once from a full bucket of 600 per minute (10/s)."""
    return [budget.take(Cost(1, 0, 0), 0.0) for _ in range(600)]


def test_the_hold_credits_the_refill_since_the_written_burst_reached_the_server() -> None:
    # the burst was written by 1 s (its first request last): the server counted all of it by
    # 1 s + WIRE, and refilled from then on as the client does, whatever it wasted before
    proven = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(proven)
    for k, m in enumerate(marks[1:]):
        proven.written(m, 0.4 * k / 600)
    proven.written(marks[0], 1.0)
    view = ServerView(requests_limit=600, requests_remaining=9)  # as of its arrival
    proven.observe(view, marks[0], sent_at=0.0, now=5.0)
    assert proven.peek(5.0)[0] == pytest.approx(10.0 * (5.0 - 1.0 - WIRE))
    # without word from the transport nothing proves the withheld refill (the reading may
    # have missed the whole burst)
    blind = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(blind)
    blind.observe(view, marks[0], sent_at=0.0, now=5.0)
    assert blind.peek(5.0)[0] == pytest.approx(0.0)


def test_a_burst_not_all_written_credits_only_what_its_reading_proves() -> None:
    # one request of the burst still in this process: the reading's lower bound (9, less
    # that one, admitted after the request read) is all that is proven
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(budget)
    for m in marks[1:-1]:
        budget.written(m, 0.1)
    budget.written(marks[0], 1.0)
    view = ServerView(requests_limit=600, requests_remaining=9)
    budget.observe(view, marks[0], sent_at=0.0, now=5.0)
    assert budget.peek(5.0)[0] == pytest.approx(8.0)


def test_a_request_that_landed_unwritten_reached_the_server_by_its_answer() -> None:
    transit = Transit()
    transit.new_epoch(2, 0.0)
    marks = burst(transit, 3, 0.0)
    assert transit.departed(2) is None
    transit.written(marks[0], 0.2)
    transit.landed(marks[1], 2.0)  # its transport said nothing
    assert transit.departed(2) is None
    transit.written(marks[2], 0.3)
    assert transit.departed(2) == pytest.approx(2.0)
    transit.landed(marks[0], 3.0)  # a later answer of one written proves nothing later
    assert transit.departed(2) == pytest.approx(2.0)
    assert transit.refill_since_departed(2, 10.0, 4.0) == pytest.approx(20.0)
    assert transit.refill_since_departed(2, 10.0, 1.0) == 0.0
    assert transit.departed(0) is None  # no hold in that dimension


def test_no_epoch_or_one_past_straggle_proves_nothing() -> None:
    transit = Transit()
    marks = burst(transit, 2, 0.0)
    for m in marks:
        transit.written(m, 0.1)
    assert transit.departed(2) is None  # no hold began
    transit.new_epoch(2, 1.0)
    more = burst(transit, 2, 1.0, first=2)
    for m in more:
        transit.written(m, 1.1)
    assert transit.departed(2) == pytest.approx(1.1 + WIRE)
    burst(transit, 1, 1.0 + 10.5, first=4)  # past STRAGGLE: the epoch ended on its own
    assert transit.departed(2) is None
    assert transit.refill_since_departed(2, 10.0, 20.0) == 0.0


def test_a_take_far_below_the_cap_stays_out_of_the_epoch() -> None:
    # capacity 1,000 at 10/s: after the burst the level is 100 and nothing is on its way;
    # with the hold's 2 s and STRAGGLE's 10 s of refill it cannot reach the cap
    transit = Transit()
    transit.new_epoch(2, 0.0)
    marks = burst(transit, 9, 0.0)  # 900 output tokens
    for m in marks:
        transit.written(m, 0.1)
    low = Cost(10.0, 0.0, 1_000.0)
    transit.sent(low, Cost(1.0, 0.0, 100.0), 2.0, (None, None, (0.0, 10.0, 1_000.0)))
    assert transit.departed(2) == pytest.approx(0.1 + WIRE)
    # near the cap (or with the burst still on its way) it joins, and the proof waits for it
    transit = Transit()
    transit.new_epoch(2, 0.0)
    marks = burst(transit, 9, 0.0)
    for m in marks:
        transit.written(m, 0.1)
    transit.sent(low, Cost(1.0, 0.0, 100.0), 2.0, (None, None, (870.0, 10.0, 1_000.0)))
    assert transit.departed(2) is None
    transit.written(low, 2.1)
    assert transit.departed(2) == pytest.approx(2.1 + WIRE)
    # a burst not yet written counts as on its way: the next take of it joins
    transit = Transit()
    transit.new_epoch(2, 0.0)
    marks = burst(transit, 9, 0.0)
    transit.sent(low, Cost(1.0, 0.0, 100.0), 0.0, (None, None, (0.0, 10.0, 1_000.0)))
    for m in marks:
        transit.written(m, 0.1)
    assert transit.departed(2) is None  # waits for `low`


def test_a_take_during_the_hold_does_not_delay_the_credit() -> None:
    # the burst left by 1 s; a small request admitted at 4.9 s (the level near empty) is
    # still in this process at the first answer (5 s): the refill since 1.5 s is proven
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(budget)
    for m in marks:
        budget.written(m, 1.0)
    budget.give(Cost(1, 0, 0), 4.0)  # one came back (released unsent, say)
    late = budget.take(Cost(1, 0, 0), 4.9)
    view = ServerView(requests_limit=600, requests_remaining=0)
    budget.observe(view, marks[0], sent_at=0.0, now=5.0)
    assert budget.peek(5.0)[0] == pytest.approx(10.0 * (5.0 - 1.0 - WIRE))
    del late


@pytest.mark.parametrize("seed", range(20))
def test_the_credited_level_never_runs_ahead_of_the_server(seed: int) -> None:
    # a server full at its cap; a burst of 600 written over 1.2 s, each reaching the server
    # up to WIRE after its write (in any order); the first answer at 3 s reads the server
    # as of its own arrival. From then on the client's level is never above the server's.
    rng = random.Random(seed)
    limits = Limits(rpm=600, period=60)
    server = TokenBucket(600, 60, 0.0)
    budget = LocalBudget(limits, now=0.0)
    marks = _burst_from_full(budget)
    writes = [rng.uniform(0.0, 1.2) for _ in marks]
    arrivals = sorted((w + rng.uniform(0.0, WIRE), k) for k, w in enumerate(writes))
    read = marks[0]
    for at, k in arrivals:
        server.take(1, at)
        if k == 0:
            remaining = math.floor(server.level(at))
    for m, w in sorted(zip(marks, writes, strict=True), key=lambda mw: mw[1]):
        budget.written(m, w)
    view = ServerView(requests_limit=600, requests_remaining=remaining)
    budget.observe(view, read, sent_at=0.0, now=3.0)
    for t in (3.0, 3.5, 5.0, 10.0):
        assert budget.peek(t)[0] <= server.level(t) + 1e-6
    assert budget.peek(3.0)[0] >= 10.0 * (3.0 - max(writes) - WIRE) - 1e-6


def test_a_burst_arriving_a_whole_wire_after_its_writes_is_credited_no_more() -> None:
    # the worst case the margin covers: the whole burst written at 1.2 s and counted by the
    # server WIRE later, its bucket wasting refill at the cap until then
    server = TokenBucket(600, 60, 0.0)
    server.take(600, 1.2 + WIRE)
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(budget)
    for m in marks:
        budget.written(m, 1.2)
    view = ServerView(requests_limit=600, requests_remaining=0)
    budget.observe(view, marks[0], sent_at=0.0, now=3.0)
    assert budget.peek(3.0)[0] == pytest.approx(server.level(3.0))


@pytest.mark.parametrize("seed", range(20))
def test_takes_during_the_hold_never_let_the_level_run_ahead(seed: int) -> None:
    # as above, and five requests given back unsent at 1.5 s (the server never saw them)
    # go again during the hold, each reaching the server up to WIRE after its write, some
    # still in this process at the first answer (3 s)
    rng = random.Random(seed)
    server = TokenBucket(600, 60, 0.0)
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0)
    marks = _burst_from_full(budget)
    writes = [rng.uniform(0.0, 1.2) for _ in marks]
    arrivals = [(w + rng.uniform(0.0, WIRE), k) for k, w in enumerate(writes)]
    for m, w in zip(marks, writes, strict=True):
        budget.written(m, w)
    budget.give(Cost(5, 0, 0), 1.5)
    arrivals = [(at, k) for at, k in arrivals if k >= 5]  # the five never went
    for n in range(5):
        at = rng.uniform(1.5, 2.9)
        mark = budget.take(Cost(1, 0, 0), at)
        written = at + rng.uniform(0.0, 0.5)
        if written < 3.0:
            budget.written(mark, written)
        arrivals.append((written + rng.uniform(0.0, WIRE), 600 + n))
    pending = sorted(arrivals)
    remaining = 0
    while pending and pending[0][0] <= 3.0:
        at, k = pending.pop(0)
        server.take(1, at)
        if k == 5:
            remaining = math.floor(server.level(at))
    view = ServerView(requests_limit=600, requests_remaining=remaining)
    budget.observe(view, marks[5], sent_at=0.0, now=3.0)
    for t in (3.0, 3.2, 3.5, 4.0, 5.0, 10.0):
        while pending and pending[0][0] <= t:
            server.take(1, pending.pop(0)[0])
        # what is still on its way will be taken by the server too
        assert budget.peek(t)[0] <= server.level(t) - len(pending) + 1e-6

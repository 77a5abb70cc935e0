"""The token bucket and the three-dimensional budget: pure arithmetic, explicit clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncthrift.scheduling.bucket import ZERO, Cost, ServerView, TokenBucket
from asyncthrift.scheduling.budget import TOKEN_ROUNDING, LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.transit import HORIZON


def test_bucket_starts_full_and_refills_continuously() -> None:
    b = TokenBucket(600, 60, now=0.0)
    assert b.level(0.0) == 600
    b.take(600, 0.0)
    assert b.level(0.0) == 0
    assert b.level(1.0) == pytest.approx(10.0)
    assert b.level(1000.0) == 600  # never above capacity


def test_wait_is_deficit_over_rate() -> None:
    b = TokenBucket(600, 60, now=0.0)
    b.take(600, 0.0)
    assert b.wait(25, 0.0) == pytest.approx(2.5)
    assert b.wait(25, 2.5) == 0.0  # exactly when the timer would fire: no re-arm for an ulp


def test_debt_is_paid_back_before_anything_else() -> None:
    b = TokenBucket(100, 10, now=0.0)
    b.take(150, 0.0)
    assert b.level(0.0) == -50
    assert b.wait(10, 0.0) == pytest.approx(6.0)


@given(
    st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=20),
    st.floats(min_value=0.0, max_value=100.0),
)
def test_refunds_restore_the_bucket_exactly(amounts: list[float], t: float) -> None:
    b = TokenBucket(1000, 60, now=0.0)
    b.take(300, 0.0)
    before = b.level(t)
    for a in amounts:
        b.take(a, t)
    for a in amounts:
        b.give(a, t)
    assert b.level(t) == pytest.approx(before, abs=1e-9)


def test_clamp_never_raises_the_level() -> None:
    b = TokenBucket(100, 60, now=0.0)
    b.take(80, 0.0)
    assert not b.clamp(50, 0.0)
    assert b.level(0.0) == 20
    assert b.clamp(5, 0.0)
    assert b.level(0.0) == 5


def test_budget_waits_for_the_slowest_dimension() -> None:
    budget = LocalBudget(Limits(rpm=60, itpm=6000, otpm=600), now=0.0)
    budget.take(Cost(60, 6000, 600), 0.0)
    # 1 req needs 1 s, 300 input tokens need 3 s, 50 output tokens need 5 s
    assert budget.wait(Cost(1, 300, 50), 0.0) == pytest.approx(5.0)


def test_unlimited_dimensions_never_wait() -> None:
    budget = LocalBudget(Limits(rpm=10), now=0.0)
    budget.take(Cost(10, 10**9, 10**9), 0.0)
    assert budget.wait(Cost(0, 10**9, 10**9), 0.0) == 0.0
    assert budget.too_large(Cost(1, 10**12, 10**12)) is None


def test_too_large_says_what_to_change() -> None:
    budget = LocalBudget(Limits(rpm=10, itpm=1000, otpm=500), now=0.0)
    assert budget.too_large(Cost(1, 999, 500)) is None
    reason = budget.too_large(Cost(1, 10, 501))
    assert reason is not None and "max_tokens" in reason and "otpm" in reason
    reason = budget.too_large(Cost(1, 2000, 1))
    assert reason is not None and "prompt" in reason


def test_block_until_holds_everything_and_never_shortens() -> None:
    budget = LocalBudget(Limits(rpm=100), now=0.0)
    budget.block_until(2.5)
    budget.block_until(1.0)
    assert budget.wait(Cost(1, 0, 0), 0.0) == pytest.approx(2.5)
    assert budget.wait(Cost(1, 0, 0), 2.5) == 0.0


def test_observe_lowers_only_to_the_highest_consistent_reading() -> None:
    budget = LocalBudget(Limits(rpm=100, period=60), now=0.0)
    mark = budget.take(Cost(1, 0, 0), 0.0)  # ours
    for _ in range(9):
        budget.take(Cost(1, 0, 0), 0.0)  # sent after ours: the server may or may not have them
    # A lone consumer: the server saw ours (99) or all ten (90) -> no change either way.
    assert not budget.observe(ServerView(requests_limit=100, requests_remaining=99), mark, 0.0, 0.0)
    assert budget.peek(0.0)[0] == pytest.approx(90)
    assert not budget.observe(ServerView(requests_limit=100, requests_remaining=90), mark, 0.0, 0.0)
    # Someone else spent: the server says 59. It saw ours only (59 - 9 = 50) or all ten (59):
    # lower to 59, what every consistent reading allows, and no further.
    assert budget.observe(ServerView(requests_limit=100, requests_remaining=59), mark, 0.0, 0.0)
    assert budget.peek(0.0)[0] == pytest.approx(59)
    # A reading below what any order explains is somebody else's spending, all of it.
    assert budget.observe(ServerView(requests_limit=100, requests_remaining=20), mark, 0.0, 0.0)
    assert budget.peek(0.0)[0] == pytest.approx(20)


def test_observe_takes_the_highest_reading_over_the_write_window() -> None:
    budget = LocalBudget(Limits(rpm=60, period=60), now=0.0, hold_bursts=False)  # 1 per second
    mark = budget.take(Cost(1, 0, 0), 0.0)
    budget.take(Cost(30, 0, 0), 1.0)
    # written anywhere in [0, 2]: read at 0..1, 59 - the 30 sent at 1 + 2..1 of refill = 31..30;
    # read from 1 on, 59 + up to 1 of refill = 60. Local is 29 + 2 = 31: no change
    assert not budget.observe(ServerView(requests_limit=60, requests_remaining=59), mark, 0.0, 2.0)
    assert budget.peek(2.0)[0] == pytest.approx(31)
    # another consumer took 40 meanwhile: every reading drops by 40; the highest is 20
    assert budget.observe(ServerView(requests_limit=60, requests_remaining=19), mark, 0.0, 2.0)
    assert budget.peek(2.0)[0] == pytest.approx(20)


def test_a_burst_admitted_at_one_instant_is_not_read_as_one_requests_refund() -> None:
    # Twelve requests admitted at the same instant, each reserving 512 output tokens. The
    # answer of one of them, read at completion, already has its own unused output refunded
    # (it produced 80): the server has 10_000 - 12 * 512 + 432. Only that request's 432 comes
    # back here later; the others' reservations are charged on both sides. Read as everything
    # taken at that instant, the ceiling came 11 reservations (5,632 tokens) too low.
    limits = Limits(otpm=10_000, period=60)
    budget = LocalBudget(limits, now=0.0, hold_bursts=False)
    for _ in range(11):
        budget.take(Cost(0, 0, 512), 0.0)
    mark = budget.take(Cost(0, 0, 512), 0.0)  # the last of the burst: its mark has all 12
    server = 10_000 - 12 * 512 + (512 - 80)
    view = ServerView(output_limit=10_000, output_remaining=server)
    budget.observe(view, mark, 0.0, 0.0, own=Cost(0, 0, 512))
    level = budget.peek(0.0)[2]
    # at most this request's refund (still to come here) and the token rounding below
    assert level >= server - 512 - TOKEN_ROUNDING
    assert level <= 10_000 - 12 * 512


def test_a_refused_requests_refund_is_no_change_the_server_saw() -> None:
    # B goes out at 0; A at 0.1 and is refused at 0.2 (the server never charged its 4,000),
    # its reservation given back. B's answer at 0.3 reads 5,001 left: someone else spent.
    # B's reading may be of any instant in [0, 0.3]; had A's refund stayed in the history,
    # an instant between A's take and its refund would credit the server with 4,000 more.
    limits = Limits(otpm=10_000, period=60)
    budget = LocalBudget(limits, now=0.0, hold_bursts=False)
    b = budget.take(Cost(0, 0, 500), 0.0)
    a_cost = Cost(0, 0, 4_000)
    a = budget.take(a_cost, 0.1)
    # (the server refused A for its requests limit: its output level was still high)
    refusal = ServerView(output_limit=10_000, output_remaining=9_501)
    budget.observe(refusal, a, 0.1, 0.2, uncharged=Cost(0, 0, 4_000), refused=True, own=a_cost)
    budget.give(Cost(0, 0, 4_000), 0.2)
    answer = ServerView(output_limit=10_000, output_remaining=5_001)
    budget.observe(answer, b, 0.0, 0.3, own=Cost(0, 0, 500))
    refill = 0.3 * 10_000 / 60
    assert budget.peek(0.3)[2] <= 5_001 + refill + 1e-6


@pytest.mark.parametrize("reported", [89_000, 90_000], ids=["rounded-down", "rounded-nearest"])
def test_observe_reads_rounded_token_remaining_on_the_safe_side(reported: int) -> None:
    budget = LocalBudget(Limits(itpm=100_000), now=0.0)
    mark = budget.take(Cost(0, 10_400, 0), 0.0)
    # the exact remaining is 89_600, which a server may report as 89_000 or 90_000: the local
    # level is read 500 lower, which is at or below the truth either way
    view = ServerView(input_limit=100_000, input_remaining=reported)
    budget.observe(view, mark, 0.0, 0.0)
    level = budget.peek(0.0)[1]
    assert level == pytest.approx(reported - TOKEN_ROUNDING)
    assert 89_600 - 1_500 <= level <= 89_600


def test_a_cold_budget_sends_one_request_and_reads_the_level_from_its_answer() -> None:
    limits = Limits(rpm=60, itpm=60_000, otpm=6_000, period=60)
    budget = LocalBudget(limits, now=0.0, cold_start=True)
    cost = Cost(1, 1_000, 500)
    assert budget.wait(cost, 0.0) == 0.0
    mark = budget.take(cost, 0.0)  # the probe
    # the rest waits for its answer (a tenth of the period at most)
    assert budget.wait(cost, 0.0) == pytest.approx(5.0)
    # an earlier run left the key nearly drained: 10 requests, 20 000 and 1 000 tokens
    view = ServerView(60, 10, 60_000, 20_000, 6_000, 1_000)
    assert budget.observe(view, mark, 0.0, 0.1)
    levels = budget.peek(0.1)
    assert levels[0] == pytest.approx(10 - 1)  # the probe itself may be unseen
    assert levels[1] <= 20_000 - 500 - 1_000 + 100 + 1e-6  # and the reading may be 500 high
    assert levels[2] <= 1_000 - 500 - 500 + 10 + 1e-6
    assert budget.wait(Cost(1, 0, 0), 0.1) == 0.0  # warm now: the queue goes on at once


def test_a_cold_probe_that_never_answers_lets_one_more_go() -> None:
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0, cold_start=True)
    budget.take(Cost(1, 0, 0), 0.0)
    assert budget.wait(Cost(1, 0, 0), 4.9) == pytest.approx(0.1)  # 5 s at most
    assert budget.wait(Cost(1, 0, 0), 5.0) == 0.0
    budget.take(Cost(1, 0, 0), 5.0)  # the second probe
    assert budget.wait(Cost(1, 0, 0), 5.0) == pytest.approx(5.0)


def test_a_cold_probe_given_back_unsent_lets_another_go_at_once() -> None:
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0, cold_start=True)
    budget.take(Cost(1, 0, 0), 0.0)
    budget.give(Cost(1, 0, 0), 0.0)  # cancelled before it was sent
    assert budget.wait(Cost(1, 0, 0), 0.0) == 0.0


def test_while_the_probe_is_out_the_rest_go_at_the_refills_pace() -> None:
    # all three limits known: 60 requests, 60 000 and 6 000 tokens a second
    limits = Limits(rpm=3_600, itpm=3_600_000, otpm=360_000, period=60)
    budget = LocalBudget(limits, now=0.0, cold_start=True)
    cost = Cost(1, 500, 50)
    budget.take(cost, 0.0)  # the probe
    # the next fits the refill since the start once the probe's own charge is paid back
    assert budget.wait(cost, 0.0) == pytest.approx(2 / 60)
    assert budget.wait(cost, 2 / 60) == 0.0
    budget.take(cost, 2 / 60)
    # arrivals at half the limit's rate never wait while the answer is out
    for k in range(2, 10):
        assert budget.wait(cost, k / 30) == 0.0
        budget.take(cost, k / 30)
    budget.take(cost, 1 / 3)  # 11 out at 1/3 s, of the 20 the refill has paid for
    # a burst beyond the refill waits for it, a large one for the answer (5 s at most)
    assert budget.wait(Cost(30, 15_000, 1_500), 1 / 3) == pytest.approx(41 / 60 - 1 / 3)
    assert budget.wait(Cost(400, 200_000, 20_000), 1 / 3) == pytest.approx(5.0 - 1 / 3)
    # output is paced too: a large max_tokens waits for its refill
    assert budget.wait(Cost(1, 500, 3_000), 0.4) == pytest.approx((11 * 50 + 3_000) / 6_000 - 0.4)
    # the answer ends the cold start: the bucket (full, as the reading says) takes the burst
    view = ServerView(3_600, 3_600, 3_600_000, 3_600_000, 360_000, 360_000)
    budget.observe(view, Cost(1, 500, 50), 0.0, 0.4)
    assert budget.wait(Cost(400, 200_000, 20_000), 0.4) == 0.0


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.05),  # gap to the next arrival
            st.integers(min_value=1, max_value=4_000),  # input tokens
            st.integers(min_value=1, max_value=2_000),  # max_tokens
        ),
        min_size=2,
        max_size=60,
    )
)
def test_a_cold_start_never_sends_more_than_the_refill_beyond_its_probe(
    arrivals: list[tuple[float, int, int]],
) -> None:
    # whatever the server's level was, it refills at least `rate x elapsed`: what we send
    # while the probe is out stays within that (beyond the probe, sent blind by design)
    limits = Limits(rpm=600, itpm=600_000, otpm=60_000, period=60)
    rates = (10.0, 10_000.0, 1_000.0)
    budget = LocalBudget(limits, now=0.0, cold_start=True)
    now, sent = 0.0, [0.0, 0.0, 0.0]
    probe: Cost | None = None
    for gap, tokens, max_tokens in arrivals:
        now += gap
        cost = Cost(1, tokens, max_tokens)
        now += budget.wait(cost, now)
        if now >= 5.0:
            break  # the probe's wait is over: one more goes blind (tested above)
        budget.take(cost, now)
        probe = probe or cost
        for i in range(3):
            sent[i] += cost[i]
            if sent[i] > probe[i]:
                assert sent[i] <= rates[i] * now * (1 + 1e-9) + 1e-6


def test_a_budget_silent_for_a_period_is_cold_again() -> None:
    budget = LocalBudget(Limits(rpm=600, period=60), now=0.0, cold_start=True)
    mark = budget.take(Cost(1, 0, 0), 0.0)
    budget.observe(ServerView(requests_limit=600, requests_remaining=599), mark, 0.0, 0.1)
    budget.take(Cost(1, 0, 0), 30.0)
    assert budget.wait(Cost(1, 0, 0), 30.0) == 0.0  # warm: heard from the server 30 s ago
    budget.take(Cost(1, 0, 0), 61.0)  # silent for a whole period: this one goes alone
    assert budget.wait(Cost(1, 0, 0), 61.0) > 0.0


def test_limits_learnt_from_headers_start_from_the_lowest_reading() -> None:
    budget = LocalBudget(Limits(period=60), now=0.0, cold_start=True)
    mark = budget.take(Cost(1, 1_000, 100), 0.0)
    view = ServerView(10, 3, 30_000, 12_000, 8_000, 7_000)
    assert budget.observe(view, mark, 0.0, 0.0)
    assert budget.peek(0.0) == pytest.approx((2, 10_500, 6_400))
    # and the next take holds its refill until the server answers it (a burst from the top)
    budget.take(Cost(1, 0, 0), 0.0)
    bucket = budget.buckets[0]
    assert bucket is not None and bucket.held


def test_a_burst_from_full_credits_no_refill_until_the_server_answers() -> None:
    budget = LocalBudget(Limits(rpm=60, period=60), now=0.0)  # 1 per second
    first = budget.take(Cost(1, 0, 0), 0.0)
    for _ in range(59):
        budget.take(Cost(1, 0, 0), 0.0)
    # the burst may leave the process late; until the server answers, no refill is credited
    assert budget.peek(5.0)[0] == pytest.approx(0.0)
    assert budget.wait(Cost(1, 0, 0), 5.0) > 0
    # the first answer, at 5 s, cannot say when the server saw the burst: the refill withheld
    # so far is not credited (the server may have wasted it at its cap) ...
    view = ServerView(requests_limit=60, requests_remaining=57)
    budget.observe(view, first, sent_at=0.0, now=5.0)
    assert budget.peek(5.0)[0] == pytest.approx(0.0)
    # ... and refill flows again from now on
    assert budget.peek(6.0)[0] == pytest.approx(1.0)


def test_the_hold_ends_only_with_an_answer_to_the_burst() -> None:
    budget = LocalBudget(Limits(rpm=60, period=60), now=0.0)
    older = Cost(0, 0, 0)  # a mark from before the burst
    for _ in range(60):
        budget.take(Cost(1, 0, 0), 0.0)
    budget.observe(ServerView(), older, sent_at=0.0, now=3.0)
    assert budget.peek(4.0)[0] == pytest.approx(0.0)  # still held


def test_a_hold_expires_if_the_server_never_answers() -> None:
    budget = LocalBudget(Limits(rpm=60, period=60), now=0.0)
    budget.take(Cost(60, 0, 0), 0.0)
    assert budget.peek(10.0)[0] == pytest.approx(0.0)
    assert budget.peek(31.0)[0] == pytest.approx(31.0)  # after period/2 all refill counts


def test_observe_adopts_a_lower_or_unknown_server_limit() -> None:
    budget = LocalBudget(Limits(rpm=1000), now=0.0)
    mark = budget.take(Cost(1, 100, 10), 0.0)
    view = ServerView(
        requests_limit=50, requests_remaining=49, output_limit=8000, output_remaining=7000
    )
    assert budget.observe(view, mark, 0.0, 0.0)
    req, _inp, out = budget.buckets
    assert req is not None and req.capacity == 50
    assert out is not None and out.capacity == 8000 and out.level(0.0) <= 7000 + 500
    assert budget.buckets[1] is None  # no input header: stays unlimited


def test_limits_reject_bad_values_with_a_helpful_message() -> None:
    with pytest.raises(ValueError, match="positive"):
        Limits(rpm=-1)
    with pytest.raises(TypeError, match="positive number or None"):
        Limits(rpm="50")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Limits(rpm=math.inf)
    with pytest.raises(ValueError, match="period"):
        Limits(rpm=1, period=0)


def test_too_large_follows_a_limit_the_server_lowers() -> None:
    budget = LocalBudget(Limits(itpm=100_000, otpm=10_000), now=0.0)
    assert budget.too_large(Cost(1, 60_000, 8_000)) is None
    mark = budget.take(Cost(1, 100, 10), 0.0)
    view = ServerView(input_limit=50_000, input_remaining=49_000)
    assert budget.observe(view, mark, 0.0, 0.0)
    reason = budget.too_large(Cost(1, 60_000, 8_000))
    assert reason is not None and "itpm" in reason and "50,000" in reason
    # a limit learnt for a dimension we had as unlimited counts too
    budget.observe(ServerView(requests_limit=5, requests_remaining=4), mark, 0.0, 0.0)
    assert budget.too_large(Cost(6, 0, 0)) is not None


def test_an_answer_without_headers_ends_the_hold_crediting_nothing_unproven() -> None:
    budget = LocalBudget(Limits(rpm=60, period=60), now=0.0)
    mark = budget.take(Cost(1, 0, 0), 0.0)  # the burst from full starts the hold
    budget.take(Cost(59, 0, 0), 0.0)
    assert budget.buckets[0] is not None and budget.buckets[0].held
    assert not budget.observe(ServerView(), mark, sent_at=0.0, now=3.0)
    assert not budget.buckets[0].held
    # the 3 s withheld before the answer are not credited; refill runs from the answer on
    assert budget.peek(3.0)[0] == pytest.approx(0.0)
    assert budget.peek(5.0)[0] == pytest.approx(2.0)


def _share_simulation(
    foreign_per_s: float, *, server_start: float = 600.0, seconds: float = 60.0
) -> tuple[LocalBudget, int]:
    """A client on a key (600 rpm, 10/s) whose server another consumer also spends from.

    Every 10 ms: the other consumer spends its share, the client sends whatever its budget
    admits (one request at a time, answered at once with the server's `-remaining`, or a
    429 that blocks the key for a second, as the client does with `retry-after`). Returns
    the client's budget and how many of its requests the server would have refused (level
    below zero) in the second half, after the estimate had time to learn.
    """
    limits = Limits(rpm=600, period=60)
    server = TokenBucket(600, 60, 0.0, level=server_start)
    budget = LocalBudget(limits, 0.0, hold_bursts=False)
    refused = 0
    step = 0.01
    for k in range(int(seconds / step)):
        now = k * step
        server.take(foreign_per_s * step, now)
        server.give(0.0, now)
        while budget.wait(Cost(1, 0, 0), now) <= 0.0:
            mark = budget.take(Cost(1, 0, 0), now)
            server.take(1, now)
            # the server reports whole requests, as the API does (rounded down)
            view = ServerView(requests_limit=600, requests_remaining=max(0, server.level(now) // 1))
            if server.level(now) < -1e-6:  # the client admits to within float rounding
                refused += now > seconds / 2
                server.give(1, now)  # a 429 is not charged, and blocks the key for a second
                view = ServerView(requests_limit=600, requests_remaining=server.level(now) // 1)
                budget.observe(view, mark, now, now, refused=True)
                budget.block_until(now + 1.0)
                continue
            budget.observe(view, mark, now, now)
    return budget, refused


def test_a_shared_key_is_learnt_and_refills_at_the_share_left_to_us() -> None:
    # 30 % of the refill; the share is learnt from gaps beyond the write window only, so
    # give it 45 s before counting refusals
    budget, refused = _share_simulation(foreign_per_s=3.0, seconds=90.0)
    bucket = budget.buckets[0]
    assert bucket is not None
    assert bucket.rate == pytest.approx(7.0, rel=0.1)
    assert refused == 0


def test_a_lone_consumer_keeps_the_whole_refill() -> None:
    budget, refused = _share_simulation(foreign_per_s=0.0)
    bucket = budget.buckets[0]
    assert bucket is not None and bucket.rate == pytest.approx(10.0, rel=1e-3)
    assert refused == 0


def test_a_bucket_found_drained_is_a_step_not_a_rate() -> None:
    # someone spent everything just before we started, then stopped: after the first
    # answer the client must come back to the whole refill, not keep a share for them
    budget, refused = _share_simulation(foreign_per_s=0.0, server_start=0.0)
    bucket = budget.buckets[0]
    assert bucket is not None and bucket.rate > 9.5
    assert refused == 0


def test_refilled_counts_what_the_bucket_credited_never_more_than_the_rate() -> None:
    budget = LocalBudget(Limits(rpm=60, period=60), now=0.0, hold_bursts=False)  # 1 per second
    before = budget.refilled(0.0)[0]
    for _ in range(60):
        budget.take(Cost(1, 0, 0), 0.0)  # a burst of the whole capacity
    budget.take(Cost(1, 0, 0), 5.0)
    after = budget.refilled(10.0)[0]
    assert before is not None and after is not None
    assert after - before == pytest.approx(10.0)  # 61 spent, 10 s of refill credited
    assert budget.refilled(10.0)[1] is None  # unlimited dimensions say so


def test_a_token_count_no_rounding_gives_makes_the_readings_exact() -> None:
    budget = LocalBudget(Limits(itpm=100_000), now=0.0)
    mark = budget.take(Cost(0, 10_400, 0), 0.0)
    budget.observe(ServerView(input_limit=100_000, input_remaining=89_600), mark, 0.0, 0.0)
    assert budget.peek(0.0)[1] == pytest.approx(89_600)  # not read 500 low: it is exact
    mark = budget.take(Cost(0, 9_600, 0), 0.0)
    budget.observe(ServerView(input_limit=100_000, input_remaining=79_000), mark, 0.0, 0.0)
    assert budget.peek(0.0)[1] == pytest.approx(79_000)  # and stays exact


def test_a_cold_start_reads_a_streams_own_charge_as_seen() -> None:
    limits = Limits(otpm=10_001, period=600)
    cost = Cost(1, 0, 1_000)
    for seen, expected in ((ZERO, 8_001), (cost, 9_001)):
        budget = LocalBudget(limits, now=0.0, cold_start=True)
        mark = budget.take(cost, 0.0)
        view = ServerView(output_limit=10_001, output_remaining=9_001)
        budget.observe(view, mark, 0.0, 0.0, seen=seen)
        assert budget.peek(0.0)[2] == pytest.approx(expected)


def test_a_reading_from_early_in_a_long_flight_is_not_clamped_by_its_own_reservation() -> None:
    # a request out for 3 s (an answer of seconds) whose headers are as of its admission:
    # they show its whole max_tokens charged, as our level does until it is settled; only a
    # reading from its last `HORIZON` seconds (headers as of completion) may have its unused
    # output refunded already
    budget = LocalBudget(Limits(otpm=10_000, period=1e9), now=0.0, hold_bursts=False)
    mark = budget.take(Cost(1, 10, 999), 0.0)
    view = ServerView(output_limit=10_000, output_remaining=9_001)  # as of admission
    budget.observe(view, mark, sent_at=0.0, now=3.0)
    assert budget.peek(3.0)[2] == pytest.approx(9_001)
    # the same reading of a request out for less than `HORIZON`: it may be as of completion
    short = LocalBudget(Limits(otpm=10_000, period=1e9), now=0.0, hold_bursts=False)
    mark = short.take(Cost(1, 10, 999), 0.0)
    short.observe(view, mark, sent_at=0.0, now=HORIZON / 2)
    assert short.peek(HORIZON / 2)[2] == pytest.approx(9_001 - 999)

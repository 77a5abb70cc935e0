"""Requests abandoned after they were sent, against a server that finishes and charges them
and one that stops them (virtual time; the rule is `Reservation.abandon`'s).

The API's documentation is silent on what becomes of a non-streamed request whose client
went away, so the client must be right under both: keep the request and input charge, keep
the output reservation until the answer would have completed, then give back only what the
answer cannot have used and the headers seen since do not contradict.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any, Literal

import httpx2
import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.pipeline._answer_times import AnswerTimes
from asyncthrift.scheduling.bucket import Cost, ServerView, TokenBucket
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.scheduler import Gate
from tests.fake_api import FakeAPI, error, ok, sse

pytestmark = pytest.mark.looptime

MODEL = "claude-sonnet-4-6"


# -- AnswerTimes -------------------------------------------------------------------------------


async def test_answer_times_fit_fixed_latency_plus_time_per_token() -> None:
    times = AnswerTimes()
    rng = random.Random(1)
    for _ in range(200):
        tokens = rng.randint(40, 120)
        times.observe((0.2 + 0.001 * tokens) * rng.uniform(0.9, 1.1), tokens, 1024)
    assert times.longest(1024) == 120
    assert times.longest(64) == 64
    # an upper envelope: never below the slowest answer of that length seen, not far above
    assert 0.32 * 1.1 <= times.duration(120) <= 0.32 * 1.1 * 1.25
    assert times.duration(1000) > times.duration(120)


async def test_answer_times_are_conservative_when_little_was_seen() -> None:
    times = AnswerTimes()
    assert times.longest(500) == 500  # nothing seen: the whole max_tokens
    assert times.duration(500) >= 10.0
    times.observe(1.0, 50, 1000)
    assert times.longest(1000) == 100  # one answer says little: twice the longest seen
    assert times.duration(100) >= 2.0  # all of its time counted per token
    for _ in range(10):
        times.observe(1.0, 50, 50)  # cut at max_tokens: answers are not bounded here
    assert times.longest(1000) == 1000


# -- the rule, on one budget -----------------------------------------------------------------


def learnt(times: AnswerTimes, tokens: int = 100, seconds: float = 1.0) -> AnswerTimes:
    for _ in range(20):
        times.observe(seconds, tokens, 1000)
    return times


async def test_abandoned_output_is_held_until_the_answer_would_end_then_all_but_the_longest() -> (
    None
):
    loop = asyncio.get_running_loop()
    budget = LocalBudget(Limits(otpm=10_000, period=1e9), loop.time())
    gate = Gate([budget])
    r = await gate.acquire(Cost(1, 10, 1000))
    times = learnt(AnswerTimes())
    keep = times.longest(1000)
    until = r.sent_at + times.duration(keep)
    r.abandon(until, lambda: times.longest(1000))
    assert gate.held == 0  # settled now: nobody waits for the deferred part
    await asyncio.sleep(until - loop.time() - 0.01)
    assert budget.peek(loop.time())[2] == pytest.approx(9_000, abs=0.01)
    await asyncio.sleep(0.02)
    assert budget.peek(loop.time())[2] == pytest.approx(10_000 - 100, abs=0.01)
    r.abandon(until, lambda: 0.0)  # exactly once
    r.release(sent=False)
    await asyncio.sleep(1)
    assert budget.peek(loop.time())[2] == pytest.approx(10_000 - 100, abs=0.01)


async def test_a_header_lowering_meanwhile_is_not_given_back_twice() -> None:
    # the server refunded the unused output (it stopped the answer), and a reading taken
    # after that pulled the local level down to the server's: the deferred refund must
    # leave out what that reading already took
    loop = asyncio.get_running_loop()
    budget = LocalBudget(Limits(otpm=10_000, period=1e9), loop.time(), hold_bursts=False)
    gate = Gate([budget])
    r = await gate.acquire(Cost(1, 10, 1000))
    r.abandon(loop.time() + 5.0, lambda: 100.0)
    await asyncio.sleep(1)  # the other request is admitted later (refill: nil at this period)
    other = await gate.acquire(Cost(1, 10, 500))
    # the other answer's headers: the server has less left than our 10_000 - 1_000 - 500 =
    # 8_500 (it refunded our abandoned output, and someone else spent more than that); the
    # reading lowers the local level, by less than the 900 the deferred refund would give
    view = ServerView(output_limit=10_000, output_remaining=8_201)
    budget.observe(view, other.mark, other.sent_at, loop.time())
    observed = budget.peek(loop.time())[2]
    assert observed is not None
    lowered = 8_500 - observed
    assert 0 < lowered < 900
    other.settle(10, 500)
    await asyncio.sleep(6)
    # given back: 900 (all but the longest answer), less what the reading took off
    assert budget.peek(loop.time())[2] == pytest.approx(observed + 900 - lowered, abs=1)


async def test_closing_drops_deferred_refunds_and_does_not_wait_for_them() -> None:
    release = asyncio.Event()

    async def never(body: dict[str, Any], n: int) -> httpx2.Response:
        await release.wait()
        return ok(body)

    loop = asyncio.get_running_loop()
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        limits=Limits(otpm=10_000, period=1e9),
        sdk_options=FakeAPI(never).sdk_options(),
    ) as c:
        task = asyncio.create_task(c.messages.create(model=MODEL, max_tokens=800, messages=HI))
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t0 = loop.time()
    assert loop.time() - t0 < 0.1  # nothing seen: refund due in ~50 s, but close did not wait
    gate = c.model_classes()["sonnet"].gate
    assert not gate._later


HI = [{"role": "user", "content": "hi"}]


async def test_an_answer_that_outlived_every_answer_seen_keeps_its_whole_reservation() -> None:
    # answers take 1 s and 100 tokens; a request still unanswered after 5 s is not one of
    # them (a timeout picks the long answers): it may run to its max_tokens
    release = asyncio.Event()

    async def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        if n > 10:
            await release.wait()
        await asyncio.sleep(1.0)
        return ok(body, output_tokens=100)

    loop = asyncio.get_running_loop()
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        limits=Limits(otpm=100_000, period=1e9),
        sdk_options=FakeAPI(handler).sdk_options(),
    ) as c:
        for _ in range(10):
            await c.messages.create(model=MODEL, max_tokens=1000, messages=HI)
        budget = c.budgets()["sonnet"][0]
        start = budget.peek(loop.time())[2]
        assert start == pytest.approx(100_000 - 1000, abs=0.1)
        late = asyncio.create_task(c.messages.create(model=MODEL, max_tokens=1000, messages=HI))
        await asyncio.sleep(5)
        late.cancel()
        early = asyncio.create_task(c.messages.create(model=MODEL, max_tokens=1000, messages=HI))
        await asyncio.sleep(0.5)
        early.cancel()
        await asyncio.gather(late, early, return_exceptions=True)
        await asyncio.sleep(100)
        # the late one keeps all 1000; the early one all but the longest answer seen (100)
        assert budget.peek(loop.time())[2] == pytest.approx(start - 1000 - 100, abs=0.1)


# -- a whole workload against a server that finishes, and one that stops -----------------------


class Server:
    """An output-token bucket kept as the API keeps it (max_tokens reserved at admission, the
    unused part refunded at the end), answering with exact completion-time headers.

    `abandoned`: what it does with an answer whose client went away ("finish": generated to
    the end and charged; "stop": stopped, charged what was produced).
    """

    def __init__(
        self,
        otpm: float,
        period: float,
        abandoned: Literal["finish", "stop"],
        base: float = 2.0,
        per_token: float = 0.02,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.bucket = TokenBucket(otpm, period, loop.time())
        self.otpm = otpm
        self.abandoned = abandoned
        self.base, self.per_token = base, per_token
        self.refused = 0
        self.abandoned_in_flight = 0
        self.api = FakeAPI(self.answer)

    def headers(self, now: float) -> dict[str, str]:
        remaining = max(0, math.floor(self.bucket.level(now)))
        return {
            "anthropic-ratelimit-output-tokens-limit": str(int(self.otpm)),
            "anthropic-ratelimit-output-tokens-remaining": str(remaining),
        }

    async def answer(self, body: dict[str, Any], n: int) -> httpx2.Response:
        loop = self.loop
        now = loop.time()
        reserved = body["max_tokens"]
        tokens = min(reserved, 40 + int(body["messages"][0]["content"].split()[1]) % 81)
        if self.bucket.wait(reserved, now) > 0:
            self.refused += 1
            return error(429, "rate_limit_error", {"retry-after": "1", **self.headers(now)})
        self.bucket.take(reserved, now)
        duration = self.base + self.per_token * tokens
        if body.get("stream"):  # (the cold start's probe) headers at its start, as the API's
            loop.call_later(duration, lambda: self.bucket.give(reserved - tokens, loop.time()))
            return sse(ok(body, output_tokens=tokens, headers=self.headers(now)), duration)
        try:
            await asyncio.sleep(duration)
        except asyncio.CancelledError:
            self.abandoned_in_flight += 1
            if self.abandoned == "finish":
                left = now + duration - loop.time()
                loop.call_later(left, lambda: self.bucket.give(reserved - tokens, loop.time()))
            else:
                produced = max(0, int((loop.time() - now - self.base) / self.per_token))
                self.bucket.give(reserved - min(tokens, produced), loop.time())
            raise
        self.bucket.give(reserved - tokens, loop.time())
        return ok(body, output_tokens=tokens, headers=self.headers(loop.time()))


async def run_half_cancelled(abandoned: str, cancel: bool) -> tuple[Server, float, float]:
    """300 requests (max_tokens 64..1024, answers 40..120 tokens in 2 s + 20 ms per token)
    under an output limit they exceed 1.5 times; half of them cancelled one every 0.2 s
    (some queued, some in flight) if `cancel`. Returns the server, and how far the
    client's output level is behind the server's once every deferred refund is due."""
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    n = 300
    bodies = [
        {
            "model": MODEL,
            "max_tokens": rng.randint(64, 1024),
            "messages": [{"role": "user", "content": f"q {rng.randint(0, 10_000)}"}],
        }
        for _ in range(n)
    ]
    otpm = 80 * n / 1.5
    server = Server(otpm, 60.0, abandoned)  # type: ignore[arg-type]
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        limits=Limits(otpm=otpm, period=60.0),
        sdk_options=server.api.sdk_options(),
        max_retries=0,
    ) as c:
        # answers seen first (the client learns how long they run), then the workload
        warm = [
            dict(b, messages=[{"role": "user", "content": f"w {i}"}])
            for i, b in enumerate(bodies[:10])
        ]
        await asyncio.gather(*(c.messages.create(**b) for b in warm))
        t0 = loop.time()
        tasks = [asyncio.create_task(c.messages.create(**b)) for b in bodies]
        doomed = set(rng.sample(range(n), n // 2))
        for i in sorted(doomed, key=lambda _: rng.random()):
            await asyncio.sleep(0.2)
            if cancel:
                tasks[i].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        makespan = loop.time() - t0
        await asyncio.sleep(5)  # every deferred refund due (answers end within ~4 s)
        budget = c.budgets()["sonnet"][0]
        local, remote = budget.peek(loop.time())[2], server.bucket.level(loop.time())
    assert server.refused == 0
    kept = [r for i, r in enumerate(results) if not cancel or i not in doomed]
    assert all(not isinstance(r, BaseException) for r in kept)
    assert local is not None and local <= remote + 1  # never ahead of the server
    return server, remote - local, makespan


@pytest.mark.parametrize("abandoned", ["finish", "stop"])
async def test_half_cancelled_in_flight_no_429_and_little_wasted(abandoned: str) -> None:
    server, behind, makespan = await run_half_cancelled(abandoned, cancel=True)
    # what the client holds back anyway (a reading's rounding, the burst's hold)
    _, baseline, _ = await run_half_cancelled(abandoned, cancel=False)
    n = server.abandoned_in_flight
    # some of the cancellations hit requests in flight (7-10 of 150 since the level is lifted
    # to what readings prove, which keeps fewer long reservations out at once)
    assert n >= 5
    # wasted: about the longest answer (120 tokens) per abandoned answer, not its
    # max_tokens (544 on average); the two runs' timings differ, so give 5 % of the limit
    assert behind - baseline <= 120 * n + 0.05 * 16_000, (behind, baseline, n)
    assert makespan < 45

"""Requests abandoned in a cold start's burst, before any answer has ended (virtual time).

The cold start's probe goes as a stream, so the burst leaves as soon as the probe's headers
arrive, and a request cancelled a second later is in flight with no answer yet seen: the
output it keeps is held for what the probe's stream shows of the answers' times
(`AnswerTimes.first_token`, `AnswerTimes.stream_ended`) and looked at again as answers
complete, not for the prior (which at 5 s + 30 ms per token holds a 1,000-token
reservation half a minute). Under a server that finishes and charges an abandoned answer
and one that stops it, the client's level is never ahead of the server's and no request is
refused.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pytest
from anthropic.types import Message

from asyncthrift import Limits, Thrift
from asyncthrift.pipeline._answer_times import AnswerTimes
from asyncthrift.pipeline.replay import replay_events
from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.scheduler import Gate
from tests.fake_api import ok
from tests.test_abandoned import MODEL, Server

pytestmark = pytest.mark.looptime


# -- what AnswerTimes learns from a stream -----------------------------------------------------


async def test_a_streams_first_text_and_pace_bound_the_answers_before_any_ended() -> None:
    # answers of 2 s + 20 ms per token: the probe's first text came 2.1 s after sending and
    # its 80 tokens within 1.6 s of its first event
    times = AnswerTimes()
    assert times.duration(1000) == pytest.approx(5.0 + 0.03 * 1000)  # the prior
    times.first_token(2.1)
    assert times.duration(100) >= 2.1 + 0.02 * 100  # the prior pace until the stream ends
    times.stream_ended(1.6, 80)
    for tokens in (40, 120, 1000):
        true = 2.0 + 0.02 * tokens
        # above the answer's time even jittered 10 % up, far below the prior
        assert 1.1 * true <= times.duration(tokens) <= 1.5 * true
    assert not times.firm
    assert times.longest(1000) == 1000  # no answer ended: its length is unknown


async def test_completed_answers_stay_under_the_streams_line_then_replace_it() -> None:
    times = AnswerTimes()
    times.first_token(0.5)
    times.stream_ended(0.1, 100)  # 1 ms per token
    times.observe(2.0, 100, 1000)  # a slower answer: the line moves up to cover it
    assert times.duration(100) >= 2.0
    for _ in range(10):
        times.observe(0.3 + 0.001 * 100, 100, 1000)
        times.observe(0.3 + 0.001 * 50, 50, 1000)
    assert times.firm
    # firm: the completed answers alone are fitted (the slow one stays under the line)
    assert 2.0 <= times.duration(100) <= 2.0 * 1.1 + 0.01


async def test_bad_stream_figures_are_ignored() -> None:
    times = AnswerTimes()
    times.first_token(-1.0)
    times.stream_ended(1.0, 0)
    times.stream_ended(-1.0, 10)
    assert times.duration(100) == pytest.approx(5.0 + 0.03 * 100)


# -- a cold burst, half cancelled 1 s in -------------------------------------------------------


def paced_sse(message: httpx2.Response, base: float, per_token: float) -> httpx2.Response:
    """`message` as a stream whose events come as the API's do: ``message_start`` after
    `base` seconds, the text after `per_token` seconds per output token, then the end."""
    parsed = Message.model_validate(orjson.loads(message.content))
    tokens = parsed.usage.output_tokens
    events = replay_events(parsed)

    async def body() -> AsyncIterator[bytes]:
        await asyncio.sleep(base)
        for event in events:
            if event.type == "content_block_delta":
                await asyncio.sleep(per_token * tokens)
            yield b"event: " + event.type.encode() + b"\ndata: " + orjson.dumps(event.to_dict())
            yield b"\n\n"

    headers = {k: v for k, v in message.headers.items() if k.lower() != "content-length"}
    headers["content-type"] = "text/event-stream"
    return httpx2.Response(200, headers=headers, content=body())


class PacedServer(Server):
    """`Server`, its streams paced as the API's are (headers at once, then the events)."""

    async def answer(self, body: dict[str, Any], n: int) -> httpx2.Response:
        if not body.get("stream"):
            return await super().answer(body, n)
        loop = self.loop
        now = loop.time()
        reserved = body["max_tokens"]
        tokens = min(reserved, 40 + int(body["messages"][0]["content"].split()[1]) % 81)
        if self.bucket.wait(reserved, now) > 0:
            self.refused += 1
        self.bucket.take(reserved, now)
        loop.call_later(
            self.base + self.per_token * tokens,
            lambda: self.bucket.give(reserved - tokens, loop.time()),
        )
        answer = ok(body, output_tokens=tokens, headers=self.headers(now))
        return paced_sse(answer, self.base, self.per_token)


@pytest.mark.parametrize("abandoned", ["finish", "stop"])
async def test_a_cold_burst_cancelled_in_flight_is_held_for_what_the_probe_showed(
    abandoned: str,
) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(5)
    n = 120
    bodies = [
        {
            "model": MODEL,
            "max_tokens": rng.randint(64, 1024),
            "messages": [{"role": "user", "content": f"q {rng.randint(0, 10_000)}"}],
        }
        for _ in range(n)
    ]
    otpm = 40_000.0
    server = PacedServer(otpm, 60.0, abandoned)  # type: ignore[arg-type]
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        limits=Limits(otpm=otpm, period=60.0),
        sdk_options=server.api.sdk_options(),
        max_retries=0,
    ) as c:
        ahead: list[float] = []

        async def watch() -> None:  # the client's level against the server's, every 0.1 s
            while True:
                await asyncio.sleep(0.1)
                budgets = c.budgets().get("sonnet")  # (made when the first call is planned)
                if budgets:
                    local = budgets[0].peek(loop.time())[2]
                    assert local is not None
                    ahead.append(local - server.bucket.level(loop.time()))

        t0 = loop.time()
        tasks = [asyncio.create_task(c.messages.create(**b)) for b in bodies]
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(1.0)
        in_flight = c.stats().in_flight
        doomed = range(1, n, 2)  # not the probe
        for i in doomed:
            tasks[i].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        abandoned_in_flight = server.abandoned_in_flight
        # every abandoned answer ended within 2 s + 20 ms x 120 tokens = 4.4 s of its
        # sending; the probe showed that much by 3.6 s, so its output is back by ~8 s
        # (1.3 x 4.4 s after a send at ~0.1 s, and a recheck), not at the prior's ~35 s
        await asyncio.sleep(max(0.0, t0 + 9.0 - loop.time()))
        local = c.budgets()["sonnet"][0].peek(loop.time())[2]
        remote = server.bucket.level(loop.time())
        watcher.cancel()
    assert in_flight > 20  # the burst left at once: the cancellations hit requests in flight
    assert abandoned_in_flight >= 10
    assert server.refused == 0
    kept = [r for i, r in enumerate(results) if i not in doomed]
    assert all(not isinstance(r, BaseException) for r in kept)
    assert max(ahead) <= 1.0  # never ahead of the server
    assert local is not None
    # what the client still holds of the abandoned answers: about the longest answer each
    # (twice the longest seen while few have ended), not their max_tokens (544 on average)
    assert remote - local <= 240 * abandoned_in_flight, (remote, local, abandoned_in_flight)


async def test_the_short_answers_of_a_burst_still_running_are_not_firm() -> None:
    # a burst of 20 sent at 0: by 2.9 s the 10 shortest have ended, the rest still run
    times = AnswerTimes()
    burst = [object() for _ in range(20)]
    for answer in burst:
        times.started(answer, 0.0)
    for k, answer in enumerate(burst[:10]):
        times.ended(answer)
        times.observe(2.0 + 0.02 * (40 + k), 40 + k, 1000, sent_at=0.0)
    assert not times.firm  # what ended is only what was short: the rest may be longer
    assert times.running_since(0.0)
    assert not times.running_since(-1.0)
    for answer in burst[10:]:
        times.ended(answer)
    assert times.firm and not times.running_since(0.0)
    # answers sent later and still running do not make the ended ones less representative
    times.started(object(), 5.0)
    assert times.firm


async def test_a_reading_is_credited_once_across_abandoned_answers() -> None:
    # two answers abandoned together, then a reading lowers the level (the server may have
    # refunded them already): their deferred refunds leave that lowering out once between
    # them, not once each
    loop = asyncio.get_running_loop()
    budget = LocalBudget(Limits(otpm=10_000, period=1e9), loop.time(), hold_bursts=False)
    gate = Gate([budget])
    first = await gate.acquire(Cost(1, 10, 1000))
    second = await gate.acquire(Cost(1, 10, 1000))
    first.abandon(loop.time() + 5.0, lambda: 100.0)
    second.abandon(loop.time() + 5.0, lambda: 100.0)
    await asyncio.sleep(1)
    other = await gate.acquire(Cost(1, 10, 500))
    view = ServerView(output_limit=10_000, output_remaining=7_201)  # below our 7_500
    budget.observe(view, other.mark, other.sent_at, loop.time())
    observed = budget.peek(loop.time())[2]
    assert observed is not None
    lowered = 7_500 - observed
    assert 0 < lowered < 900
    other.settle(10, 500)
    await asyncio.sleep(6)
    # 900 each (all but the longest answer), less the lowering once
    assert budget.peek(loop.time())[2] == pytest.approx(observed + 1800 - lowered, abs=1)

"""``messages.count_tokens`` against the mock: pass-through, its own budget, calibration."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageTokensCount

from asyncthrift import Limits, Thrift
from asyncthrift.client.counting import set_count_tokens_limit
from asyncthrift.core.tokens import estimate_input_tokens
from asyncthrift.mock import MockServer

pytestmark = pytest.mark.slow

MODEL = "claude-sonnet-4-6"


def body(text: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}


async def test_passes_through_and_matches_the_bare_sdk() -> None:
    async with MockServer() as mock:
        bare = anthropic.AsyncAnthropic(api_key="k", base_url=mock.base_url, max_retries=0)
        expected = await bare.messages.count_tokens(
            **body("How many tokens is this?"), system="Be brief."
        )
        await bare.close()
        async with Thrift(api_key="k", base_url=mock.base_url) as c:
            got = await c.messages.count_tokens(
                **body("How many tokens is this?"), system="Be brief."
            )
            assert isinstance(got, MessageTokensCount)
            assert got == expected
            s = c.stats()
            assert (s.requests, s.succeeded, s.upstream_calls) == (1, 1, 1)


async def test_its_own_budget_keeps_it_under_the_count_tokens_limit() -> None:
    async with MockServer(count_tokens_rpm=5, count_tokens_period=2.0) as mock:
        async with Thrift(api_key="k", base_url=mock.base_url) as c:
            set_count_tokens_limit(c, 5, period=2.0)
            # Warm the connection and let both buckets refill: a cold first burst reaches the
            # server late, which the core's admission does not model yet (see the report).
            await c.messages.count_tokens(**body("warm up"))
            await asyncio.sleep(0.4)
            mock.reset()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            counts = await asyncio.gather(
                *(c.messages.count_tokens(**body(f"text {i}")) for i in range(10))
            )
            elapsed = loop.time() - t0
        assert len(counts) == 10 and all(x.input_tokens > 0 for x in counts)
        assert mock.counters.count_tokens == 10  # no 429, no retry
        assert elapsed >= 1.9  # 5 at once, then 2.5 per second


async def test_counting_never_delays_messages() -> None:
    async with MockServer(count_tokens_rpm=2, count_tokens_period=1.0) as mock:
        async with Thrift(api_key="k", base_url=mock.base_url, limits=Limits(rpm=100)) as c:
            set_count_tokens_limit(c, 2, period=1.0)
            loop = asyncio.get_running_loop()
            counting = asyncio.gather(
                *(c.messages.count_tokens(**body(f"x {i}")) for i in range(6))
            )
            await asyncio.sleep(0.05)
            t0 = loop.time()
            msg = await c.messages.create(**body("and a message"), max_tokens=16)
            assert loop.time() - t0 < 0.5  # not queued behind 2 s of counting
            assert msg.content
            await counting
        assert mock.counters.rate_limited == 0


async def test_an_unconfigured_limit_is_learned_from_429s() -> None:
    async with (
        MockServer(count_tokens_rpm=3, count_tokens_period=0.5) as mock,
        Thrift(api_key="k", base_url=mock.base_url, max_retries=10) as c,
    ):
        counts = await asyncio.gather(
            *(c.messages.count_tokens(**body(f"y {i}")) for i in range(6))
        )
        assert len(counts) == 6
        s = c.stats()
        assert s.succeeded == 6 and s.rate_limited >= 1 and s.retries >= 1


async def test_the_exact_count_calibrates_the_estimator_unless_told_not_to() -> None:
    async with MockServer() as mock, Thrift(api_key="k", base_url=mock.base_url) as c:
        text = "a fairly ordinary English sentence, repeated. " * 40
        await c.messages.count_tokens(**body(text), calibrate=False)
        mc = c.model_class(MODEL)
        assert mc.calibrator.count == 0
        counted = await c.messages.count_tokens(**body(text))
        assert mc.calibrator.count == 1
        # one exact observation: the calibrated estimate of this text is now its count
        raw = estimate_input_tokens(body(text))
        assert raw * mc.calibrator.ratio == pytest.approx(counted.input_tokens)
        assert abs(raw - counted.input_tokens) > 5  # so the test shows a change


async def test_bad_options_fail_before_anything_is_sent() -> None:
    async with MockServer() as mock:
        async with Thrift(api_key="k", base_url=mock.base_url) as c:
            with pytest.raises(TypeError, match="calibrate"):
                await c.messages.count_tokens(**body("x"), calibrate="yes")
            with pytest.raises(ValueError, match="priority"):
                await c.messages.count_tokens(**body("x"), priority="urgent")
            with pytest.raises(RuntimeError, match="before the first"):
                await c.messages.count_tokens(**body("x"))
                set_count_tokens_limit(c, 100)
        assert mock.counters.count_tokens == 1

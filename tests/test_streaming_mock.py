"""Streaming against the mock server over loopback HTTP: fidelity, refunds, zero 429s."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from anthropic.lib.streaming import AsyncMessageStream

from asyncthrift import Limits, Thrift
from asyncthrift.mock import MockServer

pytestmark = pytest.mark.slow

MODEL = "claude-sonnet-4-6"


def req(text: str, max_tokens: int = 64) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
    }


def normalised(events: list[Any]) -> list[dict[str, Any]]:
    """Event dumps without the per-response message id (the mock numbers its messages)."""
    out = []
    for e in events:
        d = e.model_dump()
        if isinstance(d.get("message"), dict):  # message_start, and message_stop's snapshot
            d["message"].pop("id")
        out.append({"class": type(e).__name__, **d})
    return out


async def test_event_sequence_is_the_bare_sdks() -> None:
    async with MockServer(latency=0.01, latency_per_token=0.0005, stream_chunk_words=3) as mock:
        bare = anthropic.AsyncAnthropic(api_key="k", base_url=mock.base_url, max_retries=0)
        async with bare.messages.stream(**req("the same question", 200)) as s:
            bare_events = [e async for e in s]
        bare_raw = [
            e async for e in await bare.messages.create(**req("the same", 200), stream=True)
        ]
        await bare.close()
        async with Thrift(api_key="k", base_url=mock.base_url, dedupe=False) as c:
            async with c.messages.stream(**req("the same question", 200)) as s:
                assert isinstance(s, AsyncMessageStream)
                ours = [e async for e in s]
            ours_raw = [
                e async for e in await c.messages.create(**req("the same", 200), stream=True)
            ]
    assert len(ours) > 6
    assert normalised(ours) == normalised(bare_events)
    assert normalised(ours_raw) == normalised(bare_raw)


async def test_abandoned_stream_refunds_what_the_server_cannot_have_charged() -> None:
    # a server that reports exact counts: the client reads them exactly, so what the budget
    # holds shows to the token
    limits = Limits(otpm=10_001, period=600)
    async with (
        MockServer(
            limits=limits,
            latency=0.01,
            latency_per_token=0.025,
            output_tokens=(40, 40),
            remaining_rounding="exact",
        ) as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=limits) as c,
    ):
        # complete answers first: the client learns that answers run 40 tokens, ~1 s
        await asyncio.gather(*(c.messages.create(**req(f"warm {i}", 1000)) for i in range(8)))
        budget = c.budgets()["sonnet"][0]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        before = budget.peek(t0)[2]
        async with c.messages.stream(**req("a long answer please", 1000)) as s:
            # the level once admitted: max_tokens charged, and lifted to what the stream's
            # headers (as of its start) prove the server has (the level may sit below it)
            opened = budget.peek(loop.time())[2]
            words = 0
            async for _ in s.text_stream:
                words += 1
                if words == 3:
                    break
        held = budget.peek(loop.time())[2]
        for _ in range(100):  # the server notices the hang-up at its next write
            if mock.counters.cancelled:
                break
            await asyncio.sleep(0.01)
        assert mock.counters.cancelled == 1
        produced = mock.counters.output_tokens - 8 * 40
        assert 0 < produced < 40
        await asyncio.sleep(3.0)  # past when the answer would have ended (~1.1 s)
        t1 = loop.time()
        after = budget.peek(t1)[2]
        assert before is not None and opened is not None
        assert held is not None and after is not None
        assert opened <= before - 900  # the 1000 reserved at admission (less a small lift)
        refill = (t1 - t0) * 10_001 / 600
        # max_tokens held while the answer could still run, and never less than the server
        # charged afterwards: all but the longest answer seen (40 tokens) went back
        assert held <= opened + refill
        charged = opened + 1000 - after + refill
        assert produced <= charged <= 40 + 1, (produced, charged)
        s_ = c.stats()
        assert (s_.failed, s_.in_flight) == (1, 0)


async def test_100_concurrent_streams_under_a_binding_otpm_limit_get_no_429() -> None:
    # 100 streams each reserving 64 output tokens against 3,000 per 10 s: at most ~47 fit at
    # once, so admission (and the refund at each message_stop) is what paces them.
    limits = Limits(rpm=10_000, itpm=1_000_000, otpm=3_000, period=10)
    async with MockServer(
        limits=limits, latency=0.02, latency_per_token=0.002, output_tokens=(16, 64)
    ) as mock:
        async with Thrift(api_key="k", base_url=mock.base_url, limits=limits) as c:

            async def one(i: int) -> str:
                async with c.messages.stream(**req(f"question number {i}")) as s:
                    return await s.get_final_text()

            texts = await asyncio.gather(*(one(i) for i in range(100)))
            stats = c.stats()
        assert all(texts)
        assert mock.counters.rate_limited == 0
        assert mock.counters.streams == 100
        assert mock.counters.peak_in_flight < 100  # the limit was binding
        assert (stats.succeeded, stats.retries, stats.in_flight) == (100, 0, 0)
        assert stats.output_tokens == mock.counters.output_tokens


async def test_mid_stream_error_surfaces_and_settles() -> None:
    from asyncthrift.mock import Faults

    async with (
        MockServer(latency=0.01, output_tokens=(40, 40), faults=Faults(stream_error=1.0)) as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=Limits(otpm=10_000)) as c,
    ):
        with pytest.raises(anthropic.APIStatusError) as info:
            async with c.messages.stream(**req("fail half way", 100)) as s:
                async for _ in s:
                    pass
        assert "overloaded_error" in str(info.value)
        stats = c.stats()
        assert (stats.failed, stats.overloaded, stats.in_flight) == (1, 1, 0)
        assert 0 < stats.output_tokens < 40

"""Never pay twice, end to end: `Thrift.messages.create` against the mock over loopback HTTP.

Skipped only while `asyncthrift.client` cannot be imported yet.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic.types import Message

pytest.importorskip("asyncthrift.client", reason="asyncthrift.client is not importable yet")

from asyncthrift import Thrift
from asyncthrift.mock import MockServer
from asyncthrift.stores.cache import MemoryCache
from tests.redis_server import RedisServer

MODEL = "claude-sonnet-4-6"


def req(text: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,  # above the mock's answer lengths: complete, cacheable answers
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(latency=0.05) as server:
        yield server


def client_tasks() -> set[asyncio.Task[Any]]:
    """Tasks other than this test's and the mock server's own connection handlers."""
    me = asyncio.current_task()
    return {
        t
        for t in asyncio.all_tasks()
        if t is not me and "asyncthrift/mock/" not in t.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    }


async def test_200_identical_concurrent_requests_make_one_upstream_call(mock: MockServer) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, dedupe=True) as c:
        results = await asyncio.gather(*(c.messages.create(**req("same?")) for _ in range(200)))
        assert mock.counters.requests == 1
        assert all(r == results[0] for r in results)
        s = c.stats()
        assert s.upstream_calls == 1
        assert s.dedupe_joins == 199 and s.upstream_calls_saved == 199
        assert s.tokens_saved > 0


async def test_500_requests_over_100_faq_questions_make_100_upstream_calls(
    mock: MockServer,
) -> None:
    questions = [f"FAQ {i}: how do I do thing number {i}?" for i in range(100)]
    order = [questions[i % 100] for i in range(500)]
    random.Random(7).shuffle(order)
    sem = asyncio.Semaphore(50)

    async def ask(q: str) -> Message:
        async with sem:
            m = await c.messages.create(**req(q))
            assert isinstance(m, Message)
            return m

    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory") as c:
        answers = await asyncio.gather(*(ask(q) for q in order))
        assert mock.counters.requests == 100
        by_q: dict[str, Message] = {}
        for q, a in zip(order, answers, strict=True):
            assert by_q.setdefault(q, a) == a  # every answer to a question is the same
        s = c.stats()
        assert s.upstream_calls == 100
        assert s.cache_hits + s.dedupe_joins == 400 == s.upstream_calls_saved


async def test_cache_hit_is_equal_to_the_original_and_free(mock: MockServer) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory", dedupe=False) as c:
        first = await c.messages.create(**req("hello"))
        before = c.stats()
        again = await c.messages.create(**req("hello"))
        # string content and a one-text-block list are the same request
        blocks = await c.messages.create(
            **req("x", messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}])
        )
        after = c.stats()
        assert isinstance(again, Message)
        assert again == first == blocks and again is not first
        assert mock.counters.requests == 1
        assert after.upstream_calls == before.upstream_calls
        assert after.input_tokens == before.input_tokens  # no budget, no spend
        assert after.cache_hits == before.cache_hits + 2


async def test_a_cache_hit_and_a_shared_answer_carry_the_request_id(mock: MockServer) -> None:
    """``message._request_id`` (the SDK's, from the ``request-id`` header) on every answer."""
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory", dedupe=True) as c:
        first = await c.messages.create(**req("hello"))
        assert isinstance(first._request_id, str) and first._request_id
        again = await c.messages.create(**req("hello"))
        assert c.stats().cache_hits == 1
        assert again == first and again._request_id == first._request_id
        shared = await asyncio.gather(*(c.messages.create(**req("twins")) for _ in range(5)))
        assert c.stats().dedupe_joins == 4 and mock.counters.requests == 2
        rid = shared[0]._request_id
        assert isinstance(rid, str) and rid != first._request_id
        assert all(m._request_id == rid for m in shared)


async def test_an_answer_cached_from_a_stream_carries_its_request_id(mock: MockServer) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory") as c:
        async with c.messages.stream(**req("hello")) as stream:
            await stream.get_final_message()
            rid = stream.request_id
        assert isinstance(rid, str) and rid
        cached = await c.messages.create(**req("hello"))
        assert mock.counters.requests == 1
        assert cached._request_id == rid


async def test_per_request_overrides(mock: MockServer) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory") as c:
        await c.messages.create(**req("q"))
        await c.messages.create(**req("q"), cache=False)  # neither reads nor writes
        assert mock.counters.requests == 2
        await asyncio.gather(
            *(c.messages.create(**req("fresh"), dedupe=False, cache=False) for _ in range(3))
        )
        assert mock.counters.requests == 5


async def test_client_options_do_not_split_the_cache(mock: MockServer) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory") as c:
        await c.messages.create(**req("q"), priority="batch", metadata={"user_id": "a"})
        await c.messages.create(**req("q"), priority="interactive", metadata={"user_id": "b"})
        assert mock.counters.requests == 1


async def test_truncated_answers_are_not_cached_unless_allowed(
    mock: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    long = req("tell me everything", max_tokens=1)
    caplog.set_level(logging.WARNING, logger="asyncthrift")
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory", dedupe=False) as c:
        m = await c.messages.create(**long)
        assert m.stop_reason == "max_tokens"
        await c.messages.create(**long)
        await c.messages.create(**req("and more", max_tokens=1))
        assert mock.counters.requests == 3
        # counted, not silent: every skip in stats(), one warning naming the option
        assert c.stats().cache_truncated_skipped == 3
        assert c.stats().cache_hits == 0
        said = [r for r in caplog.records if "cache_truncated=" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.WARNING
    async with Thrift(
        api_key="k", base_url=mock.base_url, cache="memory", cache_truncated=True
    ) as c:
        await c.messages.create(**long)
        await c.messages.create(**long)
        assert mock.counters.requests == 4
        assert c.stats().cache_truncated_skipped == 0
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory", dedupe=False) as c:
        await c.messages.create(**req("once more", max_tokens=1))
        # once per client: a new client says it again
        said = [r for r in caplog.records if "cache_truncated=" in r.getMessage()]
        assert len(said) == 2


async def test_complete_answers_are_not_counted_as_truncated_skips(mock: MockServer) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, cache="memory") as c:
        await c.messages.create(**req("short"))
        await c.messages.create(**req("short"))
        s = c.stats()
        assert s.cache_hits == 1 and s.cache_truncated_skipped == 0


async def test_tenants_never_read_each_other(mock: MockServer) -> None:
    shared = MemoryCache()
    async with (
        Thrift(api_key="tenant-a", base_url=mock.base_url, cache=shared) as a,
        Thrift(api_key="tenant-b", base_url=mock.base_url, cache=shared) as b,
    ):
        await a.messages.create(**req("q"))
        await b.messages.create(**req("q"))
        assert mock.counters.requests == 2
    async with (
        Thrift(api_key="tenant-a", base_url=mock.base_url, cache=shared, cache_scope="global") as a,
        Thrift(api_key="tenant-b", base_url=mock.base_url, cache=shared, cache_scope="global") as b,
    ):
        await a.messages.create(**req("g"))
        await b.messages.create(**req("g"))
        assert mock.counters.requests == 3


async def test_cancellation_through_the_client() -> None:
    async with (
        MockServer(latency=0.5) as mock,  # slow enough to cancel mid-flight on a busy machine
        Thrift(api_key="k", base_url=mock.base_url, cache="memory") as c,
    ):
        before = client_tasks()
        # leader and a follower cancelled: the rest still get the answer from one call
        tasks = [asyncio.create_task(c.messages.create(**req("c1"))) for _ in range(5)]
        await asyncio.sleep(0.05)
        tasks[0].cancel()
        tasks[3].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = [isinstance(d, asyncio.CancelledError) for d in done]
        assert cancelled == [True, False, False, True, False]
        assert mock.counters.requests == 1
        # all cancelled: the upstream call is abandoned and nothing is left running
        tasks = [asyncio.create_task(c.messages.create(**req("c2"))) for _ in range(5)]
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert client_tasks() - before == set()
        assert c.stats().in_flight == 0
        # and the client is still healthy (nothing leaked that blocks the next request)
        assert isinstance(await c.messages.create(**req("c3")), Message)


@pytest.mark.redis
async def test_redis_cache_shared_between_clients(
    mock: MockServer, redis_url: str, redis_namespace: str
) -> None:
    url = f"{redis_url}"
    async with Thrift(api_key="k", base_url=mock.base_url, cache=url) as a:
        first = await a.messages.create(**req("shared"))
    async with Thrift(api_key="k", base_url=mock.base_url, cache=url) as b:
        again = await b.messages.create(**req("shared"))
        assert b.stats().cache_hits == 1
    assert again == first
    assert mock.counters.requests == 1


@pytest.mark.redis
async def test_redis_down_requests_still_succeed(
    mock: MockServer, own_redis_server: RedisServer
) -> None:
    async with Thrift(api_key="k", base_url=mock.base_url, cache=own_redis_server.url) as c:
        await c.messages.create(**req("before"))
        own_redis_server.kill()
        for i in range(20):
            assert isinstance(await c.messages.create(**req(f"during {i}")), Message)
        s = c.stats()
        assert s.succeeded == 21
        assert s.cache_errors >= 1

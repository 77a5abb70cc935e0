"""``client.beta.messages`` goes through the scheduler like ``client.messages`` (issue #21).

Over real HTTP against the mock: beta calls are counted in ``stats()``, paced under the
limits (no 429 where the bare SDK's beta path earns them), and ``beta.messages.batches`` and
``count_tokens`` sit on the budgets of ``client.batches`` and ``messages.count_tokens``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from anthropic.types.beta import BetaMessage, BetaMessageTokensCount
from anthropic.types.beta.messages import BetaMessageBatch

from asyncthrift import Limits, Thrift
from asyncthrift.client.counting import set_count_tokens_limit
from asyncthrift.mock import MockServer

pytestmark = pytest.mark.slow

MODEL = "claude-sonnet-4-6"
# 60 answers reserving 100 output tokens each against 2,000 per 10 s: about a third fit at
# once, so admission (and the refund when each answer lands) is what paces them
LIMITS = Limits(rpm=10_000, itpm=1_000_000, otpm=2_000, period=10)
MOCK = {"limits": LIMITS, "latency": 0.02, "latency_per_token": 0.001, "output_tokens": (16, 48)}


def body(i: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": f"beta question number {i}"}],
    }


async def test_the_bare_sdks_beta_path_earns_429s_on_this_workload() -> None:
    """The baseline: the same burst, sent the way ``client.beta.messages`` used to send it."""
    async with MockServer(**MOCK) as mock:
        sdk = anthropic.AsyncAnthropic(api_key="k", base_url=mock.base_url, max_retries=0)
        try:
            results = await asyncio.gather(
                *(sdk.beta.messages.create(**body(i), betas=["x-1"]) for i in range(60)),
                return_exceptions=True,
            )
        finally:
            await sdk.close()
        assert any(isinstance(r, anthropic.RateLimitError) for r in results)
        assert mock.counters.rate_limited > 0


@pytest.mark.parametrize("headers_at", ["completion", "admission"])
async def test_beta_creates_and_streams_are_scheduled_counted_and_never_429(
    headers_at: str,
) -> None:
    async with (
        MockServer(**MOCK, headers_at=headers_at) as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=LIMITS) as client,
    ):

        async def created(i: int) -> BetaMessage:
            return await client.beta.messages.create(**body(i), betas=["context-1m-2025-08-07"])

        async def streamed(i: int) -> str:
            async with client.beta.messages.stream(**body(i), priority="batch") as s:
                return await s.get_final_text()

        answers = await asyncio.gather(
            *(created(i) for i in range(40)), *(streamed(i) for i in range(40, 60))
        )
        s = client.stats()
    assert all(isinstance(a, BetaMessage) for a in answers[:40])
    assert all(isinstance(a, str) and a for a in answers[40:])
    assert mock.counters.rate_limited == 0
    assert mock.counters.peak_in_flight < 60  # the limit was binding
    assert (s.requests, s.succeeded, s.upstream_calls, s.in_flight) == (60, 60, 60, 0)
    assert s.rate_limited == 0 and s.retries == 0
    assert s.output_tokens == mock.counters.output_tokens  # every answer reconciled
    assert s.cache_hits == 0 and s.dedupe_joins == 0  # beta answers are never shared


async def test_beta_count_tokens_waits_on_the_count_tokens_budget() -> None:
    async with (
        MockServer(count_tokens_rpm=5, count_tokens_period=2.0) as mock,
        Thrift(api_key="k", base_url=mock.base_url) as client,
    ):
        set_count_tokens_limit(client, 5, period=2.0)
        counts = await asyncio.gather(
            *(
                client.beta.messages.count_tokens(
                    model=MODEL, messages=[{"role": "user", "content": f"count {i}"}]
                )
                for i in range(8)
            )
        )
        s = client.stats()
    assert all(isinstance(c, BetaMessageTokensCount) and c.input_tokens > 0 for c in counts)
    assert mock.counters.count_tokens == 8 and mock.counters.rate_limited == 0
    assert (s.requests, s.succeeded, s.rate_limited) == (8, 8, 0)


async def test_beta_batches_share_client_batches_budget_and_counters() -> None:
    request = {"custom_id": "a", "params": body(0)}
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url) as client,
    ):
        beta = client.beta.messages.batches
        assert beta.budget is client.batches.budget and beta.stats is client.batches.stats
        created = await beta.create(requests=[request, {**request, "custom_id": "b"}])
        assert len(created) == 1 and isinstance(created[0], BetaMessageBatch)
        assert isinstance(await beta.retrieve(created[0].id), BetaMessageBatch)
        assert client.stats().batch_requests == 2
        assert client.batches.stats.api_calls == 2
        assert mock.counters.batch_api_requests == 2

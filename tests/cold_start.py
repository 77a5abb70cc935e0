"""The cold-start workload at 95 % of tier-4's request rate, in virtual time (looptime).

Shared by `tests/test_cold_start_latency.py` (its bounds) and `bench/bench_cold_start.py`
(its figures), so that both measure the same arrivals: Poisson at 63.3/s (seed 2), prompts
of about 490 tokens, ``max_tokens=256``, answers of 40-160 output tokens (seed 1), and an
upstream (the SDK's in-memory transport) answering in exactly `UPSTREAM` seconds with a full
tier-4 bucket in its headers. A request's latency is then `UPSTREAM` plus the time the
scheduler held it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx2

from asyncthrift import Limits, Thrift
from tests.fake_api import FakeAPI, ok, sse

UPSTREAM = 0.3
TIER4 = Limits(4000, 2_000_000, 400_000)
RATE = 0.95 * 4000 / 60
#: A full tier-4 bucket, as the server reports it (token counts rounded to thousands).
FULL = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3980",
    "anthropic-ratelimit-input-tokens-limit": "2000000",
    "anthropic-ratelimit-input-tokens-remaining": "1990000",
    "anthropic-ratelimit-output-tokens-limit": "400000",
    "anthropic-ratelimit-output-tokens-remaining": "395000",
}


@dataclass(frozen=True)
class ColdStartRun:
    """What one run saw, each list indexed by arrival order."""

    #: virtual seconds from each request's arrival to its answer
    latencies: list[float]
    #: when each request went upstream (its answer's time less `UPSTREAM`)
    sent: list[float]
    #: requests that arrived within the window
    arrivals: int
    #: the client's `stats().succeeded` once all were answered
    succeeded: int


async def run_cold_start(duration: float) -> ColdStartRun:
    """Send the arrivals of `duration` virtual seconds through a fresh client; await all."""
    answers = random.Random(1)

    async def upstream(body: dict[str, Any], n: int) -> httpx2.Response:
        answer = ok(body, headers=FULL, input_tokens=490, output_tokens=answers.randint(40, 160))
        if body.get("stream"):  # headers at the start, the answer `UPSTREAM` later
            return sse(answer, UPSTREAM)
        await asyncio.sleep(UPSTREAM)
        return answer

    api = FakeAPI(upstream)
    loop = asyncio.get_running_loop()
    latency: dict[int, float] = {}
    sent: dict[int, float] = {}
    arrivals = random.Random(2)
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        sdk_options=api.sdk_options(),
        limits={"claude-sonnet": TIER4},
    ) as client:

        async def one(i: int, due: float) -> None:
            await client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=256,
                messages=[{"role": "user", "content": f"{i} " + "word " * 480}],
            )
            latency[i] = loop.time() - due
            sent[i] = loop.time() - UPSTREAM

        tasks: list[asyncio.Task[None]] = []
        start = due = loop.time()
        while (due := due + arrivals.expovariate(RATE)) < start + duration:
            await asyncio.sleep(due - loop.time())
            tasks.append(asyncio.create_task(one(len(tasks), due)))
        await asyncio.gather(*tasks)
        succeeded = client.stats().succeeded
    return ColdStartRun(
        latencies=[latency[i] for i in range(len(latency))],
        sent=[sent[i] for i in range(len(sent))],
        arrivals=len(tasks),
        succeeded=succeeded,
    )

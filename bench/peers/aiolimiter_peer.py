"""aiolimiter: one leaky bucket for requests, one for input tokens, the SDK's retries raised.

Done well, as PEERS.md describes: `AsyncLimiter(rpm, period)` and `AsyncLimiter(itpm,
period)`; each request acquires 1 and its input estimate (characters / 4, capped at the
bucket size because acquiring more than ``max_rate`` raises); the SDK retries up to 6 times
honouring ``retry-after``. aiolimiter has no notion of output tokens, refunds or server
headers, so the output limit and another consumer of the key are invisible to it.
"""

from __future__ import annotations

from typing import Any

import anthropic
from aiolimiter import AsyncLimiter

from . import AttemptCounter, RunContext, gather_all

NAME = "aiolimiter_peer"
TITLE = "aiolimiter RPM+TPM"


def estimate(body: dict[str, Any]) -> int:
    chars = sum(len(m["content"]) for m in body["messages"] if isinstance(m["content"], str))
    return max(1, chars // 4)


async def run(ctx: RunContext) -> None:
    counter = AttemptCounter(ctx)
    client = counter.sdk(max_retries=6)
    lim = ctx.workload.limits
    assert lim.rpm is not None and lim.itpm is not None
    requests = AsyncLimiter(lim.rpm, lim.period)
    tokens = AsyncLimiter(lim.itpm, lim.period)

    async def one(i: int, body: dict[str, Any]) -> None:
        counter.begin()
        try:
            await requests.acquire()
            await tokens.acquire(min(estimate(body), lim.itpm))
            await client.messages.create(**body)
        except anthropic.APIError as exc:
            ctx.done(i, False, exc)
        else:
            ctx.done(i, True)

    try:
        await gather_all(ctx, one)
    finally:
        await client.close()

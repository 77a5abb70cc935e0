"""The seed article's throttle: a queue drained at a fixed interval, backoff on 429.

Done well: the interval is the RPM limit's (period / rpm between sends), each request is
sent on its own task so a slow answer does not hold the queue, and a 429 (or 5xx, or a
dropped connection) is retried after exponential backoff with full jitter: 1 s doubling to
60 s in real-minute terms, up to 6 retries. Nothing else: it knows no token limits and
reads no headers, which is the design the article shows.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import anthropic

from . import AttemptCounter, RunContext

NAME = "seed_throttle"
TITLE = "seed throttle (fixed interval + backoff)"

MAX_RETRIES = 6


async def run(ctx: RunContext) -> None:
    counter = AttemptCounter(ctx)
    client = counter.sdk(max_retries=0)
    lim = ctx.workload.limits
    assert lim.rpm is not None
    interval = lim.period / lim.rpm
    base, cap = 1.0 * ctx.scale, 60.0 * ctx.scale

    async def send(i: int, body: dict[str, Any]) -> None:
        counter.begin()
        for attempt in range(MAX_RETRIES + 1):
            try:
                await client.messages.create(**body)
            except (anthropic.RateLimitError, anthropic.InternalServerError,
                    anthropic.APIConnectionError) as exc:  # fmt: skip
                if attempt == MAX_RETRIES:
                    ctx.done(i, False, exc)
                    return
                await asyncio.sleep(random.uniform(0, min(cap, base * 2**attempt)))
            except anthropic.APIError as exc:
                ctx.done(i, False, exc)
                return
            else:
                ctx.done(i, True)
                return

    tasks: list[asyncio.Task[None]] = []
    try:
        for i, body in enumerate(ctx.workload.requests):
            tasks.append(asyncio.create_task(send(i, body)))
            await asyncio.sleep(interval)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
        await client.close()

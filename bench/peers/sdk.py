"""The bare SDK, everything fired at once: `AsyncAnthropic()` with its default retries.

What most code does first. The SDK retries 408/409/429/5xx twice (``max_retries=2``) with
0.5 s doubling backoff and honours ``retry-after``; nothing paces the first attempts.
"""

from __future__ import annotations

from typing import Any

import anthropic

from . import AttemptCounter, RunContext, gather_all

NAME = "sdk"
TITLE = "bare SDK, all at once"


async def run(ctx: RunContext) -> None:
    counter = AttemptCounter(ctx)
    client = counter.sdk(max_retries=2)  # the SDK's default

    async def one(i: int, body: dict[str, Any]) -> None:
        counter.begin()
        try:
            await client.messages.create(**body)
        except anthropic.APIError as exc:
            ctx.done(i, False, exc)
        else:
            ctx.done(i, True)

    try:
        await gather_all(ctx, one)
    finally:
        await client.close()

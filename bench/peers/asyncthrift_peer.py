"""asyncthrift: `Thrift` with the key's limits; every request submitted at once.

No tuning beyond telling it the limits: the scheduler paces admission on all three
dimensions, calibrates its input estimate from `usage`, resyncs from the server's headers
(which is how it notices another consumer of the key), and retries through the scheduler.
"""

from __future__ import annotations

from typing import Any

import anthropic

from asyncthrift import Thrift, ThriftError

from . import RunContext, gather_all

NAME = "asyncthrift_peer"
TITLE = "asyncthrift"


async def run(ctx: RunContext) -> None:
    async with Thrift(
        api_key=ctx.api_key, base_url=ctx.base_url, limits=ctx.workload.limits, cache=None
    ) as client:

        async def one(i: int, body: dict[str, Any]) -> None:
            try:
                await client.messages.create(**body)
            except (anthropic.APIError, ThriftError) as exc:
                ctx.done(i, False, exc)
            else:
                ctx.done(i, True)

        try:
            await gather_all(ctx, one)
        finally:
            ctx.retries += client.stats().retries

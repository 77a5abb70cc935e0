"""Rate-limit answering of the mock: charge an admitted request, or the 429 that refuses it.

The buckets themselves are `_ratelimit.ServerBudget`; this is the decision in front of them
and the answer the API gives when it says no (a request that can never fit, or one that
must wait), with the headers and wording of the real API. A refusal charges nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._http_types import Response
from ._ratelimit import DIMENSIONS, ServerBudget

if TYPE_CHECKING:
    from ._config import Faults
    from ._server import MockServer

__all__ = ["admit", "unexplained_429"]


def admit(
    server: MockServer,
    budget: ServerBudget,
    cls: str,
    cost: tuple[float, float, float],
    reserve: bool,
    now: float,
    headers: list[tuple[str, str]],
) -> Response | None:
    """Charge `cost` if every bucket can pay it now; else the 429 to answer (uncharged).

    A 429 is answered at once, so its rate-limit headers are as of the refusal whatever
    `MockConfig.headers_at` says.
    """
    never = budget.never_fits(cost)
    if never is not None:
        dim = budget.dims[never]
        assert dim is not None
        what = DIMENSIONS[never][1]
        return server._error(
            429,
            f"This request needs {cost[never]:,.0f} {what} but your rate limit for "
            f"{cls} models is {dim.capacity:,.0f} {what} per {budget.limits.period:g} s: "
            "it can never be admitted. Reduce the prompt length or max_tokens.",
            [
                *headers,
                *budget.headers(now, server.wall()),
                ("retry-after", str(math.ceil(budget.limits.period))),
                ("x-should-retry", "false"),
            ],
        )
    need = cost if reserve else (cost[0], cost[1], 1.0)
    wait, which = budget.check(need, now)
    if wait > 0:
        dim = budget.dims[which]
        assert dim is not None
        what = DIMENSIONS[which][1]
        per = "minute" if budget.limits.period == 60 else f"{budget.limits.period:g} s"
        c = server.counters
        c.rate_limited += 1
        return server._error(
            429,
            f"This request would exceed your organization's rate limit of "
            f"{dim.capacity:,.0f} {what} per {per} for {cls} models. Please reduce the "
            "prompt length or the maximum tokens requested, or try again later.",
            [
                *headers,
                *budget.headers(now, server.wall()),
                *server._retry_headers(wait),
            ],
        )
    budget.take(cost, now)
    return None


def unexplained_429(
    server: MockServer,
    budget: ServerBudget | None,
    cls: str,
    input_tokens: int,
    max_tokens: int,
    faults: Faults,
) -> Response:
    """The 429 of `Faults.rate_limited`: refused although the buckets had room (the API's
    acceleration limits), so its headers show capacity left; a client can only obey its
    `retry-after`. Charges nothing."""
    server.counters.rate_limited += 1
    server._record(cls, input_tokens, max_tokens, 429)
    now = server._now()
    headers = [] if budget is None else budget.headers(now, server.wall())
    return server._error(
        429,
        f"This request was refused by an acceleration limit on {cls} models: your usage "
        "grew too quickly. Please ramp up gradually and try again later.",
        [*headers, *server._retry_headers(faults.rate_limited_retry_after)],
    )

"""``messages.count_tokens`` under the client's limits, feeding the input estimator.

Anthropic rate-limits token counting on a request budget of its own, separate from the
Messages limits (and from each model class). So count_tokens calls queue in a gate of their
own — one budget per key, requests only, priority lanes and ``deadline=`` as for Messages —
and never delay or starve message traffic. Its limit is learned from the response headers
(``anthropic-ratelimit-requests-*``) and from 429s, and can be set up front with
`set_count_tokens_limit` so that even the first burst stays under it.

A count is a route of the one request pipeline (`asyncthrift.client._pipeline`): admitted, sent,
resynced and retried like any call; only the innermost send differs.

The count is exact for the request it was asked about, which is what the input estimator
learns from: unless the call passes ``calibrate=False``, the ratio of counted to estimated
tokens updates the model class's calibrator, exactly as a Messages response's ``usage``
does. Counting is free and its answer depends on the tokenizer of the day, so it is never
cached; ``cache=``/``dedupe=`` are accepted for symmetry and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

import anthropic
from anthropic.types import MessageTokensCount

from ..core.tokens import estimate_input_tokens
from ..pipeline._attempt import Attempt, Call, Plan, Planner
from ..pipeline._routes import BETA_MESSAGES, MESSAGES, Resource
from ..scheduling.bucket import Cost
from ._pipeline import COUNT_TOKENS_CLASS, Pipeline

__all__ = [
    "COUNT_TOKENS_CLASS",
    "CountLimited",
    "count_tokens",
    "set_count_tokens_limit",
    "split_count_kwargs",
]

_COST: Final = Cost(1, 0, 0)


class CountLimited(Protocol):
    """A client whose count_tokens calls can be limited up front (a `Thrift`)."""

    def set_count_tokens_limit(self, rpm: float | None, *, period: float = 60.0) -> None: ...


def set_count_tokens_limit(
    client: CountLimited, rpm: float | None, *, period: float = 60.0
) -> None:
    """Limit `client`'s count_tokens calls to `rpm` per key (None: learn it from headers).

    Anthropic's published count_tokens limits are 100, 2,000, 4,000 and 8,000 requests per
    minute for tiers 1 to 4. Call this before the first ``count_tokens``.
    """
    client.set_count_tokens_limit(rpm, period=period)


def split_count_kwargs(kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(calibrate, the rest) of ``count_tokens``' arguments, with the ``max_tokens`` the
    shared validation wants lent when absent (`count_tokens` gives it back)."""
    kwargs = dict(kwargs)
    calibrate = kwargs.pop("calibrate", True)
    if not isinstance(calibrate, bool):
        raise TypeError(f"calibrate= must be True or False, got {calibrate!r}")
    if "max_tokens" not in kwargs:
        kwargs["max_tokens"] = _LENT
    return calibrate, kwargs


#: The ``max_tokens`` lent to the shared validation (count_tokens takes none).
_LENT: Final = 1


class _CountRoute:
    """The pipeline's innermost step for ``count_tokens``: its own gate, no tokens charged."""

    __slots__ = ("calibrate", "resource")
    headers_at_start = False

    def __init__(self, calibrate: bool, resource: Resource) -> None:
        self.calibrate = calibrate
        self.resource = resource

    def plan(self, planner: Planner, params: Mapping[str, Any]) -> Plan:
        return Plan(planner.count_class(), _COST, 0.0, 0.0)

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        return await self.resource(sdk).count_tokens(**params)

    def received(self, attempt: Attempt, result: Any) -> Any:
        counted: MessageTokensCount = result
        attempt.succeeded(None, None)
        if self.calibrate:
            params = attempt.call.params
            calibrator = attempt.context.calibrator_for(params["model"])
            if calibrator is not None:
                calibrator.observe(estimate_input_tokens(params), counted.input_tokens)
        return counted


class _RawCountRoute(_CountRoute):
    """``messages.with_raw_response.count_tokens``: the SDK's raw response, its count read."""

    __slots__ = ()

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        raw = await self.resource(sdk).with_raw_response.count_tokens(**params)
        return raw, await raw.parse()  # the SDK keeps the parsed count for the caller

    def received(self, attempt: Attempt, result: Any) -> Any:
        raw, counted = result
        super().received(attempt, counted)
        return raw


_ROUTES: Final = {
    (raw, calibrate, resource): (_RawCountRoute if raw else _CountRoute)(calibrate, resource)
    for raw in (False, True)
    for calibrate in (True, False)
    for resource in (MESSAGES, BETA_MESSAGES)
}


async def count_tokens(
    pipeline: Pipeline,
    call: Call,
    calibrate: bool,
    *,
    raw: bool = False,
    resource: Resource = MESSAGES,
) -> Any:
    """``messages.count_tokens(...)``: scheduled, retried, and (by default) calibrating.

    Extra keyword options: ``priority``, ``deadline`` (as for ``create``) and ``calibrate``
    (default True: let the exact count teach the input estimator). Everything else goes to
    the SDK's ``count_tokens`` unchanged. Counted in ``stats()`` like any call. `raw`: answer
    the SDK's raw response (``with_raw_response.count_tokens``) instead of the count.
    `resource`: `BETA_MESSAGES` for ``beta.messages.count_tokens`` (same gate and budget).
    """
    route = _ROUTES[raw, calibrate, resource]
    if call.params.get("max_tokens") is _LENT:
        del call.params["max_tokens"]
    return await pipeline.run_to_end(call, route)

"""``messages.count_tokens`` under the client's limits, feeding the input estimator.

Anthropic rate-limits token counting on a request budget of its own, separate from the
Messages limits (and from each model class). So count_tokens calls queue in a gate of their
own — one budget per key, requests only, priority lanes and ``deadline=`` as for Messages —
and never delay or starve message traffic. Its limit is learned from the response headers
(``anthropic-ratelimit-requests-*``) and from 429s, and can be set up front with
`set_count_tokens_limit` so that even the first burst stays under it.

The count is exact for the request it was asked about, which is what the input estimator
learns from: unless the call passes ``calibrate=False``, the ratio of counted to estimated
tokens updates the model class's calibrator, exactly as a Messages response's ``usage``
does. Counting is free and its answer depends on the tokenizer of the day, so it is never
cached; ``cache=``/``dedupe=`` are accepted for symmetry and ignored.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, Final

import anthropic
from anthropic.types import MessageTokensCount

from ._options import split_options
from .bucket import Cost, LocalBudget
from .client import _Attempts, _ModelClass, _Plan
from .limits import Limits
from .metrics import hub_for, status_of
from .scheduler import Gate
from .tokens import estimate_input_tokens

if TYPE_CHECKING:
    from .client import Thrift

__all__ = ["COUNT_TOKENS_CLASS", "count_tokens", "set_count_tokens_limit"]

COUNT_TOKENS_CLASS: Final = "count_tokens"
"""The name of the count_tokens gate and the suffix of its budgets (``key0/count_tokens``)."""

_COST: Final = Cost(1, 0, 0)
_STATE: weakref.WeakKeyDictionary[Thrift, _ModelClass] = weakref.WeakKeyDictionary()
_LIMITS: weakref.WeakKeyDictionary[Thrift, Limits] = weakref.WeakKeyDictionary()


def set_count_tokens_limit(client: Thrift, rpm: float | None, *, period: float = 60.0) -> None:
    """Limit `client`'s count_tokens calls to `rpm` per key (None: learn it from headers).

    Anthropic's published count_tokens limits are 100, 2,000, 4,000 and 8,000 requests per
    minute for tiers 1 to 4. Call this before the first ``count_tokens``.
    """
    if client in _STATE:
        raise RuntimeError("set_count_tokens_limit() must be called before the first count_tokens")
    _LIMITS[client] = Limits(rpm=rpm, period=period)


def _gate(client: Thrift) -> _ModelClass:
    mc = _STATE.get(client)
    if mc is None:
        loop = asyncio.get_running_loop()
        limits = _LIMITS.get(client, Limits())
        budgets = [
            LocalBudget(limits, loop.time(), name=f"{key.name}/{COUNT_TOKENS_CLASS}")
            for key in client._keys
        ]
        gate = Gate(
            budgets, aging=client._aging, counter=client._queue, name=COUNT_TOKENS_CLASS, loop=loop
        )
        mc = _STATE[client] = _ModelClass(COUNT_TOKENS_CLASS, list(budgets), gate)
    return mc


async def count_tokens(client: Thrift, kwargs: dict[str, Any]) -> MessageTokensCount:
    """``messages.count_tokens(...)``: scheduled, retried, and (by default) calibrating.

    Extra keyword options: ``priority``, ``deadline`` (as for ``create``) and ``calibrate``
    (default True: let the exact count teach the input estimator). Everything else goes to
    the SDK's ``count_tokens`` unchanged. Counted in ``stats()`` like any call.
    """
    kwargs = dict(kwargs)
    calibrate = kwargs.pop("calibrate", True)
    if not isinstance(calibrate, bool):
        raise TypeError(f"calibrate= must be True or False, got {calibrate!r}")
    # count_tokens takes no max_tokens; lend one to the shared validation, then drop it.
    lent = "max_tokens" not in kwargs
    if lent:
        kwargs["max_tokens"] = 1
    opts, params = split_options(kwargs)
    if lent:
        del params["max_tokens"]
    if client._closed:
        raise RuntimeError("this Thrift client is closed; create a new one")
    hub = hub_for(client)
    rec = hub.start(COUNT_TOKENS_CLASS, params["model"], opts.level)
    stats = client._stats
    stats.requests += 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    plan = _Plan(_gate(client), _COST, 0.0)
    attempt = _Attempts(started)
    try:
        with hub.activate(rec):
            while True:
                reservation = await client._admit(plan, opts, attempt)
                key = client._keys[reservation.index]
                up_started = hub.upstream_started(rec, key.name)
                try:
                    raw = await key.sdk.messages.with_raw_response.count_tokens(**params)
                    result: MessageTokensCount = await raw.parse()
                except BaseException as exc:
                    client._on_failure(plan, reservation, exc)
                    hub.upstream_finished(rec, status_of(exc), exc, up_started)
                    if not isinstance(exc, anthropic.APIStatusError | anthropic.APIConnectionError):
                        raise
                    delay = client._retry_delay(exc, attempt)
                    if delay is None:
                        raise
                    if delay > 0:
                        await asyncio.sleep(delay)
                    continue
                hub.upstream_finished(rec, 200, None, up_started)
                client._on_response_headers(plan, reservation, raw.headers)
                reservation.settle(0, 0)
                break
    except BaseException as exc:
        stats.failed += 1
        hub.finish(rec, exc)
        raise
    if calibrate:
        mc = client._model_class(params["model"])
        mc.calibrator.observe(estimate_input_tokens(params), result.input_tokens)
    stats.succeeded += 1
    stats.latencies.append(loop.time() - started)
    hub.finish(rec, None)
    return result

"""What every forwarded request goes through before the library sees it, in this order:
draining (503), authentication (401, nothing forwarded), the body read with a cap (413
before parsing), JSON (400), the lane and deadline headers (400), the client's own quota
(429 from the gateway, naming the client's quota). Then the `Exchange` is made.

Also `until_disconnect`: a call that stops the moment its client goes away, so a request
waiting in the queue frees its place (and the library gives its reservation back) at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import orjson
from starlette.requests import Request
from starlette.types import Receive

from .access_log import fields_of
from .clients import LANES, ClientDirectory, GatewayClient, Lane
from .errors import GatewayError
from .exchange import Exchange, Telemetry
from .metering import Meter
from .quotas import QuotaGrant, QuotaRefusal

__all__ = ["ClientGone", "Quotas", "read_body", "take_in", "until_disconnect"]

_T = TypeVar("_T")

PRIORITY_HEADER = "asyncthrift-priority"
DEADLINE_HEADER = "asyncthrift-deadline"


class Quotas(Protocol):
    """The per-client quotas and spend caps (`asyncthrift.gateway.quotas.ClientQuotas`)."""

    async def admit(
        self, client: GatewayClient, *, input_tokens: int, max_tokens: int, worst_usd: float
    ) -> QuotaGrant | QuotaRefusal: ...


class ClientGone(Exception):
    """The client disconnected before its answer was ready; there is no one to answer."""


class Intake(Protocol):
    """What `take_in` needs of the gateway."""

    @property
    def draining(self) -> bool: ...
    @property
    def directory(self) -> ClientDirectory: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def max_wait(self) -> float: ...
    @property
    def quotas(self) -> Quotas | None: ...
    @property
    def telemetry(self) -> Telemetry | None: ...
    @property
    def packing(self) -> bool: ...


async def take_in(request: Request, gateway: Intake, *, meter: Meter | None = None) -> Exchange:
    """The request's `Exchange`, or a `GatewayError` saying why it is refused.

    `meter`: what the call takes from the client's quota and spend cap
    (`asyncthrift.gateway.metering`: a message, count_tokens, a batch); None: models and
    the other batch calls, authenticated and limited in size only."""
    if gateway.draining:
        raise GatewayError(503, "The gateway is draining; retry", retry_after=1.0, reason="drain")
    client = gateway.directory.authenticate(request.headers)
    if client is None:
        raise GatewayError(401, "invalid x-api-key", reason="auth")
    fields = fields_of(request.scope)
    fields["client"] = client.name
    lane = fields["lane"] = _lane(request, client)
    body = await read_body(request, gateway.max_body_bytes)
    exchange = Exchange(
        client=client,
        lane=lane,
        deadline=_deadline(request, gateway.max_wait),
        body=_json_object(body) if body else {},
        telemetry=gateway.telemetry,
        log=fields,
        packing=gateway.packing,
    )
    if meter is not None and gateway.quotas is not None:
        await _admit_quota(gateway.quotas, exchange, meter)
    return exchange


async def _admit_quota(quotas: Quotas, exchange: Exchange, meter: Meter) -> None:
    """Ask the client's quota (never waits); a refusal is the gateway's own 429."""
    charge = meter(exchange.body)
    exchange.held = (charge.input_tokens, charge.max_tokens, charge.worst_usd)
    exchange.keep_held = charge.keep
    answer = await quotas.admit(
        exchange.client,
        input_tokens=charge.input_tokens,
        max_tokens=charge.max_tokens,
        worst_usd=charge.worst_usd,
    )
    if isinstance(answer, QuotaRefusal):  # the client's own quota or cap: the gateway's 429
        refusal = answer
        raise GatewayError(
            429,
            refusal.message,
            retry_after=refusal.retry_after,
            headers=dict(refusal.headers),
            reason="quota",
        )
    exchange.grant = answer


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to be over `limit` bytes: from its
    ``Content-Length`` before reading anything, else while reading (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise GatewayError(400, "Content-Length is not a number", reason="invalid") from None
        if size > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"Request exceeds the gateway's maximum size of {limit} bytes", reason="size"
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            400, f"The request body is not valid JSON: {exc}", reason="json"
        ) from None
    if not isinstance(value, dict):
        raise GatewayError(400, "The request body must be a JSON object", reason="json")
    return value


def _lane(request: Request, client: GatewayClient) -> Lane:
    given = request.headers.get(PRIORITY_HEADER)
    if given is None:
        return client.lane
    lane = given.strip().lower()
    for known in LANES:
        if lane == known:
            return known
    raise GatewayError(
        400, f"{PRIORITY_HEADER} must be one of {', '.join(LANES)}, got {given!r}", reason="invalid"
    )


def _deadline(request: Request, default: float) -> float:
    """The header's seconds, capped at ``--max-wait`` (the operator's ceiling on a wait)."""
    given = request.headers.get(DEADLINE_HEADER)
    if given is None:
        return default
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise GatewayError(
            400, f"{DEADLINE_HEADER} must be seconds >= 0, got {given!r}", reason="invalid"
        )
    return min(seconds, default)


async def until_disconnect(
    receive: Receive, work: Awaitable[_T], *, answered: Callable[[], bool] | None = None
) -> _T:
    """Run `work`; if the client disconnects first, cancel it (a queued call leaves its lane
    and gives its reservation back; a sent one is settled by the library) and raise
    `ClientGone`. Call it only once the body has been read: `receive` then yields nothing but
    ``http.disconnect``. Once `answered()` is true (the answer was written while `work`
    settles it: `asyncthrift.gateway.early`), a disconnect cancels nothing: the server
    says ``http.disconnect`` as soon as a response is complete.

    `work` runs in this task (one watcher task beside it, no task of its own and no
    ``asyncio.wait``: a request's answer comes back in fewer turns of the loop); the watcher
    cancels this task when the client leaves, and that cancellation, and only that one,
    becomes `ClientGone`."""
    this = asyncio.current_task()
    if this is None:  # not in a task (never under an ASGI server): nothing to cancel
        return await work
    watch = _Watch(this, answered)
    watcher = asyncio.ensure_future(watch.run(receive))
    try:
        return await work
    except asyncio.CancelledError:
        if watch.gone and watch.take_back():
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()
        watch.take_back()  # the client left as `work` ended by itself: nothing to cancel


class _Watch:
    """Cancels `task` when the client disconnects; `take_back` withdraws that cancellation
    once (so a later wait in the same task is not cut short by it)."""

    __slots__ = ("answered", "gone", "pending", "task")

    def __init__(self, task: asyncio.Task[Any], answered: Callable[[], bool] | None) -> None:
        self.task = task
        self.answered = answered
        self.gone = False
        self.pending = False

    async def run(self, receive: Receive) -> None:
        await _disconnected(receive)
        if self.answered is not None and self.answered():
            return  # the response is complete: nothing left to stop
        self.gone = self.pending = True
        self.task.cancel()

    def take_back(self) -> bool:
        """True if this watch had cancelled the task (and now no longer has)."""
        if not self.pending:
            return False
        self.pending = False
        self.task.uncancel()
        return True


async def _disconnected(receive: Callable[[], Awaitable[Any]]) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return

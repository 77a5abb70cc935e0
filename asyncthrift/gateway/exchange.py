"""One client request as the gateway follows it: who sent it, in which lane, whether it was
sent upstream, its client-quota grant, and the end that settles that grant exactly once.

The `Thrift` underneath knows nothing of gateway clients; `ExchangeObserver` finds the
request's `Exchange` through a context variable (set before the call's task is created, so
the library's hooks, run in that task, see it) to count queueing per client and lane.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..client._observers import Observer
from .clients import GatewayClient, Lane

if TYPE_CHECKING:
    from ..client._observers import RequestRecord

__all__ = ["CURRENT", "Exchange", "ExchangeObserver", "Grant", "Telemetry"]


class Grant(Protocol):
    """A client-quota grant (`asyncthrift.gateway.quotas.QuotaGrant`)."""

    async def settle(self, *, input_tokens: int, output_tokens: int, cost_usd: float) -> None: ...

    async def release(self) -> None: ...


class Telemetry(Protocol):
    """The counters the handlers feed (`asyncthrift.gateway.telemetry.GatewayTelemetry`)."""

    def queued(self, client: str, lane: Lane) -> None: ...

    def left_queue(self, client: str, lane: Lane, *, waited: float, admitted: bool) -> None: ...

    def finished(
        self,
        client: str,
        lane: Lane,
        *,
        status: int,
        cost_usd: float,
        input_tokens: int,
        output_tokens: int,
    ) -> None: ...

    def refused(self, client: str, lane: Lane, *, status: int, reason: str) -> None: ...


@dataclass(slots=True, eq=False)
class Exchange:
    """One request through the gateway, from authentication to its last byte."""

    client: GatewayClient
    lane: Lane
    deadline: float
    body: Mapping[str, Any]
    telemetry: Telemetry | None = None
    grant: Grant | None = None
    sent: bool = False
    started: float = field(default_factory=time.monotonic)
    queued_s: float = 0.0
    log: dict[str, Any] = field(default_factory=dict)
    #: what the client's quota holds for it: (input estimate, max_tokens, worst dollars)
    held: tuple[int, int, float] = (0, 0, 0.0)
    #: charge `held` itself once answered (count_tokens, a batch: no usage to settle to)
    keep_held: bool = False
    #: the scheduler admitted it (in this context): it was not a cache hit or a twin
    admitted: bool = False
    #: the gateway packs (``--pack``): a packed request is sent from the packer's task, so
    #: an answer seen neither admitted nor sent here may still have been sent
    packing: bool = False
    _settled: bool = False

    @property
    def model(self) -> str:
        model = self.body.get("model")
        return model if isinstance(model, str) else ""

    async def finish(
        self,
        status: int,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float = 0.0,
        refused: str | None = None,
    ) -> None:
        """Settle the quota grant and count the outcome, once (later calls do nothing);
        `refused`: the gateway answered it itself (why: "deadline", "disconnected", ...).

        A request the scheduler admitted or sent is settled with what it used; count_tokens
        and a batch (`keep_held`) are charged what they held; a request never admitted nor
        sent (a cache hit, a twin of a call in flight, a refusal) gives its whole grant back,
        unless packing may have sent it unseen (see `fail` for a failure)."""
        if self._settled:
            return
        self._settled = True
        # the outcome, beside the HTTP status the access log reads from the response (a
        # stream whose client left mid-way was a 200 and is a 499 here)
        self.log.update(outcome=status, input_tokens=input_tokens, output_tokens=output_tokens)
        self.log["queue_ms"] = round(self.queued_s * 1000.0, 3)
        if self.telemetry is not None and refused is not None:
            self.telemetry.refused(self.client.name, self.lane, status=status, reason=refused)
        elif self.telemetry is not None:
            self.telemetry.finished(
                self.client.name,
                self.lane,
                status=status,
                cost_usd=cost_usd,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
            )
        grant, self.grant = self.grant, None
        if grant is None:
            return
        if self.keep_held and status < 400:
            tokens_in, tokens_out, dollars = self.held
            await grant.settle(input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=dollars)
        elif self.sent or self.admitted or (self.packing and (input_tokens or output_tokens)):
            await grant.settle(
                input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd
            )
        else:
            # never sent: refused, or answered by the cache or a twin in flight (no call, no
            # bill: a quota protects the upstream and the bill, so nothing is charged)
            await grant.release()

    async def fail(self, status: int, reason: str) -> None:
        """A failure the gateway answers (`reason`: `GatewayError.reason`). Sent upstream
        and not refused there (an upstream 4xx, a 429 left after retries: nothing charged),
        the request may have been charged and its usage is unknown: the quota keeps what it
        held for it (the input estimate and ``max_tokens``), so it never under-counts."""
        refused_upstream = reason == "upstream-429" or (reason == "upstream" and status < 500)
        # the upstream's own failures are outcomes; the rest the gateway refused itself
        refused = None if reason in ("upstream", "upstream-429", "internal") else reason
        if self.sent and not refused_upstream and reason != "invalid":
            tokens_in, tokens_out, dollars = self.held
            await self.finish(
                status,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost_usd=dollars,
                refused=refused,
            )
        else:
            await self.finish(status, refused=refused)


#: The exchange of the request whose call is running in this context (None: not a gateway
#: request, or a call the library runs in a task of its own, like a packed batch).
CURRENT: Final[contextvars.ContextVar[Exchange | None]] = contextvars.ContextVar(
    "asyncthrift_gateway_exchange", default=None
)


class ExchangeObserver(Observer):
    """Tells each request's `Exchange` (and the telemetry) when it queues, leaves the queue
    and is sent upstream."""

    def __init__(self, telemetry: Telemetry | None) -> None:
        self.telemetry = telemetry

    def queue_entered(self, rec: RequestRecord) -> None:
        exchange = CURRENT.get()
        if exchange is not None and self.telemetry is not None:
            self.telemetry.queued(exchange.client.name, exchange.lane)

    def queue_left(self, rec: RequestRecord, waited: float, error: BaseException | None) -> None:
        exchange = CURRENT.get()
        if exchange is None:
            return
        exchange.queued_s += waited
        exchange.admitted = exchange.admitted or error is None
        if self.telemetry is not None:
            self.telemetry.left_queue(
                exchange.client.name, exchange.lane, waited=waited, admitted=error is None
            )

    def upstream_started(self, rec: RequestRecord, key: str) -> None:
        exchange = CURRENT.get()
        if exchange is not None:
            exchange.sent = True

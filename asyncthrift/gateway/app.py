"""The gateway's ASGI app: one `Thrift` behind the Messages API's routes, `/healthz`, draining.

`Gateway` holds what every request shares (the config, the client directory, the `Thrift`,
the client quotas and telemetry when present, the draining flag and the count of requests
in flight). `build_app` wires it into a starlette app whose lifespan opens the `Thrift`
and, at shutdown, closes it draining (queued requests are still sent, up to ``--grace``).
Each route runs through `_endpoint`: intake (auth, size, JSON, lane, quota), the handler,
and one error path that answers the API's envelope and settles the exchange.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..client import KeyConfig, Thrift
from ..client._forwarding import ForwardedMessages
from ..scheduling.limits import Limits
from .access_log import AccessLog, fields_of
from .clients import ClientDirectory
from .config import GatewayConfig
from .early import EARLY_KEY, EarlyAnswer
from .errors import error_response, failure_of
from .exchange import Exchange, ExchangeObserver
from .inflight import InFlight
from .intake import ClientGone, take_in
from .messages import count_tokens, create_message
from .metering import Meter, batch_charge, count_charge, message_charge
from .quotas import ClientQuotas
from .status import gateway_status, ops_routes
from .telemetry import GatewayTelemetry
from .upstream import batch_create, batch_item, batch_list, batch_results, models

__all__ = ["Gateway", "InFlight", "build_app", "build_thrift"]

log = logging.getLogger("asyncthrift.gateway")

Handler = Callable[[Request, "Gateway", Exchange], Awaitable[Response]]


class Gateway:
    """What the gateway's requests share."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.directory: ClientDirectory = config.directory()
        clients = self.directory.clients
        self.telemetry = GatewayTelemetry(clients=[c.name for c in clients])
        limited = [c for c in clients if c.quota is not None or c.spend_cap_usd is not None]
        self.quotas: ClientQuotas | None = None
        if limited:  # checked here, so a keys file's bad quota fails at start
            self.quotas = ClientQuotas(limited, shared=config.shared, period=_period(config))
        self.draining = False
        self.inflight = InFlight()
        self._thrift: Thrift | None = None
        self._forwarded: ForwardedMessages | None = None

    @property
    def thrift(self) -> Thrift:
        if self._thrift is None:
            raise RuntimeError("the gateway's Thrift is opened by the app's lifespan")
        return self._thrift

    @property
    def forwarded(self) -> ForwardedMessages:
        """Non-streamed ``create`` whose answer is the upstream's bytes (made once: it keeps
        the calls in flight that twins join)."""
        if self._forwarded is None:
            self._forwarded = self.thrift.messages.with_raw_response.forwarding()
        return self._forwarded

    @property
    def max_body_bytes(self) -> int:
        return self.config.max_body_bytes

    @property
    def max_wait(self) -> float:
        return self.config.max_wait

    @property
    def packing(self) -> bool:
        return self.config.pack

    def open(self) -> None:
        if self._thrift is None:
            self._thrift = build_thrift(self.config, ExchangeObserver(self.telemetry))

    def start_draining(self) -> None:
        """From now on new requests get 503 and ``/healthz`` says draining."""
        if not self.draining:
            log.info("gateway: draining (%d in flight)", self.inflight.count)
        self.draining = True

    async def aclose(self) -> None:
        """Close the `Thrift`, still sending what is queued, up to the grace period; then
        the quotas (their last settlements reach Redis first)."""
        self.draining = True
        thrift, self._thrift = self._thrift, None
        forwarded, self._forwarded = self._forwarded, None
        if thrift is not None:
            await thrift.aclose(drain=True, grace=self.config.grace)
        if forwarded is not None:  # its HTTP sessions, once nothing is in flight
            await forwarded.aclose()
        if self.quotas is not None:
            await self.quotas.aclose()

    def queued(self) -> int:
        """Requests waiting for budget now (every lane and model class)."""
        thrift = self._thrift
        return 0 if thrift is None else thrift.stats().queued

    def status(self) -> Mapping[str, Any]:
        """The live half of ``/status.json`` (`asyncthrift.gateway.status.gateway_status`)."""
        extra = {"gateway_in_flight": self.inflight.count}
        if self._thrift is None:
            return {"draining": self.draining, **extra}
        return gateway_status(self._thrift, draining=self.draining, quotas=self.quotas, extra=extra)


def _period(config: GatewayConfig) -> float:
    """The quotas' minute: the upstream limits' period when they compress time (a mock)."""
    limits = config.limits
    return limits.period if isinstance(limits, Limits) else 60.0


def build_thrift(config: GatewayConfig, observer: ExchangeObserver) -> Thrift:
    """The one `Thrift` every request goes through: the upstream key pool, the limits, the
    shared budget, the cache, packing."""
    keys = [
        KeyConfig(
            api_key=key,
            limits=config.limits,
            base_url=config.base_url,
            name=f"upstream-{i}",
            budget=config.upstream_budget,
        )
        for i, key in enumerate(config.upstream_keys, 1)
    ]
    return Thrift(
        keys=keys,
        base_url=config.base_url,
        cache=config.cache,
        shared=config.shared,
        pack=True if config.pack else None,
        observers=[observer],
    )


def _endpoint(
    handler: Handler, *, meter: Meter | None = None
) -> Callable[[Request], Awaitable[Any]]:
    """`handler` behind the intake, counted in flight, its failures in the API's envelope."""

    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        ticket = gateway.inflight.enter()
        exchange: Exchange | None = None
        try:
            exchange = await take_in(request, gateway, meter=meter)
            response = await handler(request, gateway, exchange)
            if not isinstance(response, StreamingResponse):
                await exchange.finish(response.status_code)
            return response
        except ClientGone:
            if exchange is not None:
                await exchange.fail(499, "disconnected")
            return Response(status_code=499)  # nobody reads it; the access log does
        except Exception as exc:
            failure = failure_of(exc)
            if exchange is not None:
                await exchange.fail(failure.status, failure.reason or "error")
            else:
                _refused(gateway, request, failure.status, failure.reason)
            return failure.response()
        finally:
            ticket.leave()

    return endpoint


def _refused(gateway: Gateway, request: Request, status: int, reason: str) -> None:
    """Count a request refused before it had an exchange (401, 413, 400, 429, 503)."""
    fields = fields_of(request.scope)
    gateway.telemetry.refused(
        str(fields.get("client", "unknown")),
        fields.get("lane", "default"),
        status=status,
        reason=reason,
    )


async def healthz(request: Request) -> Response:
    """200 while serving, 503 while draining (a balancer stops sending here); with the
    requests in flight and those of them waiting for budget."""
    gateway: Gateway = request.app.state.gateway
    body = {
        "status": "draining" if gateway.draining else "serving",
        "in_flight": gateway.inflight.count,
        "queued": gateway.queued(),
    }
    return JSONResponse(body, status_code=503 if gateway.draining else 200)


def api_routes() -> list[BaseRoute]:
    """The Messages API's routes and ``/healthz``."""
    batch = "/v1/messages/batches"
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/messages", _endpoint(create_message, meter=message_charge), methods=["POST"]),
        Route(
            "/v1/messages/count_tokens",
            _endpoint(count_tokens, meter=count_charge),
            methods=["POST"],
        ),
        Route("/v1/models", _endpoint(models), methods=["GET"]),
        Route("/v1/models/{model_id}", _endpoint(models), methods=["GET"]),
        Route(batch, _endpoint(batch_create, meter=batch_charge), methods=["POST"]),
        Route(batch, _endpoint(batch_list), methods=["GET"]),
        Route(batch + "/{batch_id}", _endpoint(batch_item), methods=["GET", "DELETE"]),
        Route(batch + "/{batch_id}/cancel", _endpoint(batch_item), methods=["POST"]),
        Route(batch + "/{batch_id}/results", _endpoint(batch_results), methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "Not found", 405: "Method not allowed"}.get(status, "Error")
    return error_response(status, f"{message}: {request.method} {request.url.path}")


def build_app(
    gateway: Gateway,
    *,
    extra_routes: list[BaseRoute] | None = None,
    access_log: logging.Logger | None = None,
) -> Any:
    """The ASGI app (wrapped in the access log unless `access_log` is None)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.open()
        try:
            yield
        finally:
            await gateway.aclose()

    ops = ops_routes(telemetry=gateway.telemetry, status=gateway.status)
    app = Starlette(
        routes=api_routes() + ops + list(extra_routes or ()),
        lifespan=lifespan,
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.gateway = gateway
    hot = {("POST", "/v1/messages"): _endpoint(create_message, meter=message_charge)}
    served = Shortcut(app, hot)
    if access_log is None:
        return served
    return AccessLog(served, access_log)


class Shortcut:
    """The ASGI app with its busiest routes called straight, past starlette's middleware
    and router (about a tenth of the gateway's CPU per request): an `_endpoint` answers
    every failure itself, so the middleware would never see one. Anything else goes to
    `app` (whose routes include these too). A request here may be answered before its
    handler returns (`asyncthrift.gateway.early`): then nothing more is sent."""

    def __init__(
        self, app: Starlette, routes: Mapping[tuple[str, str], Callable[[Request], Awaitable[Any]]]
    ) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self.app  # as starlette sets it: `request.app.state`
                early = scope[EARLY_KEY] = EarlyAnswer(send)  # an answer written at once
                response = await endpoint(Request(scope, receive, send))
                if not early.sent:
                    await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""The gateway's operations routes: ``GET /metrics`` (Prometheus text), ``GET /status.json``
(the telemetry's snapshot merged with the live state of the `Thrift` behind the gateway) and
``GET /``, the status page.

The page is one static HTML document (`asyncthrift.gateway._status_page`: inline CSS and
JS, no build step, no external asset, so it works on an air-gapped host) that fetches
``status.json`` every 1.5 s and draws it. Serving it static means the page costs nothing
until someone looks, and what it shows is exactly what the JSON says (the screenshot test
checks the numbers arrive through that fetch).

`gateway_status` builds the live half of ``/status.json`` from a `Thrift`: the budgets per
limit (level and capacity of each bucket, read with the pure ``peek``), the savings from
``Thrift.stats()``, the per-client quota use from `ClientQuotas.snapshot`. Budget names are
the scheduler's labels, never a key.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..scheduling.budget import LocalBudget
from ..stores.shared import SharedBudget
from ._status_page import PAGE
from .telemetry import GatewayTelemetry

if TYPE_CHECKING:
    from ..client.thrift import Thrift
    from .quotas import ClientQuotas

__all__ = ["SAVINGS_FIELDS", "gateway_status", "normalized", "ops_routes"]

_DIMENSIONS: Final = ("rpm", "itpm", "otpm")
#: The `Stats` fields the status page shows under "savings" (and beside them, what was spent).
SAVINGS_FIELDS: Final = (
    "requests",
    "upstream_calls",
    "in_flight",
    "cost_usd",
    "cache_hits",
    "dedupe_joins",
    "packed_calls",
    "packed_items",
    "upstream_calls_saved",
    "tokens_saved",
    "dollars_saved",
    "prompt_cache_tokens_saved",
    "rate_limited",
)
_NO_STORE: Final = {"cache-control": "no-store"}
PROMETHEUS_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def ops_routes(
    *, telemetry: GatewayTelemetry, status: Callable[[], Mapping[str, Any]]
) -> list[BaseRoute]:
    """``/metrics``, ``/status.json`` and ``/`` for the gateway's starlette app. `status` is
    called once per ``/status.json`` request (see `gateway_status`); an exception there
    leaves the telemetry's half served and says what failed, so the page stays up."""

    async def metrics(request: Request) -> Response:
        return Response(telemetry.prometheus(), media_type=PROMETHEUS_TYPE, headers=_NO_STORE)

    async def status_json(request: Request) -> Response:
        body: dict[str, Any] = dict(telemetry.snapshot())
        try:
            body.update(status())
        except Exception as exc:  # the page must keep working when one source fails
            body["status_error"] = f"{type(exc).__name__}: {exc}"
        body.setdefault("generated_at", time.time())
        return JSONResponse(_finite(normalized(body)), headers=_NO_STORE)

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=_NO_STORE)

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/status.json", status_json, methods=["GET"]),
        Route("/", page, methods=["GET"]),
    ]


def gateway_status(
    thrift: Thrift,
    *,
    draining: bool = False,
    quotas: ClientQuotas | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The live half of ``/status.json``: budgets per limit, savings, quota use, draining."""
    stats = thrift.stats()
    savings = {name: getattr(stats, name) for name in SAVINGS_FIELDS if hasattr(stats, name)}
    out: dict[str, Any] = {
        "generated_at": time.time(),
        "draining": draining,
        "budgets": budget_levels(thrift),
        "savings": savings,
        "upstream_queued": stats.queued,
        "in_flight": stats.in_flight,
        "quotas": {} if quotas is None else quotas.snapshot(),
    }
    if extra:
        out.update(extra)
    return out


def budget_levels(thrift: Thrift) -> list[dict[str, Any]]:
    """Each budget's buckets as {dim, level, capacity} (level: what is free now; negative
    while in debt), read with ``peek`` so looking never changes them.

    A shared budget (``--shared``) admits from a lease it takes from Redis, not from its
    local buckets (always full there): its row says so (``shared``: "shared", "fallback" or
    "closed") and gives, per limit, the lease this replica holds (``lease``) beside the
    limit; in fallback (Redis unreachable) the fallback's own buckets, as a local budget's.
    The shared level itself is in Redis: the budget does not expose its last reading."""
    now = thrift.now()
    rows: list[dict[str, Any]] = []
    for model_class, members in sorted(thrift.budgets().items()):
        for budget in members:
            row = {
                "name": budget.name or model_class,
                "model_class": model_class,
                "blocked_s": max(0.0, budget.blocked_until - now),
                "limits": _bucket_levels(budget, now),
            }
            if isinstance(budget, SharedBudget):
                row["shared"] = budget.mode
                fallback = budget.fallback
                if fallback is not None:
                    row["limits"] = _bucket_levels(fallback, now)
                elif budget.mode == "shared":
                    row["limits"] = _lease_levels(budget, now)
            rows.append(row)
    return rows


def _bucket_levels(budget: LocalBudget, now: float) -> list[dict[str, Any]]:
    return [
        {"dim": dim, "level": bucket.peek(now), "capacity": bucket.capacity}
        for dim, bucket in zip(_DIMENSIONS, budget.buckets, strict=False)
        if bucket is not None
    ]


def _lease_levels(budget: SharedBudget, now: float) -> list[dict[str, Any]]:
    """Per limit: this replica's lease (its share of the shared bucket, held here now)."""
    limits = budget.limits
    caps = (limits.rpm, limits.itpm, limits.otpm)
    return [
        {"dim": dim, "lease": lease, "capacity": cap}
        for dim, lease, cap in zip(_DIMENSIONS, budget.peek(now), caps, strict=False)
        if lease is not None and cap is not None
    ]


def normalized(body: dict[str, Any]) -> dict[str, Any]:
    """`body` in the shape the page reads, whichever way `status` gave it: budgets as a list
    of {name, model_class, limits: [{dim, level, capacity}]} (also from a mapping of model
    class to budgets with ``limits`` and ``available`` per dimension), and ``savings``
    (also picked from a full ``stats`` mapping)."""
    budgets = body.get("budgets")
    if isinstance(budgets, Mapping):
        body["budgets"] = [
            _budget_row(str(model_class), view)
            for model_class, views in sorted(budgets.items())
            for view in views
            if isinstance(view, Mapping)
        ]
    stats = body.get("stats")
    if "savings" not in body and isinstance(stats, Mapping):
        body["savings"] = {name: stats[name] for name in SAVINGS_FIELDS if name in stats}
    return body


def _budget_row(model_class: str, view: Mapping[str, Any]) -> dict[str, Any]:
    """One budget given as {name, limits: {dim: limit}, available: {dim: level}}."""
    limits = view.get("limits") or {}
    available = view.get("available") or {}
    rows = [
        {"dim": dim, "level": available[dim], "capacity": limits[dim]}
        for dim in _DIMENSIONS
        if limits.get(dim) is not None and _is_finite(available.get(dim))
    ]
    name = view.get("name") or model_class
    return {"name": name, "model_class": model_class, "blocked_s": 0.0, "limits": rows}


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _finite(value: Any) -> Any:
    """`value` with every non-finite float as None and dataclasses as dicts: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _finite(dataclasses.asdict(value))
    return value

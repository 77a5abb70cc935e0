"""Observability: request hooks, Prometheus metrics and OpenTelemetry spans.

Neither ``prometheus_client`` nor ``opentelemetry`` is imported unless you use the class that
needs it, so the core never depends on them (``pip install asyncthrift[prometheus]`` /
``asyncthrift[otel]``).

Two sources feed the metrics, chosen so the hot path pays almost nothing:

* **Counters already kept by the client** (requests, upstream calls, 429s, tokens, cost, cache
  and dedupe hits) and the **bucket levels** are read at scrape time by a collector. Nothing
  is recorded twice and an idle client costs nothing.
* **Hooks** at four points of the request path (request start and end, queue entry and exit,
  each upstream attempt) feed what only the path itself knows: latency histograms, queue
  depth per lane, and spans. `Observer.track(client)` installs them on that one client
  instance by wrapping its internal steps (`_create`, `_admit_now`, `_admit`, `_attempt`);
  the streaming and count_tokens paths call the same hooks directly. An untracked client
  runs unwrapped.

Series exported by `PrometheusMetrics` (prefix ``asyncthrift_``, every series labelled
``client``):

=================================  =========  ============================================
``requests_total``                 counter    calls made by the application
``requests_failed_total``          counter    calls that raised or were abandoned
``upstream_calls_total``           counter    HTTP attempts sent (retries included)
``retries_total``                  counter    attempts re-queued after a retryable error
``rate_limited_total``             counter    429 responses received (should stay 0)
``upstream_errors_total``          counter    ``kind``: overloaded (529), server_error, connection
``tokens_total``                   counter    ``kind``: input, output, cache_creation_input,
                                              cache_read_input
``cost_usd_total``                 counter    list-price cost of what was used
``cache_hits_total``               counter    answers served from the cache
``cache_misses_total``             counter
``dedupe_joins_total``             counter    calls that shared an identical call in flight
``saved_tokens_total``             counter    tokens not spent thanks to cache and dedupe
``saved_usd_total``                counter
``in_flight``                      gauge      upstream calls under way
``queued``                         gauge      requests waiting for admission (all lanes)
``queue_depth``                    gauge      ``lane``: requests waiting for admission per lane
``bucket_level``                   gauge      ``budget``, ``dimension``: units available now
``bucket_capacity``                gauge      ``budget``, ``dimension``: the per-minute limit
``bucket_fill_ratio``              gauge      ``budget``, ``dimension``: level / capacity
``budget_blocked_seconds``         gauge      ``budget``: time left of a 429's retry-after block
``request_duration_seconds``       histogram  ``kind``, ``model_class``, ``outcome``
``queue_wait_seconds``             histogram  ``lane``, ``model_class``
``upstream_duration_seconds``      histogram  ``model_class``, ``status`` (a stream: until it ends)
=================================  =========  ============================================

Dimensions are ``requests``, ``input_tokens``, ``output_tokens``; lanes ``interactive``,
``default``, ``batch`` (an int priority is its own lane).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Final

import anthropic

from .errors import ThriftError
from .limits import model_class
from .scheduler import LANES

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from .client import Thrift, _Attempts, _Plan
    from .scheduler import Reservation

__all__ = [
    "DEFAULT_BUCKETS",
    "Observer",
    "PrometheusMetrics",
    "RequestRecord",
    "Tracing",
    "hub_for",
    "lane_name",
    "outcome_of",
]

DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Latency histogram buckets (seconds): from loopback mocks to minute-long queue waits."""

_LANE_NAMES: Final = {level: name for name, level in LANES.items()}


def lane_name(priority: object) -> str:
    """The lane label of a priority or level: a lane name, an int as text, or ``invalid``."""
    if isinstance(priority, str):
        return priority if priority in LANES else "invalid"
    if isinstance(priority, int) and not isinstance(priority, bool):
        return _LANE_NAMES.get(priority, str(priority))
    return "invalid"


def outcome_of(error: BaseException | None) -> str:
    """A bounded-cardinality label for how a request ended."""
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    if isinstance(error, ThriftError):
        name = type(error).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    if isinstance(error, anthropic.APIStatusError):
        return f"http_{error.status_code}"
    if isinstance(error, anthropic.APIConnectionError):
        return "connection"
    return "error"


class RequestRecord:
    """One application call as the hooks see it. `data` holds per-observer state (spans)."""

    __slots__ = ("attempts", "client", "data", "kind", "lane", "model", "model_class", "started")

    def __init__(self, client: str, kind: str, model: str, lane: str) -> None:
        self.client = client
        self.kind = kind
        self.model = model
        self.model_class = model_class(model) if model else "unknown"
        self.lane = lane
        self.started = time.monotonic()
        self.attempts = 0
        self.data: dict[object, Any] = {}


class Observer:
    """Receives the request-path hooks of the clients it tracks; every hook is a no-op here.

    Hooks run on the event loop, inside the request path: keep them O(1), never block and
    never raise (a raising hook is logged and ignored, never the caller's problem).
    """

    def track(self, client: Thrift, name: str = "default") -> None:
        """Start receiving `client`'s hooks; `name` is its ``client`` label."""
        _install(client, name).add(self)

    def untrack(self, client: Thrift) -> None:
        """Stop receiving `client`'s hooks (the client is unwrapped when nobody observes)."""
        hub = _HUBS.get(client)
        if hub is not None:
            hub.remove(self)
            if not hub.observers:
                _uninstall(client)

    def request_started(self, rec: RequestRecord) -> None:
        """An application call began (before the cache lookup)."""

    def queue_entered(self, rec: RequestRecord) -> None:
        """The call (or one of its retries) started waiting for admission."""

    def queue_left(self, rec: RequestRecord, waited: float, error: BaseException | None) -> None:
        """Admission ended: admitted (`error` None) or gave up (deadline, queue full, cancel)."""

    def upstream_started(self, rec: RequestRecord, key: str) -> None:
        """An HTTP attempt is about to be sent with key `key`; `rec.attempts` counts it."""

    def upstream_finished(
        self, rec: RequestRecord, status: int | None, error: BaseException | None, seconds: float
    ) -> None:
        """The attempt ended: `status` is the HTTP status (None: no response)."""

    def request_finished(
        self, rec: RequestRecord, error: BaseException | None, seconds: float
    ) -> None:
        """The application call ended (a stream: when it was read to the end or closed)."""

    def context(self, rec: RequestRecord) -> AbstractContextManager[object] | None:
        """A context to enter around awaited work of `rec` (tracing: the current span)."""
        return None


class _Hub:
    """The observers of one client, and the dispatch of each hook to all of them."""

    __slots__ = ("__weakref__", "name", "observers")

    def __init__(self, name: str) -> None:
        self.name = name
        self.observers: list[Observer] = []

    def add(self, observer: Observer) -> None:
        if observer not in self.observers:
            self.observers.append(observer)

    def remove(self, observer: Observer) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def _each(self, hook: str, *args: Any) -> None:
        for obs in self.observers:
            try:
                getattr(obs, hook)(*args)
            except Exception:  # an observer must never break a request
                import logging

                logging.getLogger("asyncthrift").exception("metrics hook %s failed", hook)

    def start(self, kind: str, model: object, priority: object) -> RequestRecord | None:
        """A record for a new call, or None when nobody observes (so callers skip the rest)."""
        if not self.observers:
            return None
        rec = RequestRecord(self.name, kind, model if isinstance(model, str) else "", "")
        rec.lane = lane_name(priority)
        self._each("request_started", rec)
        return rec

    def finish(self, rec: RequestRecord | None, error: BaseException | None) -> None:
        if rec is not None:
            self._each("request_finished", rec, error, time.monotonic() - rec.started)

    def queue_entered(self, rec: RequestRecord | None) -> None:
        if rec is not None:
            self._each("queue_entered", rec)

    def queue_left(
        self, rec: RequestRecord | None, waited: float, error: BaseException | None
    ) -> None:
        if rec is not None:
            self._each("queue_left", rec, waited, error)

    def upstream_started(self, rec: RequestRecord | None, key: str) -> float:
        """Dispatch and return the start time for `upstream_finished`."""
        if rec is not None:
            rec.attempts += 1
            self._each("upstream_started", rec, key)
        return time.monotonic()

    def upstream_finished(
        self,
        rec: RequestRecord | None,
        status: int | None,
        error: BaseException | None,
        started: float,
    ) -> None:
        if rec is not None:
            self._each("upstream_finished", rec, status, error, time.monotonic() - started)

    @contextmanager
    def activate(self, rec: RequestRecord | None) -> Iterator[None]:
        """Make `rec` the current request (for nested hooks) and enter observers' contexts."""
        if rec is None:
            yield
            return
        token = _CURRENT.set(rec)
        try:
            with ExitStack() as stack:
                for obs in self.observers:
                    cm = obs.context(rec)
                    if cm is not None:
                        stack.enter_context(cm)
                yield
        finally:
            _CURRENT.reset(token)


_NULL_HUB: Final = _Hub("")
_HUBS: weakref.WeakKeyDictionary[Thrift, _Hub] = weakref.WeakKeyDictionary()
_CURRENT: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "asyncthrift_request", default=None
)


def hub_for(client: Thrift) -> _Hub:
    """The hook dispatcher of `client` (one without observers if it is not tracked)."""
    return _HUBS.get(client, _NULL_HUB)


def status_of(error: BaseException | None) -> int | None:
    """The HTTP status behind `error` (200 for success, None when there was no response)."""
    if error is None:
        return 200
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code
    return None


def _install(client: Thrift, name: str) -> _Hub:
    """Wrap `client`'s request-path steps (once) so they report to its hub."""
    hub = _HUBS.get(client)
    if hub is not None:
        return hub
    hub = _HUBS[client] = _Hub(name)
    create, admit, attempt = client._create, client._admit, client._attempt
    admit_now = client._admit_now

    async def _create(kwargs: dict[str, Any]) -> Any:
        rec = hub.start("create", kwargs.get("model"), kwargs.get("priority", "default"))
        try:
            with hub.activate(rec):
                result = await create(kwargs)
        except BaseException as exc:
            hub.finish(rec, exc)
            raise
        hub.finish(rec, None)
        return result

    async def _admit(plan: _Plan, opts: Any, attempts: _Attempts) -> Reservation:
        rec = _CURRENT.get()
        hub.queue_entered(rec)
        t0 = time.monotonic()
        try:
            reservation = await admit(plan, opts, attempts)
        except BaseException as exc:
            hub.queue_left(rec, time.monotonic() - t0, exc)
            raise
        hub.queue_left(rec, time.monotonic() - t0, None)
        return reservation

    def _admit_now(plan: _Plan, attempts: _Attempts) -> Reservation | None:
        # the fast path admitted without queueing: still one (empty) queue step to report
        reservation = admit_now(plan, attempts)
        if reservation is not None:
            rec = _CURRENT.get()
            hub.queue_entered(rec)
            hub.queue_left(rec, 0.0, None)
        return reservation

    async def _attempt(plan: _Plan, reservation: Reservation, params: dict[str, Any]) -> Any:
        rec = _CURRENT.get()
        started = hub.upstream_started(rec, client._keys[reservation.index].name)
        try:
            with hub.activate(rec):
                message = await attempt(plan, reservation, params)
        except BaseException as exc:
            hub.upstream_finished(rec, status_of(exc), exc, started)
            raise
        hub.upstream_finished(rec, 200, None, started)
        return message

    # Instance attributes shadow the class's methods for this one client only.
    setattr(client, "_create", _create)  # noqa: B010
    setattr(client, "_admit", _admit)  # noqa: B010
    setattr(client, "_admit_now", _admit_now)  # noqa: B010
    setattr(client, "_attempt", _attempt)  # noqa: B010
    return hub


def _uninstall(client: Thrift) -> None:
    _HUBS.pop(client, None)
    for name in ("_create", "_admit", "_admit_now", "_attempt"):
        client.__dict__.pop(name, None)


# -- Prometheus -------------------------------------------------------------------------------


class PrometheusMetrics(Observer):
    """Prometheus series for every tracked client (see the module docstring for the list).

    ``metrics = PrometheusMetrics(); metrics.track(client)``, then expose ``registry`` the
    usual way (``prometheus_client.make_asgi_app(registry)``, ``start_http_server``, or
    `asyncthrift.integrations`' helpers). Scraping reads plain counters and bucket fields and
    never mutates client state, so a scrape from another thread is safe.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "asyncthrift",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        from prometheus_client import REGISTRY, Gauge, Histogram

        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self._clients: dict[str, weakref.ref[Thrift]] = {}
        b = tuple(buckets)
        ns, reg = namespace, self.registry
        self._request_seconds = Histogram(
            f"{ns}_request_duration_seconds",
            "Duration of application calls, from the call until the answer (or stream) ended.",
            ["client", "kind", "model_class", "outcome"],
            registry=reg,
            buckets=b,
        )
        self._queue_seconds = Histogram(
            f"{ns}_queue_wait_seconds",
            "Time spent waiting for admission under the rate limits, per attempt.",
            ["client", "lane", "model_class"],
            registry=reg,
            buckets=b,
        )
        self._upstream_seconds = Histogram(
            f"{ns}_upstream_duration_seconds",
            "Duration of HTTP attempts to the API (a stream: until it ended).",
            ["client", "model_class", "status"],
            registry=reg,
            buckets=b,
        )
        self._queue_depth = Gauge(
            f"{ns}_queue_depth",
            "Requests waiting for admission, per priority lane.",
            ["client", "lane"],
            registry=reg,
        )
        reg.register(_ClientCollector(self))

    def track(self, client: Thrift, name: str = "default") -> None:
        existing = self._clients.get(name)
        if existing is not None and existing() not in (None, client):
            raise ValueError(f"a different client is already tracked as {name!r}: pass name=")
        self._clients[name] = weakref.ref(client)
        super().track(client, name)

    def untrack(self, client: Thrift) -> None:
        for name, ref in list(self._clients.items()):
            if ref() is client:
                del self._clients[name]
        super().untrack(client)

    def clients(self) -> list[tuple[str, Thrift]]:
        """The live tracked clients and their labels."""
        out = []
        for name, ref in list(self._clients.items()):
            client = ref()
            if client is None:
                del self._clients[name]
            else:
                out.append((name, client))
        return out

    # hooks

    def queue_entered(self, rec: RequestRecord) -> None:
        self._queue_depth.labels(rec.client, rec.lane).inc()

    def queue_left(self, rec: RequestRecord, waited: float, error: BaseException | None) -> None:
        self._queue_depth.labels(rec.client, rec.lane).dec()
        self._queue_seconds.labels(rec.client, rec.lane, rec.model_class).observe(waited)

    def upstream_finished(
        self, rec: RequestRecord, status: int | None, error: BaseException | None, seconds: float
    ) -> None:
        label = "none" if status is None else str(status)
        self._upstream_seconds.labels(rec.client, rec.model_class, label).observe(seconds)

    def request_finished(
        self, rec: RequestRecord, error: BaseException | None, seconds: float
    ) -> None:
        self._request_seconds.labels(
            rec.client, rec.kind, rec.model_class, outcome_of(error)
        ).observe(seconds)


#: (series suffix, help, Recorder field) for the plain counters read at scrape time.
_COUNTERS: Final = (
    ("requests", "Calls made by the application (create, stream, count_tokens).", "requests"),
    ("requests_failed", "Calls that raised or were abandoned before the end.", "failed"),
    ("upstream_calls", "HTTP attempts sent to the API, retries included.", "upstream_calls"),
    ("retries", "Attempts re-queued after a retryable error.", "retries"),
    ("rate_limited", "429 responses received from the API.", "rate_limited"),
    ("cost_usd", "List-price cost (USD) of the tokens used.", "cost_usd"),
    ("cache_hits", "Answers served from the cache.", "cache_hits"),
    ("cache_misses", "Cache lookups that found nothing.", "cache_misses"),
    ("dedupe_joins", "Calls that shared an identical call already in flight.", "dedupe_joins"),
    ("saved_tokens", "Tokens not spent thanks to the cache and dedupe.", "tokens_saved"),
    ("saved_usd", "Dollars not spent thanks to the cache and dedupe.", "dollars_saved"),
)
_TOKEN_KINDS: Final = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_creation_input", "cache_creation_input_tokens"),
    ("cache_read_input", "cache_read_input_tokens"),
)
_ERROR_KINDS: Final = (
    ("overloaded", "overloaded"),
    ("server_error", "server_errors"),
    ("connection", "connection_errors"),
)
_DIMENSIONS: Final = ("requests", "input_tokens", "output_tokens")


class _ClientCollector:
    """Reads the tracked clients' counters and buckets when Prometheus scrapes.

    Read-only on purpose: counters are plain ints and a bucket's level is projected from its
    fields without calling `level()` (which would move its timestamp), so a scrape from the
    exporter's thread cannot race the event loop into a lost update.
    """

    def __init__(self, owner: PrometheusMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterator[Metric]:
        return self._families(with_samples=False)

    def collect(self) -> Iterator[Metric]:
        return self._families(with_samples=True)

    def _families(self, *, with_samples: bool) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = self._owner.namespace
        clients = self._owner.clients() if with_samples else []
        for suffix, doc, field in _COUNTERS:
            fam = CounterMetricFamily(f"{ns}_{suffix}", doc, labels=["client"])
            for name, c in clients:
                fam.add_metric([name], float(getattr(c._stats, field)))
            yield fam
        tokens = CounterMetricFamily(
            f"{ns}_tokens", "Tokens used, by kind.", labels=["client", "kind"]
        )
        errors = CounterMetricFamily(
            f"{ns}_upstream_errors",
            "Failed upstream attempts other than 429, by kind.",
            labels=["client", "kind"],
        )
        in_flight = GaugeMetricFamily(
            f"{ns}_in_flight", "Upstream calls under way.", labels=["client"]
        )
        queued = GaugeMetricFamily(
            f"{ns}_queued", "Requests waiting for admission, all lanes.", labels=["client"]
        )
        for name, c in clients:
            s = c._stats
            for kind, field in _TOKEN_KINDS:
                tokens.add_metric([name, kind], float(getattr(s, field)))
            for kind, field in _ERROR_KINDS:
                errors.add_metric([name, kind], float(getattr(s, field)))
            in_flight.add_metric([name], float(s.in_flight))
            waiting = sum(mc.gate.waiting for mc in list(c._classes.values()))
            queued.add_metric([name], float(waiting))
        yield from (tokens, errors, in_flight, queued)
        yield from self._bucket_families(ns, clients)

    def _bucket_families(self, ns: str, clients: list[tuple[str, Thrift]]) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        labels = ["client", "budget", "dimension"]
        level = GaugeMetricFamily(f"{ns}_bucket_level", "Units available now.", labels=labels)
        cap = GaugeMetricFamily(f"{ns}_bucket_capacity", "The per-minute limit.", labels=labels)
        ratio = GaugeMetricFamily(
            f"{ns}_bucket_fill_ratio", "Level / capacity (negative: in debt).", labels=labels
        )
        blocked = GaugeMetricFamily(
            f"{ns}_budget_blocked_seconds",
            "Seconds left of a 429's retry-after block (0 when not blocked).",
            labels=["client", "budget"],
        )
        for name, c in clients:
            for mc in list(c._classes.values()):
                now = mc.gate.now()
                for budget in mc.budgets:
                    bname = getattr(budget, "name", "") or mc.name
                    until = getattr(budget, "blocked_until", -math.inf)
                    blocked.add_metric([name, bname], max(0.0, until - now))
                    buckets = getattr(budget, "buckets", ())
                    for dim, bucket in zip(_DIMENSIONS, buckets, strict=False):
                        if bucket is None:
                            continue
                        lvl = min(
                            bucket.capacity,
                            bucket._level + max(0.0, now - bucket._stamp) * bucket.rate,
                        )
                        level.add_metric([name, bname, dim], lvl)
                        cap.add_metric([name, bname, dim], bucket.capacity)
                        ratio.add_metric([name, bname, dim], lvl / bucket.capacity)
        yield from (level, cap, ratio, blocked)


# -- OpenTelemetry ----------------------------------------------------------------------------


class _Spans:
    __slots__ = ("queue", "request", "upstream")

    def __init__(self, request: Span) -> None:
        self.request = request
        self.queue: Span | None = None
        self.upstream: Span | None = None


class Tracing(Observer):
    """OpenTelemetry spans: one per call, with children for each queue wait and attempt.

    ``asyncthrift.<kind>`` (kind: create, stream, count_tokens) is a child of whatever span is
    current when the call is made; ``asyncthrift.queue`` and ``asyncthrift.upstream`` are its
    children, and a retry adds a ``retry`` event to the call's span. The upstream span is
    current while the SDK sends, so the SDK's own spans (its ``open_telemetry`` option) nest
    under it. Attributes never include the API key or the prompt.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, tracer: Tracer | None = None
    ) -> None:
        from opentelemetry import trace

        from . import __version__

        self._trace = trace
        self._tracer = tracer or trace.get_tracer("asyncthrift", __version__, tracer_provider)

    def _spans(self, rec: RequestRecord) -> _Spans | None:
        spans: _Spans | None = rec.data.get(self)
        return spans

    def _child(self, spans: _Spans, name: str, attributes: dict[str, Any]) -> Span:
        ctx = self._trace.set_span_in_context(spans.request)
        return self._tracer.start_span(name, context=ctx, attributes=attributes)

    def _end(self, span: Span, error: BaseException | None) -> None:
        if error is not None and not isinstance(error, asyncio.CancelledError | GeneratorExit):
            span.record_exception(error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, type(error).__name__))
        span.end()

    def request_started(self, rec: RequestRecord) -> None:
        span = self._tracer.start_span(
            f"asyncthrift.{rec.kind}",
            attributes={
                "gen_ai.system": "anthropic",
                "gen_ai.request.model": rec.model,
                "asyncthrift.model_class": rec.model_class,
                "asyncthrift.lane": rec.lane,
                "asyncthrift.client": rec.client,
            },
        )
        rec.data[self] = _Spans(span)

    def queue_entered(self, rec: RequestRecord) -> None:
        spans = self._spans(rec)
        if spans is not None:
            spans.queue = self._child(spans, "asyncthrift.queue", {"asyncthrift.lane": rec.lane})

    def queue_left(self, rec: RequestRecord, waited: float, error: BaseException | None) -> None:
        spans = self._spans(rec)
        if spans is not None and spans.queue is not None:
            spans.queue.set_attribute("asyncthrift.queue_wait_seconds", waited)
            self._end(spans.queue, error)
            spans.queue = None

    def upstream_started(self, rec: RequestRecord, key: str) -> None:
        spans = self._spans(rec)
        if spans is None:
            return
        if rec.attempts > 1:
            spans.request.add_event("retry", {"asyncthrift.attempt": rec.attempts})
        attributes = {"asyncthrift.attempt": rec.attempts, "asyncthrift.key": key}
        spans.upstream = self._child(spans, "asyncthrift.upstream", attributes)

    def upstream_finished(
        self, rec: RequestRecord, status: int | None, error: BaseException | None, seconds: float
    ) -> None:
        spans = self._spans(rec)
        if spans is not None and spans.upstream is not None:
            if status is not None:
                spans.upstream.set_attribute("http.response.status_code", status)
            self._end(spans.upstream, error)
            spans.upstream = None

    def request_finished(
        self, rec: RequestRecord, error: BaseException | None, seconds: float
    ) -> None:
        spans = rec.data.pop(self, None)
        if spans is not None:
            spans.request.set_attribute("asyncthrift.attempts", rec.attempts)
            spans.request.set_attribute("asyncthrift.outcome", outcome_of(error))
            self._end(spans.request, error)

    def context(self, rec: RequestRecord) -> AbstractContextManager[object] | None:
        spans = self._spans(rec)
        if spans is None:
            return None
        span = spans.upstream or spans.request
        cm: AbstractContextManager[object] = self._trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )
        return cm

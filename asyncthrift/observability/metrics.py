"""Observability: request hooks, Prometheus metrics and OpenTelemetry spans (`Tracing`).

Neither ``prometheus_client`` nor ``opentelemetry`` is imported unless you use the class that
needs it, so the core never depends on them (``pip install asyncthrift[prometheus]`` /
``asyncthrift[otel]``).

Two sources feed the metrics, chosen so the hot path pays almost nothing:

* **Counters already kept by the client** (requests, upstream calls, 429s, tokens, cost, cache
  and dedupe hits) and the **bucket levels** are read at scrape time by a collector. Nothing
  is recorded twice and an idle client costs nothing.
* **Hooks** at fixed points of the request pipeline (request start and end, queue entry and
  exit, each upstream attempt) feed what only the path itself knows: latency histograms,
  queue depth per lane, and spans. Observers are handed to the client
  (``Thrift(observers=[...])``, ``client.add_observer(...)``, or `Observer.track`, the same
  thing); the pipeline calls them for create, stream and count_tokens alike, and a client
  nobody observes pays one empty-list check per call.

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
``saved_tokens_total``             counter    tokens not spent thanks to cache, dedupe, packing
``saved_usd_total``                counter
``technique_saved_calls_total``    counter    ``technique``: cache, dedupe, packing
``technique_saved_tokens_total``   counter    ``technique``: cache, dedupe, packing (billed
                                              tokens), prompt_cache (tokens read from cache),
                                              max_tokens (OTPM reservation not held)
``technique_saved_usd``            gauge      ``technique``: cache, dedupe, packing,
                                              prompt_cache, max_tokens (may be negative: cache
                                              writes, re-asks after a cut answer)
``packed_calls_total``             counter    upstream calls that answered several requests
``packed_items_total``             counter    requests answered from a packed call
``pack_resent_total``              counter    packed requests re-sent alone
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

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from ..client._observers import Observer, RequestRecord, lane_name, outcome_of, status_of
from ..errors import InvalidArgument
from ._tracing import Tracing

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from ..client.thrift import Thrift
    from ..core.stats import Stats

__all__ = [
    "DEFAULT_BUCKETS",
    "Observer",
    "PrometheusMetrics",
    "RequestRecord",
    "Tracing",
    "lane_name",
    "outcome_of",
    "status_of",
]

DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Latency histogram buckets (seconds): from loopback mocks to minute-long queue waits."""


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

    def attached(self, client: Thrift, name: str) -> None:
        existing = self._clients.get(name)
        if existing is not None and existing() not in (None, client):
            raise InvalidArgument(f"a different client is already tracked as {name!r}: pass name=")
        self._clients[name] = weakref.ref(client)

    def detached(self, client: Thrift) -> None:
        for name, ref in list(self._clients.items()):
            if ref() is client:
                del self._clients[name]

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
    ("saved_usd", "Dollars not spent thanks to cache, dedupe and packing.", "dollars_saved"),
    ("packed_calls", "Upstream calls that answered several packed requests.", "packed_calls"),
    ("packed_items", "Requests answered from a packed call.", "packed_items"),
    ("pack_resent", "Packed requests re-sent alone (not answered usably).", "pack_resent"),
)
#: (technique, calls field, tokens field, dollars field) of the savings by technique.
_TECHNIQUES: Final = (
    ("cache", "cache_calls_saved", "cache_tokens_saved", "cache_dollars_saved"),
    ("dedupe", "dedupe_calls_saved", "dedupe_tokens_saved", "dedupe_dollars_saved"),
    ("packing", "packing_calls_saved", "packing_tokens_saved", "packing_dollars_saved"),
    ("prompt_cache", None, "prompt_cache_tokens_saved", "prompt_cache_dollars_saved"),
    ("max_tokens", None, "max_tokens_reserve_saved", "max_tokens_dollars_lost"),
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


def _technique_families(ns: str, snaps: list[tuple[str, Stats]]) -> Iterator[Metric]:
    """Calls, tokens and dollars saved, by technique."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    labels = ["client", "technique"]
    calls = CounterMetricFamily(
        f"{ns}_technique_saved_calls", "Upstream calls saved, by technique.", labels=labels
    )
    tokens = CounterMetricFamily(
        f"{ns}_technique_saved_tokens", "Tokens saved, by technique.", labels=labels
    )
    usd = GaugeMetricFamily(  # a gauge: prompt caching's writes and max_tokens' re-asks cost
        f"{ns}_technique_saved_usd", "Dollars saved (negative: lost), by technique.", labels=labels
    )
    for name, s in snaps:
        for technique, c, t, d in _TECHNIQUES:
            if c is not None:
                calls.add_metric([name, technique], float(getattr(s, c)))
            tokens.add_metric([name, technique], float(getattr(s, t)))
            sign = -1.0 if technique == "max_tokens" else 1.0
            usd.add_metric([name, technique], sign * float(getattr(s, d)))
    yield from (calls, tokens, usd)


class _ClientCollector:
    """Reads the tracked clients' counters and buckets when Prometheus scrapes.

    Read-only on purpose: it reads the client's public snapshot (`Thrift.stats()`,
    `Thrift.budgets()`) and each bucket's pure `peek(now)` (never `level()`, which would move
    its timestamp), so a scrape from the exporter's thread cannot race the event loop into a
    lost update.
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
        snaps = [(name, c.stats()) for name, c in clients]
        for suffix, doc, field in _COUNTERS:
            fam = CounterMetricFamily(f"{ns}_{suffix}", doc, labels=["client"])
            for name, s in snaps:
                fam.add_metric([name], float(getattr(s, field)))
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
        for name, s in snaps:
            for kind, field in _TOKEN_KINDS:
                tokens.add_metric([name, kind], float(getattr(s, field)))
            for kind, field in _ERROR_KINDS:
                errors.add_metric([name, kind], float(getattr(s, field)))
            in_flight.add_metric([name], float(s.in_flight))
            queued.add_metric([name], float(s.queued))
        yield from (tokens, errors, in_flight, queued)
        yield from _technique_families(ns, snaps)
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
            budgets = c.budgets()
            if not budgets:
                continue
            now = c.now()
            for cls, members in budgets.items():
                for budget in members:
                    bname = budget.name or cls
                    blocked.add_metric([name, bname], max(0.0, budget.blocked_until - now))
                    for dim, bucket in zip(_DIMENSIONS, budget.buckets, strict=False):
                        if bucket is None:
                            continue
                        lvl = bucket.peek(now)
                        level.add_metric([name, bname, dim], lvl)
                        cap.add_metric([name, bname, dim], bucket.capacity)
                        ratio.add_metric([name, bname, dim], lvl / bucket.capacity)
        yield from (level, cap, ratio, blocked)

"""The gateway's own counters, per client and lane: who waits, who got through, who was
refused and why, what each spent. Read by ``GET /metrics`` (Prometheus text) and the status
page (`snapshot`).

Written by hand rather than with ``prometheus_client``: the gateway must not need it, every
recording method is a few dict operations (O(1), called on the request path), and none ever
raises (a metric must not fail a request). Label values are bounded: client names are the
keys file's (`clients`), anything else is ``unknown``; reasons and lanes are few by
construction and capped anyway, so a hostile caller cannot grow the series without end.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, Final, ParamSpec

from .clients import LANES, Lane

__all__ = ["WAIT_BUCKETS", "GatewayTelemetry"]

log = logging.getLogger("asyncthrift.gateway")

#: Upper bounds (seconds) of the waited-seconds histogram: from an immediate admission to the
#: default deadline (600 s).
WAIT_BUCKETS: Final = (
    0.005,
    0.025,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
UNKNOWN: Final = "unknown"
OTHER: Final = "other"
_MAX_CLIENTS = 1000
_MAX_REASONS = 32
_PREFIX = "asyncthrift_gateway_"
_REASON_CHARS = re.compile(r"[^a-z0-9_]+")
#: Each histogram bucket's ``le`` label, written once.
_LE: Final = tuple(f',le="{bound!r}"' for bound in WAIT_BUCKETS)

P = ParamSpec("P")


def _never_raises(
    method: Callable[Concatenate[GatewayTelemetry, P], None],
) -> Callable[Concatenate[GatewayTelemetry, P], None]:
    """A recording method that logs (once) instead of raising: metrics never fail a request."""

    @functools.wraps(method)
    def safe(self: GatewayTelemetry, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:
            if not self.errors:
                log.exception("gateway telemetry: %s failed (logged once)", method.__name__)
            self.errors += 1

    return safe


class _Series:
    """The counters of one (client, lane)."""

    __slots__ = (
        "abandoned",
        "admitted",
        "finished",
        "input_tokens",
        "output_tokens",
        "queued",
        "refused",
        "spent_usd",
        "wait_buckets",
        "wait_count",
        "wait_sum",
    )

    def __init__(self) -> None:
        self.queued = 0
        self.admitted = 0
        self.abandoned = 0
        self.wait_buckets = [0] * len(WAIT_BUCKETS)  # per bucket, not cumulative
        self.wait_sum = 0.0
        self.wait_count = 0
        self.finished: dict[int, int] = {}
        self.refused: dict[tuple[int, str], int] = {}
        self.spent_usd = 0.0
        self.input_tokens = 0
        self.output_tokens = 0

    def waited(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.wait_sum += seconds
        self.wait_count += 1
        for i, bound in enumerate(WAIT_BUCKETS):
            if seconds <= bound:
                self.wait_buckets[i] += 1
                return


def _quantile(buckets: list[int], count: int, q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile `q` (None: no wait yet;
    inf: past the last bound)."""
    if not count:
        return None
    rank, seen = q * count, 0
    for bound, n in zip(WAIT_BUCKETS, buckets, strict=True):
        seen += n
        if seen >= rank:
            return bound
    return math.inf


class GatewayTelemetry:
    """Per client and lane counters: see the module docstring.

    `clients`: the names the keys file defines (others are counted as ``unknown``); None
    accepts any name up to 1000 of them (then ``other``).
    """

    def __init__(self, clients: Iterable[str] | None = None) -> None:
        self._known: frozenset[str] | None = None if clients is None else frozenset(clients)
        self._series: dict[tuple[str, str], _Series] = {}
        self._names: set[str] = set()
        self._reasons: set[str] = set()
        self.errors = 0

    def _label(self, client: str) -> str:
        if self._known is not None:
            return client if client in self._known else UNKNOWN
        if client in self._names or len(self._names) < _MAX_CLIENTS:
            self._names.add(client)
            return client
        return OTHER

    def _at(self, client: str, lane: str) -> _Series:
        key = (self._label(str(client)), lane if lane in LANES else OTHER)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        return series

    def _reason(self, reason: str) -> str:
        reason = _REASON_CHARS.sub("_", str(reason).lower())[:40] or OTHER
        if reason in self._reasons or len(self._reasons) < _MAX_REASONS:
            self._reasons.add(reason)
            return reason
        return OTHER

    @_never_raises
    def queued(self, client: str, lane: Lane) -> None:
        """A request of `client` started waiting for admission in `lane`."""
        self._at(client, lane).queued += 1

    @_never_raises
    def left_queue(self, client: str, lane: Lane, *, waited: float, admitted: bool) -> None:
        """It stopped waiting after `waited` seconds: admitted, or not (gone, past deadline)."""
        series = self._at(client, lane)
        series.queued = max(0, series.queued - 1)
        series.waited(float(waited))
        if admitted:
            series.admitted += 1
        else:
            series.abandoned += 1

    @_never_raises
    def finished(
        self,
        client: str,
        lane: Lane,
        *,
        status: int,
        cost_usd: float,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        """A forwarded request ended with `status`, having cost `cost_usd`."""
        series = self._at(client, lane)
        code = _status(status)
        series.finished[code] = series.finished.get(code, 0) + 1
        if math.isfinite(cost_usd) and cost_usd > 0:
            series.spent_usd += float(cost_usd)
        series.input_tokens += max(0, int(input_tokens))
        series.output_tokens += max(0, int(output_tokens))

    @_never_raises
    def refused(self, client: str, lane: Lane, *, status: int, reason: str) -> None:
        """The gateway itself answered `status` without forwarding (401, 413, 429 quota...)."""
        series = self._at(client, lane)
        key = (_status(status), self._reason(reason))
        series.refused[key] = series.refused.get(key, 0) + 1

    def prometheus(self) -> bytes:
        """Every series in the Prometheus text exposition format (version 0.0.4)."""
        return _Exposition(self._series).render().encode()

    def snapshot(self) -> dict[str, Any]:
        """Per client, per lane and in total, as plain JSON-ready values (the status page)."""
        clients: dict[str, dict[str, Any]] = {}
        lanes: dict[str, dict[str, Any]] = {lane: _zero_lane() for lane in LANES}
        waits: dict[str, _Series] = {}  # per lane, every client's waits together
        for (client, lane), s in sorted(self._series.items()):
            c = clients.setdefault(client, _zero_client())
            for into in (c, lanes.setdefault(lane, _zero_lane())):
                into["queued"] += s.queued
                into["admitted"] += s.admitted
                into["abandoned"] += s.abandoned
            c["refused"] += sum(s.refused.values())
            c["answered"] += sum(s.finished.values())
            c["spent_usd"] += s.spent_usd
            c["input_tokens"] += s.input_tokens
            c["output_tokens"] += s.output_tokens
            w = waits.setdefault(lane, _Series())
            w.wait_buckets = [a + b for a, b in zip(w.wait_buckets, s.wait_buckets, strict=True)]
            w.wait_count += s.wait_count
        for lane, w in waits.items():
            lanes[lane]["wait_p50_s"] = _quantile(w.wait_buckets, w.wait_count, 0.5)
            lanes[lane]["wait_p99_s"] = _quantile(w.wait_buckets, w.wait_count, 0.99)
        refused: dict[str, int] = {}
        for s in self._series.values():
            for (code, reason), n in s.refused.items():
                refused[f"{code} {reason}"] = refused.get(f"{code} {reason}", 0) + n
        return {"clients": clients, "lanes": lanes, "refused": refused}


def _status(status: int) -> int:
    code = int(status)
    return code if 100 <= code <= 599 else 0


def _zero_client() -> dict[str, Any]:
    return {
        "queued": 0,
        "admitted": 0,
        "abandoned": 0,
        "refused": 0,
        "answered": 0,
        "spent_usd": 0.0,
        "input_tokens": 0,
        "output_tokens": 0,
    }


def _zero_lane() -> dict[str, Any]:
    return {"queued": 0, "admitted": 0, "abandoned": 0, "wait_p50_s": None, "wait_p99_s": None}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Exposition:
    """The text format, one metric family at a time (HELP, TYPE, then its samples). Each
    series' ``client="...",lane="..."`` is escaped once, not once per sample."""

    def __init__(self, series: dict[tuple[str, str], _Series]) -> None:
        self._series = [
            (f'client="{_escape(client)}",lane="{_escape(lane)}"', s)
            for (client, lane), s in sorted(series.items())
        ]
        self._lines: list[str] = []

    def _family(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {_PREFIX}{name} {help_text}")
        self._lines.append(f"# TYPE {_PREFIX}{name} {kind}")

    def _sample(self, name: str, labels: str, value: float) -> None:
        self._lines.append(f"{_PREFIX}{name}{{{labels}}} {_number(value)}")

    def _simple(
        self, name: str, kind: str, help_text: str, read: Callable[[_Series], float]
    ) -> None:
        self._family(name, kind, help_text)
        for labels, s in self._series:
            self._sample(name, labels, read(s))

    def render(self) -> str:
        self._simple("queued", "gauge", "Requests waiting for admission now.", lambda s: s.queued)
        self._simple(
            "admitted_total", "counter", "Requests admitted after queueing.", lambda s: s.admitted
        )
        self._simple(
            "abandoned_total",
            "counter",
            "Requests that left the queue unadmitted (disconnected or past their deadline).",
            lambda s: s.abandoned,
        )
        self._histogram()
        self._by_status()
        self._simple(
            "spent_usd_total",
            "counter",
            "List-price dollars spent upstream.",
            lambda s: s.spent_usd,
        )
        self._tokens()
        return "\n".join(self._lines) + "\n"

    def _histogram(self) -> None:
        name = "wait_seconds"
        self._family(name, "histogram", "Seconds waited for admission.")
        bucket = f"{_PREFIX}{name}_bucket"
        for labels, s in self._series:
            running = 0
            for le, n in zip(_LE, s.wait_buckets, strict=True):
                running += n
                self._lines.append(f"{bucket}{{{labels}{le}}} {running}")
            self._lines.append(f'{bucket}{{{labels},le="+Inf"}} {s.wait_count}')
            self._sample(f"{name}_sum", labels, s.wait_sum)
            self._sample(f"{name}_count", labels, s.wait_count)

    def _by_status(self) -> None:
        self._family("responses_total", "counter", "Forwarded requests answered, by status.")
        for labels, s in self._series:
            for code, n in sorted(s.finished.items()):
                self._sample("responses_total", f'{labels},status="{code}"', n)
        self._family(
            "refused_total", "counter", "Requests the gateway refused itself, by status and reason."
        )
        for labels, s in self._series:
            for (code, reason), n in sorted(s.refused.items()):
                self._sample("refused_total", f'{labels},status="{code}",reason="{reason}"', n)

    def _tokens(self) -> None:
        self._family("tokens_total", "counter", "Tokens used upstream, by kind (input, output).")
        for labels, s in self._series:
            self._sample("tokens_total", f'{labels},kind="input"', s.input_tokens)
            self._sample("tokens_total", f'{labels},kind="output"', s.output_tokens)

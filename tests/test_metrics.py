"""Prometheus series (scraped over HTTP), OpenTelemetry spans, and redacted structured logs."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import asyncthrift.observability.metrics
from asyncthrift import Limits, Thrift
from asyncthrift.integrations.fastapi import install, metrics_route, thrift_lifespan
from asyncthrift.mock import MockServer
from asyncthrift.observability.metrics import PrometheusMetrics, Tracing
from asyncthrift.observability.request_log import RequestLog, configure_logging, redact

from .test_integrations import serve_fastapi

pytestmark = pytest.mark.slow

MODEL = "claude-sonnet-4-6"
SECRET = "sk-ant-api03-very-secret-key-0123456789"


def req(text: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


def documented_series() -> set[str]:
    """The series names the metrics module documents in its table."""
    doc = asyncthrift.observability.metrics.__doc__ or ""
    rows = re.findall(r"^``(\w+)``\s+(?:counter|gauge|histogram)\b", doc, flags=re.M)
    return {"asyncthrift_" + m for m in rows}


def scraped(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a Prometheus text exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )


async def test_metrics_endpoint_serves_every_documented_series() -> None:
    limits = Limits(rpm=1000, itpm=100_000, otpm=10_000, period=600)
    async with MockServer(limits=limits, latency=0.01) as mock:
        metrics = PrometheusMetrics(CollectorRegistry())
        app = FastAPI(
            lifespan=thrift_lifespan(
                observers=[metrics], api_key="k", base_url=mock.base_url, limits=limits
            )
        )
        install(app)
        metrics_route(app, metrics)

        @app.post("/work")
        async def work() -> dict[str, int]:
            client: Thrift = app.state.thrift
            await client.messages.create(**req("one"))
            async with client.messages.stream(**req("two", priority="batch")) as s:
                await s.get_final_message()
            await client.messages.count_tokens(model=MODEL, messages=req("x")["messages"])
            return {"ok": 1}

        async with serve_fastapi(app) as url, httpx.AsyncClient(base_url=url) as http:
            assert (await http.post("/work")).status_code == 200
            r = await http.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = scraped(r.text)
    families = {f.name for f in text_string_to_metric_families(r.text)}
    # (`_created` timestamps are prometheus_client's own companions of each histogram)
    exported = {n for n in families if n.startswith("asyncthrift_") and not n.endswith("_created")}
    documented = {n.removesuffix("_total") for n in documented_series()}
    assert exported == documented
    assert value(samples, "asyncthrift_requests_total", client="default") == 3
    assert value(samples, "asyncthrift_upstream_calls_total") == 3
    assert value(samples, "asyncthrift_rate_limited_total") == 0
    assert value(samples, "asyncthrift_tokens_total", kind="output") > 0
    assert value(samples, "asyncthrift_cost_usd_total") > 0
    assert value(samples, "asyncthrift_bucket_capacity", dimension="output_tokens") == 10_000
    level = value(samples, "asyncthrift_bucket_level", dimension="requests", budget="key0/sonnet")
    assert 997 <= level < 1000
    ratio = value(
        samples, "asyncthrift_bucket_fill_ratio", dimension="requests", budget="key0/sonnet"
    )
    assert ratio == pytest.approx(level / 1000)
    for kind in ("create", "stream", "count_tokens"):
        n = value(samples, "asyncthrift_request_duration_seconds_count", kind=kind, outcome="ok")
        assert n == 1, kind
    assert value(samples, "asyncthrift_queue_wait_seconds_count", lane="batch") == 1
    assert value(samples, "asyncthrift_upstream_duration_seconds_count", status="200") == 3
    assert value(samples, "asyncthrift_queue_depth") == 0


async def test_queue_depth_per_lane_while_waiting() -> None:
    async with MockServer(latency=0.01) as mock:
        metrics = PrometheusMetrics(CollectorRegistry())
        async with Thrift(api_key="k", base_url=mock.base_url, limits=Limits(rpm=1)) as c:
            metrics.track(c, name="svc")
            await c.messages.create(**req("first"))
            waiting = [
                asyncio.create_task(c.messages.create(**req(f"b{i}", priority="batch")))
                for i in range(2)
            ] + [asyncio.create_task(c.messages.create(**req("i", priority="interactive")))]
            await asyncio.sleep(0.05)
            text = _scrape(metrics)
            for t in waiting:
                t.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            after = _scrape(metrics)
    assert value(text, "asyncthrift_queue_depth", client="svc", lane="batch") == 2
    assert value(text, "asyncthrift_queue_depth", client="svc", lane="interactive") == 1
    assert value(text, "asyncthrift_queued", client="svc") == 3
    assert value(after, "asyncthrift_queue_depth", client="svc") == 0
    cancelled = value(after, "asyncthrift_request_duration_seconds_count", outcome="cancelled")
    assert cancelled == 3


def _scrape(metrics: PrometheusMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client import generate_latest

    return scraped(generate_latest(metrics.registry).decode())


async def test_untrack_stops_the_hooks_and_patches_nothing() -> None:
    async with MockServer() as mock, Thrift(api_key="k", base_url=mock.base_url) as c:
        metrics = PrometheusMetrics(CollectorRegistry())
        before = dict(vars(c))
        metrics.track(c)
        assert vars(c).keys() == before.keys()  # observers by contract: nothing patched
        await c.messages.create(**req("seen"))
        metrics.untrack(c)
        assert metrics.clients() == []
        await c.messages.create(**req("still works"))
    seen = value(_scrape(metrics), "asyncthrift_request_duration_seconds_count")
    assert seen == 1


def _spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


async def test_spans_per_request_queue_wait_upstream_and_retries() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    from asyncthrift.mock import Faults

    # the first request gets a 529, then succeeds on its retry
    faults = Faults(overloaded=0.5, seed=3)
    async with (
        MockServer(
            latency=0.01, faults=faults, overloaded_retry_after=0.01, retry_after_ms=True
        ) as mock,
        Thrift(api_key=SECRET, base_url=mock.base_url, max_retries=5) as c,
    ):
        tracing.track(c)
        for i in range(6):
            await c.messages.create(**req(f"q{i}"))
        async with c.messages.stream(**req("streamed")) as s:
            await s.get_final_message()
        retried = c.stats().retries
    assert retried >= 1
    spans = _spans(exporter)
    roots = [s for s in spans if s.name in ("asyncthrift.create", "asyncthrift.stream")]
    assert len(roots) == 7
    by_parent: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        if s.parent is not None:
            by_parent.setdefault(s.parent.span_id, []).append(s)
    upstream_total = 0
    for root in roots:
        assert root.context is not None
        children = by_parent.get(root.context.span_id, [])
        names = [c.name for c in children]
        upstreams = names.count("asyncthrift.upstream")
        upstream_total += upstreams
        assert names.count("asyncthrift.queue") == upstreams >= 1
        assert root.attributes is not None and root.attributes["asyncthrift.attempts"] == upstreams
        retries = [e for e in root.events if e.name == "retry"]
        assert len(retries) == upstreams - 1
    assert upstream_total == 7 + retried
    failed = [s for s in spans if s.name == "asyncthrift.upstream" and not s.status.is_ok]
    assert len(failed) == retried
    assert all(SECRET not in str(v) for s in spans for v in (s.attributes or {}).values())


async def test_request_log_is_structured_and_never_shows_the_key() -> None:
    buf = io.StringIO()
    logger = logging.getLogger("asyncthrift")
    saved = (logger.level, logger.propagate)
    handler = configure_logging(logging.DEBUG, stream=buf, loggers=("asyncthrift",))
    try:
        async with (
            MockServer() as mock,
            Thrift(api_key=SECRET, base_url=mock.base_url) as c,
        ):
            RequestLog().track(c)
            await c.messages.create(**req("hello"))
            logging.getLogger("asyncthrift").warning(
                "leaky %s", {"x-api-key": SECRET}, extra={"key": SECRET}
            )
            try:
                raise anthropic.AuthenticationError(
                    f"bad key {SECRET}", response=httpx_response(), body=None
                )
            except anthropic.AuthenticationError:
                logging.getLogger("asyncthrift").exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
    out = buf.getvalue()
    assert SECRET not in out and "very-secret" not in out
    lines = [orjson.loads(line) for line in out.splitlines()]
    done = [x for x in lines if x["logger"] == "asyncthrift.requests"]
    assert len(done) == 1
    assert done[0]["outcome"] == "ok" and done[0]["kind"] == "create"
    assert done[0]["attempts"] == 1 and done[0]["duration_ms"] > 0
    leaky = next(x for x in lines if x["message"].startswith("leaky"))
    assert leaky["key"] == "<redacted>" and "<redacted>" in leaky["message"]
    assert any("exception" in x and "<redacted>" in x["exception"] for x in lines)


def httpx_response() -> Any:
    import httpx2

    return httpx2.Response(401, request=httpx2.Request("POST", "http://x/v1/messages"))


def test_redact_patterns() -> None:
    assert redact(f"key={SECRET} ok") == "key=<redacted> ok"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer <redacted>"
    assert redact("{'x-api-key': 'plain-key-123'}") == "{'x-api-key': '<redacted>'}"
    assert redact("custom token zzz", secrets=["zzz"]) == "custom token <redacted>"
    assert redact("nothing secret here") == "nothing secret here"


def test_redact_a_short_secret_never_cuts_a_key_out_of_the_patterns_sight() -> None:
    """A configured secret inside an ``sk-ant-`` key (or inside a longer secret) used to be
    replaced first, leaving pieces of the key no pattern recognises."""
    key = "sk-ant-api03-" + "k" * 30
    for text in (f"upstream {key} failed", f"x-api-key: {key}"):
        out = redact(text, secrets=["k"])
        assert "kkkk" not in out, out
    assert redact("a long-secret-value here", secrets=["long", "long-secret-value"]) == (
        "a <redacted> here"
    )

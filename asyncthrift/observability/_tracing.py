"""OpenTelemetry spans for asyncthrift calls (`Tracing`, exported by `asyncthrift.metrics`).

``opentelemetry`` is imported only when a `Tracing` is built (``pip install asyncthrift[otel]``).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..client._observers import Observer, RequestRecord, outcome_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["Tracing"]


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

        from .. import __version__

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

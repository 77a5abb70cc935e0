"""`MockServer`: a faithful local Anthropic Messages API for tests, demos and benchmarks.

The real SDK talks to it over real HTTP on loopback, so everything between the client and
the wire (connection pooling, header parsing, SSE decoding, exception mapping) is exercised.
What makes it useful for a rate-limit client is that it *enforces* limits the way the API
does (token buckets per api key and model class, reservation of ``max_tokens``,
``anthropic-ratelimit-*`` headers) and that every answer is deterministic, so a test can
assert exact token accounting. Where the API's documentation leaves the server's behaviour
open (which instant the headers describe, how `-reset` and `-remaining` are rounded), each
reading is a `MockConfig` setting, so a client can be tested against all of them.

Order of decisions for ``POST /v1/messages``: authenticate (401) → parse and validate
(400/404) → context window (400) → faults (529, 500, drop; nothing charged) → rate limits
(429; nothing charged) → charge and answer (200), refunding unused output at completion.
A non-streamed 200's rate-limit headers are computed after that refund with
``headers_at="completion"`` (the default), right after the charge with ``"admission"``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
import secrets
import time
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any, Final

import orjson
import xxhash

from ..bucket import TokenBucket
from ..limits import LimitsTable
from ._answers import (
    Answer,
    answer_for,
    last_turn_view,
    packed_answer,
    request_hash,
    split_deltas,
)
from ._batches import PREFIX as BATCHES
from ._batches import BatchStore
from ._caching import CacheSplit, PromptCache, min_cacheable
from ._config import MockConfig
from ._counters import Admission, MockCounters
from ._http import HttpServer, Request, Response, StreamResponse
from ._ratelimit import DIMENSIONS, ServerBudget
from ._sse import delta_event, error_event, start_events, stop_events
from ._tokenizer import InputAnalysis, analyze_input, count_text
from ._validate import validate

__all__ = ["MockServer"]

_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "api_error",
    501: "invalid_request_error",
    529: "overloaded_error",
}

_ANALYSIS_CACHE_SIZE: Final = 4096


class _Answering:
    """An admitted request until it completes: settles its output charge exactly once.

    With ``output_charge="reserve"`` max_tokens was taken at admission and the unused part
    is refunded; with ``"actual"`` the produced output is charged now. Either way the
    counters learn the output produced, and `in_flight` drops. A stream updates `produced`
    as deltas go out and the HTTP layer calls `finish` however the response ends. `at` is
    the loop time of the settle, the instant completion-time headers describe.
    """

    __slots__ = ("at", "budget", "completed", "done", "max_tokens", "produced", "reserve", "server")

    def __init__(
        self, server: MockServer, budget: ServerBudget, max_tokens: int, reserve: bool
    ) -> None:
        self.server = server
        self.budget = budget
        self.max_tokens = max_tokens
        self.reserve = reserve
        self.produced = 0
        self.completed = False
        self.done = False
        self.at = 0.0  # when it was settled (loop time)

    def settle(self, produced: int, completed: bool) -> None:
        self.produced, self.completed = produced, completed
        self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        server = self.server
        now = self.at = server._now()
        produced = self.produced
        if self.reserve:
            self.budget.give(2, float(self.max_tokens - produced), now)
        else:
            self.budget.give(2, -float(produced), now)
        c = server.counters
        c.output_tokens += produced
        c.in_flight -= 1
        if not self.completed:
            c.cancelled += 1


class MockServer:
    """A local Anthropic Messages API server (see the module docstring for behaviour).

    ``async with MockServer(limits=Limits(rpm=60, itpm=10_000, otpm=2_000, period=1)) as
    mock:`` then point ``anthropic.AsyncAnthropic(base_url=mock.base_url, ...)`` at it.
    Keyword overrides replace fields of `config` (or of the default `MockConfig`).
    """

    def __init__(self, config: MockConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else MockConfig()
        self.config: MockConfig = dataclasses.replace(base, **overrides) if overrides else base
        cfg = self.config
        self.counters = MockCounters()
        self._http = HttpServer(
            self._dispatch,
            max_body=cfg.max_body_bytes,
            error_response=self._protocol_error,
            large_body_prefix=BATCHES,
            large_body=cfg.batch_max_bytes + 65536,
        )
        self.batches = BatchStore(self)
        self._table = LimitsTable(cfg.limits)
        self._key_tables = {k: LimitsTable(v) for k, v in (cfg.key_limits or {}).items()}
        self._budgets: dict[tuple[str, str], ServerBudget] = {}
        self._count_buckets: dict[str, TokenBucket] = {}
        self._cache = PromptCache(cfg.cache_ttl_scale)
        self._rng = random.Random(cfg.faults.seed)
        self._analyses: dict[bytes, tuple[InputAnalysis, int]] = {}
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._address: tuple[str, int] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> MockServer:
        """Bind (port 0 = any free port) and start serving; returns self."""
        if self._address is not None:
            raise RuntimeError("MockServer already started")
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._address = await self._http.start(self.config.host, self.config.port)
        return self

    async def stop(self) -> None:
        """Close every connection, cancel answers in progress (settling them), stop listening."""
        if self._address is None:
            return
        await self._http.close()
        self._address = None

    async def __aenter__(self) -> MockServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for the SDK's `base_url`."""
        if self._address is None:
            raise RuntimeError("MockServer is not running: use `async with` or `await start()`")
        host, port = self._address
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        if self._address is None:
            raise RuntimeError("MockServer is not running")
        return self._address[1]

    def reset(self) -> None:
        """Zero the counters, refill every bucket, empty the prompt cache, reseed the faults."""
        self.counters.clear()
        self._budgets.clear()
        self._count_buckets.clear()
        self._cache.clear()
        self.batches.clear()
        self._rng.seed(self.config.faults.seed)
        if self._loop is not None:
            self._t0 = self._loop.time()

    def stats(self) -> dict[str, Any]:
        """The counters as served by ``GET /_mock/stats``."""
        out = self.counters.to_dict()
        out["uptime"] = self._now() - self._t0 if self._loop is not None else 0.0
        out["connections"] = self._http.connections
        out["connections_opened"] = self._http.opened
        return out

    # -- helpers ---------------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else time.monotonic()

    def _id(self, prefix: str) -> str:
        return f"{prefix}_01{self._id_prefix}{next(self._ids):014x}"

    def _json(
        self, status: int, data: object, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        hdrs = headers if headers is not None else [("request-id", self._id("req"))]
        return Response(status, orjson.dumps(data), hdrs)

    def _error(
        self,
        status: int,
        message: str,
        headers: list[tuple[str, str]] | None = None,
        error_type: str | None = None,
    ) -> Response:
        rid = self._id("req")
        body = {
            "type": "error",
            "error": {
                "type": error_type or _ERROR_TYPES.get(status, "api_error"),
                "message": message,
            },
            "request_id": rid,
        }
        return Response(status, orjson.dumps(body), [("request-id", rid), *(headers or ())])

    def _protocol_error(self, status: int, message: str) -> Response:
        return self._error(status, message)

    def _answered(self, response: Response) -> Response:
        self.counters.by_status[response.status] += 1
        return response

    def _record(self, cls: str, input_tokens: int, output_tokens: int, status: int) -> None:
        if self.config.record:
            t = self._now() - self._t0
            self.counters.log.append(Admission(t, cls, input_tokens, output_tokens, status))

    def _retry_headers(self, seconds: float) -> list[tuple[str, str]]:
        out = [("retry-after", str(max(1, math.ceil(seconds - 1e-9))))]
        if self.config.retry_after_ms:
            out.append(("retry-after-ms", str(max(1, math.ceil(seconds * 1000.0 - 1e-6)))))
        out.append(("x-should-retry", "true"))
        return out

    def _api_key(self, request: Request) -> str | Response:
        """The caller's key from ``x-api-key`` or ``Authorization: Bearer`` (the SDK's way)."""
        key = request.headers.get("x-api-key")
        if not key:
            auth = request.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                key = auth[7:].strip()
        if not key:
            return self._error(401, "x-api-key header is required")
        allowed = self.config.api_keys
        if allowed is not None and key not in allowed:
            return self._error(401, "invalid x-api-key")
        return key

    def _parse(self, request: Request) -> object | Response:
        try:
            value: object = orjson.loads(request.body)
            return value
        except orjson.JSONDecodeError as exc:
            return self._error(400, f"invalid JSON body: {exc}")

    def _analyze(self, raw: bytes, body: dict[str, Any]) -> tuple[InputAnalysis, int]:
        """(input analysis, answer seed), memoised by the raw body's hash."""
        digest = xxhash.xxh3_128_digest(raw)
        found = self._analyses.get(digest)
        if found is None:
            found = (analyze_input(body), self.answer_seed(body))
            if len(self._analyses) >= _ANALYSIS_CACHE_SIZE:
                self._analyses.clear()
            self._analyses[digest] = found
        return found

    def answer_seed(self, body: dict[str, Any]) -> int:
        """The seed of a request's deterministic answer (see `MockConfig.answer_from`)."""
        if self.config.answer_from == "last_turn":
            return request_hash(last_turn_view(body))
        return request_hash(body)

    def _budget(self, api_key: str, model: str) -> tuple[str, ServerBudget | None]:
        table = self._key_tables.get(api_key, self._table)
        cls, limits = table.for_model(model)
        if limits.unlimited:
            return cls, None
        budget = self._budgets.get((api_key, cls))
        if budget is None:
            cfg = self.config
            budget = ServerBudget(
                limits, cfg.shadow_load, self._now(), cfg.remaining_rounding, cfg.reset_precision
            )
            self._budgets[(api_key, cls)] = budget
        return cls, budget

    # -- routing ---------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response | StreamResponse | None:
        path, method = request.path, request.method
        if path == "/v1/messages":
            if method == "POST":
                return await self._messages(request)
        elif path == "/v1/messages/count_tokens":
            if method == "POST":
                return self._count_tokens(request)
        elif path == BATCHES or path.startswith(BATCHES + "/"):
            key = self._api_key(request)
            if isinstance(key, Response):
                return key
            return await self.batches.dispatch(request, key)
        elif path == "/_mock/stats":
            if method == "GET":
                return self._json(200, self.stats())
        elif path == "/_mock/reset":
            if method == "POST":
                self.reset()
                return self._json(200, {"ok": True})
        else:
            return self._error(404, f"{method} {path} not found")
        return self._error(405, f"method {method} not allowed for {path}")

    # -- count_tokens ----------------------------------------------------------------------

    def _count_tokens(self, request: Request) -> Response:
        self.counters.count_tokens += 1
        key = self._api_key(request)
        if isinstance(key, Response):
            return key
        body = self._parse(request)
        if isinstance(body, Response):
            return body
        problem = validate(body, count_tokens=True, max_output_tokens=self.config.max_output_tokens)
        if problem is not None:
            return self._error(problem.status, problem.message, error_type=problem.type)
        assert isinstance(body, dict)
        rpm = self.config.count_tokens_rpm
        if rpm is not None:
            now = self._now()
            bucket = self._count_buckets.get(key)
            if bucket is None:
                bucket = TokenBucket(rpm, self.config.count_tokens_period, now)
                self._count_buckets[key] = bucket
            wait = bucket.wait(1.0, now)
            if wait > 0:
                return self._error(
                    429,
                    f"count_tokens rate limit of {rpm:g} requests per "
                    f"{self.config.count_tokens_period:g} s exceeded",
                    self._retry_headers(wait),
                )
            bucket.take(1.0, now)
        analysis = analyze_input(body)
        return self._json(200, {"input_tokens": analysis.total})

    # -- messages --------------------------------------------------------------------------

    async def _messages(self, request: Request) -> Response | StreamResponse | None:
        c = self.counters
        c.requests += 1
        cfg = self.config
        key = self._api_key(request)
        if isinstance(key, Response):
            return self._answered(key)
        body = self._parse(request)
        if isinstance(body, Response):
            return self._answered(body)
        problem = validate(body, count_tokens=False, max_output_tokens=cfg.max_output_tokens)
        if problem is not None:
            return self._answered(
                self._error(problem.status, problem.message, error_type=problem.type)
            )
        assert isinstance(body, dict)
        model: str = body["model"]
        max_tokens: int = body["max_tokens"]
        analysis, seed = self._analyze(request.body, body)
        if analysis.total > cfg.context_window:
            return self._answered(
                self._error(
                    400,
                    f"prompt is too long: {analysis.total} tokens > {cfg.context_window} maximum",
                )
            )

        # Faults: one fixed set of draws per request keeps the sequence reproducible.
        rng = self._rng
        u, v, w = rng.random(), rng.random(), rng.random()
        faults = cfg.faults
        cls, budget = self._budget(key, model)
        if u < faults.overloaded + faults.server_error + faults.drop:
            if u < faults.overloaded:
                c.overloaded += 1
                self._record(cls, analysis.total, max_tokens, 529)
                return self._answered(
                    self._error(529, "Overloaded", self._retry_headers(cfg.overloaded_retry_after))
                )
            if u < faults.overloaded + faults.server_error:
                c.server_errors += 1
                self._record(cls, analysis.total, max_tokens, 500)
                return self._answered(
                    self._error(500, "Internal server error", [("x-should-retry", "true")])
                )
            c.dropped += 1
            self._record(cls, analysis.total, max_tokens, 0)
            return None

        now = self._now()
        if cfg.prompt_caching and analysis.breakpoints:
            split = self._cache.split(key, analysis, min_cacheable(model), now)
        else:
            split = CacheSplit(analysis.total, 0, 0)
        charged_input = split.input_tokens + split.cache_creation
        reserve = cfg.output_charge == "reserve"
        cost = (1.0, float(charged_input), float(max_tokens) if reserve else 0.0)

        headers = [("request-id", self._id("req"))]
        stream = body.get("stream") is True
        # Headers as of admission unless they describe the completed response (see below).
        late_headers = budget is not None and not stream and cfg.headers_at == "completion"
        if budget is not None:
            refused = self._admit(budget, cls, cost, reserve, now, headers)
            if refused is not None:
                self._record(cls, charged_input, max_tokens, 429)
                return self._answered(refused)
            if not late_headers:
                headers.extend(budget.headers(now, time.time()))
        if cfg.prompt_caching and analysis.breakpoints:
            self._cache.commit(key, analysis, min_cacheable(model), now)

        answer = packed_answer(
            body, cfg.output_tokens, max_tokens, faults.packed_items, seed ^ faults.seed
        ) or answer_for(seed, cfg.output_tokens, max_tokens, body.get("stop_sequences"))
        c.ok += 1
        c.by_status[200] += 1
        c.input_tokens += charged_input
        c.cache_read_tokens += split.cache_read
        c.cache_creation_tokens += split.cache_creation
        c.in_flight += 1
        if c.in_flight > c.peak_in_flight:
            c.peak_in_flight = c.in_flight
        self._record(cls, charged_input, answer.output_tokens, 200)
        settle = _Answering(self, budget if budget is not None else _NO_BUDGET, max_tokens, reserve)
        jitter = max(0.0, 1.0 + cfg.latency_jitter * (2.0 * w - 1.0))
        base, per_token = cfg.latency * jitter, cfg.latency_per_token * jitter
        usage = {
            "input_tokens": split.input_tokens,
            "cache_creation_input_tokens": split.cache_creation,
            "cache_read_input_tokens": split.cache_read,
        }
        if stream:
            c.streams += 1
            fail = v < faults.stream_error
            response = self._stream(model, answer, usage, settle, base, per_token, fail)
            response.headers = headers
            return response

        started = self._now()
        try:
            delay = base + per_token * answer.output_tokens
            if delay > 0:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            elapsed = self._now() - started - base
            produced = int(elapsed / per_token) if per_token > 0 and elapsed > 0 else 0
            settle.settle(min(produced, answer.output_tokens), completed=False)
            raise
        settle.settle(answer.output_tokens, completed=True)
        if late_headers:
            # After the settle, so the unused reservation is back (or the actual output
            # charged), at the settle's instant: everything charged meanwhile is included.
            headers.extend(settle.budget.headers(settle.at, time.time()))
        message = {
            "id": self._id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": answer.stop_reason,
            "stop_sequence": answer.stop_sequence,
            "usage": {**usage, "output_tokens": answer.output_tokens},
        }
        return Response(200, orjson.dumps(message), headers)

    def _admit(
        self,
        budget: ServerBudget,
        cls: str,
        cost: tuple[float, float, float],
        reserve: bool,
        now: float,
        headers: list[tuple[str, str]],
    ) -> Response | None:
        """Charge `cost` if every bucket can pay it now; else the 429 to answer (uncharged).

        A 429 is answered at once, so its rate-limit headers are as of the refusal whatever
        `MockConfig.headers_at` says.
        """
        never = budget.never_fits(cost)
        if never is not None:
            dim = budget.dims[never]
            assert dim is not None
            what = DIMENSIONS[never][1]
            return self._error(
                429,
                f"This request needs {cost[never]:,.0f} {what} but your rate limit for "
                f"{cls} models is {dim.capacity:,.0f} {what} per {budget.limits.period:g} s: "
                "it can never be admitted. Reduce the prompt length or max_tokens.",
                [
                    *headers,
                    *budget.headers(now, time.time()),
                    ("retry-after", str(math.ceil(budget.limits.period))),
                    ("x-should-retry", "false"),
                ],
            )
        need = cost if reserve else (cost[0], cost[1], 1.0)
        wait, which = budget.check(need, now)
        if wait > 0:
            dim = budget.dims[which]
            assert dim is not None
            what = DIMENSIONS[which][1]
            per = "minute" if budget.limits.period == 60 else f"{budget.limits.period:g} s"
            c = self.counters
            c.rate_limited += 1
            return self._error(
                429,
                f"This request would exceed your organization's rate limit of "
                f"{dim.capacity:,.0f} {what} per {per} for {cls} models. Please reduce the "
                "prompt length or the maximum tokens requested, or try again later.",
                [
                    *headers,
                    *budget.headers(now, time.time()),
                    *self._retry_headers(wait),
                ],
            )
        budget.take(cost, now)
        return None

    def _stream(
        self,
        model: str,
        answer: Answer,
        usage: dict[str, int],
        settle: _Answering,
        base: float,
        per_token: float,
        fail: bool,
    ) -> StreamResponse:
        """The SSE response of one admitted stream, which settles its output however it ends.

        Without any latency the whole body is built now and sent with the head in one write
        (the generator then only settles); otherwise events are paced by the latency model.
        """
        deltas = split_deltas(answer.text, self.config.stream_chunk_words)
        fail_at = -1
        if fail:
            fail_at = max(1, len(deltas) // 2) if len(deltas) > 1 else 0
            self.counters.stream_errors += 1
        sent = deltas if fail_at < 0 else deltas[:fail_at]
        end = error_event(self._id("req")) if fail_at >= 0 else stop_events(answer)
        start = start_events(self._id("msg"), model, usage)
        if base <= 0 and per_token <= 0:
            body = b"".join([start, *map(delta_event, sent), end])
            settle.produced = answer.output_tokens if fail_at < 0 else count_text("".join(sent))
            settle.completed = True
            return StreamResponse(200, _no_chunks(), prefix=body, on_close=settle.finish)
        return StreamResponse(
            200, _paced(start, sent, end, settle, base, per_token), on_close=settle.finish
        )


async def _no_chunks() -> AsyncGenerator[bytes, None]:
    """An empty body: everything was sent as the response's prefix."""
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


async def _paced(
    start: bytes, sent: list[str], end: bytes, settle: _Answering, base: float, per_token: float
) -> AsyncGenerator[bytes, None]:
    """Events after `base` seconds, each delta after `per_token` per token it carries.

    Counts what went out in `settle.produced`; the HTTP layer settles when the response ends.
    """
    if base > 0:
        await asyncio.sleep(base)
    yield start
    for text in sent:
        tokens = count_text(text)
        if per_token > 0:
            await asyncio.sleep(per_token * tokens)
        settle.produced += tokens
        yield delta_event(text)
    settle.completed = True
    yield end


class _Unlimited(ServerBudget):
    """A budget with no bucket at all (an unlimited model class): settling is a no-op."""

    def __init__(self) -> None:
        self.dims = (None, None, None)


_NO_BUDGET: Final = _Unlimited()

"""`MockServer`: a faithful local Anthropic Messages API for tests, demos and benchmarks.

The real SDK talks to it over real HTTP on loopback, so everything between the client and
the wire (connection pooling, header parsing, SSE decoding, exception mapping) is exercised.
What makes it useful for a rate-limit client is that it *enforces* limits the way the API
does (token buckets per api key and model class, reservation of ``max_tokens``,
``anthropic-ratelimit-*`` headers) and that every answer is deterministic, so a test can
assert exact token accounting. Where the API's documentation leaves the server's behaviour
open (which instant the headers describe, how `-reset` and `-remaining` are rounded), each
reading is a `MockConfig` setting, so a client can be tested against all of them.

Order of decisions for ``POST /v1/messages`` (`_messages`): authenticate (401) → parse and validate
(400/404) → context window (400) → faults (529, 500, drop; nothing charged) → rate limits
(429; nothing charged) → charge and answer (200), refunding unused output at completion.
A non-streamed 200's rate-limit headers are computed after that refund with
``headers_at="completion"`` (the default), right after the charge with ``"admission"``.
A non-streamed answer whose client went away is finished and charged in full
(``abandoned="finish"``, the default) or stopped, charged only what it produced (``"stop"``).
This module holds the server itself: lifecycle, routing, the helpers every endpoint shares,
and the small endpoints; 429s are written by `_refusal`, answers settled by `_answering`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import random
import secrets
import time
from types import TracebackType
from typing import Any, Final

import orjson
import xxhash

from ..scheduling.bucket import TokenBucket
from ..scheduling.limits import LimitsTable
from ._answers import (
    last_turn_view,
    request_hash,
)
from ._batches import PREFIX as BATCHES
from ._batches import BatchStore
from ._caching import PromptCache
from ._config import MockConfig
from ._counters import Admission, MockCounters
from ._http import HttpServer
from ._http_types import Request, Response, StreamResponse
from ._messages import answer_messages
from ._ratelimit import ServerBudget
from ._tokenizer import InputAnalysis, analyze_input
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
            stop_abandoned=cfg.abandoned == "stop",
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

    def wall(self) -> float:
        """The mock's wall clock (epoch seconds), `MockConfig.clock_skew` ahead of ours."""
        return time.time() + self.config.clock_skew

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
                limits,
                cfg.shadow_load,
                self._now(),
                cfg.remaining_rounding,
                cfg.reset_precision,
                cfg.shadow_schedule,
            )
            self._budgets[(api_key, cls)] = budget
        return cls, budget

    # -- routing ---------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response | StreamResponse | None:
        path, method = request.path, request.method
        if path == "/v1/messages":
            if method == "POST":
                return await answer_messages(self, request)
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

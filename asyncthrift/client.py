"""`Thrift`, the facade: the SDK's `messages.create`, scheduled, shared, cached and retried.

The request path, in order: split our options from the SDK's arguments; look the request up
in the cache; join an identical request already in flight; otherwise estimate its cost,
wait for admission in its lane, send it with the official SDK (its own retries off), resync
the budget from the response headers, reconcile the reservation with `usage`, and store the
answer. A failed attempt gives back what it did not use and, if it can succeed, goes back
into the scheduler ahead of newer work.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anthropic
from anthropic.types import Message, Usage

from ._options import RequestOptions, split_options, stream_requested
from .bucket import ZERO, Cost, LocalBudget
from .cache import Cache, MemoryCache, make_cache
from .cache.base import decode_message, encode_message, is_cacheable, reject_entry
from .cache.keys import fingerprint, scope_for_key
from .dedupe import SingleFlight
from .limits import LimitsSpec, LimitsTable, model_class
from .prices import cost_usd
from .retry import RetryPolicy, classify, server_view
from .scheduler import Gate, QueueCounter, Reservation
from .spend import SpendCap
from .stats import Recorder, Stats
from .tokens import Calibrator, estimate_input_tokens

if TYPE_CHECKING:
    from .streaming import ThriftStreamManager

__all__ = ["KeyConfig", "Messages", "Thrift"]

log = logging.getLogger("asyncthrift")


def _want_aiohttp(http: str) -> bool:
    """Whether to give the SDK its aiohttp transport: "auto" does when aiohttp is installed.

    The SDK recommends it for high concurrency, and it is measured at about a third of the
    CPU per request of the default httpx2 transport (bench/RESULTS.md).
    """
    if http not in ("auto", "aiohttp", "httpx"):
        raise ValueError(f"http= must be 'auto', 'aiohttp' or 'httpx', got {http!r}")
    if http == "httpx":
        return False
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        if http == "aiohttp":
            raise ValueError(
                "http='aiohttp' needs aiohttp: pip install 'asyncthrift[fast]'"
            ) from None
        return False
    return True


#: Where the response hook leaves the headers of the attempt running in this task: the SDK
#: sends from the caller's task, so a context variable pairs each response with its caller
#: without the SDK's raw-response path (measured at 0.91x the throughput of plain create).
_HEADERS: ContextVar[list[Mapping[str, str]] | None] = ContextVar(
    "asyncthrift_headers", default=None
)


async def _capture_headers(response: Any) -> None:
    box = _HEADERS.get()
    if box is not None:
        box.append(response.headers)


def _with_header_hook(http: Any, use_aiohttp: bool) -> Any:
    """The HTTP client for one SDK client, with the header-capturing response hook."""
    hooks = {"response": [_capture_headers]}
    if http is None:
        if use_aiohttp:
            return anthropic.DefaultAioHttpClient(event_hooks=hooks)
        return anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
    current = dict(http.event_hooks)
    if _capture_headers not in current.get("response", []):
        current["response"] = [*current.get("response", []), _capture_headers]
        http.event_hooks = current
    return http


def _redact(key: str) -> str:
    return "<redacted>" if key else "<none>"


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One API key of a pool, with its own limits (and optionally its own endpoint).

    A pool is for keys you are entitled to use: separate workspaces, organisations or cloud
    deployments, each with its own limits. The key never appears in `repr()`.
    """

    api_key: str = field(repr=False)
    limits: LimitsSpec = None
    base_url: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("KeyConfig.api_key must be a non-empty string")

    def __repr__(self) -> str:
        key = _redact(self.api_key)
        return f"KeyConfig(name={self.name!r}, api_key={key}, limits={self.limits!r})"


class _Key:
    """A configured key: its SDK client, limits table and cache scope."""

    __slots__ = ("limits", "name", "scope", "sdk")

    def __init__(self, name: str, sdk: anthropic.AsyncAnthropic, limits: LimitsTable, scope: str):
        self.name = name
        self.sdk = sdk
        self.limits = limits
        self.scope = scope


class _ModelClass:
    """Per model class: the gate over every key's budget, and the input calibrator."""

    __slots__ = ("budgets", "calibrator", "gate", "name")

    def __init__(self, name: str, budgets: list[LocalBudget], gate: Gate) -> None:
        self.name = name
        self.budgets = budgets
        self.gate = gate
        self.calibrator = Calibrator()


class Thrift:
    """An asyncio Anthropic client that schedules every call under its key's limits.

    ``async with Thrift(limits="tier2") as client: await client.messages.create(...)``.
    See the README for every option; all are validated here, before anything starts.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        limits: LimitsSpec = None,
        base_url: str | None = None,
        cache: Cache | str | None = None,
        dedupe: bool = True,
        keys: Sequence[KeyConfig] | None = None,
        max_retries: int = 5,
        max_queue: int | None = None,
        aging: float = 60.0,
        timeout: float | None = None,
        cache_scope: str = "key",
        cache_ttl: float | None = 3600.0,
        cache_truncated: bool = False,
        http: str = "auto",
        spend_cap_usd: float | None = None,
        sdk_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(dedupe, bool):
            raise TypeError(f"dedupe= must be True or False, got {dedupe!r}")
        if cache_scope not in ("key", "global"):
            raise ValueError(f"cache_scope= must be 'key' or 'global', got {cache_scope!r}")
        if isinstance(aging, bool) or not isinstance(aging, int | float) or aging < 0:
            raise ValueError(f"aging= must be a number of seconds >= 0, got {aging!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ValueError(
                f"timeout= must be a positive number of seconds or None, got {timeout!r}"
            )
        self._retry = RetryPolicy(max_retries=max_retries)
        self._spend = None if spend_cap_usd is None else SpendCap(spend_cap_usd)
        self._queue = QueueCounter(max_queue)
        self._aging = float(aging)
        base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        if keys is not None:
            if api_key is not None or limits is not None:
                raise ValueError("pass either keys=[KeyConfig(...)] or api_key=/limits=, not both")
            configs = list(keys)
            if not configs or not all(isinstance(k, KeyConfig) for k in configs):
                raise TypeError("keys= must be a non-empty list of KeyConfig")
        else:
            api_key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not api_key:
                raise ValueError(
                    "no API key: pass api_key=, set ANTHROPIC_API_KEY, "
                    "or pass keys=[KeyConfig(...)]"
                )
            configs = [KeyConfig(api_key=api_key, limits=limits)]
        self._cache = make_cache(cache)  # validated before any HTTP client exists
        sdk_kwargs: dict[str, Any] = dict(sdk_options or {})
        sdk_kwargs["max_retries"] = 0  # retries are ours, through the scheduler
        if timeout is not None:
            sdk_kwargs["timeout"] = timeout
        user_http = sdk_kwargs.pop("http_client", None)
        use_aiohttp = user_http is None and _want_aiohttp(http)
        self._keys: list[_Key] = []
        for i, cfg in enumerate(configs):
            table = LimitsTable(cfg.limits)
            sdk_kwargs["http_client"] = _with_header_hook(user_http, use_aiohttp)
            sdk = anthropic.AsyncAnthropic(
                api_key=cfg.api_key, base_url=cfg.base_url or base_url, **sdk_kwargs
            )
            scope = "" if cache_scope == "global" else scope_for_key(cfg.api_key)
            self._keys.append(_Key(cfg.name or f"key{i}", sdk, table, scope))
        self._cache_is_shared = self._cache is not None and not isinstance(self._cache, MemoryCache)
        self._cache_ttl = cache_ttl
        self._cache_truncated = cache_truncated
        self._dedupe = dedupe
        self._flight: SingleFlight[str, Message] = SingleFlight()
        self._classes: dict[str, _ModelClass] = {}
        self._by_model: dict[str, _ModelClass] = {}  # model id -> its class, memoised
        self._stats = Recorder()
        self._closed = False
        self.messages = Messages(self)

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Thrift:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP clients and the cache. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for key in self._keys:
            await key.sdk.close()
        if self._cache is not None:
            await self._cache.aclose()

    def __repr__(self) -> str:
        names = ", ".join(k.name for k in self._keys)
        return (
            f"Thrift(keys=[{names}], cache={type(self._cache).__name__ if self._cache else None})"
        )

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> Stats:
        """A frozen snapshot of counters and recent latency percentiles."""
        r = self._stats
        queued = sum(mc.gate.waiting for mc in self._classes.values())
        extra: dict[str, int | float] = {}
        if self._cache is not None:
            cs = self._cache.stats
            extra = {"cache_errors": r.cache_errors + cs.errors + cs.timeouts}
        return r.snapshot(queued=queued, **extra)

    def budgets(self) -> dict[str, list[LocalBudget]]:
        """The live budgets per model class (one per key), for metrics and debugging."""
        return {name: list(mc.budgets) for name, mc in self._classes.items()}

    # -- the request path -------------------------------------------------------------------

    def _model_class(self, model: str) -> _ModelClass:
        mc = self._by_model.get(model)
        if mc is not None:
            return mc
        cls = model_class(model)
        mc = self._classes.get(cls)
        if mc is None:
            loop = asyncio.get_running_loop()
            now = loop.time()
            budgets = []
            for key in self._keys:
                name, limits = key.limits.for_model(model)
                budgets.append(LocalBudget(limits, now, name=f"{key.name}/{name}", cold_start=True))
            gate = Gate(budgets, aging=self._aging, counter=self._queue, name=cls, loop=loop)
            mc = self._classes[cls] = _ModelClass(cls, budgets, gate)
        if len(self._by_model) >= 1024:  # model ids come from callers: stay bounded
            self._by_model.clear()
        self._by_model[model] = mc
        return mc

    async def _create(self, kwargs: dict[str, Any]) -> Message:
        opts, params = split_options(kwargs)
        if self._closed:
            raise RuntimeError("this Thrift client is closed; create a new one")
        loop = asyncio.get_running_loop()
        started = loop.time()
        stats = self._stats
        stats.requests += 1
        use_cache = self._cache is not None and opts.cache is not False
        use_dedupe = self._dedupe if opts.dedupe is None else opts.dedupe
        try:
            if use_cache or use_dedupe:
                message = await self._lookup_or_fetch(params, opts, use_cache, use_dedupe)
            else:  # straight to the scheduler: no fingerprint, no extra coroutine
                message = await self._send(params, opts)
        except BaseException:
            stats.failed += 1
            raise
        stats.succeeded += 1
        stats.latencies.append(loop.time() - started)
        return message

    async def _lookup_or_fetch(
        self, params: dict[str, Any], opts: RequestOptions, use_cache: bool, use_dedupe: bool
    ) -> Message:
        """The cache, then a shared in-flight call, then the scheduler (`_create` decided)."""
        key = fingerprint(params, scope=self._keys[0].scope)
        if use_cache:
            assert self._cache is not None
            message = await self._cached(key)
            if message is not None:
                return message
        if use_dedupe:
            message, joined = await self._flight.do_joined(
                key, lambda: self._fetch_and_store(key, params, opts, use_cache)
            )
            if joined:
                self._count_saved(message, cache_hit=False)
            return message
        return await self._fetch_and_store(key, params, opts, use_cache)

    async def _cached(self, key: str, *, count_miss: bool = True) -> Message | None:
        """The cached answer for `key`, or None (a miss, or an entry that does not decode)."""
        assert self._cache is not None
        blob = await self._cache.get(key)
        if blob is not None:
            try:
                message = decode_message(blob)
            except ValueError:
                self._stats.cache_errors += 1
                log.warning("a cached entry did not decode; treating it as a miss")
                await reject_entry(self._cache, key)  # counted and deleted by the cache
            else:
                self._count_saved(message, cache_hit=True)
                return message
        if count_miss:
            self._stats.cache_misses += 1
        return None

    async def _fetch_and_store(
        self, key: str, params: dict[str, Any], opts: RequestOptions, use_cache: bool
    ) -> Message:
        if use_cache and self._cache_is_shared:
            # another process (or a call that finished since our miss) may have stored it
            again = await self._cached(key, count_miss=False)
            if again is not None:
                return again
        message = await self._send(params, opts)
        if use_cache and self._cache is not None and is_cacheable(message, self._cache_truncated):
            await self._cache.set(key, encode_message(message), self._cache_ttl)
        return message

    def _count_saved(self, message: Message, *, cache_hit: bool) -> None:
        s = self._stats
        if cache_hit:
            s.cache_hits += 1
        else:
            s.dedupe_joins += 1
        s.upstream_calls_saved += 1
        u = message.usage
        s.tokens_saved += u.input_tokens + u.output_tokens
        s.dollars_saved += cost_usd(
            message.model,
            u.input_tokens,
            u.output_tokens,
            u.cache_creation_input_tokens or 0,
            u.cache_read_input_tokens or 0,
        )

    def _plan(self, params: Mapping[str, Any]) -> _Plan:
        """Estimate what `params` will cost, in the right model class."""
        mc = self._model_class(params["model"])
        raw_estimate = estimate_input_tokens(params)
        cost = Cost(1, mc.calibrator.charge(raw_estimate), params["max_tokens"])
        worst = 0.0
        if self._spend is not None:
            worst = cost_usd(params["model"], cost.input_tokens, cost.output_tokens)
        return _Plan(mc, cost, raw_estimate, worst)

    def _admit_now(self, plan: _Plan, attempt: _Attempts) -> Reservation | None:
        """The fast path of `_admit`: admitted at once if nobody waits and the budget fits.

        None means: go through `_admit` (it queues, honours the deadline and holds the
        spend cap's worst case, so a client with a spend cap always takes it).
        """
        if self._spend is not None:
            return None
        reservation = plan.mc.gate.try_acquire(plan.cost)
        if reservation is not None:
            stats = self._stats
            if attempt.number == 0:
                stats.queue_waits.append(0.0)
            stats.upstream_calls += 1
        return reservation

    async def _admit(self, plan: _Plan, opts: RequestOptions, attempt: _Attempts) -> Reservation:
        """Wait in the plan's lane until its cost fits; count the wait against `deadline`."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = None if opts.deadline is None else opts.deadline - attempt.waited
        if self._spend is not None:
            self._spend.hold(plan.worst_usd)
        try:
            reservation = await plan.mc.gate.acquire(
                plan.cost, level=opts.level, deadline=deadline, enqueued_at=attempt.enqueued_at
            )
        except BaseException:
            if self._spend is not None:
                self._spend.release(plan.worst_usd)
            raise
        attempt.waited += loop.time() - t0
        if attempt.number == 0:
            self._stats.queue_waits.append(attempt.waited)
        self._stats.upstream_calls += 1
        return reservation

    def _retry_delay(self, exc: BaseException, attempt: _Attempts) -> float | None:
        """Seconds to wait before re-queueing after `exc`, or None if it must not be retried."""
        decision = classify(exc)
        if not decision.retry or attempt.number >= self._retry.max_retries:
            return None
        if decision.status == 429:
            delay = 0.0  # the budget itself is blocked until retry-after
        elif decision.retry_after is not None:
            delay = decision.retry_after
        else:
            delay = self._retry.backoff(attempt.number)
        attempt.number += 1
        self._stats.retries += 1
        log.debug("retry %d after %.3fs: %s", attempt.number, delay, type(exc).__name__)
        return delay

    async def _send(self, params: dict[str, Any], opts: RequestOptions) -> Message:
        """Schedule, send and retry one request; return the SDK's Message."""
        plan = self._plan(params)
        attempt = _Attempts(asyncio.get_running_loop().time())
        while True:
            reservation = self._admit_now(plan, attempt)
            if reservation is None:
                reservation = await self._admit(plan, opts, attempt)
            try:
                return await self._attempt(plan, reservation, params)
            except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise
            if delay > 0:
                await asyncio.sleep(delay)

    async def _attempt(
        self, plan: _Plan, reservation: Reservation, params: dict[str, Any]
    ) -> Message:
        """One HTTP attempt under an admitted reservation; settles it exactly once."""
        key = self._keys[reservation.index]
        stats = self._stats
        stats.in_flight += 1
        box: list[Mapping[str, str]] = []
        token = _HEADERS.set(box)
        try:
            message: Message = await key.sdk.messages.create(**params)
        except BaseException as exc:
            self._on_failure(plan, reservation, exc)
            raise
        finally:
            _HEADERS.reset(token)
            stats.in_flight -= 1
        # always resync, even without headers: the first answer to a burst ends its hold
        self._on_response_headers(plan, reservation, box[-1] if box else {})
        self._on_usage(plan, reservation, message.model, message.usage)
        return message

    def _on_response_headers(
        self, plan: _Plan, reservation: Reservation, headers: Mapping[str, str]
    ) -> None:
        """Resync the budget from a successful response's rate-limit headers."""
        now = asyncio.get_running_loop().time()
        view = server_view(headers)
        if reservation.budget.observe(view, reservation.mark, reservation.sent_at, now):
            plan.mc.gate.poke()

    def _on_usage(self, plan: _Plan, reservation: Reservation, model: str, u: Usage) -> None:
        """Reconcile the reservation with the true usage; calibrate; count tokens and cost."""
        stats = self._stats
        cache_write = u.cache_creation_input_tokens or 0
        cache_read = u.cache_read_input_tokens or 0
        reservation.settle(u.input_tokens + cache_write, u.output_tokens)
        plan.mc.calibrator.observe(plan.raw_estimate, u.input_tokens + cache_write + cache_read)
        stats.input_tokens += u.input_tokens
        stats.output_tokens += u.output_tokens
        stats.cache_creation_input_tokens += cache_write
        stats.cache_read_input_tokens += cache_read
        dollars = cost_usd(model, u.input_tokens, u.output_tokens, cache_write, cache_read)
        stats.cost_usd += dollars
        if self._spend is not None:
            self._spend.settle(plan.worst_usd, dollars)

    def _on_failure(self, plan: _Plan, reservation: Reservation, exc: BaseException) -> None:
        """Give back what a failed or cancelled attempt did not use; learn from a 429."""
        if self._spend is not None:
            self._spend.release(plan.worst_usd)
        if not isinstance(exc, anthropic.APIStatusError):
            if isinstance(exc, anthropic.APIConnectionError):
                self._stats.connection_errors += 1
            # cancelled or dropped in flight: the server may have counted the input, never
            # output it did not produce
            reservation.release(sent=True, input_counted=True)
            return
        status = exc.status_code
        stats = self._stats
        now = asyncio.get_running_loop().time()
        view = server_view(exc.response.headers)
        budget = reservation.budget
        refused = status in (429, 529)
        c = reservation.cost
        uncharged = Cost(0, c.input_tokens, c.output_tokens) if refused else ZERO
        budget.observe(view, reservation.mark, reservation.sent_at, now, uncharged=uncharged)
        if status == 429:
            stats.rate_limited += 1
            budget.block_until(now + (view.retry_after if view.retry_after is not None else 1.0))
        elif status == 529:
            stats.overloaded += 1
        elif status >= 500:
            stats.server_errors += 1
        reservation.release(sent=True, input_counted=not refused)
        plan.mc.gate.poke()


class _Plan:
    """What one request will cost and where it queues (the same for every retry)."""

    __slots__ = ("cost", "mc", "raw_estimate", "worst_usd")

    def __init__(
        self, mc: _ModelClass, cost: Cost, raw_estimate: float, worst_usd: float = 0.0
    ) -> None:
        self.mc = mc
        self.cost = cost
        self.raw_estimate = raw_estimate
        self.worst_usd = worst_usd


class _Attempts:
    """Retry bookkeeping of one request: first arrival (its place in line), waits, count."""

    __slots__ = ("enqueued_at", "number", "waited")

    def __init__(self, enqueued_at: float) -> None:
        self.enqueued_at = enqueued_at
        self.number = 0
        self.waited = 0.0


class Messages:
    """`client.messages`: the SDK's resource, scheduled. Same arguments, same return types."""

    def __init__(self, client: Thrift) -> None:
        self._client = client

    async def create(self, **kwargs: Any) -> Any:
        """`anthropic.AsyncAnthropic().messages.create`, under the client's limits.

        Returns the SDK's `Message` (or, with ``stream=True``, an async iterator of the SDK's
        stream events). Extra keyword options: ``priority`` ("interactive" | "default" |
        "batch" | int), ``deadline`` (seconds to wait for admission), ``cache`` and
        ``dedupe`` (bool); None for any of them means its default.
        """
        if stream_requested(kwargs):  # strict: stream="yes" is refused, not truthy
            from .streaming import open_event_stream

            return await open_event_stream(self._client, kwargs)
        return await self._client._create(kwargs)

    def stream(self, **kwargs: Any) -> ThriftStreamManager:
        """`messages.stream(...)` under the client's limits, with the SDK's MessageStream API."""
        from .streaming import ThriftStreamManager

        return ThriftStreamManager(self._client, kwargs)

    async def count_tokens(self, **kwargs: Any) -> Any:
        """`messages.count_tokens(...)`, scheduled on its own request budget."""
        from .counting import count_tokens

        return await count_tokens(self._client, kwargs)

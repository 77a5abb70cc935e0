"""The request pipeline: one path for ``create``, streams and ``count_tokens``.

A call goes through the same steps whatever its shape, and is recorded once from start to
finish (`start` ... `finish`): `fetch` looks the answer up in the cache, then joins an
identical call in flight, and otherwise `run`\\s it: estimate its cost in its model class,
admit it (at once, or in its lane's queue), ask the *route* to send it on the chosen key,
read the response's headers once into a `ServerView` that both resyncs the budget and
decides a retry, and reconcile. Routes vary only the innermost send, as an httpx transport
does: `CREATE` here, the stream route in `streaming`, the count route in `counting`.

Only this module touches a `Reservation`: an `Attempt` holds it and settles it exactly once
(`succeeded` or `failed`), however and whenever the attempt ends (a stream's, when its
reader finishes or drops it).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import anthropic
import httpx2
from anthropic.types import Message, Usage

from ._keys import HEADERS, Key
from ._observers import Observers, RequestRecord, status_of
from ._options import RequestOptions, split_options
from .bucket import ZERO, Cost, LocalBudget, ServerView
from .cache import Cache, MemoryCache
from .cache.base import decode_message, encode_message, is_cacheable, reject_entry
from .cache.keys import fingerprint
from .dedupe import SingleFlight
from .limits import MODEL_CLASSES, Limits, model_class
from .prices import PRICES, cost_usd
from .retry import RetryPolicy, classify, server_view
from .scheduler import Gate, QueueCounter, Reservation
from .spend import SpendCap
from .stats import Recorder
from .tokens import Calibrator, estimate_input_tokens

__all__ = [
    "COUNT_TOKENS_CLASS",
    "CREATE",
    "RAW_CREATE",
    "UNKNOWN_CLASS",
    "Attempt",
    "Call",
    "ModelClass",
    "Pipeline",
    "Plan",
    "Route",
    "SendFailed",
    "UnknownModel",
]

log = logging.getLogger("asyncthrift")

COUNT_TOKENS_CLASS: Final = "count_tokens"
"""The name of the count_tokens gate and the suffix of its budgets (``key0/count_tokens``)."""

UNKNOWN_CLASS: Final = "unknown"
"""The one class every model id of no known family shares (unless `limits=` names the id)."""

_EMPTY_VIEW: Final = ServerView()

#: What an ``error`` event's type means as an HTTP status (a stream's error in a 200).
EVENT_ERROR_STATUS: Final = {
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "api_error": 500,
    "timeout_error": 504,
}


class UnknownModel(ValueError):
    """A ``claude-*`` model id of no known family while limits are configured."""


class ModelClass:
    """Per model class: the gate over every key's budget, and the input calibrator."""

    __slots__ = ("budgets", "calibrator", "gate", "name")

    def __init__(
        self, name: str, budgets: list[LocalBudget], gate: Gate, calibrator: Calibrator | None
    ) -> None:
        self.name = name
        self.budgets = budgets
        self.gate = gate
        self.calibrator = calibrator


class Plan:
    """What one request will cost and where it queues (the same for every retry)."""

    __slots__ = ("cost", "mc", "raw_estimate", "worst_usd")

    def __init__(self, mc: ModelClass, cost: Cost, raw_estimate: float, worst_usd: float) -> None:
        self.mc = mc
        self.cost = cost
        self.raw_estimate = raw_estimate
        self.worst_usd = worst_usd


class Call:
    """One application call, from `Pipeline.start` to `Pipeline.finish`.

    Carries its arguments, its options, its place in line (`enqueued_at`, kept by retries),
    the time it waited for admission, its retry count (`number`), and its observers' record.
    """

    __slots__ = (
        "enqueued_at",
        "finished",
        "key",
        "kind",
        "max_retries",
        "number",
        "opts",
        "params",
        "rec",
        "sdks",
        "started",
        "use_cache",
        "use_dedupe",
        "waited",
    )

    def __init__(
        self,
        kind: str,
        opts: RequestOptions,
        params: dict[str, Any],
        sdks: Sequence[anthropic.AsyncAnthropic],
        max_retries: int,
        started: float,
    ) -> None:
        self.kind = kind
        self.opts = opts
        self.params = params
        self.sdks = sdks
        self.max_retries = max_retries
        self.number = 0  # retries so far
        self.started = started
        self.enqueued_at = started
        self.waited = 0.0
        self.finished = False
        self.rec: RequestRecord | None = None
        self.key: str | None = None
        self.use_cache = False
        self.use_dedupe = False


class SendFailed(Exception):
    """Raised by a route's `send`: `original` failed it, and means `meaning` for retries.

    (A stream's ``overloaded_error`` event before any data is a 529, for instance.)
    """

    def __init__(self, meaning: BaseException, original: BaseException) -> None:
        super().__init__(str(original))
        self.meaning = meaning
        self.original = original


class Route(Protocol):
    """The innermost step of one shape of call: send it, and read what came back."""

    def plan(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Plan: ...

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        """Send on `sdk` (the admitted key's client); raise `SendFailed` to reinterpret."""
        ...

    def received(self, attempt: Attempt, result: Any) -> Any:
        """Reconcile `attempt` (now, or later for a stream) and return the caller's answer."""
        ...


class Attempt:
    """One admitted HTTP attempt and its reservation, settled exactly once."""

    __slots__ = ("_reservation", "call", "done", "pipeline", "plan", "sent", "up_started", "view")

    def __init__(
        self, pipeline: Pipeline, call: Call, plan: Plan, reservation: Reservation
    ) -> None:
        self.pipeline = pipeline
        self.call = call
        self.plan = plan
        self._reservation = reservation
        self.done = False
        self.up_started = 0.0
        self.view = _EMPTY_VIEW
        self.sent = True

    @property
    def key(self) -> Key:
        return self.pipeline.keys[self._reservation.index]

    def resync(self, view: ServerView) -> None:
        """Resync the budget from a successful response's headers (always, even without any:
        the first answer to a burst ends its hold)."""
        self.view = view
        r = self._reservation
        now = self.pipeline.loop.time()
        if r.budget.observe(view, r.mark, r.sent_at, now):
            self.plan.mc.gate.poke()

    def succeeded(self, model: str | None, usage: Usage | None) -> None:
        """The attempt ended well: reconcile with `usage` (None: it used no tokens)."""
        if self.done:
            return
        self.done = True
        p = self.pipeline
        p.stats.in_flight -= 1
        if usage is None:
            self._reservation.settle(0, 0)
            if p.spend is not None:
                p.spend.settle(self.plan.worst_usd, 0.0)
        else:
            self._reconcile(model or self.call.params["model"], usage)
        call = self.call
        if call.rec is not None:
            p.observers.upstream_finished(call.rec, 200, None, self.up_started)

    def failed(self, error: BaseException, usage: Usage | None = None) -> None:
        """The attempt failed (or was cancelled, or a stream was dropped) with `error`.

        With `usage` (a stream that ended early after reporting its input), the reservation
        is reconciled with it; otherwise what was not used goes back: everything when the
        request never left (`sent` False), only the output after an HTTP error, and the input
        too when the server refused to charge it (400, 429, 529).
        """
        if self.done:
            return
        self.done = True
        p = self.pipeline
        stats = p.stats
        stats.in_flight -= 1
        status = _count_error(stats, error)
        r = self._reservation
        if usage is not None:
            self._reconcile(self.call.params["model"], usage)
        else:
            if p.spend is not None:
                p.spend.release(self.plan.worst_usd)
            if not self.sent:
                stats.upstream_calls -= 1  # the SDK refused it before sending
                r.release(sent=False)
            elif isinstance(error, anthropic.APIStatusError) and status is not None:
                now = p.loop.time()
                refused = status in (400, 429, 529)
                c = r.cost
                uncharged = Cost(0, c.input_tokens, c.output_tokens) if refused else ZERO
                r.budget.observe(
                    self.view, r.mark, r.sent_at, now, uncharged=uncharged, refused=refused
                )
                if status == 429:
                    after = self.view.retry_after
                    r.budget.block_until(now + (after if after is not None else 1.0))
                r.release(sent=True, input_counted=not refused)
                self.plan.mc.gate.poke()
            else:
                # cancelled or dropped in flight: the server may have counted the input,
                # never output it did not produce
                r.release(sent=True, input_counted=True)
        call = self.call
        if call.rec is not None:
            code = 200 if usage is not None and error is None else status_of(error)
            p.observers.upstream_finished(call.rec, code, error, self.up_started)

    def _reconcile(self, model: str, u: Usage) -> None:
        p = self.pipeline
        stats = p.stats
        cache_write = u.cache_creation_input_tokens or 0
        cache_read = u.cache_read_input_tokens or 0
        self._reservation.settle(u.input_tokens + cache_write, u.output_tokens)
        plan = self.plan
        calibrator = plan.mc.calibrator
        if calibrator is not None:
            calibrator.observe(plan.raw_estimate, u.input_tokens + cache_write + cache_read)
        stats.input_tokens += u.input_tokens
        stats.output_tokens += u.output_tokens
        stats.cache_creation_input_tokens += cache_write
        stats.cache_read_input_tokens += cache_read
        dollars = cost_usd(model, u.input_tokens, u.output_tokens, cache_write, cache_read)
        stats.cost_usd += dollars
        if p.spend is not None:
            p.spend.settle(plan.worst_usd, dollars)


def _error_status(error: BaseException) -> int | None:
    """The HTTP status `error` stands for (an ``error`` event in a 200: its type's status)."""
    if not isinstance(error, anthropic.APIStatusError):
        return None
    status = error.status_code
    if status == 200:
        body = error.body
        err = body.get("error") if isinstance(body, Mapping) else None
        kind = err.get("type") if isinstance(err, Mapping) else None
        return EVENT_ERROR_STATUS.get(kind, status) if isinstance(kind, str) else status
    return status


def _count_error(stats: Recorder, error: BaseException) -> int | None:
    """Count `error` once in its kind; return the HTTP status it stands for."""
    status = _error_status(error)
    if status is None:
        if isinstance(error, anthropic.APIConnectionError | httpx2.TransportError):
            stats.connection_errors += 1
    elif status == 429:
        stats.rate_limited += 1
    elif status == 529:
        stats.overloaded += 1
    elif status >= 500:
        stats.server_errors += 1
    return status


class _CreateRoute:
    """``messages.create``: the SDK's call, its `Message` reconciled at once."""

    __slots__ = ()

    def plan(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Plan:
        return pipeline.plan(params)

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        return await sdk.messages.create(**params)

    def received(self, attempt: Attempt, result: Any) -> Any:
        message: Message = result
        attempt.succeeded(message.model, message.usage)
        return message


CREATE: Final[Route] = _CreateRoute()


class _RawCreateRoute(_CreateRoute):
    """``messages.with_raw_response.create``: the SDK's raw response, its `Message` reconciled."""

    __slots__ = ()

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        raw = await sdk.messages.with_raw_response.create(**params)
        return raw, await raw.parse()  # the SDK keeps the parsed answer for the caller

    def received(self, attempt: Attempt, result: Any) -> Any:
        raw, message = result
        attempt.succeeded(message.model, message.usage)
        return raw


RAW_CREATE: Final[Route] = _RawCreateRoute()


class Pipeline:
    """Keys, model-class gates, dedupe, cache, counters and observers of one client."""

    def __init__(
        self,
        keys: list[Key],
        *,
        cache: Cache | None,
        cache_ttl: float | None,
        cache_truncated: bool,
        dedupe: bool,
        retry: RetryPolicy,
        spend: SpendCap | None,
        queue: QueueCounter,
        aging: float,
        observers: Observers,
    ) -> None:
        self.keys = keys
        self.sdks = [k.sdk for k in keys]
        self.cache = cache
        self.cache_is_shared = cache is not None and not isinstance(cache, MemoryCache)
        self.cache_ttl = cache_ttl
        self.cache_truncated = cache_truncated
        self.dedupe = dedupe
        self.retry = retry
        self.spend = spend
        self.queue = queue
        self.aging = aging
        self.observers = observers
        self.stats = Recorder()
        self.flight: SingleFlight[str, Message] = SingleFlight()
        self.classes: dict[str, ModelClass] = {}
        self._by_model: dict[str, ModelClass] = {}  # model id -> its class, memoised
        self._unknown_warned = False
        self.count_limits: Limits | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    # -- model classes ----------------------------------------------------------------------

    def model_class(self, model: str) -> ModelClass:
        """The class `model` queues in; every id of no known family shares one."""
        mc = self._by_model.get(model)
        if mc is not None:
            return mc
        name = model_class(model)
        if name not in MODEL_CLASSES and not any(k.limits.names(model) for k in self.keys):
            self._unknown(model)
            name = UNKNOWN_CLASS
        mc = self.classes.get(name)
        if mc is None:
            budgets = []
            now = self.loop.time()
            for key in self.keys:
                label, limits = key.limits.for_model(model)
                label = name if name == UNKNOWN_CLASS else label
                budgets.append(
                    LocalBudget(limits, now, name=f"{key.name}/{label}", cold_start=True)
                )
            mc = self.classes[name] = self._make_class(name, budgets, Calibrator())
        if len(self._by_model) >= 1024:  # model ids come from callers: stay bounded
            self._by_model.clear()
        self._by_model[model] = mc
        return mc

    def _unknown(self, model: str) -> None:
        """A model id of no known family: an error for a ``claude-*`` typo that would run
        unlimited under configured limits; otherwise one warning per client."""
        guess = difflib.get_close_matches(model.lower(), PRICES, n=1, cutoff=0.6)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        configured = any(k.limits.configured and not k.limits.has_default for k in self.keys)
        if configured and model.lower().startswith("claude"):
            raise UnknownModel(
                f"unknown model {model!r}{hint}: it names no model class (opus, sonnet, haiku) "
                "and no configured limit covers it, so it would run unlimited. Fix the id, "
                "or pass limits={..., " + repr(model) + ": Limits(...)} or a '*' entry"
            )
        if not self._unknown_warned:
            self._unknown_warned = True
            log.warning(
                "model %r names no known model class%s: it and every other unknown model id "
                "share the class %r",
                model,
                hint,
                UNKNOWN_CLASS,
            )

    def count_class(self) -> ModelClass:
        """The count_tokens gate: one request budget per key, its own queue."""
        mc = self.classes.get(COUNT_TOKENS_CLASS)
        if mc is None:
            now = self.loop.time()
            limits = self.count_limits or Limits()
            budgets = [
                LocalBudget(limits, now, name=f"{key.name}/{COUNT_TOKENS_CLASS}")
                for key in self.keys
            ]
            mc = self.classes[COUNT_TOKENS_CLASS] = self._make_class(
                COUNT_TOKENS_CLASS, budgets, None
            )
        return mc

    def _make_class(
        self, name: str, budgets: list[LocalBudget], calibrator: Calibrator | None
    ) -> ModelClass:
        gate = Gate(budgets, aging=self.aging, counter=self.queue, name=name, loop=self.loop)
        return ModelClass(name, budgets, gate, calibrator)

    def plan(self, params: Mapping[str, Any]) -> Plan:
        """Estimate what a Messages request will cost, in its model class."""
        mc = self.model_class(params["model"])
        raw_estimate = estimate_input_tokens(params)
        assert mc.calibrator is not None
        cost = Cost(1, mc.calibrator.charge(raw_estimate), params["max_tokens"])
        worst = 0.0
        if self.spend is not None:
            worst = cost_usd(params["model"], cost.input_tokens, cost.output_tokens)
        return Plan(mc, cost, raw_estimate, worst)

    # -- a call from start to finish --------------------------------------------------------

    def start(
        self,
        kind: str,
        kwargs: dict[str, Any],
        sdks: Sequence[anthropic.AsyncAnthropic],
        max_retries: int,
        *,
        shareable: bool = True,
    ) -> Call:
        """Validate and record a new call (its options split from the SDK's arguments)."""
        opts, params = split_options(kwargs)
        self.queue.check_open()  # ClientClosed once aclose() started
        call = Call(kind, opts, params, sdks, max_retries, self.loop.time())
        self.stats.requests += 1
        if shareable:
            call.use_cache = self.cache is not None and opts.cache is not False
            call.use_dedupe = self.dedupe if opts.dedupe is None else opts.dedupe
            if call.use_cache or call.use_dedupe:
                call.key = fingerprint(params, scope=self.keys[0].scope)
        if self.observers.items:
            model = params["model"]
            mc = self.count_class() if kind == COUNT_TOKENS_CLASS else self.model_class(model)
            call.rec = self.observers.start(kind, model, opts.level, mc.name)
        return call

    def finish(self, call: Call, error: BaseException | None) -> None:
        """Record the end of `call` (once)."""
        if call.finished:
            return
        call.finished = True
        stats = self.stats
        if error is None:
            stats.succeeded += 1
            stats.latencies.append(self.loop.time() - call.started)
        else:
            stats.failed += 1
        if call.rec is not None:
            self.observers.finish(call.rec, error)

    # -- cache and dedupe -------------------------------------------------------------------

    async def fetch(self, call: Call) -> Message:
        """A Messages answer from the cache, a twin in flight, or the API (and stored)."""
        message, _ = await self.lookup(call, lead=True)
        assert message is not None
        return message

    async def lookup(self, call: Call, *, lead: bool) -> tuple[Message | None, str]:
        """The cached answer, else a twin's in flight: (answer, "cache" | "dedupe" | "").

        With `lead`, a call with no twin fetches the answer itself (registered, with dedupe,
        so later twins join it; then the source is ""); otherwise it only joins one already
        running, and (None, "") means: run it yourself.
        """
        key = call.key
        assert key is not None
        if call.use_cache:
            message = await self._cached(key)
            if message is not None:
                return message, "cache"
        if call.use_dedupe and (lead or self.flight.has(key)):
            use_cache = call.use_cache
            message, joined = await self.flight.do_joined(
                key, lambda: self._fetch_and_store(key, call, use_cache)
            )
            if joined:
                self._count_saved(message, cache_hit=False)
                return message, "dedupe"
            return message, ""
        if lead:
            return await self._fetch_and_store(key, call, call.use_cache), ""
        return None, ""

    async def _cached(self, key: str, *, count_miss: bool = True) -> Message | None:
        """The cached answer for `key`, or None (a miss, or an entry that does not decode)."""
        assert self.cache is not None
        blob = await self.cache.get(key)
        if blob is not None:
            try:
                message = decode_message(blob)
            except ValueError:
                self.stats.cache_errors += 1
                log.warning("a cached entry did not decode; treating it as a miss")
                await reject_entry(self.cache, key)  # counted and deleted by the cache
            else:
                self._count_saved(message, cache_hit=True)
                return message
        if count_miss:
            self.stats.cache_misses += 1
        return None

    async def _fetch_and_store(self, key: str, call: Call, use_cache: bool) -> Message:
        if use_cache and self.cache_is_shared:
            # another process (or a call that finished since our miss) may have stored it
            again = await self._cached(key, count_miss=False)
            if again is not None:
                return again
        message: Message = await self.run(call, CREATE)
        if use_cache:
            await self.store(key, message)
        return message

    async def store(self, key: str, message: Message) -> None:
        """Cache `message` under `key` if it may be cached."""
        if self.cache is not None and is_cacheable(message, self.cache_truncated):
            await self.cache.set(key, encode_message(message), self.cache_ttl)

    def _count_saved(self, message: Message, *, cache_hit: bool) -> None:
        s = self.stats
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

    # -- admission, sending, retries --------------------------------------------------------

    async def run(self, call: Call, route: Route) -> Any:
        """Admit `call`, send it by `route` on the chosen key, reconcile, retry what may
        succeed if repeated; return what the route makes of the answer."""
        plan = route.plan(self, call.params)
        observers = self.observers
        rec = call.rec
        while True:
            reservation = self._admit_now(plan, call)
            if reservation is None:
                reservation = await self._admit(plan, call)
            attempt = Attempt(self, call, plan, reservation)
            self.stats.in_flight += 1
            if rec is not None:
                key_name = self.keys[reservation.index].name
                attempt.up_started = observers.upstream_started(rec, key_name)
            box: list[Mapping[str, str]] = []
            token = HEADERS.set(box)
            try:
                if rec is None:
                    result = await route.send(call.sdks[reservation.index], call.params)
                else:
                    with observers.activate(rec):
                        result = await route.send(call.sdks[reservation.index], call.params)
            except BaseException as exc:
                HEADERS.reset(token)
                delay = self._failed(attempt, exc, box)
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            HEADERS.reset(token)
            attempt.resync(server_view(box[-1]) if box else _EMPTY_VIEW)
            return route.received(attempt, result)

    def _failed(self, attempt: Attempt, exc: BaseException, box: list[Mapping[str, str]]) -> float:
        """Settle a failed attempt; the delay before retrying it, or raise what failed it."""
        if isinstance(exc, SendFailed):
            meaning, original = exc.meaning, exc.original
        else:
            meaning = original = exc
        if box:
            attempt.view = server_view(box[-1])
        elif isinstance(meaning, anthropic.APIStatusError):  # a transport without the hook
            attempt.view = server_view(meaning.response.headers)
        elif not isinstance(
            meaning, anthropic.APIError | asyncio.CancelledError | httpx2.TransportError | OSError
        ):
            attempt.sent = False  # the SDK refused the arguments before sending
        attempt.failed(meaning)
        delay = None
        if isinstance(meaning, anthropic.APIStatusError | anthropic.APIConnectionError):
            delay = self._retry_delay(meaning, attempt.view, attempt.call)
        if delay is None:
            if original is exc:
                raise exc
            raise original from None
        return delay

    def _admit_now(self, plan: Plan, call: Call) -> Reservation | None:
        """Admitted at once if nobody waits and the budget fits; None: go through `_admit`
        (it queues, honours the deadline and holds the spend cap's worst case, so a client
        with a spend cap always takes it)."""
        if self.spend is not None:
            return None
        reservation = plan.mc.gate.try_acquire(plan.cost)
        if reservation is not None:
            stats = self.stats
            if call.number == 0:
                stats.queue_waits.append(0.0)
            stats.upstream_calls += 1
            if call.rec is not None:
                self.observers.queue_entered(call.rec)
                self.observers.queue_left(call.rec, 0.0, None)
        return reservation

    async def _admit(self, plan: Plan, call: Call) -> Reservation:
        """Wait in the plan's lane until its cost fits; count the wait against `deadline`."""
        loop = self.loop
        t0 = loop.time()
        opts = call.opts
        deadline = None if opts.deadline is None else opts.deadline - call.waited
        rec = call.rec
        if rec is not None:
            self.observers.queue_entered(rec)
        if self.spend is not None:
            self.spend.hold(plan.worst_usd)
        try:
            reservation = await plan.mc.gate.acquire(
                plan.cost, level=opts.level, deadline=deadline, enqueued_at=call.enqueued_at
            )
        except BaseException as exc:
            if self.spend is not None:
                self.spend.release(plan.worst_usd)
            if rec is not None:
                self.observers.queue_left(rec, loop.time() - t0, exc)
            raise
        waited = loop.time() - t0
        call.waited += waited
        if call.number == 0:
            self.stats.queue_waits.append(call.waited)
        self.stats.upstream_calls += 1
        if rec is not None:
            self.observers.queue_left(rec, waited, None)
        return reservation

    def _retry_delay(self, exc: BaseException, view: ServerView, call: Call) -> float | None:
        """Seconds to wait before re-queueing after `exc`, or None if it must not be retried."""
        decision = classify(exc, view)
        if not decision.retry or call.number >= call.max_retries:
            return None
        self.queue.check_open()  # closed: ClientClosed (from `exc`), not a retry
        if decision.status == 429:
            delay = 0.0  # the budget itself is blocked until retry-after
        elif decision.retry_after is not None:
            delay = decision.retry_after
        else:
            delay = self.retry.backoff(call.number)
        call.number += 1  # a retry keeps its place in line: `enqueued_at` is unchanged
        self.stats.retries += 1
        log.debug("retry %d after %.3fs: %s", call.number, delay, type(exc).__name__)
        return delay

    # -- snapshots ---------------------------------------------------------------------------

    def queued(self) -> int:
        return sum(mc.gate.waiting for mc in list(self.classes.values()))

    def budgets(self) -> dict[str, list[LocalBudget]]:
        return {name: list(mc.budgets) for name, mc in list(self.classes.items())}

"""The request pipeline: one path for ``create``, streams and ``count_tokens``.

A call goes through the same steps whatever its shape, inside one bracket (`start`,
`bracket`: its observers active, `finish` once): `Answers` (`_lookup`) looks the answer up
in the cache, then joins an identical call in flight, and otherwise `run`s it: estimate its
cost in its model class (`ModelClasses`, `_classes`), admit it (`Admission`, `_admission`:
at once, or in its lane's queue), ask the *route* to send it on the chosen key, read the
response's headers once into a `ServerView` that both resyncs the budget and decides a
retry (`Failures`, `_failures`), and reconcile. Routes vary only the innermost send, as an
httpx transport does: `CREATE` in `_routes`, the stream route in `streaming`, the count
route in `counting`.

Only this module, `_admission` and `_attempt` touch a `Reservation`: admission takes it,
this module hands it to the `Attempt` that holds it and settles it exactly once. Each
stage is given what it uses, not the pipeline: routes plan with a `Planner`, packing and
adaptive ``max_tokens`` run through a `Runner`, an attempt settles with an
`AttemptContext` (all three: this class).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anthropic
from anthropic.types import Message

from ..core.prices import cost_usd
from ..core.stats import Recorder
from ..core.tokens import Calibrator, estimate_input_tokens
from ..pipeline._admission import Admission
from ..pipeline._attempt import (
    EMPTY_VIEW,
    Attempt,
    Call,
    ModelClass,
    Plan,
    Route,
)
from ..pipeline._classes import COUNT_TOKENS_CLASS, UNKNOWN_CLASS, ModelClasses, UnknownModel
from ..pipeline._departure import DEPARTURE, departure_for
from ..pipeline._dispatch import Observers
from ..pipeline._failures import Failures
from ..pipeline._keys import HEADERS, Key
from ..pipeline._lookup import Answers
from ..pipeline._model_fallback import fit_deadline
from ..pipeline._options import split_options
from ..pipeline._routes import CREATE
from ..pipeline.retry import RetryPolicy, server_view
from ..savings.adaptive import Adaptive
from ..savings.batches import Batches
from ..savings.compression import Compressor
from ..savings.packing import Pack, Packer
from ..savings.prompt_cache import AutoCache, Marked
from ..scheduling.bucket import Cost
from ..scheduling.scheduler import QueueCounter, Reservation
from ..stores.cache import Cache
from ..stores.cache.keys import fingerprint
from ..stores.shared import SharedStore
from ..stores.spend import SpendLedger

if TYPE_CHECKING:
    from ..pipeline._routes import ProbeRoute

__all__ = ["COUNT_TOKENS_CLASS", "UNKNOWN_CLASS", "Pipeline", "UnknownModel"]

log = logging.getLogger("asyncthrift")

#: `Pipeline._send`'s answer when the attempt failed and the call goes round again.
_RETRY: Any = object()

T = TypeVar("T")


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
        spend: SpendLedger | None,
        queue: QueueCounter,
        aging: float,
        observers: Observers,
        fallback: Mapping[str, Sequence[str]] | None = None,
        pack: Pack | None = None,
        auto_cache: AutoCache | None = None,
        task: str | None = None,
        shared: SharedStore | None = None,
    ) -> None:
        self.keys = keys
        self.fallback: dict[str, tuple[str, ...]] = {
            model: tuple(chain) for model, chain in (fallback or {}).items()
        }
        self.sdks = [k.sdk for k in keys]
        self.dedupe = dedupe
        self.spend = spend
        self.queue = queue
        self.aging = aging
        self.observers = observers
        self.stats = Recorder()
        self.answers = Answers(cache, ttl=cache_ttl, truncated=cache_truncated, stats=self.stats)
        self.shared = shared  # Thrift(shared=...): budgets in Redis
        self.models = ModelClasses(keys, queue=queue, aging=aging, stats=self.stats, shared=shared)
        self.failures = Failures(retry, queue=queue, models=self.models, stats=self.stats)
        self.admission = Admission(self.models, stats=self.stats, observers=observers, spend=spend)
        self.closed = False
        self.pack = pack  # the client's default; pack=True per request uses Pack() if None
        self.packer: Packer | None = None if pack is None else Packer(self, pack)
        self.default_task = task  # adaptive max_tokens for every create() without task=
        self.adaptive: Adaptive | None = None if task is None else Adaptive()
        self.auto_cache = auto_cache
        self.compressor: Compressor | None = None  # `compression.enable_compression`
        self.batches: Batches | None = None  # ``client.batches``, made on first use
        self._now: Callable[[], float] | None = None  # the loop's clock, from the first call

    def batches_for(self, sdk: anthropic.AsyncAnthropic, max_retries: int) -> Batches:
        """The client's one `Batches` (made on first use, on `sdk` and `max_retries`)."""
        found = self.batches
        if found is None:
            found = self.batches = Batches(sdk, max_retries=max_retries)
        return found

    async def aclose(self, *, draining: bool, grace: float | None) -> None:
        """Close what this pipeline owns (see `Thrift.aclose`): stop admitting; unless
        `draining`, fail what waits; await what is admitted up to `grace` seconds; then
        close the gates, the shared store, the HTTP clients, the cache and the spend ledger."""
        self.closed = True
        self.queue.close()  # newcomers and retries: ClientClosed
        if self.packer is not None:
            self.packer.close_windows()  # what waits in a window goes out (or fails) now
        gates = self.models.gates()
        if not draining:
            self.models.close()
        try:
            if gates:
                async with asyncio.timeout(grace):
                    await asyncio.gather(*(gate.idle() for gate in gates))
        except TimeoutError:
            pass
        finally:
            self.models.close()
            if self.shared is not None:
                await self.shared.aclose()  # unused leases back to Redis
            for key in self.keys:
                await key.sdk.close()
            if self.answers.cache is not None:
                await self.answers.cache.aclose()
            if self.spend is not None:
                await self.spend.aclose()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The client's event loop (the one it first ran on), as its model classes see it."""
        return self.models.loop

    # -- what a call costs -----------------------------------------------------------------

    def calibrator_for(self, model: str) -> Calibrator | None:
        """The input calibrator of `model`'s class (`AttemptContext.calibrator_for`)."""
        return self.models.for_model(model).calibrator

    async def store_answer(self, key: str, message: Message) -> None:
        """Cache `message` under `key` if it may be (`AttemptContext.store_answer`)."""
        await self.answers.store(key, message)

    def count_class(self) -> ModelClass:
        """The count_tokens class (`Planner.count_class`)."""
        return self.models.count_class()

    def plan(self, params: Mapping[str, Any]) -> Plan:
        """Estimate what a Messages request will cost, in its model class."""
        mc = self.models.for_model(params["model"])
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
        now = self._now
        if now is None:  # the first call: the loop's clock, once for all (not two lookups)
            now = self._now = self.loop.time
        call = Call(kind, opts, params, sdks, max_retries, now())
        self.stats.requests += 1
        if self.fallback and kind != COUNT_TOKENS_CLASS:
            call.chain = self.fallback.get(params["model"], ())
        if shareable:
            call.use_cache = self.answers.cache is not None and opts.cache is not False
            call.use_dedupe = self.dedupe if opts.dedupe is None else opts.dedupe
            if call.use_cache or call.use_dedupe:
                call.key = fingerprint(params, scope=self.keys[0].scope)
            if kind == "create":
                if opts.pack or (self.packer is not None and opts.pack is None):
                    if self.packer is None:
                        self.packer = Packer(self, Pack())
                    call.via = self.packer.run
                elif opts.task is not None or self.default_task is not None:
                    if self.adaptive is None:
                        self.adaptive = Adaptive()
                    call.via = self.adaptive.run
        if self.observers.items:
            model = params["model"]
            models = self.models
            mc = models.count_class() if kind == COUNT_TOKENS_CLASS else models.for_model(model)
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
            now = self._now
            stats.latencies.append((self.loop.time if now is None else now)() - call.started)
        else:
            stats.failed += 1
        if call.rec is not None:
            self.observers.finish(call.rec, error)

    async def bracket(self, call: Call, work: Awaitable[T], *, ends: bool = True) -> T:
        """The one bracket around a call's `work` (after `start`): its observers active
        while it runs, and its end recorded (`finish`) if it fails and, with `ends`, when it
        succeeds. Without `ends` the work records its own end: a live stream's ends when its
        reader finishes (`_stream_ledger`), a replayed one's at once."""
        try:
            if call.rec is None:
                result = await work
            else:
                with self.observers.activate(call.rec):
                    result = await work
        except BaseException as exc:
            self.finish(call, exc)
            raise
        if ends:
            self.finish(call, None)
        return result

    async def run_to_end(self, call: Call, route: Route) -> Any:
        """`run` `call` by `route` in its `bracket`: a whole call that needs neither the
        cache nor a coroutine of its own (`Call.via`)."""
        return await self.bracket(call, self.run(call, route))

    async def run_alone(self, call: Call) -> Message:
        """`call` by itself (`Runner.run_alone`): with its task's ``max_tokens`` when it
        has a task (and adaptive is on), else straight by the create route."""
        message: Message
        adaptive = self.adaptive
        if adaptive is not None and (call.opts.task or self.default_task) is not None:
            message = await adaptive.run(self, call)
        else:
            message = await self.run(call, CREATE)
        return message

    def output_need(self, call: Call, ceiling: int) -> int:
        """The output tokens to plan for `call` (`Runner.output_need`)."""
        adaptive = self.adaptive
        return ceiling if adaptive is None else adaptive.need(self, call, ceiling)

    # -- admission, sending, retries --------------------------------------------------------

    async def run(self, call: Call, route: Route) -> Any:
        """Admit `call`, send it by `route` on the chosen key, reconcile, retry what may
        succeed if repeated; return what the route makes of the answer."""
        auto = self.auto_cache
        if auto is None or call.kind == COUNT_TOKENS_CLASS:
            marked = None
            plan = route.plan(self, call.params)
        else:
            plan, marked = self._plan_marked(auto, call, route)
        # A fallback model is planned afresh (`route.plan`), without this discount: the
        # prefix seen and confirmed is the asked model's (prompt caches are per model). The
        # breakpoint stays in the params, so the fallback model may write it (1.25x).
        model = marked_for = call.params["model"]
        observers = self.observers
        admission = self.admission
        rec = call.rec
        while True:
            if call.params["model"] != model:  # fell back after an overload
                plan = route.plan(self, call.params)
                model = call.params["model"]
            reservation = admission.now(plan, call)
            if reservation is None and call.chain and call.opts.deadline is not None:
                plan = fit_deadline(self, route, call, plan)
                model = call.params["model"]
                reservation = admission.now(plan, call)
            if reservation is None:
                reservation = await admission.wait(plan, call)
            attempt = Attempt(self, call, plan, reservation)
            self.stats.in_flight += 1
            if rec is not None:
                key_name = self.keys[reservation.index].name
                attempt.up_started = observers.upstream_started(rec, key_name)
            answer = await self._send(attempt, reservation, route)
            if answer is _RETRY:
                continue
            if call.fell_back_from is not None:
                self.stats.fallbacks += 1
            if (
                marked is not None
                and auto is not None
                and model == marked_for
                and isinstance(answer, Message)
            ):
                auto.confirm(marked, answer.usage, self.loop.time())
            return answer

    async def _send(self, attempt: Attempt, r: Reservation, route: Route) -> Any:
        """Send `attempt` by `route`, resync from the headers and return the caller's answer,
        or `_RETRY` once the failure is settled and its delay waited.

        A cold start's probe goes by the route's `probe` where it has one (its headers come
        at its start: the rest of the burst waits for them, not for the whole answer)."""
        call = attempt.call
        sender: Route | ProbeRoute = route
        probe: ProbeRoute | None = getattr(route, "probe", None)
        if probe is not None and r.budget.probing(r.sent_at):
            sender = probe
        box: list[Mapping[str, str]] = []
        token = HEADERS.set(box)
        departed = DEPARTURE.set(departure_for(r.budget, r.mark, self.loop))
        try:
            if call.rec is None:
                result = await sender.send(call.sdks[r.index], call.params)
            else:
                with self.observers.activate(call.rec):
                    result = await sender.send(call.sdks[r.index], call.params)
            HEADERS.reset(token)
            DEPARTURE.reset(departed)
            attempt.resync(
                server_view(box[-1]) if box else EMPTY_VIEW, at_start=sender.headers_at_start
            )
            if sender is probe:
                return await probe.finish(attempt, result)
        except BaseException as exc:
            if HEADERS.get() is box:
                HEADERS.reset(token)
                DEPARTURE.reset(departed)
            delay = self.failures.after(attempt, exc, box)
            if delay > 0:
                await asyncio.sleep(delay)
            return _RETRY
        return route.received(attempt, result)

    def _plan_marked(self, auto: AutoCache, call: Call, route: Route) -> tuple[Plan, Marked | None]:
        """`call`'s plan with a prompt-cache breakpoint marked where one pays off
        (``auto_cache_control=True``), its input charged less what the cache will read."""
        call.params, marked = self._mark(auto, call)
        plan = route.plan(self, call.params)
        if marked is not None:
            cached = auto.cached_tokens(marked, self.loop.time())
            calibrator = plan.mc.calibrator
            if cached > 0 and calibrator is not None:  # reads do not count toward ITPM
                c = plan.cost
                plan.cost = Cost(c.requests, calibrator.charge(plan.raw_estimate - cached), c[2])
        return plan, marked

    def _mark(self, auto: AutoCache, call: Call) -> tuple[dict[str, Any], Marked | None]:
        """`call`'s params with a ``cache_control`` breakpoint where one pays off."""
        calibrator = self.calibrator_for(call.params["model"])
        ratio = 1.0 if calibrator is None else calibrator.ratio
        params, marked = auto.mark(call.params, ratio, self.loop.time())
        if marked is not None:
            self.stats.prompt_cache_marked += 1
        return params, marked

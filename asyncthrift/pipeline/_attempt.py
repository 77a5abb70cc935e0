"""One call and its attempts: the `Call` from start to finish, and each admitted `Attempt`,
which settles its `Reservation` exactly once (`succeeded` or `failed`), however and whenever
it ends (a stream's, when its reader finishes or drops it). A `Route` is the innermost send
of one shape of call; a `Via` and its `Runner`, a stage that decides how a call goes.

What a call costs and where it queues is `_plan`'s (`Plan`, `ModelClass`, `Planner`,
re-exported here), what an abandoned answer may still cost `_abandonment`'s, and what an
attempt's end adds to the counters `_tally`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import anthropic
from anthropic.types import Message, Usage

from ..core._status import EVENT_ERROR_STATUS, error_status, status_of
from ..core.stats import Recorder
from ..core.tokens import Calibrator
from ..scheduling.bucket import ZERO, Cost, ServerView
from ..scheduling.scheduler import Reservation
from ..stores.spend import SpendHold, SpendLedger
from ._abandonment import keep_abandoned
from ._dispatch import Observers, RequestRecord
from ._options import RequestOptions
from ._plan import ModelClass, Plan, Planner
from ._tally import count_error, count_usage

__all__ = [
    "EMPTY_VIEW",
    "EVENT_ERROR_STATUS",
    "Attempt",
    "AttemptContext",
    "Call",
    "ModelClass",
    "Plan",
    "Planner",
    "Route",
    "Runner",
    "SendFailed",
    "Via",
    "error_status",
]

EMPTY_VIEW: Final = ServerView()
"""The view of a response without rate-limit headers."""


class Call:
    """One application call, from `Pipeline.start` to `Pipeline.finish`.

    Carries its arguments, its options, its place in line (`enqueued_at`, kept by retries),
    the time it waited for admission, its retry count (`number`), and its observers' record.
    """

    __slots__ = (
        "chain",
        "enqueued_at",
        "fell_back_from",
        "finished",
        "key",
        "kind",
        "max_retries",
        "number",
        "opts",
        "params",
        "rec",
        "sdks",
        "spend_hold",
        "started",
        "use_cache",
        "use_dedupe",
        "via",
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
        self.chain: tuple[str, ...] = ()  # fallback models not yet tried, in order
        self.fell_back_from: str | None = None  # the model asked for, once another answers
        self.spend_hold: SpendHold | None = None  # the spend cap's hold for the next attempt
        self.via: Via | None = None  # None: straight to `Pipeline.run` by the create route


class Runner(Protocol):
    """What a `Via` (packing, adaptive ``max_tokens``) runs a call through: the pipeline,
    seen only as its clock, its counters and these steps."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def stats(self) -> Recorder: ...

    @property
    def default_task(self) -> str | None:
        """The client's ``task=``: adaptive ``max_tokens`` for a call without its own."""
        ...

    async def run(self, call: Call, route: Route) -> Any:
        """Admit `call`, send it by `route`, retry what may succeed if repeated."""
        ...

    async def run_alone(self, call: Call) -> Message:
        """`call` by itself: with its task's ``max_tokens`` if it has a task, else as is."""
        ...

    def output_need(self, call: Call, ceiling: int) -> int:
        """The output tokens to plan for `call`: its task's learnt limit, else `ceiling`."""
        ...


Via = Callable[[Runner, Call], Awaitable[Message]]
"""How a ``create`` call gets its answer when it is not simply run: packed (`packing`) or
with an adaptive ``max_tokens`` (`adaptive`). Decided once, in `Pipeline.start`."""


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

    def plan(self, planner: Planner, params: Mapping[str, Any]) -> Plan: ...

    async def send(self, sdk: anthropic.AsyncAnthropic, params: dict[str, Any]) -> Any:
        """Send on `sdk` (the admitted key's client); raise `SendFailed` to reinterpret."""
        ...

    def received(self, attempt: Attempt, result: Any) -> Any:
        """Reconcile `attempt` (now, or later for a stream) and return the caller's answer."""
        ...

    #: The response's headers go out before its answer (a stream's, at its start).
    headers_at_start: bool


class AttemptContext(Protocol):
    """What an attempt settles with (the pipeline, seen no further): the clock, the
    counters, the spend cap and the observers; and, for a stream that ends after it was
    handed over, how its call ends (`finish`), where its answer is stored, and the input
    calibrator its model's class keeps."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def stats(self) -> Recorder: ...

    @property
    def spend(self) -> SpendLedger | None: ...

    @property
    def observers(self) -> Observers: ...

    def finish(self, call: Call, error: BaseException | None) -> None:
        """Record the end of `call` (once)."""
        ...

    async def store_answer(self, key: str, message: Message) -> None:
        """Cache `message` under `key` if it may be cached."""
        ...

    def calibrator_for(self, model: str) -> Calibrator | None:
        """The input calibrator of `model`'s class."""
        ...


class Attempt:
    """One admitted HTTP attempt and its reservation, settled exactly once."""

    __slots__ = (
        "_first_event_at",
        "_reservation",
        "call",
        "context",
        "done",
        "plan",
        "sent",
        "spend_hold",
        "up_started",
        "view",
    )

    def __init__(
        self, context: AttemptContext, call: Call, plan: Plan, reservation: Reservation
    ) -> None:
        self.context = context
        self.call = call
        self.plan = plan
        self._reservation = reservation
        self.spend_hold = call.spend_hold  # this attempt's own (settled exactly once with it)
        call.spend_hold = None
        self.done = False
        self.up_started = 0.0
        self.view = EMPTY_VIEW
        self.sent = True
        self._first_event_at: float | None = None
        plan.mc.times.started(self, reservation.sent_at)

    def stream_event(self, first_text: bool) -> None:
        """A stream's event arrived now. The first one starts its pace (`stream_ended`);
        the first text (`first_text`) tells its model class the fixed latency of its
        answers (`AnswerTimes.first_token`), before any answer has ended."""
        now = self.context.loop.time()
        if self._first_event_at is None:
            self._first_event_at = now
        if first_text:
            self.plan.mc.times.first_token(now - self._reservation.sent_at)

    def stream_ended(self, output_tokens: float) -> None:
        """A stream whose first event was seen (`stream_event`) ended now with
        `output_tokens`: its model class learns the time per output token."""
        if self._first_event_at is not None:
            seconds = self.context.loop.time() - self._first_event_at
            self.plan.mc.times.stream_ended(seconds, output_tokens)

    @property
    def index(self) -> int:
        """The index of the key (and budget) this attempt was admitted on."""
        return self._reservation.index

    def resync(self, view: ServerView, *, at_start: bool = False) -> None:
        """Resync the budget from a successful response's headers (always, even without any:
        the first answer to a burst ends its hold). `at_start`: the headers went out before
        the answer did (a stream), so they certainly count this request's whole charge."""
        self.view = view
        r = self._reservation
        now = self.context.loop.time()
        seen = r.cost if at_start else ZERO
        if r.budget.observe(view, r.mark, r.sent_at, now, seen=seen, own=r.cost):
            self.plan.mc.gate.poke()

    def succeeded(self, model: str | None, usage: Usage | None) -> None:
        """The attempt ended well: reconcile with `usage` (None: it used no tokens)."""
        if self.done:
            return
        self.done = True
        p = self.context
        p.stats.in_flight -= 1
        times = self.plan.mc.times
        times.ended(self)
        if usage is None:
            self._reservation.settle(0, 0)
            if self.spend_hold is not None and p.spend is not None:
                p.spend.settle(self.spend_hold, 0.0)
        else:
            r = self._reservation
            max_tokens = self.call.params.get("max_tokens")
            times.observe(
                p.loop.time() - r.sent_at,
                usage.output_tokens,
                max_tokens if isinstance(max_tokens, int) else None,
                r.sent_at,
            )
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
        p = self.context
        stats = p.stats
        stats.in_flight -= 1
        self.plan.mc.times.ended(self)
        status = count_error(stats, error)
        r = self._reservation
        if usage is not None:
            self._reconcile(self.call.params["model"], usage)
        else:
            if self.spend_hold is not None and p.spend is not None and not self._abandons(error):
                p.spend.release(self.spend_hold)  # nothing billed (an abandoned answer may be)
            if not self.sent:
                stats.upstream_calls -= 1  # the SDK refused it before sending
                r.release(sent=False)
            elif not self._abandons(error):
                now = p.loop.time()
                refused = status in (400, 429, 529)
                c = r.cost
                uncharged = Cost(0, c.input_tokens, c.output_tokens) if refused else ZERO
                r.budget.observe(
                    self.view,
                    r.mark,
                    r.sent_at,
                    now,
                    uncharged=uncharged,
                    refused=refused,
                    own=c,
                )
                if status == 429:
                    after = self.view.retry_after
                    r.budget.block_until(now + (after if after is not None else 1.0))
                r.release(sent=True, input_counted=not refused)
                self.plan.mc.gate.poke()
            else:
                # cancelled, timed out or dropped in flight, without an answer
                self._abandon(None)
        call = self.call
        if call.rec is not None:
            code = 200 if usage is not None and error is None else status_of(error)
            p.observers.upstream_finished(call.rec, code, error, self.up_started)

    def _abandons(self, error: BaseException) -> bool:
        """Sent, then ended without an answer from the server (cancelled, timed out, dropped):
        an HTTP error status is an answer, whatever else is not."""
        return self.sent and not (
            isinstance(error, anthropic.APIStatusError) and error_status(error) is not None
        )

    def abandoned(self, error: BaseException, usage: Usage) -> None:
        """A stream the caller left (closed early, cancelled, its connection lost) after the
        server reported `usage` (its input, and the output delivered so far).

        The server stops a stream at its next write and charges what it produced by then,
        which may be more than was delivered: the output is kept as `Reservation.abandon`
        keeps it. The input is settled now, from `usage`.
        """
        if self.done:
            return
        self.done = True
        p = self.context
        p.stats.in_flight -= 1
        self.plan.mc.times.ended(self)
        count_error(p.stats, error)
        self._abandon(usage)
        call = self.call
        if call.rec is not None:
            p.observers.upstream_finished(call.rec, status_of(error), error, self.up_started)

    def _abandon(self, usage: Usage | None) -> None:
        """Keep what an answer nobody will read may still cost (`keep_abandoned`)."""
        p = self.context
        keep_abandoned(
            p.loop,
            p.stats,
            p.spend,
            self.spend_hold,
            self._reservation,
            self.plan.mc.times,
            self.call.params["model"],
            usage,
        )

    def _reconcile(self, model: str, u: Usage) -> None:
        p = self.context
        stats = p.stats
        cache_write = u.cache_creation_input_tokens or 0
        cache_read = u.cache_read_input_tokens or 0
        self._reservation.settle(u.input_tokens + cache_write, u.output_tokens)
        plan = self.plan
        calibrator = plan.mc.calibrator
        if calibrator is not None:
            calibrator.observe(plan.raw_estimate, u.input_tokens + cache_write + cache_read)
        dollars = count_usage(stats, model, u, cache_write, cache_read)
        if self.spend_hold is not None and p.spend is not None:
            p.spend.settle(self.spend_hold, dollars)

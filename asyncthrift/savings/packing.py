"""Prompt packing: small requests that agree on everything but their text go out as one call.

Why: a classification or FAQ call is mostly its shared prefix (system prompt, tools) and a
per-call floor; sending twenty of them as one call pays that once and uses one request of
the RPM budget instead of twenty (the seed article's 1.2 and 2.3, done for the caller).

``Thrift(pack=True)`` or ``Thrift(pack=Pack(...))`` turns it on; ``pack=False`` per request
opts out (``pack=True`` per request opts in on a client without it). Requests are packable
when they are one user turn of text and carry nothing beyond model, ``max_tokens``, system,
tools, tool choice, temperature, top_p, top_k and service tier; the others are grouped by
those (and by client view). A group's *window* opens with its first item and closes after
``window_ms``, sooner for an interactive item or one with a short ``deadline``, or at once
when ``max_items`` or the token caps are reached. The window's items then go out as ONE
scheduled call through the pipeline (its cost: the packed body's estimate and the sum of the
items' ``max_tokens``), in the highest lane among them, with the tightest deadline left.

Every item's caller waits on its own future; cancelling one drops it from the window (or,
once sent, only its share of the answer; the call is cancelled when no caller is left). A
window of one is sent as the plain request it is. Items the reply does not answer
trustworthily (see `_packed.parse_reply`) are re-sent alone by their own callers, as are all
items when the packed call fails. Cache and dedupe sit before packing, so each item is
cached under its own fingerprint and twins share one item.

Whether a group is packed at all, and how large its packed call's ``max_tokens`` is, is
learnt per group so that packing never costs more calls or dollars than it saves
(`asyncthrift.savings._pack_guard`): a new group's first requests go alone to teach it, and a group
whose answers run longer than their ``max_tokens``, whose items are re-sent too often, or
whose packed calls cost more than their items alone is paused for a while.

Import it as ``from asyncthrift.packing import Pack``.
"""

from __future__ import annotations

import asyncio
import functools
import math
from dataclasses import dataclass
from typing import Any, Final

import anthropic
from anthropic.types import Message

from ..core.prices import usage_cost
from ..core.tokens import estimate_input_tokens, text_tokens
from ..errors import BudgetExceeded, DeadlineExceeded, InvalidArgument, RequestTooLarge
from ..pipeline._attempt import Call, Runner
from ..pipeline._options import RequestOptions
from ..pipeline._routes import CREATE
from ..scheduling.lanes import LANES
from ..stores.cache.keys import fingerprint
from . import _pack_guard, _packed
from ._pack_guard import GroupGuard, dollars, full_price_input

__all__ = ["Pack", "Packer"]

#: Top-level arguments a packable request may carry (any other, unless None: not packable).
_PACKABLE: Final = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "top_k",
        "service_tier",
    }
)
#: Failures of the packed call that are the pack's own (too big, too slow): re-send alone.
_RESEND_ON: Final = (BudgetExceeded, DeadlineExceeded, RequestTooLarge)
#: Groups whose learning a client keeps (prompts come from callers: bounded).
_MAX_GROUPS: Final = 1024
#: Packed items a group's re-send share is judged on, at least.
_MIN_OUTCOMES: Final = 8
#: An item's future's result when it is to go alone without a packed call (a fair sample of
#: its group's answers); None means re-sent (the packed reply could not answer it).
_SAMPLE: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class Pack:
    """How requests are packed. Every bound closes a window early; none is a promise.

    window_ms: how long a window stays open for more items after its first.
    interactive_window_ms: the window for an item in the interactive lane (or higher).
    max_items: items per packed call.
    max_input_tokens: estimated input tokens of the items' texts per packed call.
    max_output_tokens: cap on the packed call's ``max_tokens`` (sized from what the group's
        replies take, see `asyncthrift.savings._pack_guard`).
    learn: requests of a new group sent alone, before its first packed call, to learn how
        long its answers are and what a request costs alone (0: pack from the first window).
    max_resend_share: packing of a group is turned off when more than this share of its
        recent answers alone were cut at ``max_tokens``, or of its recent packed items
        were re-sent alone.
    pause_s: how long packing of a group stays off before it is tried again.
    cost_guard: pack a window only when it is predicted to cost less than its requests
        alone, and turn packing of a group off when a packed call cost more than its
        answered items would have. False: save calls (RPM) even where the JSON wrapping of
        the answers costs more than the shared prompt saves.
    """

    window_ms: float = 150.0
    interactive_window_ms: float = 10.0
    max_items: int = 16
    max_input_tokens: int = 16_000
    max_output_tokens: int = 8_192
    learn: int = 3
    max_resend_share: float = 0.25
    pause_s: float = 300.0
    cost_guard: bool = True

    def __post_init__(self) -> None:
        for name, unit in (
            ("window_ms", "milliseconds"),
            ("interactive_window_ms", "milliseconds"),
            ("pause_s", "seconds"),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
                raise InvalidArgument(f"Pack.{name} must be {unit} >= 0, got {v!r}")
        for name, low in (
            ("max_items", 1),
            ("max_input_tokens", 1),
            ("max_output_tokens", 1),
            ("learn", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidArgument(f"Pack.{name} must be an int >= {low}, got {v!r}")
        v = self.max_resend_share
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise InvalidArgument(f"Pack.max_resend_share must be a share in [0, 1], got {v!r}")
        if not isinstance(self.cost_guard, bool):
            raise TypeError(f"Pack.cost_guard must be True or False, got {self.cost_guard!r}")


class _Item:
    __slots__ = ("_alone_input", "call", "future", "ident", "need", "reserve", "text", "tokens")

    def __init__(
        self, call: Call, text: str, need: int, reserve: float, future: asyncio.Future[Any]
    ) -> None:
        self.call = call
        self.text = text
        self.need = need  # its caller's max_tokens (or adaptive's)
        self.reserve = reserve  # its share of the packed call's max_tokens (`Packer._reserve`)
        self.tokens = text_tokens(text)
        self.future = future  # Message, or None: send it alone
        self.ident = ""
        self._alone_input: float | None = None

    def alone_input(self) -> float:
        """The estimated input tokens of its request sent alone (estimated once: the cost
        guard asks before the packed call and again when its reply is judged)."""
        if self._alone_input is None:
            self._alone_input = estimate_input_tokens(self.call.params)
        return self._alone_input


class _Window:
    __slots__ = ("close_at", "items", "key", "need", "opened", "task", "timer", "tokens")

    def __init__(self, key: str, opened: float) -> None:
        self.key = key
        self.opened = opened
        self.items: list[_Item] = []
        self.need = 0.0
        self.tokens = 0.0
        self.close_at = math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None


class Packer:
    """The open windows of one client, by group; the packed calls under way; what each
    group has learnt (`_pack_guard.GroupGuard`)."""

    __slots__ = ("_guards", "_open", "_tasks", "config", "pipeline")

    def __init__(self, pipeline: Runner, config: Pack) -> None:
        self.pipeline = pipeline
        self.config = config
        self._open: dict[str, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._guards: dict[str, GroupGuard] = {}

    # -- which group -------------------------------------------------------------------------

    def group(self, call: Call) -> str | None:
        """The group `call` packs with, or None when it cannot be packed."""
        params = call.params
        base = {}
        for k, v in params.items():
            if k not in _PACKABLE:
                if v is not None:
                    return None
            elif k not in ("messages", "max_tokens"):
                base[k] = v
        if _packed.item_text(params) is None:
            return None
        base["messages"] = []
        try:
            key = fingerprint(base)
        except TypeError:
            return None
        return f"{key}:{id(call.sdks)}:{call.max_retries}"

    def guard(self, group: str, call: Call) -> GroupGuard:
        """What `group` has learnt (a new, learning one the first time)."""
        g = self._guards.get(group)
        if g is None:
            if len(self._guards) >= _MAX_GROUPS:  # groups come from callers' prompts: bounded
                self._guards.clear()
            model = call.params.get("model")
            digest = group.split(":")[2][:16]  # the prompt's fingerprint: msg1:_:<hex>:...
            g = self._guards[group] = GroupGuard(f"the {model} group {digest}")
        return g

    # -- whether a request of a group is packed -----------------------------------------------

    def admit(self, g: GroupGuard) -> str:
        """``"pack"``, ``"teach"`` (alone, to learn the group; call `GroupGuard.taught` after)
        or ``"alone"`` (packing is off for the group)."""
        cfg = self.config
        now = self.pipeline.loop.time()
        if g.off(now):
            return "alone"
        if g.off_reason and g.off_until > -math.inf:  # a pause just ended: does it still hold?
            if self._long_answers(g):
                g.off_until = now + cfg.pause_s  # renewed quietly: no packed call tried
                return "alone"
            g.off_until, g.off_reason = -math.inf, ""
        if g.learning(cfg.learn) and g.wants_teacher(cfg.learn):
            return "teach"
        return "pack"

    def _long_answers(self, g: GroupGuard) -> bool:
        cfg = self.config
        return len(g.alone) >= max(1, cfg.learn) and g.cut_share() > cfg.max_resend_share

    async def alone(self, g: GroupGuard, call: Call, *, sample: bool) -> Message:
        """`call` sent alone; its answer teaches `g` when it is an unbiased `sample` (not a
        re-send, which is one the packed reply could not answer: longer than most)."""
        p = self.pipeline
        message = await p.run_alone(call)
        if not sample:
            return message
        _, in_ratio = _input_ratio(message, estimate_input_tokens(call.params))
        g.observe_alone(message.usage.output_tokens, message.stop_reason == "max_tokens", in_ratio)
        now = p.loop.time()
        if not g.off(now) and self._long_answers(g):
            self._turn_off(
                g,
                _pack_guard.LONG_ANSWERS,
                f"{g.cut_share():.0%} of its recent answers were cut at max_tokens (a packed "
                "reply would hold them whole, over their limit, and they would be re-sent)",
            )
        return message

    def _turn_off(self, g: GroupGuard, reason: str, why: str) -> None:
        cfg = self.config
        s = self.pipeline.stats
        g.turn_off(self.pipeline.loop.time(), reason, why, cfg.pause_s)
        if reason == _pack_guard.LONG_ANSWERS:
            s.pack_paused_long_answers += 1
        elif reason == _pack_guard.RESENDS:
            s.pack_paused_resends += 1
        else:
            s.pack_paused_cost += 1
        s.pack_paused_at = GroupGuard.wall_clock()

    # -- windows -----------------------------------------------------------------------------

    def add(self, call: Call, group: str, g: GroupGuard) -> _Item:
        """Put `call` in its group's window (opening or closing windows as bounds say); `g`:
        what the group has learnt (`guard`)."""
        p = self.pipeline
        loop = p.loop
        now = loop.time()
        text = _packed.item_text(call.params)
        assert text is not None
        need = int(call.params["max_tokens"])
        need = p.output_need(call, need)
        item = _Item(call, text, need, self._reserve(g, need), loop.create_future())
        cfg = self.config
        w = self._open.get(group)
        if w is not None and (
            w.need + item.reserve > cfg.max_output_tokens
            or w.tokens + item.tokens > cfg.max_input_tokens
        ):
            self._close(w)
            w = None
        if w is None:
            w = self._open[group] = _Window(group, now)
        w.items.append(item)
        w.need += item.reserve
        w.tokens += item.tokens
        opts = call.opts
        hold = cfg.window_ms / 1000.0
        if opts.level >= LANES["interactive"]:
            hold = min(hold, cfg.interactive_window_ms / 1000.0)
        if opts.deadline is not None:
            hold = min(hold, max(0.0, opts.deadline - call.waited) / 4.0)
        if now + hold < w.close_at:
            w.close_at = now + hold
            if w.timer is not None:
                w.timer.cancel()
            w.timer = loop.call_at(w.close_at, self._close, w)
        if len(w.items) >= cfg.max_items:
            self._close(w)
        return item

    def drop(self, item: _Item) -> None:
        """`item`'s caller left: out of its window, or out of its packed call."""
        for w in list(self._open.values()):
            if item in w.items:
                w.items.remove(item)
                w.need -= item.reserve
                w.tokens -= item.tokens
                if not w.items:
                    self._discard(w)
                return

    def _discard(self, w: _Window) -> None:
        if self._open.get(w.key) is w:
            del self._open[w.key]
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None

    def _close(self, w: _Window) -> None:
        """Send `w`'s items: alone when there is one, else as one packed call."""
        self._discard(w)
        items = [it for it in w.items if not it.future.done()]
        if len(items) < 2:
            for it in items:
                it.future.set_result(_SAMPLE)
            return
        task = self.pipeline.loop.create_task(self._send(w, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        w.task = task
        cancel = functools.partial(self._maybe_cancel, w)
        for it in items:
            it.future.add_done_callback(cancel)

    def _maybe_cancel(self, w: _Window, _done: object = None) -> None:
        if w.task is not None and not w.task.done() and all(it.future.done() for it in w.items):
            w.task.cancel()

    # -- the packed call ---------------------------------------------------------------------

    async def _ready(self, g: GroupGuard, items: list[_Item]) -> bool:
        """Wait for the group's teachers (unless an item has a deadline to keep or is
        interactive: those do not wait a round trip); False: send the items alone (still
        learning, or packing is off for the group now)."""
        cfg = self.config
        if g.learning(cfg.learn) and g.pioneers > 0:
            interactive = LANES["interactive"]
            if any(
                it.call.opts.deadline is not None or it.call.opts.level >= interactive
                for it in items
            ):
                return False
            await g.learnt(cfg.learn)
        return not g.off(self.pipeline.loop.time())

    async def _send(self, w: _Window, items: list[_Item]) -> None:
        p = self.pipeline
        g = self.guard(w.key, items[0].call)
        try:
            ready = await self._ready(g, items)
        except asyncio.CancelledError:
            self._release(items)
            raise
        if not ready:
            self._release(items)
            return
        first = items[0].call
        now = p.loop.time()
        for k, it in enumerate(items):
            it.ident = str(k + 1)
            it.call.waited += now - w.opened
        params = {k: v for k, v in first.params.items() if k not in ("messages", "max_tokens")}
        params["messages"] = [
            {"role": "user", "content": _packed.packed_content([(i.ident, i.text) for i in items])}
        ]
        params["max_tokens"] = self._max_tokens(g, items)
        packed_input = estimate_input_tokens(params)  # the packed call's, estimated once
        if self.config.cost_guard and not self._pays(g, items, params, packed_input):
            self._release(items)
            return
        deadlines = [
            it.call.opts.deadline - it.call.waited
            for it in items
            if it.call.opts.deadline is not None
        ]
        opts = RequestOptions(
            level=max(it.call.opts.level for it in items),
            deadline=max(0.0, min(deadlines)) if deadlines else None,
            cache=False,
            dedupe=False,
        )
        call = Call("create", opts, params, first.sdks, first.max_retries, now)
        call.enqueued_at = min(it.call.enqueued_at for it in items)
        # Model fallback applies to the packed call as a whole: its items share the model
        # (it is part of the group), hence the chain. If another model answers, each item
        # it answers is marked as fallen back (so it is not cached as the asked model's).
        call.chain = first.chain
        try:
            message: Message = await p.run(call, CREATE)
        except asyncio.CancelledError:
            self._resend(items)  # every caller left, or the client is closing
            raise
        except _RESEND_ON:
            self._resend(items)
            return
        except anthropic.APIStatusError as exc:
            if exc.status_code in (400, 413):  # the pack's own fault, perhaps: alone
                self._resend(items)
                return
            self._fail(items, exc)
            return
        except Exception as exc:
            self._fail(items, exc)
            return
        self._deliver(message, items, params, packed_input, call.fell_back_from, g)

    @staticmethod
    def _reserve(g: GroupGuard, need: int) -> float:
        """Output tokens to reserve for an item in a packed reply: its own limit plus its
        object's wrapping (as learnt from the group's replies, at least
        `_packed.ITEM_OVERHEAD`), lowered to what the group's items actually take in a
        reply (their 99th percentile, with a margin) once some are known."""
        reserve = need + max(float(_packed.ITEM_OVERHEAD), g.wrapping)
        fp = g.footprint(0.99)
        return reserve if fp is None else min(reserve, fp * 1.25 + 2)

    def _max_tokens(self, g: GroupGuard, items: list[_Item]) -> int:
        """The packed call's ``max_tokens``: its items' reserves (see `_reserve`, as learnt
        by now) and the array's brackets."""
        ceiling = sum(self._reserve(g, it.need) for it in items) + 8
        return max(1, min(self.config.max_output_tokens, math.ceil(ceiling)))

    def _pays(
        self, g: GroupGuard, items: list[_Item], params: dict[str, Any], packed_input: float
    ) -> bool:
        """Whether the packed call (`params`, of `packed_input` estimated input tokens) is
        predicted to cost less than its items alone (True while nothing is known of the
        group's answers)."""
        answer = g.answer_tokens()
        if answer is None:
            return True
        model = str(params.get("model", ""))
        n = len(items)
        mean_fp = g.mean_footprint()
        per_item_out = mean_fp if mean_fp is not None else answer + float(_packed.ITEM_OVERHEAD)
        packed = dollars(model, packed_input * g.in_ratio, n * per_item_out + 8)
        alone_in = sum(it.alone_input() for it in items) * g.in_ratio
        alone = dollars(model, alone_in, sum(min(answer, it.need) for it in items))
        return packed < alone

    def _deliver(
        self,
        message: Message,
        items: list[_Item],
        params: dict[str, Any],
        packed_input: float,
        fell_back_from: str | None,
        g: GroupGuard,
    ) -> None:
        text = "".join(b.text for b in message.content if b.type == "text")
        limits = {it.ident: int(it.call.params["max_tokens"]) for it in items}
        estimated = text_tokens(text)
        # this reply's own tokens per locally estimated token: how long each answer really is
        ratio = message.usage.output_tokens / estimated if estimated > 0 else None
        answers = _packed.parse_reply(text, limits, ratio or 1.0)
        done = [it for it in items if it.ident in answers]
        resent = [it for it in items if it.ident not in answers]
        self._resend(resent)
        self._learn(g, message, items, answers, packed_input, ratio)
        if not done:
            return
        own = sum(it.tokens for it in items)
        common = max(0.0, packed_input - own)
        messages = _packed.split_message(
            message, [(it.ident, it.text, answers[it.ident]) for it in done], common
        )
        if fell_back_from is not None:  # the packed call counted once; its other items too
            self.pipeline.stats.fallbacks += len(done) - 1
        for it, msg in zip(done, messages, strict=True):
            if fell_back_from is not None:
                it.call.fell_back_from = fell_back_from
            if not it.future.done():
                it.future.set_result(msg)
        self._count(message, done, params, packed_input)

    def _learn(
        self,
        g: GroupGuard,
        message: Message,
        items: list[_Item],
        answers: dict[str, str],
        packed_input: float,
        ratio: float | None,
    ) -> None:
        """What a packed reply teaches its group, and whether packing it still pays
        (`packed_input`: the packed call's estimated input tokens)."""
        cfg = self.config
        r = ratio or g.out_ratio
        answered = [it for it in items if it.ident in answers]
        # each answered item's object in the reply, and its answer alone (estimated tokens)
        sizes = [
            (_packed.object_tokens(it.ident, answers[it.ident]), text_tokens(answers[it.ident]))
            for it in answered
        ]
        footprints = [r * obj for obj, _ in sizes]
        wrapping = [r * (obj - answer) for obj, answer in sizes]
        billed, in_ratio = _input_ratio(message, packed_input)
        n_done = len(answered)
        g.observe_packed(ratio, footprints, wrapping, n_done, len(items) - n_done, in_ratio)
        if g.off(self.pipeline.loop.time()):
            return
        if len(g.outcomes) >= _MIN_OUTCOMES and g.resend_share() > cfg.max_resend_share:
            self._turn_off(
                g,
                _pack_guard.RESENDS,
                f"{g.resend_share():.0%} of the items of its recent packed calls were re-sent "
                "alone (missing, garbled, or longer than their max_tokens in the reply)",
            )
            return
        if not cfg.cost_guard:
            return
        model = message.model
        spent = dollars(model, billed, message.usage.output_tokens)
        alone_in = sum(it.alone_input() for it in answered)
        alone_out = sum(
            min(r * answer, float(it.call.params["max_tokens"]))
            for it, (_, answer) in zip(answered, sizes, strict=True)
        )
        alone = dollars(model, alone_in * g.in_ratio, alone_out)
        g.spent += spent
        g.worth += alone
        g.judged += len(items)
        if g.judged >= _MIN_OUTCOMES and g.spent > g.worth:
            self._turn_off(
                g,
                _pack_guard.COST,
                f"its recent packed calls ({g.judged} items) cost ${g.spent:.6f}, more than "
                f"the items they answered would have alone (about ${g.worth:.6f}): a shared "
                "prompt too short to pay for the answers' JSON wrapping, or too many re-sends",
            )

    def _count(
        self, message: Message, done: list[_Item], params: dict[str, Any], packed: float
    ) -> None:
        """Savings: the input the answered items would have sent alone, less the packed
        call's, at the price per input token the packed call actually paid (its cache
        reads included); the calls they would have made, less one."""
        p = self.pipeline
        s = p.stats
        s.packed_calls += 1
        s.packed_items += len(done)
        u = message.usage
        write, read = u.cache_creation_input_tokens or 0, u.cache_read_input_tokens or 0
        billed = u.input_tokens + write + read
        alone_params = dict(params)
        alone = 0.0
        for it in done:
            alone_params["messages"] = it.call.params["messages"]
            alone += estimate_input_tokens(alone_params)
        saved = max(0, round((alone - packed) * billed / packed)) if packed > 0 else 0
        per_token = usage_cost(message.model, u, output=False) / max(1, billed)
        s.packing_calls_saved += len(done) - 1
        s.packing_tokens_saved += saved
        s.packing_dollars_saved += saved * per_token
        s.upstream_calls_saved += len(done) - 1
        s.tokens_saved += saved
        s.dollars_saved += saved * per_token

    def _resend(self, items: list[_Item]) -> None:
        for it in items:
            if not it.future.done():
                self.pipeline.stats.pack_resent += 1
                it.future.set_result(None)

    def _release(self, items: list[_Item]) -> None:
        """`items` go alone without a packed call (learning, packing off, or it would cost
        more): each a sample of the group's answers."""
        for it in items:
            if not it.future.done():
                self.pipeline.stats.pack_alone += 1
                it.future.set_result(_SAMPLE)

    def _fail(self, items: list[_Item], exc: BaseException) -> None:
        for it in items:
            if not it.future.done():
                it.future.set_exception(exc)

    def close_windows(self) -> None:
        """Close every open window now (their items go out, or fall back alone)."""
        for w in list(self._open.values()):
            self._close(w)

    async def run(self, p: Runner, call: Call) -> Message:
        """`call`'s answer through a packed call when it can go in one, else sent alone
        (the `Via` of a packed ``create``)."""
        group = self.group(call)
        if group is None:
            return await p.run_alone(call)
        g = self.guard(group, call)
        how = self.admit(g)
        if how == "alone":
            p.stats.pack_alone += 1
            return await self.alone(g, call, sample=True)
        if how == "teach":
            p.stats.pack_alone += 1
            try:
                return await self.alone(g, call, sample=True)
            finally:
                g.taught()
        item = self.add(call, group, g)
        try:
            message: Message | None = await item.future
        except asyncio.CancelledError:
            self.drop(item)
            raise
        if message is _SAMPLE:  # sent alone without a packed call: a fair sample of the group
            return await self.alone(g, call, sample=True)
        if message is None:  # re-sent: the reply could not answer it
            return await self.alone(g, call, sample=False)
        return message


def _input_ratio(message: Message, estimate: float) -> tuple[float, float | None]:
    """`message`'s billed input at the full input price (`_pack_guard.full_price_input`),
    and that per token of `estimate`, its request's local estimate (None: nothing
    estimated)."""
    billed = full_price_input(message.usage)
    return billed, billed / estimate if estimate > 0 else None


def pack_option(value: object) -> Pack | None:
    """`Thrift(pack=...)`: True (the defaults), a `Pack`, or False / None (off)."""
    if value is None or value is False:
        return None
    if value is True:
        return Pack()
    if isinstance(value, Pack):
        return value
    raise TypeError(f"pack= must be True, False, None or a Pack(...), got {value!r}")

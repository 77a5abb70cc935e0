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
(`_pack_guard` learns, `_pack_policy` decides): a new group's first requests go alone to
teach it, and a group whose answers run longer than their ``max_tokens``, whose items are
re-sent too often, or whose packed calls cost more than their items alone is paused for a
while.

Import it as ``from asyncthrift.packing import Pack``.
"""

from __future__ import annotations

import asyncio
import functools
import math
from typing import Any, Final

import anthropic
from anthropic.types import Message

from ..core.prices import usage_cost
from ..core.tokens import estimate_input_tokens, text_tokens
from ..errors import BudgetExceeded, DeadlineExceeded, RequestTooLarge
from ..pipeline._attempt import Call, Runner
from ..pipeline._options import RequestOptions
from ..pipeline._routes import CREATE
from ..scheduling.lanes import LANES
from ..stores.cache.keys import fingerprint
from . import _packed
from ._pack_config import Pack
from ._pack_guard import GroupGuard
from ._pack_policy import Item, PackPolicy

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
#: An item's future's result when it is to go alone without a packed call (a fair sample of
#: its group's answers); None means re-sent (the packed reply could not answer it).
_SAMPLE: Final[Any] = object()


class _Window:
    __slots__ = ("close_at", "items", "key", "need", "opened", "task", "timer", "tokens")

    def __init__(self, key: str, opened: float) -> None:
        self.key = key
        self.opened = opened
        self.items: list[Item] = []
        self.need = 0.0
        self.tokens = 0.0
        self.close_at = math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None


class Packer:
    """The open windows of one client, by group, and the packed calls under way; whether a
    group is packed, and how, is its `policy`'s (`_pack_policy.PackPolicy`)."""

    __slots__ = ("_open", "_tasks", "config", "pipeline", "policy")

    def __init__(self, pipeline: Runner, config: Pack) -> None:
        self.pipeline = pipeline
        self.config = config
        self.policy = PackPolicy(pipeline, config)
        self._open: dict[str, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open_windows(self) -> int:
        """Windows open now, waiting for more items (0 once the client is closed)."""
        return len(self._open)

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

    # -- windows -----------------------------------------------------------------------------

    def add(self, call: Call, group: str, g: GroupGuard) -> Item:
        """Put `call` in its group's window (opening or closing windows as bounds say); `g`:
        what the group has learnt (`guard`)."""
        p = self.pipeline
        loop = p.loop
        now = loop.time()
        text = _packed.item_text(call.params)
        assert text is not None
        need = int(call.params["max_tokens"])
        need = p.output_need(call, need)
        item = Item(call, text, need, self.policy.reserve(g, need), loop.create_future())
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

    def drop(self, item: Item) -> None:
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

    async def _send(self, w: _Window, items: list[Item]) -> None:
        p = self.pipeline
        g = self.policy.guard(w.key, items[0].call)
        try:
            ready = await self.policy.ready(g, items)
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
        params["max_tokens"] = self.policy.max_tokens(g, items)
        packed_input = estimate_input_tokens(params)  # the packed call's, estimated once
        if self.config.cost_guard and not self.policy.pays(g, items, params, packed_input):
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

    def _deliver(
        self,
        message: Message,
        items: list[Item],
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
        self.policy.learn(g, message, items, answers, packed_input, ratio)
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

    def _count(
        self, message: Message, done: list[Item], params: dict[str, Any], packed: float
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

    def _resend(self, items: list[Item]) -> None:
        for it in items:
            if not it.future.done():
                self.pipeline.stats.pack_resent += 1
                it.future.set_result(None)

    def _release(self, items: list[Item]) -> None:
        """`items` go alone without a packed call (learning, packing off, or it would cost
        more): each a sample of the group's answers."""
        for it in items:
            if not it.future.done():
                self.pipeline.stats.pack_alone += 1
                it.future.set_result(_SAMPLE)

    def _fail(self, items: list[Item], exc: BaseException) -> None:
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
        g = self.policy.guard(group, call)
        how = self.policy.admit(g)
        if how == "alone":
            p.stats.pack_alone += 1
            return await self.policy.alone(g, call, sample=True)
        if how == "teach":
            p.stats.pack_alone += 1
            try:
                return await self.policy.alone(g, call, sample=True)
            finally:
                g.taught()
        item = self.add(call, group, g)
        try:
            message: Message | None = await item.future
        except asyncio.CancelledError:
            self.drop(item)
            raise
        if message is _SAMPLE:  # sent alone without a packed call: a fair sample of the group
            return await self.policy.alone(g, call, sample=True)
        if message is None:  # re-sent: the reply could not answer it
            return await self.policy.alone(g, call, sample=False)
        return message

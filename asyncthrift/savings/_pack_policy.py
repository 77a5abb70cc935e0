"""Whether packing a group pays: the decisions made from what each group has learnt.

Why a module of its own: `packing.Packer` moves requests (windows, the packed call, the
split reply); this decides, per group of alike requests, whether they are packed at all, how
many output tokens a packed call reserves, whether a window's packed call is predicted to
cost less than its items alone, and what a reply or an answer alone teaches
(`_pack_guard.GroupGuard` holds what is learnt; this acts on it). The cost guard and the
pauses of `Pack` live here.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Final

from anthropic.types import Message

from ..core.tokens import estimate_input_tokens, text_tokens
from ..pipeline._attempt import Call, Runner
from ..scheduling.lanes import LANES
from . import _pack_guard, _packed
from ._pack_config import Pack
from ._pack_guard import GroupGuard, dollars, full_price_input

__all__ = ["Item", "PackPolicy"]

#: Groups whose learning a client keeps (prompts come from callers: bounded).
_MAX_GROUPS: Final = 1024
#: Packed items a group's re-send share is judged on, at least.
_MIN_OUTCOMES: Final = 8


class Item:
    """One request waiting in a window, or answered by a packed call: its text, its output
    need and reserve, and the future its caller waits on."""

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


class PackPolicy:
    """What each group of one client has learnt (`GroupGuard`), and what follows from it."""

    __slots__ = ("_guards", "config", "runner")

    def __init__(self, runner: Runner, config: Pack) -> None:
        self.runner = runner
        self.config = config
        self._guards: dict[str, GroupGuard] = {}

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

    def admit(self, g: GroupGuard) -> str:
        """``"pack"``, ``"teach"`` (alone, to learn the group; call `GroupGuard.taught` after)
        or ``"alone"`` (packing is off for the group)."""
        cfg = self.config
        now = self.runner.loop.time()
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
        p = self.runner
        message = await p.run_alone(call)
        if not sample:
            return message
        _, in_ratio = input_ratio(message, estimate_input_tokens(call.params))
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
        s = self.runner.stats
        g.turn_off(self.runner.loop.time(), reason, why, cfg.pause_s)
        if reason == _pack_guard.LONG_ANSWERS:
            s.pack_paused_long_answers += 1
        elif reason == _pack_guard.RESENDS:
            s.pack_paused_resends += 1
        else:
            s.pack_paused_cost += 1
        s.pack_paused_at = GroupGuard.wall_clock()

    async def ready(self, g: GroupGuard, items: list[Item]) -> bool:
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
        return not g.off(self.runner.loop.time())

    @staticmethod
    def reserve(g: GroupGuard, need: int) -> float:
        """Output tokens to reserve for an item in a packed reply: its own limit plus its
        object's wrapping (as learnt from the group's replies, at least
        `_packed.ITEM_OVERHEAD`), lowered to what the group's items actually take in a
        reply (their 99th percentile, with a margin) once some are known."""
        reserve = need + max(float(_packed.ITEM_OVERHEAD), g.wrapping)
        fp = g.footprint(0.99)
        return reserve if fp is None else min(reserve, fp * 1.25 + 2)

    def max_tokens(self, g: GroupGuard, items: list[Item]) -> int:
        """The packed call's ``max_tokens``: its items' reserves (see `_reserve`, as learnt
        by now) and the array's brackets."""
        ceiling = sum(self.reserve(g, it.need) for it in items) + 8
        return max(1, min(self.config.max_output_tokens, math.ceil(ceiling)))

    def pays(
        self, g: GroupGuard, items: list[Item], params: dict[str, Any], packed_input: float
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

    def learn(
        self,
        g: GroupGuard,
        message: Message,
        items: list[Item],
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
        billed, in_ratio = input_ratio(message, packed_input)
        n_done = len(answered)
        g.observe_packed(ratio, footprints, wrapping, n_done, len(items) - n_done, in_ratio)
        if g.off(self.runner.loop.time()):
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


def input_ratio(message: Message, estimate: float) -> tuple[float, float | None]:
    """`message`'s billed input at the full input price (`_pack_guard.full_price_input`),
    and that per token of `estimate`, its request's local estimate (None: nothing
    estimated)."""
    billed = full_price_input(message.usage)
    return billed, billed / estimate if estimate > 0 else None

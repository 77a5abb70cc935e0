"""What one packing group has learnt, and whether packing it still pays.

Why: a packed call pays for its items' answers in full plus a JSON wrapper each, so a group
whose answers run longer than their ``max_tokens`` (every such item is re-sent alone), or
whose replies the model garbles, or whose shared prompt is too short to outweigh the
wrappers, costs more calls and dollars packed than alone (issue #21). So each group learns
from its own answers, as adaptive ``max_tokens`` learns per task:

- **Before its first packed call** a group sends `Pack.learn` requests alone (the rest of its
  first windows wait for them): their answers say how long the group's answers are, how
  many are cut at ``max_tokens``, and what a request costs alone. Those are calls not
  packing would have made anyway, so learning never costs a call.
- **Answers cut at max_tokens**: when more than `Pack.max_resend_share` of the group's
  recent answers sent alone were cut, packing is turned off for `Pack.pause_s` (a packed
  reply would hold them in full, over their limit, and they would be re-sent).
- **Re-sends**: when more than `Pack.max_resend_share` of the items of its recent packed
  calls were re-sent alone, likewise.
- **Cost** (`Pack.cost_guard`): a window is packed only when the packed call is predicted to
  cost less than its items alone (input at the group's own billed/estimated ratio, output
  at the lengths learnt); and packed calls that did cost more than their answered items
  would have alone (summed over at least 8 items) turn packing off likewise.
- **Sizing**: the packed call's ``max_tokens`` is what its items' objects in a reply take
  (learnt per group from the replies, calibrated by each reply's ``usage.output_tokens``),
  not the sum of the callers' limits, which a group of long answers overruns.

While packing is off its requests go alone and keep teaching it; when the pause ends,
packing resumes only if those recent answers say it can pay (else the pause is renewed
without a packed call).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Final

from anthropic.types import Usage

from ..core.prices import CACHE_READ, CACHE_WRITE, cost_usd, price_for
from ..core.stats import nearest_rank

__all__ = ["GroupGuard", "dollars", "full_price_input"]

log = logging.getLogger("asyncthrift")

#: Answers (alone, or items of packed calls) each group remembers: recent behaviour counts.
_WINDOW: Final = 32

#: Why packing was turned off for a group (the `Stats` counter each bumps).
LONG_ANSWERS: Final = "long_answers"
RESENDS: Final = "resends"
COST: Final = "cost"


def dollars(model: str, input_tokens: float, output_tokens: float) -> float:
    """What `input_tokens` and `output_tokens` of `model` cost; for a model with no known
    price, at Sonnet's (so the comparisons still weigh output above input)."""
    return cost_usd(
        model if price_for(model) is not None else "sonnet", input_tokens, output_tokens
    )


def full_price_input(usage: Usage) -> float:
    """`usage`'s input as tokens at the full input price: cache writes at 1.25x, cache reads
    at 0.1x. A group's input per estimated token is learnt in these units, so a prompt the
    API caches (reads cost a tenth) is weighed as cheap as it is, alone and packed."""
    write = usage.cache_creation_input_tokens or 0
    read = usage.cache_read_input_tokens or 0
    return usage.input_tokens + CACHE_WRITE * write + CACHE_READ * read


class GroupGuard:
    """One group's samples and its packing switch (on, learning, or off until a time)."""

    __slots__ = (
        "_learnt",
        "alone",
        "describe",
        "footprints",
        "in_ratio",
        "judged",
        "off_reason",
        "off_until",
        "out_ratio",
        "outcomes",
        "pioneers",
        "spent",
        "worth",
        "wrapping",
    )

    def __init__(self, describe: str) -> None:
        self.describe = describe  # for the log: model and a short hash of the group
        # answers sent alone: (output tokens, cut at max_tokens)
        self.alone: deque[tuple[int, bool]] = deque(maxlen=_WINDOW)
        # tokens one item's object took in a packed reply (calibrated), recent
        self.footprints: deque[float] = deque(maxlen=_WINDOW)
        # recent packed items: answered (True) or re-sent (False)
        self.outcomes: deque[bool] = deque(maxlen=_WINDOW)
        self.in_ratio = 1.0  # input at full price (`full_price_input`) / local estimate
        self.out_ratio = 1.0  # billed output tokens / local estimate of the reply text
        self.off_until = -math.inf
        self.off_reason = ""
        self.pioneers = 0  # requests sent alone to learn from, in flight
        self.wrapping = 0.0  # tokens an item's object takes beyond its answer, learnt
        # since packing was last (re)started: what its packed calls cost, what the items
        # they answered would have cost alone, and how many items they carried
        self.spent = 0.0
        self.worth = 0.0
        self.judged = 0
        self._learnt: asyncio.Event | None = None

    # -- learning -------------------------------------------------------------------------

    def learning(self, learn: int) -> bool:
        return len(self.alone) < learn

    def wants_teacher(self, learn: int) -> bool:
        """Whether the next request should go alone to teach the group (counted in flight)."""
        if len(self.alone) + self.pioneers < learn:
            self.pioneers += 1
            return True
        return False

    def taught(self) -> None:
        self.pioneers -= 1
        self._wake()

    async def learnt(self, learn: int) -> None:
        """Wait while the group is learning and teachers are in flight."""
        while self.learning(learn) and self.pioneers > 0:
            if self._learnt is None:
                self._learnt = asyncio.Event()
            await self._learnt.wait()

    def _wake(self) -> None:
        if self._learnt is not None:
            self._learnt.set()
            self._learnt = None

    def observe_alone(self, output_tokens: int, cut: bool, in_ratio: float | None) -> None:
        """An answer of the group sent alone (a teacher, a re-send, or while off)."""
        self.alone.append((output_tokens, cut))
        if in_ratio is not None and in_ratio > 0:
            self.in_ratio += (in_ratio - self.in_ratio) * (0.5 if len(self.alone) < 4 else 0.2)
        self._wake()

    def observe_packed(
        self,
        out_ratio: float | None,
        footprints: list[float],
        wrapping: list[float],
        answered: int,
        resent: int,
        in_ratio: float | None,
    ) -> None:
        """A packed reply: its calibration (billed output tokens per estimated one), its
        answered items' objects' sizes and wrapping (tokens beyond the answer), how many
        it answered and re-sent; the packed call's billed input per estimated token."""
        first = not self.footprints
        if out_ratio is not None and out_ratio > 0:
            self.out_ratio += (out_ratio - self.out_ratio) * (1.0 if first else 0.3)
        if wrapping:
            mean = sum(wrapping) / len(wrapping)
            self.wrapping = mean if first else self.wrapping + (mean - self.wrapping) * 0.3
        if in_ratio is not None and in_ratio > 0 and not self.alone:
            self.in_ratio += (in_ratio - self.in_ratio) * 0.5
        self.footprints.extend(footprints)
        self.outcomes.extend([True] * answered + [False] * resent)

    # -- what the samples say ---------------------------------------------------------------

    def cut_share(self) -> float:
        if not self.alone:
            return 0.0
        return sum(cut for _, cut in self.alone) / len(self.alone)

    def resend_share(self) -> float:
        if not self.outcomes:
            return 0.0
        return self.outcomes.count(False) / len(self.outcomes)

    def answer_tokens(self) -> float | None:
        """A typical answer's length sent alone (a cut one counts as its limit), or None."""
        if not self.alone:
            return None
        return sum(n for n, _ in self.alone) / len(self.alone)

    def mean_footprint(self) -> float | None:
        """The mean tokens an item's object takes in a reply, or None."""
        return sum(self.footprints) / len(self.footprints) if self.footprints else None

    def footprint(self, q: float) -> float | None:
        """The `q` quantile of the tokens an item's object takes in a reply, or None."""
        return nearest_rank(self.footprints, q) if self.footprints else None

    # -- the switch ---------------------------------------------------------------------------

    def off(self, now: float) -> bool:
        return now < self.off_until

    def turn_off(self, now: float, reason: str, why: str, pause_s: float) -> None:
        self.off_until = now + pause_s
        self.off_reason = reason
        self.outcomes.clear()  # a resumed group is judged on its new packed calls
        self.spent = self.worth = 0.0
        self.judged = 0
        log.warning(
            "packing turned off for %s for %.0f s: %s (its requests go alone meanwhile; "
            "stats().pack_paused counts this)",
            self.describe,
            pause_s,
            why,
        )

    @staticmethod
    def wall_clock() -> float:
        return time.time()

"""What an answer nobody will read may still cost: `keep_abandoned`.

A request cancelled, timed out or dropped after it was sent may still be answered and
charged by the server, or stopped at the disconnect; the client cannot tell which. Its
output reservation is kept until the answer would have completed, timed from the answers its
model class has seen (`AnswerTimes`), and looked at again while those times are provisional.
Apart from `Attempt`, which calls it once when it settles an abandoned attempt: the timing of
a deferred refund is its own job, and changes without touching how an attempt settles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from anthropic.types import Usage

from ..core.prices import cost_usd
from ..core.stats import Recorder
from ..scheduling.scheduler import Reservation
from ..stores.spend import SpendHold, SpendLedger
from ._answer_times import AnswerTimes

__all__ = ["keep_abandoned"]

#: An abandoned request unanswered for this many times the longest answer seen may be
#: longer than any (`keep_abandoned`).
_OUTLIVED: Final = 2.0
#: While the answers' times are provisional (`AnswerTimes.firm` False), an abandoned
#: request's refund time is looked at again this often (seconds), as answers come in.
_RECHECK: Final = 1.0
#: A loop timer may fire this much before its time (a clock's resolution, a virtual
#: clock's rounding): an answer due that soon counts as ended.
_EARLY: Final = 0.01


def keep_abandoned(
    loop: asyncio.AbstractEventLoop,
    stats: Recorder,
    spend: SpendLedger | None,
    spend_hold: SpendHold | None,
    r: Reservation,
    times: AnswerTimes,
    model: str,
    usage: Usage | None,
) -> None:
    """Keep what an answer nobody will read may still cost (see `Reservation.abandon`).

    The output is held until the answer would have completed: ``sent_at`` plus the
    model class's `AnswerTimes.duration` of the longest answer it may have. While those
    times are provisional (a cold start: perhaps only the probe's first event seen), the
    instant is looked at again every `_RECHECK` seconds, as answers and stream events
    come in, so a burst cancelled before any answer ended is held for what the answers
    then show, not for the prior.
    """
    reserved = r.cost.output_tokens
    seen = 0.0 if usage is None else float(usage.output_tokens)

    longest = min(reserved, max(times.longest(reserved), seen))
    # one that outlived twice the longest answer seen (a timeout picks the long ones)
    # may be longer than any: nothing is known of it but its max_tokens. Twice, because
    # a burst's requests may wait a while in the process before they leave
    outlived = loop.time() - r.sent_at >= _OUTLIVED * times.duration(longest)

    def keep() -> float:
        if outlived:
            return reserved
        return min(reserved, max(times.longest(reserved), seen))

    due = _refund_due(loop, r.sent_at, times, keep, latest=r.sent_at + times.prior(reserved))
    most = keep()
    # what the deferred refund will give back: all but `most` once the times are firm
    # (before, `most` may still grow or shrink as the burst's answers end)
    pending = reserved - most if times.firm else None
    first = due()
    until = loop.time() if first is None else first
    if usage is None:
        r.abandon(until, keep, recheck=due, pending=pending)
        input_tokens = r.cost.input_tokens
    else:
        cache_write = usage.cache_creation_input_tokens or 0
        input_tokens = usage.input_tokens + cache_write
        r.abandon(until, keep, input_tokens, recheck=due, pending=pending)
        stats.input_tokens += usage.input_tokens
        stats.output_tokens += usage.output_tokens
        stats.cache_creation_input_tokens += cache_write
        stats.cache_read_input_tokens += usage.cache_read_input_tokens or 0
    if spend_hold is not None and spend is not None:
        # what the server may bill for it: the input and the longest answer it could have
        spend.settle(spend_hold, cost_usd(model, int(input_tokens), int(most)))


def _refund_due(
    loop: asyncio.AbstractEventLoop,
    sent_at: float,
    times: AnswerTimes,
    keep: Callable[[], float],
    latest: float,
) -> Callable[[], float | None]:
    """When an abandoned answer sent at `sent_at`, of at most `keep()` tokens, would have
    completed: a `Reservation.abandon` recheck (None: by now; else when to look again).

    Once `times` are firm the instant is timed once; while they are provisional it is
    looked at again every `_RECHECK` seconds. Either way, when it comes, an answer sent
    with this one or before it that is still running means the answers seen may be a
    shorter kind than these: it waits for those, looking again every `_RECHECK` seconds,
    and never past `latest`. Why: in `tests/test_abandoned.py`'s half-cancelled run under
    a finishing server, firm times fitted to a warm-up's short answers (40-49 tokens) gave
    a 97-token answer's output back at 6.30 s, 0.6 s before the server ended it, keeping
    60 tokens of it; the 352 tokens our level sat below the server's hid it, and a closer
    lower bound that lifted the level to the server's (tried on branch local26) met a 429.
    """
    timed: list[float] = []  # the instant, once timed from firm answer times

    def due() -> float | None:
        now = loop.time()
        if now >= latest - _EARLY:
            return None
        until = timed[0] if timed else sent_at + times.duration(keep())
        if times.firm and not timed:  # timed once, as the answers' times will hardly move now
            timed.append(until)
        if now < until - _EARLY:
            return until if timed else min(until, now + _RECHECK)
        if times.running_since(sent_at):
            return min(latest, now + _RECHECK)
        return None

    return due

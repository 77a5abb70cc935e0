"""`ForeignShare`: how fast other consumers spend from the same API key, learnt from resyncs.

A `LocalBudget` (`budget`) credits its buckets the limit's refill. When another process or
client spends from the same key, the server's level falls faster than ours; each resync
shows the gap, and the gap's drift between resyncs is the others' rate. This class keeps
that estimate per dimension (requests, input, output) and sets each bucket's refill to
what the others leave. It is its own small piece of state, apart from the budget's
bookkeeping of what it charged, because it answers a different question: not "where is the
server's level now" but "at what rate does it move without us".
"""

from __future__ import annotations

import math

from .bucket import TokenBucket

__all__ = ["ForeignShare"]

#: The averaging window of the estimate of other consumers' spending, a fraction of the period.
_FOREIGN_WINDOW = 0.2
#: ... sampled over intervals of at least this fraction of the period.
_FOREIGN_MIN_INTERVAL = 0.001
#: The largest share of a limit's refill the estimate ever gives to other consumers, and
#: the lowest it goes (below zero only so that noise averages out; see `ForeignShare.learn`).
_FOREIGN_MAX_SHARE = 0.9
_FOREIGN_MIN_SHARE = -0.25


class ForeignShare:
    """Per dimension: the estimated rate (units/s) at which someone else spends from the key.

    Also when it was last updated, the local-minus-server error right after the latest
    resync, and the error's drift accumulated since the update (see `learn`).
    """

    __slots__ = ("_at", "_drift", "_error_after", "rates")

    def __init__(self, now: float) -> None:
        self.rates = [0.0, 0.0, 0.0]
        self._at = [now, now, now]
        self._error_after = [0.0, 0.0, 0.0]
        self._drift = [0.0, 0.0, 0.0]

    def restart(self, i: int, now: float) -> None:
        """A cold reading of dimension `i`: no error carried over, no drift, sample from now."""
        self._error_after[i] = 0.0
        self._drift[i] = 0.0
        self._at[i] = now

    def lifted(self, i: int, amount: float) -> None:
        """Our level of dimension `i` was raised by `amount` on evidence (`ReadingFloor`):
        not a drift of the error, so the next one is measured from the raised level."""
        self._error_after[i] += amount

    def learn(
        self,
        i: int,
        bucket: TokenBucket,
        error: float,
        now: float,
        period: float,
        kept: float = 0.0,
    ) -> None:
        """Learn how fast someone else spends dimension `i` of this key; refill net of it.

        `error` is the local level minus the server's (as read from this response), before
        the resync clamps it. Our own spending cancels out of it, so between two resyncs it
        drifts at (our refill rate - the server's refill rate left after others' spending):
        zero when the rate is right, positive when another consumer spends what we credit.
        The drift, averaged over about a fifth of the period, corrects the estimate of the
        others' rate, and the bucket refills at the limit's rate less that estimate.

        Why: crediting the whole refill ran a client on a shared key ahead of the server by
        the others' spending, which a resync only caught one round trip later: a 429 every
        few seconds at a binding limit, and a burst of them after every `retry-after` block,
        which released a whole second of refill the server never had. A constant error (the
        margin of our estimates) does not drift and teaches nothing, and a lone consumer's
        estimate wanders around zero: it may go below, so noise cancels out instead of
        ratcheting up against a floor (which slowed a lone consumer by 5-10 %).
        """
        if bucket.held:
            # refill is withheld on purpose until the server answers a burst: the error's
            # drift meanwhile is ours, and says nothing about anybody else
            self._drift[i] = 0.0
            self._error_after[i] = min(error, 0.0)
            self._at[i] = now
            return
        self._drift[i] += error + kept - self._error_after[i]
        self._error_after[i] = min(error, 0.0)  # the clamp makes a positive error zero
        dt = now - self._at[i]
        if dt < period * _FOREIGN_MIN_INTERVAL:
            return  # answers come in bunches at one loop instant: sample over an interval
        weight = 1.0 - math.exp(-dt / (period * _FOREIGN_WINDOW))
        full = bucket.capacity / period
        # a drift faster than the whole refill is a step, not a rate (the first answer finding
        # the bucket drained, a burst of the other's): it counts at most as the whole refill
        drift = min(max(self._drift[i] / dt, -full), full)
        foreign = self.rates[i] + weight * drift
        # the estimate may go below zero, so that noise averages out instead of ratcheting
        # up against a floor; only a positive estimate slows the refill
        self.rates[i] = min(max(foreign, full * _FOREIGN_MIN_SHARE), full * _FOREIGN_MAX_SHARE)
        self._drift[i] = 0.0
        self._at[i] = now
        bucket.set_rate(full - max(0.0, self.rates[i]), now)

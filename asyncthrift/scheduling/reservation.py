"""`Reservation`: the budget one admitted attempt holds, until it is given back once.

The gate (`scheduler.Gate`) hands one out per admission; the attempt that owns it settles it
with the response's usage or releases it however it fails. It lives apart from the gate's
queueing because its callers (the attempt, the pipeline) deal only in reservations, and
its refund rules are a contract of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .bucket import ZERO, Budget, Cost
from .budget import LocalBudget

__all__ = ["Refunds", "Reservation"]


class Refunds(Protocol):
    """Where a reservation's budget goes back: the gate that admitted it (`scheduler.Gate`),
    given to the reservation, so it refunds through these and nothing else of the gate."""

    def settled(self, budget: Budget, refund: Cost, mark: Cost | None = None) -> None:
        """A reservation on `budget` ended, giving `refund` back (counted once per admission);
        `mark`: the admission's, whose attempt is now off the wire (`Budget.closed`)."""
        ...

    def give_back(self, budget: Budget, refund: Cost) -> None:
        """Give `refund` back to `budget` outside any settling (a deferred refund)."""
        ...

    def later(self, when: float, callback: Callable[[], None]) -> None:
        """Call `callback` at loop time `when`, unless the gate closes first."""
        ...


class Reservation:
    """Budget held by one admitted attempt, given back exactly once however it ends.

    - `settle(input, output)`: the response's usage arrived; charge the true input and refund
      the output that was reserved (`max_tokens`) but not produced.
    - `release(sent=False)`: never reached the server; everything goes back.
    - `release(sent=True, input_counted=...)`: the server answered with an error; the
      request stays spent, output goes back (it produced none), input goes back only when
      the server certainly did not count it (a 400, 429 or 529).
    - `abandon(until, keep)`: cancelled, timed out or dropped after sending, with no answer:
      the request and input stay spent; the output reservation is kept until `until`, then
      all but `keep` goes back, less what the server's headers took off the level meanwhile.
    """

    __slots__ = ("_open", "_refunds", "budget", "cost", "index", "mark", "sent_at")

    def __init__(
        self,
        refunds: Refunds,
        index: int,
        budget: Budget,
        cost: Cost,
        mark: Cost,
        sent_at: float,
    ) -> None:
        self._refunds = refunds
        self._open = True
        self.index = index
        self.budget = budget
        self.cost = cost
        self.mark = mark
        self.sent_at = sent_at

    def settle(self, input_tokens: float, output_tokens: float) -> None:
        if not self._open:
            return
        self._open = False
        c = self.cost
        refund = Cost(0, c.input_tokens - input_tokens, c.output_tokens - output_tokens)
        self._refunds.settled(self.budget, refund, self.mark)

    def release(self, *, sent: bool, input_counted: bool = True) -> None:
        if not self._open:
            return
        self._open = False
        c = self.cost
        refund = c if not sent else Cost(0, 0 if input_counted else c.input_tokens, c.output_tokens)
        self._refunds.settled(self.budget, refund, self.mark)

    def abandon(
        self,
        until: float,
        keep: Callable[[], float],
        input_tokens: float | None = None,
        recheck: Callable[[], float | None] | None = None,
        pending: float | None = None,
    ) -> None:
        """The attempt was sent and then abandoned (cancelled, timed out, dropped, a stream
        closed early): the server may stop its answer at the disconnect or finish it and
        charge its output (the documentation is silent; users report timed-out requests
        using their quota). Safe under either:

        - the request and the input stay spent (the server counted them; `input_tokens`,
          if known from a stream's first event, replaces the estimate now);
        - the output reservation is kept until `until`, the instant the answer would have
          completed at the latest (`AnswerTimes`), and only then does all of it but
          `keep()` (the most output the answer could have had, asked then, when more
          answers have been seen) go back: by then the server has refunded at least that
          much, whether it stopped or finished;
        - less what the server's headers already credited of it meanwhile: a reading
          that came after the server's own refund may have lifted the local level to, or
          pulled it down to, a level that counts it, and giving it back again would run
          ahead of the server. `LocalBudget.hold_abandoned` counts that once across all
          its abandoned answers (subtracting every lowering since from each one's refund,
          as before, counted it once per answer: 40 answers cancelled together lost 40
          times each clamp).

        `pending`: the most the deferred refund will give back, as far as is known now
        (None: all of the output), which a reading meanwhile may credit.

        `recheck`, if given, is asked at `until` whether the answer would have completed
        by now after all (None), or when to ask again: what is learnt of the answers' times
        after the abandonment moves the instant, earlier or later.

        The reservation is settled now (the gate does not wait for it: `idle()` and closing
        never wait on the deferred part, which a closing gate drops, keeping it spent).
        """
        if not self._open:
            return
        self._open = False
        c = self.cost
        now_back = ZERO if input_tokens is None else Cost(0, c.input_tokens - input_tokens, 0)
        refunds = self._refunds
        refunds.settled(self.budget, now_back, self.mark)
        budget = self.budget
        local = budget if isinstance(budget, LocalBudget) else None
        held = c.output_tokens if pending is None else max(0.0, pending)
        if local is not None:
            local.hold_abandoned(held)

        def give_back() -> None:
            again = None if recheck is None else recheck()
            if again is not None:
                refunds.later(again, give_back)
                return
            taken = 0.0 if local is None else local.release_abandoned(held)
            amount = c.output_tokens - max(0.0, keep()) - taken
            if amount > 0:
                refunds.give_back(budget, Cost(0, 0, amount))

        refunds.later(until, give_back)

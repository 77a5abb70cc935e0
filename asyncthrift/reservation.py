"""`Reservation`: the budget one admitted attempt holds, until it is given back once.

The gate (`scheduler.Gate`) hands one out per admission; the attempt that owns it settles it
with the response's usage or releases it however it fails. It lives apart from the gate's
queueing because its callers (the attempt, the pipeline) deal only in reservations, and
its refund rules are a contract of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bucket import Budget, Cost

if TYPE_CHECKING:
    from .scheduler import Gate

__all__ = ["Reservation"]


class Reservation:
    """Budget held by one admitted attempt, given back exactly once however it ends.

    - `settle(input, output)`: the response's usage arrived; charge the true input and refund
      the output that was reserved (`max_tokens`) but not produced.
    - `release(sent=False)`: never reached the server; everything goes back.
    - `release(sent=True, input_counted=...)`: failed or cancelled after sending; the request
      stays spent, output goes back (the server charges only output it produced), input goes
      back only when the server certainly did not count it (a 429 or 529).
    """

    __slots__ = ("_gate", "_open", "budget", "cost", "index", "mark", "sent_at")

    def __init__(
        self, gate: Gate, index: int, budget: Budget, cost: Cost, mark: Cost, sent_at: float
    ) -> None:
        self._gate = gate
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
        self._gate._refund(self.budget, refund)

    def release(self, *, sent: bool, input_counted: bool = True) -> None:
        if not self._open:
            return
        self._open = False
        c = self.cost
        refund = c if not sent else Cost(0, 0 if input_counted else c.input_tokens, c.output_tokens)
        self._gate._refund(self.budget, refund)

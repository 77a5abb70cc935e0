"""Where a call queues and what it costs: its `ModelClass`, its `Plan`, and the `Planner`
a route plans it with.

A route plans a call once (`Route.plan`), and every retry of it queues in the same model
class's gate, for the same cost; the attempt that is then admitted settles against them.
Apart from `_attempt` so that what a call costs, and the class it waits in, read alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from ..core.tokens import Calibrator
from ..scheduling.bucket import Cost
from ..scheduling.budget import LocalBudget
from ..scheduling.scheduler import Gate
from ._answer_times import AnswerTimes

__all__ = ["ModelClass", "Plan", "Planner"]


class ModelClass:
    """Per model class: the gate over every key's budget, the input calibrator, and how long
    its answers run (`times`: when an abandoned answer would have completed)."""

    __slots__ = ("budgets", "calibrator", "gate", "name", "times")

    def __init__(
        self, name: str, budgets: list[LocalBudget], gate: Gate, calibrator: Calibrator | None
    ) -> None:
        self.name = name
        self.budgets = budgets
        self.gate = gate
        self.calibrator = calibrator
        self.times = AnswerTimes()


class Plan:
    """What one request will cost and where it queues (the same for every retry)."""

    __slots__ = ("cost", "mc", "raw_estimate", "worst_usd")

    def __init__(self, mc: ModelClass, cost: Cost, raw_estimate: float, worst_usd: float) -> None:
        self.mc = mc
        self.cost = cost
        self.raw_estimate = raw_estimate
        self.worst_usd = worst_usd


class Planner(Protocol):
    """What a route plans a call with (the pipeline, seen no further): the cost of a
    Messages request in its model class, the count_tokens class, and the clock."""

    def plan(self, params: Mapping[str, Any]) -> Plan:
        """Estimate what a Messages request will cost, in its model class."""
        ...

    def count_class(self) -> ModelClass:
        """The count_tokens class: its own gate and request budget."""
        ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

"""Model fallback (``Thrift(fallback={model: [models...]})``): which model answers a call.

Apart from the pipeline because it is a policy over plans, not part of sending one: the
pipeline asks it once before admission (would the queue wait pass the deadline?) and once
after a 529 (move on to the next model); everything else about a call is unchanged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._attempt import Call, Plan, Planner, Route

__all__ = ["fall_back", "fit_deadline"]

log = logging.getLogger("asyncthrift")


def fall_back(call: Call, model: str, why: str) -> None:
    """Send `call` to fallback `model` from now on (the rest of its chain after it)."""
    chain = call.chain
    call.chain = chain[chain.index(model) + 1 :]
    if call.fell_back_from is None:
        call.fell_back_from = call.params["model"]
    log.info("falling back from %r to %r: %s", call.params["model"], model, why)
    call.params = {**call.params, "model": model}


def fit_deadline(pipeline: Planner, route: Route, call: Call, plan: Plan) -> Plan:
    """The plan of the first model of `call`'s chain (its own model first) whose queue
    wait, as estimated now, fits the time left before its deadline; if none does, of
    the one that would wait least (the deadline then applies as usual).

    The estimate errs long (a cold budget waiting for its first answer counts the whole
    probe wait), so the least wait is the better bet than the model asked for.
    """
    assert call.opts.deadline is not None
    left = call.opts.deadline - call.waited
    now = pipeline.loop.time()
    level = call.opts.level
    wait = plan.mc.gate.expected_wait(plan.cost, level=level, now=now)
    if wait <= left:
        return plan
    best: tuple[float, str, Plan] | None = None
    for model in call.chain:
        other = route.plan(pipeline, {**call.params, "model": model})
        other_wait = other.mc.gate.expected_wait(other.cost, level=level, now=now)
        if other_wait <= left:
            best = (other_wait, model, other)
            break
        if other_wait < wait and (best is None or other_wait < best[0]):
            best = (other_wait, model, other)
    if best is None:
        return plan
    why = f"its queue wait (~{wait:.1f}s) would pass the deadline ({left:.1f}s left)"
    fall_back(call, best[1], why)
    return best[2]

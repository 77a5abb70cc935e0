"""What each metered request takes from its client's quota and spend cap, at admission, the
way the API charges it:

- a message (`message_charge`): one request, its input estimate and its whole
  ``max_tokens``, and their worst cost; settled to the answer's usage;
- ``count_tokens`` (`count_charge`): one request and nothing else (the API does not bill
  it and it uses no token budget);
- a message batch (`batch_charge`): one request, and the worst cost of every request in it
  (each one's input estimate and ``max_tokens`` at the Batches API's price) against the
  spend cap at submission. Its tokens are not counted against the client's per-minute
  token quotas: the API processes a batch over hours, outside the key's ITPM/OTPM. The
  hold is kept as the charge (the results come hours later, and the gateway does not
  follow them), so a cap is never overrun by batches, at the price of counting a batch at
  its worst.

A malformed body is charged what can be read from it (no ``max_tokens``: none held); the
upstream refuses it, and a refused request gives its charge back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..core.prices import cost_usd
from ..core.tokens import estimate_input_tokens

__all__ = ["Charge", "Meter", "batch_charge", "count_charge", "message_charge"]


class Charge(NamedTuple):
    """What one request holds of its client's quota: input tokens (estimated), output
    tokens (``max_tokens``) and dollars (the worst case). It always counts one request.

    `keep`: charge the hold itself once answered (a batch, count_tokens), where the answer
    carries no usage to settle to."""

    input_tokens: int
    max_tokens: int
    worst_usd: float
    keep: bool = False


Meter = Callable[[Mapping[str, Any]], Charge]


def _max_tokens(params: Mapping[str, Any]) -> int:
    value = params.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _model(params: Mapping[str, Any]) -> str:
    model = params.get("model")
    return model if isinstance(model, str) else ""


def message_charge(body: Mapping[str, Any]) -> Charge:
    """``POST /v1/messages``: the input estimate, ``max_tokens``, their worst cost."""
    estimate = math.ceil(estimate_input_tokens(body))
    out = _max_tokens(body)
    return Charge(estimate, out, cost_usd(_model(body), estimate, out))


def count_charge(body: Mapping[str, Any]) -> Charge:
    """``POST /v1/messages/count_tokens``: one request, no tokens, no dollars."""
    return Charge(0, 0, 0.0, keep=True)


def batch_charge(body: Mapping[str, Any]) -> Charge:
    """``POST /v1/messages/batches``: one request and the batch's worst cost (see above)."""
    worst = 0.0
    requests = body.get("requests")
    for item in requests if isinstance(requests, list) else ():
        params = item.get("params") if isinstance(item, dict) else None
        if isinstance(params, dict):
            estimate = math.ceil(estimate_input_tokens(params))
            worst += cost_usd(_model(params), estimate, _max_tokens(params), batch=True)
    return Charge(0, 0, worst, keep=True)

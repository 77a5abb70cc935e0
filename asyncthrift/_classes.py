"""The model-class registry of one client: which gate and budgets a model id queues on.

Kept apart from `_pipeline` because it is the client's *state* (classes built lazily, one
per family, their budgets local or in Redis, keys the API refused and disabled), while the
pipeline is the *path* a call takes. The functions take the `Pipeline` that holds that
state, as `_lookup`'s do; `Pipeline.model_class`, `count_class` and `_refuse` call them.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import anthropic

from ._attempt import ModelClass
from ._keys import Key
from .budget import LocalBudget
from .errors import InvalidArgument, NoKeysLeft
from .limits import MODEL_CLASSES, Limits
from .limits import model_class as family
from .prices import PRICES
from .scheduler import Gate
from .tokens import Calibrator

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = [
    "COUNT_TOKENS_CLASS",
    "UNKNOWN_CLASS",
    "UnknownModel",
    "class_of",
    "close_model",
    "count_class",
    "refuse",
]

log = logging.getLogger("asyncthrift")

COUNT_TOKENS_CLASS: Final = "count_tokens"
"""The name of the count_tokens gate and the suffix of its budgets (``key0/count_tokens``)."""

UNKNOWN_CLASS: Final = "unknown"
"""The one class every model id of no known family shares (unless `limits=` names the id)."""


class UnknownModel(InvalidArgument):
    """A ``claude-*`` model id of no known family while limits are configured."""


def _budget(p: Pipeline, key: Key, label: str, limits: Limits, now: float) -> LocalBudget:
    """The budget `key` draws on for `label`: in Redis with ``shared=``, else here.

    In Redis a key's budget is named by a keyed hash of its API key, or by the
    ``KeyConfig(budget=...)`` it names, so every process of one organisation meets there.
    """
    name = f"{key.budget}/{label}"
    if p.shared is None:
        return LocalBudget(limits, now, name=name, cold_start=True)
    identity = key.sdk.api_key if key.budget == key.name else f"budget:{key.budget}"
    return p.shared.budget(identity or key.name, label, limits, now, name)


def class_of(p: Pipeline, model: str) -> ModelClass:
    """The class `model` queues in; every id of no known family shares one."""
    mc = p._by_model.get(model)
    if mc is not None:
        return mc
    name = family(model)
    if name not in MODEL_CLASSES and not any(k.limits.names(model) for k in p.keys):
        _unknown(p, model)
        name = UNKNOWN_CLASS
    mc = p.classes.get(name)
    if mc is None:
        budgets = []
        now = p.loop.time()
        by_budget: dict[str, LocalBudget] = {}  # keys naming one budget share it
        for key in p.keys:
            label, limits = key.limits.for_model(model)
            label = name if name == UNKNOWN_CLASS else label
            budget = by_budget.get(key.budget)
            if budget is None:
                budget = by_budget[key.budget] = _budget(p, key, label, limits, now)
            elif isinstance(budget, LocalBudget):
                budget.lifts = False  # several keys' readings: see `LocalBudget.lifts`
            budgets.append(budget)
        mc = p.classes[name] = _make_class(p, name, budgets, Calibrator())
        if p.shared is not None:
            p.shared.attach(mc.gate, budgets)
    if len(p._by_model) >= 1024:  # model ids come from callers: stay bounded
        p._by_model.clear()
    p._by_model[model] = mc
    return mc


def close_model(model: str) -> str | None:
    """The known model id `model` is most likely a typo of, or None if none is close.

    The ``claude-`` prefix every id shares is left out of the comparison: with it,
    ``claude-nonexistent-9`` reads as 69 % like ``claude-sonnet-4``; without it, 48 %,
    while a real typo (``claude-sonet-4-5``, ``claude-haiku-4.5``) stays near 90 %.
    """
    ids = {m.removeprefix("claude-"): m for m in PRICES if m.startswith("claude-")}
    tail = model.lower().removeprefix("claude-")
    found = difflib.get_close_matches(tail, ids, n=1, cutoff=0.75)
    return ids[found[0]] if found else None


def _unknown(p: Pipeline, model: str) -> None:
    """A model id of no known family: an error for a ``claude-*`` typo that would run
    unlimited under configured limits; otherwise one warning per client."""
    guess = close_model(model)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    configured = any(k.limits.configured and not k.limits.has_default for k in p.keys)
    if configured and model.lower().startswith("claude"):
        raise UnknownModel(
            f"unknown model {model!r}{hint}: it names no model class (opus, sonnet, haiku) "
            "and no configured limit covers it, so it would run unlimited. Fix the id, "
            "or pass limits={..., " + repr(model) + ": Limits(...)} or a '*' entry"
        )
    if not p._unknown_warned:
        p._unknown_warned = True
        log.warning(
            "model %r names no known model class%s: it and every other unknown model id "
            "share the class %r",
            model,
            hint,
            UNKNOWN_CLASS,
        )


def count_class(p: Pipeline) -> ModelClass:
    """The count_tokens gate: one request budget per key, its own queue."""
    mc = p.classes.get(COUNT_TOKENS_CLASS)
    if mc is None:
        now = p.loop.time()
        limits = p.count_limits or Limits()
        by_budget: dict[str, LocalBudget] = {}
        budgets = [
            by_budget.get(key.budget)
            or by_budget.setdefault(
                key.budget, LocalBudget(limits, now, name=f"{key.budget}/{COUNT_TOKENS_CLASS}")
            )
            for key in p.keys
        ]
        mc = p.classes[COUNT_TOKENS_CLASS] = _make_class(p, COUNT_TOKENS_CLASS, budgets, None)
    return mc


def _make_class(
    p: Pipeline, name: str, budgets: list[LocalBudget], calibrator: Calibrator | None
) -> ModelClass:
    gate = Gate(budgets, aging=p.aging, counter=p.queue, name=name, loop=p.loop)
    for index in p.refused:
        gate.disable(index, lambda: _no_keys_left(p))
    return ModelClass(name, budgets, gate, calibrator)


# -- keys the API refused ----------------------------------------------------------------------


def refuse(p: Pipeline, index: int, error: anthropic.APIStatusError) -> bool:
    """Disable key `index` for good after a 401/403 (logged once); True if others remain.

    Its waiting requests are not tied to it: every gate skips it from now on, so they
    go to the other keys.
    """
    if index not in p.refused:
        key = p.keys[index]
        body = error.body
        err = body.get("error") if isinstance(body, Mapping) else None
        detail = err.get("message") if isinstance(err, Mapping) else None
        kind = err.get("type") if isinstance(err, Mapping) else None
        reason = f"{error.status_code} {kind or type(error).__name__}" + (
            f" ({detail})" if detail else ""
        )
        p.refused[index] = reason
        p.stats.keys_disabled += 1
        left = len(p.keys) - len(p.refused)
        log.error(
            "API key %r was refused (%s): disabled for good; %s",
            key.name,
            reason,
            f"its requests go to the {left} other key(s)"
            if left
            else "no key is left, every request fails with NoKeysLeft",
        )
        for mc in list(p.classes.values()):
            mc.gate.disable(index, lambda: _no_keys_left(p))
    return len(p.refused) < len(p.keys)


def _no_keys_left(p: Pipeline) -> NoKeysLeft:
    reasons = {p.keys[i].name: why for i, why in sorted(p.refused.items())}
    listed = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    return NoKeysLeft(
        f"every API key of this client was refused by the API and disabled ({listed}): "
        "nothing was sent. Fix the key(s) (ANTHROPIC_API_KEY or keys=[KeyConfig(...)]) "
        "or their permissions, and create a new client",
        reasons=reasons,
    )

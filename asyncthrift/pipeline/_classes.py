"""The model-class registry of one client (`ModelClasses`): which gate and budgets a model
id queues on.

Kept apart from `_pipeline` because it is the client's *state* (classes built lazily, one
per family, their budgets local or in Redis, keys the API refused and disabled), while the
pipeline is the *path* a call takes. It is given only what it builds from: the keys, the
queue counter, the aging, the shared store and the counters (`keys_disabled`).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Mapping
from typing import Final

import anthropic

from ..core.prices import PRICES
from ..core.stats import Recorder
from ..core.tokens import Calibrator
from ..errors import NoKeysLeft, UnknownModel
from ..scheduling.budget import LocalBudget
from ..scheduling.lanes import QueueCounter
from ..scheduling.limits import MODEL_CLASSES, Limits
from ..scheduling.limits import model_class as family
from ..scheduling.scheduler import Gate
from ..stores.shared import SharedStore
from ._attempt import ModelClass
from ._keys import Key

__all__ = [
    "COUNT_TOKENS_CLASS",
    "UNKNOWN_CLASS",
    "ModelClasses",
    "UnknownModel",
    "close_model",
]

log = logging.getLogger("asyncthrift")

COUNT_TOKENS_CLASS: Final = "count_tokens"
"""The name of the count_tokens gate and the suffix of its budgets (``key0/count_tokens``)."""

UNKNOWN_CLASS: Final = "unknown"
"""The one class every model id of no known family shares (unless `limits=` names the id)."""


class ModelClasses:
    """The classes of one client, built on first use: per class, a gate over every key's
    budget (local, or in Redis with ``shared=``) and an input calibrator; the count_tokens
    class and its limits; the keys the API refused, disabled in every gate."""

    __slots__ = (
        "_by_model",
        "_loop",
        "_unknown_warned",
        "aging",
        "classes",
        "count_limits",
        "keys",
        "queue",
        "refused",
        "shared",
        "stats",
    )

    def __init__(
        self,
        keys: list[Key],
        *,
        queue: QueueCounter,
        aging: float,
        stats: Recorder,
        shared: SharedStore | None = None,
    ) -> None:
        self.keys = keys
        self.queue = queue
        self.aging = aging
        self.stats = stats
        self.shared = shared  # Thrift(shared=...): budgets in Redis
        self.classes: dict[str, ModelClass] = {}
        self._by_model: dict[str, ModelClass] = {}  # model id -> its class, memoised
        self._unknown_warned = False
        self.count_limits: Limits | None = None
        self.refused: dict[int, str] = {}  # keys the API refused (401/403): index -> why
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def for_model(self, model: str) -> ModelClass:
        """The class `model` queues in; every id of no known family shares one."""
        mc = self._by_model.get(model)
        if mc is not None:
            return mc
        name = family(model)
        if name not in MODEL_CLASSES and not any(k.limits.names(model) for k in self.keys):
            self._unknown(model)
            name = UNKNOWN_CLASS
        mc = self.classes.get(name)
        if mc is None:
            budgets = []
            now = self.loop.time()
            by_budget: dict[str, LocalBudget] = {}  # keys naming one budget share it
            for key in self.keys:
                label, limits = key.limits.for_model(model)
                label = name if name == UNKNOWN_CLASS else label
                budget = by_budget.get(key.budget)
                if budget is None:
                    budget = by_budget[key.budget] = self._budget(key, label, limits, now)
                elif isinstance(budget, LocalBudget):
                    budget.lifts = False  # several keys' readings: see `LocalBudget.lifts`
                budgets.append(budget)
            mc = self.classes[name] = self._make_class(name, budgets, Calibrator())
            if self.shared is not None:
                self.shared.attach(mc.gate, budgets)
        if len(self._by_model) >= 1024:  # model ids come from callers: stay bounded
            self._by_model.clear()
        self._by_model[model] = mc
        return mc

    def count_class(self) -> ModelClass:
        """The count_tokens gate: one request budget per key, its own queue."""
        mc = self.classes.get(COUNT_TOKENS_CLASS)
        if mc is None:
            now = self.loop.time()
            limits = self.count_limits or Limits()
            by_budget: dict[str, LocalBudget] = {}
            budgets = [
                by_budget.get(key.budget)
                or by_budget.setdefault(
                    key.budget,
                    LocalBudget(limits, now, name=f"{key.budget}/{COUNT_TOKENS_CLASS}"),
                )
                for key in self.keys
            ]
            mc = self.classes[COUNT_TOKENS_CLASS] = self._make_class(
                COUNT_TOKENS_CLASS, budgets, None
            )
        return mc

    def set_count_limits(self, rpm: float | None, period: float) -> None:
        """The count_tokens budget's limits, before its class is built."""
        if COUNT_TOKENS_CLASS in self.classes:
            raise RuntimeError(
                "set_count_tokens_limit() must be called before the first count_tokens"
            )
        self.count_limits = Limits(rpm=rpm, period=period)

    def refuse(self, index: int, error: anthropic.APIStatusError) -> bool:
        """Disable key `index` for good after a 401/403 (logged once); True if others remain.

        Its waiting requests are not tied to it: every gate skips it from now on, so they
        go to the other keys.
        """
        if index not in self.refused:
            key = self.keys[index]
            body = error.body
            err = body.get("error") if isinstance(body, Mapping) else None
            detail = err.get("message") if isinstance(err, Mapping) else None
            kind = err.get("type") if isinstance(err, Mapping) else None
            reason = f"{error.status_code} {kind or type(error).__name__}" + (
                f" ({detail})" if detail else ""
            )
            self.refused[index] = reason
            self.stats.keys_disabled += 1
            left = len(self.keys) - len(self.refused)
            log.error(
                "API key %r was refused (%s): disabled for good; %s",
                key.name,
                reason,
                f"its requests go to the {left} other key(s)"
                if left
                else "no key is left, every request fails with NoKeysLeft",
            )
            for mc in list(self.classes.values()):
                mc.gate.disable(index, self._no_keys_left)
        return len(self.refused) < len(self.keys)

    def gates(self) -> list[Gate]:
        """Every class's gate built so far."""
        return [mc.gate for mc in list(self.classes.values())]

    def close(self) -> None:
        """Close every gate: what waits fails with `ClientClosed`, deferred refunds drop."""
        for gate in self.gates():
            gate.close()

    def budgets(self) -> dict[str, list[LocalBudget]]:
        """Per class, its distinct budgets (keys sharing a budget list it once)."""
        return {
            name: list({id(b): b for b in mc.budgets}.values())
            for name, mc in list(self.classes.items())
        }

    def _budget(self, key: Key, label: str, limits: Limits, now: float) -> LocalBudget:
        """The budget `key` draws on for `label`: in Redis with ``shared=``, else here.

        In Redis a key's budget is named by a keyed hash of its API key, or by the
        ``KeyConfig(budget=...)`` it names, so every process of one organisation meets there.
        """
        name = f"{key.budget}/{label}"
        if self.shared is None:
            return LocalBudget(limits, now, name=name, cold_start=True)
        identity = key.sdk.api_key if key.budget == key.name else f"budget:{key.budget}"
        return self.shared.budget(identity or key.name, label, limits, now, name)

    def _unknown(self, model: str) -> None:
        """A model id of no known family: an error for a ``claude-*`` typo that would run
        unlimited under configured limits; otherwise one warning per client."""
        guess = close_model(model)
        hint = f" (did you mean {guess!r}?)" if guess else ""
        configured = any(k.limits.configured and not k.limits.has_default for k in self.keys)
        if configured and model.lower().startswith("claude"):
            raise UnknownModel(
                f"unknown model {model!r}{hint}: it names no model class (opus, sonnet, "
                "haiku) and no configured limit covers it, so it would run unlimited. Fix "
                "the id, or pass limits={..., " + repr(model) + ": Limits(...)} or a '*' entry"
            )
        if not self._unknown_warned:
            self._unknown_warned = True
            log.warning(
                "model %r names no known model class%s: it and every other unknown model id "
                "share the class %r",
                model,
                hint,
                UNKNOWN_CLASS,
            )

    def _make_class(
        self, name: str, budgets: list[LocalBudget], calibrator: Calibrator | None
    ) -> ModelClass:
        gate = Gate(budgets, aging=self.aging, counter=self.queue, name=name, loop=self.loop)
        for index in self.refused:
            gate.disable(index, self._no_keys_left)
        return ModelClass(name, budgets, gate, calibrator)

    def disabled(self) -> dict[str, str]:
        """The keys refused and disabled, by name: what the API said of each."""
        return {self.keys[i].name: why for i, why in sorted(self.refused.items())}

    def _no_keys_left(self) -> NoKeysLeft:
        reasons = self.disabled()
        listed = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        return NoKeysLeft(
            f"every API key of this client was refused by the API and disabled ({listed}): "
            "nothing was sent. Fix the key(s) (ANTHROPIC_API_KEY or keys=[KeyConfig(...)]) "
            "or their permissions, and create a new client",
            reasons=reasons,
        )


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

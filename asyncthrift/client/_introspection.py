"""What a client tells about itself: counters, budgets, model classes, keys, stores.

Why a module of its own: `Thrift` (`thrift`) is the SDK's client with its calls scheduled;
these read-only views are for the people and tools around it (metrics, dashboards,
debugging, tests), and read the client's pipeline without changing it. `Thrift` extends
`Introspection`, so they stay ``client.stats()``, ``client.budgets()`` and the rest.
"""

from __future__ import annotations

from ..core.stats import Stats
from ..pipeline._attempt import ModelClass
from ..savings.batches import stats_overrides
from ..savings.compression import compression_overrides
from ..savings.packing import Packer
from ..scheduling.budget import LocalBudget
from ..stores.shared import SharedStore
from ..stores.spend import SpendLedger
from ._pipeline import Pipeline

__all__ = ["Introspection"]


class Introspection:
    """The read-only side of `Thrift` (its base class)."""

    _pipeline: Pipeline

    def stats(self) -> Stats:
        """A frozen snapshot of counters and recent latency percentiles."""
        p = self._pipeline
        r = p.stats
        extra: dict[str, int | float] = {}
        if p.answers.cache is not None:
            cs = p.answers.cache.stats
            extra = {"cache_errors": r.cache_errors + cs.errors + cs.timeouts}
        extra.update(stats_overrides(p.batches, r.cost_usd))
        extra.update(compression_overrides(p.compressor))
        return r.snapshot(queued=p.queue.waiting, **extra)

    def budgets(self) -> dict[str, list[LocalBudget]]:
        """The live budgets per model class (one per key), for metrics and debugging.

        Read them with ``peek(client.now())``, which never changes them.
        """
        return self._pipeline.models.budgets()

    def now(self) -> float:
        """The client's clock (its event loop's time): the `now` its budgets take."""
        return self._pipeline.loop.time()

    def model_class(self, model: str) -> ModelClass:
        """The class `model` queues in (built on first use): its ``gate``, ``budgets`` and
        input ``calibrator``, for metrics, debugging and tests (as `budgets`)."""
        return self._pipeline.models.for_model(model)

    @property
    def shared(self) -> SharedStore | None:
        """The Redis store of ``shared=`` (None without): its ``stats()`` count the
        commands the shared budgets sent."""
        return self._pipeline.shared

    @property
    def spend(self) -> SpendLedger | None:
        """The spend cap's ledger (None without ``spend_cap_usd=``): ``spent``, ``held``."""
        return self._pipeline.spend

    def disabled_keys(self) -> dict[str, str]:
        """The keys the API refused (401/403), disabled for good, by name: what it said
        (`NoKeysLeft.reasons` once none is left)."""
        return self._pipeline.models.disabled()

    def model_classes(self) -> dict[str, ModelClass]:
        """Every model class built so far, by name (``count_tokens``'s too)."""
        return dict(self._pipeline.models.classes)

    @property
    def packer(self) -> Packer | None:
        """The `Packer` of ``pack=`` (None until packing is first used, by ``pack=True`` on
        the client or on a request): its ``config`` (`asyncthrift.packing.Pack`) and
        ``open_windows``, the windows waiting for more requests now."""
        return self._pipeline.packer

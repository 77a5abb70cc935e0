"""`Thrift`, the facade: the SDK's client, its Messages calls scheduled, shared, cached, retried.

`Thrift` validates its configuration, builds one SDK client per key and the request pipeline
(`asyncthrift._pipeline`) that every call goes through, and exposes what a user of
`anthropic.AsyncAnthropic` expects: ``messages`` (typed as the SDK's, see `_messages`),
``beta`` (``beta.messages`` scheduled too, see `_beta`), ``with_raw_response`` and
``with_streaming_response``, ``with_options(...)``/``copy(...)``, ``close()``/``aclose()``,
``is_closed()``, ``base_url``, ``max_retries``, ``timeout``, and the resources asyncthrift
does not schedule (``models``, ``files``) passed straight to the SDK client.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anthropic
from anthropic.types import Message, MessageTokensCount
from anthropic.types.beta import BetaMessage, BetaMessageTokensCount

from ._attempt import ModelClass
from ._beta import Beta, BetaMessages, View
from ._keys import Key, KeyConfig, budget_limits, want_aiohttp, with_header_hook
from ._messages import Messages, RawMessages, StreamingMessages
from ._observers import Observer, Observers
from ._pipeline import Pipeline
from ._sdk import Passthrough
from .batches import Batches, stats_overrides
from .budget import LocalBudget
from .cache import Cache, make_cache
from .cache.keys import scope_for_key
from .compression import Compressor, compression_overrides
from .errors import InvalidArgument
from .lanes import QueueCounter
from .limits import LimitsSpec, LimitsTable
from .packing import Pack, pack_option
from .prompt_cache import AutoCache
from .retry import RetryPolicy
from .shared import SharedStore, make_shared
from .spend import SpendCap, SpendLedger, SpendPeriod, check_period
from .spend_redis import RedisSpendLedger
from .stats import Stats

if TYPE_CHECKING:
    from collections.abc import Iterable

    import httpx2
    from anthropic.resources import AsyncFiles, AsyncModels

__all__ = ["ClientView", "KeyConfig", "Messages", "Thrift"]


class Thrift:
    """An asyncio Anthropic client that schedules every call under its key's limits.

    ``async with Thrift(limits="tier2") as client: await client.messages.create(...)``.
    See the README for every option; all are validated here, before anything starts.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        limits: LimitsSpec = None,
        base_url: str | None = None,
        cache: Cache | str | None = None,
        dedupe: bool = True,
        keys: Sequence[KeyConfig] | None = None,
        max_retries: int = 5,
        max_queue: int | None = None,
        aging: float = 60.0,
        timeout: float | None = None,
        cache_scope: str = "key",
        cache_ttl: float | None = 3600.0,
        cache_truncated: bool = False,
        http: str = "auto",
        spend_cap_usd: float | None = None,
        spend_period: SpendPeriod | None = None,
        sdk_options: Mapping[str, Any] | None = None,
        observers: Sequence[Observer] | None = None,
        fallback: Mapping[str, Sequence[str]] | None = None,
        shared: str | SharedStore | None = None,
        shared_fallback: float | str | None = None,
        pack: bool | Pack | None = None,
        auto_cache_control: bool = False,
        task: str | None = None,
    ) -> None:
        if not isinstance(dedupe, bool):
            raise TypeError(f"dedupe= must be True or False, got {dedupe!r}")
        if cache_scope not in ("key", "global"):
            raise InvalidArgument(f"cache_scope= must be 'key' or 'global', got {cache_scope!r}")
        if (
            isinstance(aging, bool)
            or not isinstance(aging, int | float)
            or not math.isfinite(aging)
            or aging < 0
        ):  # checked here, not first at the first call's gate
            raise InvalidArgument(f"aging= must be a finite number of seconds >= 0, got {aging!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise InvalidArgument(
                f"timeout= must be a positive number of seconds or None, got {timeout!r}"
            )
        fallback = _check_fallback(fallback)
        packing = pack_option(pack)
        if not isinstance(auto_cache_control, bool):
            raise TypeError(
                f"auto_cache_control= must be True or False, got {auto_cache_control!r}"
            )
        if task is not None and (not isinstance(task, str) or not task):
            raise TypeError(f"task= must be a non-empty string or None, got {task!r}")
        retry = RetryPolicy(max_retries=max_retries)
        queue = QueueCounter(max_queue)
        hub = Observers()
        base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        if keys is not None:
            if api_key is not None or limits is not None:
                raise InvalidArgument(
                    "pass either keys=[KeyConfig(...)] or api_key=/limits=, not both"
                )
            configs = list(keys)
            if not configs or not all(isinstance(k, KeyConfig) for k in configs):
                raise TypeError("keys= must be a non-empty list of KeyConfig")
        else:
            api_key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not api_key:
                raise InvalidArgument(
                    "no API key: pass api_key=, set ANTHROPIC_API_KEY, "
                    "or pass keys=[KeyConfig(...)]"
                )
            configs = [KeyConfig(api_key=api_key, limits=limits)]
        specs = budget_limits(configs)  # keys sharing a budget must agree on its limits
        the_cache = make_cache(cache)  # validated before any HTTP client exists
        the_shared = make_shared(shared, shared_fallback)
        # with shared=, the spend cap counts every process's spend in the same Redis
        spend = (
            make_spend_ledger(spend_cap_usd, spend_period)
            if the_shared is None
            else make_spend_ledger(
                spend_cap_usd, spend_period, the_shared.client, namespace=the_shared.namespace
            )
        )
        sdk_kwargs: dict[str, Any] = dict(sdk_options or {})
        sdk_kwargs["max_retries"] = 0  # retries are ours, through the scheduler
        if timeout is not None:
            sdk_kwargs["timeout"] = timeout
        user_http = sdk_kwargs.pop("http_client", None)
        use_aiohttp = user_http is None and want_aiohttp(http)
        built: list[Key] = []
        for i, (cfg, spec) in enumerate(zip(configs, specs, strict=True)):
            table = LimitsTable(spec)
            sdk_kwargs["http_client"] = with_header_hook(user_http, use_aiohttp)
            sdk = anthropic.AsyncAnthropic(
                api_key=cfg.api_key, base_url=cfg.base_url or base_url, **sdk_kwargs
            )
            scope = "" if cache_scope == "global" else scope_for_key(cfg.api_key)
            built.append(Key(cfg.name or f"key{i}", sdk, table, scope, cfg.budget))
        self._pipeline = Pipeline(
            built,
            cache=the_cache,
            cache_ttl=cache_ttl,
            cache_truncated=cache_truncated,
            dedupe=dedupe,
            retry=retry,
            spend=spend,
            queue=queue,
            aging=float(aging),
            observers=hub,
            fallback=fallback,
            pack=packing,
            auto_cache=AutoCache() if auto_cache_control else None,
            task=task,
            shared=the_shared,
        )
        self._root: Thrift = self
        self._sdks: Sequence[anthropic.AsyncAnthropic] = self._pipeline.sdks
        self._max_retries = max_retries
        self._facades()
        for observer in observers or ():
            self.add_observer(observer)

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Thrift:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, *, drain: bool | float = False, grace: float | None = 30.0) -> None:
        """Close the client: stop admitting, settle what is in flight, close the HTTP clients
        and the cache. Idempotent (a `with_options` copy closes the client it was made from,
        as the SDK's copies do; a second call returns at once).

        - New requests, from the moment this is called, raise `asyncthrift.errors.ClientClosed`
          at once (nothing is sent).
        - ``drain=False`` (the default): every request still waiting for rate-limit budget
          fails at once with `ClientClosed` (never sent, nothing spent), and the requests
          already sent are awaited, up to `grace` seconds, so their answers are not lost.
        - ``drain=True``: queued requests are still admitted and sent, as budget allows, and
          everything is awaited up to `grace` seconds (a number, ``drain=60``, drains with
          that grace instead). What still waits then fails with `ClientClosed`.
        - A request that fails once closing has started is not retried: it raises
          `ClientClosed`, chained to the failure.
        - After `grace` (None: no limit) the HTTP clients are closed regardless, so a request
          still in flight then fails (`ClientClosed`; a stream reading its body ends with an
          error).
        """
        p = self._pipeline
        if p.closed:
            return
        if isinstance(drain, bool):
            draining = drain
        elif isinstance(drain, int | float) and drain >= 0:
            draining, grace = True, float(drain)
        else:
            raise InvalidArgument(f"drain= must be True, False or seconds >= 0, got {drain!r}")
        if grace is not None and (
            isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0
        ):
            raise InvalidArgument(f"grace= must be seconds >= 0 or None, got {grace!r}")
        await p.aclose(draining=draining, grace=grace)

    async def close(self, *, drain: bool | float = False, grace: float | None = 30.0) -> None:
        """`aclose()`, under the SDK's name for it (same options)."""
        await self.aclose(drain=drain, grace=grace)

    def _facades(self) -> None:
        """``messages`` and ``beta`` over this view's SDK clients and retry bound."""
        self.messages = Messages(self._pipeline, self._sdks, self._max_retries)
        pipeline = self._pipeline
        sdk = self._sdks[0]
        retries = self._max_retries
        beta_messages = BetaMessages(
            self._pipeline,
            self._sdks,
            retries,
            lambda: pipeline.batches_for(sdk, retries).beta_view(),
        )
        self.beta = Beta(beta_messages, sdk.beta)

    def with_options(self, *, max_retries: int | None = None, **options: Any) -> Thrift:
        """A client sharing this one's keys, budgets, queues, cache and counters, whose calls
        use other SDK options (``timeout=``, ``default_headers=``, ``default_query=``, ...;
        see `anthropic.AsyncAnthropic.with_options`) or another ``max_retries``.

        Options that would change whose quota is spent or where (``api_key``,
        ``auth_token``, ``base_url``, ``http_client``, ...) are refused: a copy shares this
        client's budgets, which belong to its keys. Make another `Thrift` for another key.
        """
        foreign = sorted(set(options) - _COPY_OPTIONS)
        if foreign:
            raise InvalidArgument(
                f"with_options()/copy() cannot change {', '.join(foreign)}: a copy shares "
                "this client's keys and budgets; create another Thrift(...) for another key "
                f"or endpoint (allowed: max_retries, {', '.join(sorted(_COPY_OPTIONS))})"
            )
        view = object.__new__(Thrift)
        view._pipeline = self._pipeline
        view._root = self._root
        view._sdks = [sdk.with_options(**options) for sdk in self._sdks] if options else self._sdks
        view._max_retries = (
            self._max_retries
            if max_retries is None
            else RetryPolicy(max_retries=max_retries).max_retries
        )
        view._facades()
        return view

    def copy(self, *, max_retries: int | None = None, **options: Any) -> Thrift:
        """`with_options`, under the SDK's other name for it."""
        return self.with_options(max_retries=max_retries, **options)

    def is_closed(self) -> bool:
        """Whether ``close()``/``aclose()`` has started (on this client or any copy)."""
        return self._pipeline.closed

    @property
    def base_url(self) -> httpx2.URL:
        """The endpoint of the first key's SDK client (as `AsyncAnthropic.base_url`)."""
        return self._sdks[0].base_url

    @property
    def max_retries(self) -> int:
        """How many times a failed call is retried through the scheduler (the SDK clients
        underneath are built with ``max_retries=0``: retries are asyncthrift's)."""
        return self._max_retries

    @property
    def timeout(self) -> float | httpx2.Timeout | None:
        """The SDK clients' request timeout (as `AsyncAnthropic.timeout`)."""
        timeout: float | httpx2.Timeout | None = self._sdks[0].timeout
        return timeout

    @property
    def with_raw_response(
        self,
    ) -> ClientView[
        RawMessages[Message, MessageTokensCount],
        View[RawMessages[BetaMessage, BetaMessageTokensCount]],
    ]:
        """As `AsyncAnthropic.with_raw_response`: ``messages`` and ``beta.messages`` answer
        the SDK's raw responses and go through the scheduler; other resources are the SDK's."""
        return ClientView(
            self.messages.with_raw_response,
            self.beta.with_raw_response,
            self._sdks[0].with_raw_response,
        )

    @property
    def with_streaming_response(
        self,
    ) -> ClientView[
        StreamingMessages[Message, MessageTokensCount],
        View[StreamingMessages[BetaMessage, BetaMessageTokensCount]],
    ]:
        """As `AsyncAnthropic.with_streaming_response`, ``messages`` and ``beta.messages``
        scheduled; other resources are the SDK's."""
        return ClientView(
            self.messages.with_streaming_response,
            self.beta.with_streaming_response,
            self._sdks[0].with_streaming_response,
        )

    def __repr__(self) -> str:
        p = self._pipeline
        names = ", ".join(k.name for k in p.keys)
        the_cache = p.answers.cache
        cache = type(the_cache).__name__ if the_cache is not None else None
        return f"Thrift(keys=[{names}], cache={cache})"

    # -- the SDK's resources asyncthrift does not schedule ------------------------------------

    @property
    def models(self) -> AsyncModels:
        """The SDK's ``models`` resource (first key), unscheduled."""
        return self._sdks[0].models

    @property
    def files(self) -> AsyncFiles:
        """The SDK's ``files`` resource (first key), unscheduled."""
        return self._sdks[0].files

    @property
    def batches(self) -> Batches:
        """The Message Batches API on its own request budget (`asyncthrift.batches`)."""
        return self._pipeline.batches_for(self._sdks[0], self._max_retries)

    async def pack(self, requests: Iterable[Mapping[str, Any]]) -> list[Message]:
        """Answers to a list of ``messages.create`` argument dicts, packed where they can be
        (each sent with ``pack=True``; see `asyncthrift.packing`), in the same order. Each
        answer is that request's own, exactly as ``messages.create`` would return it; the
        first failure is raised once every request has ended."""
        batch = [dict(r) for r in requests]
        for r in batch:
            r.setdefault("pack", True)
        results = await asyncio.gather(
            *(self.messages.create(**r) for r in batch), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [m for m in results if isinstance(m, Message)]

    # -- observers and introspection -----------------------------------------------------------

    def add_observer(self, observer: Observer, *, name: str | None = None) -> None:
        """Call `observer`'s hooks for every call from now on; `name` sets the ``client``
        label the observers see (default ``"default"``)."""
        hub = self._pipeline.observers
        if name is not None:
            hub.name = name
        observer.attached(self._root, hub.name)
        hub.add(observer)

    def remove_observer(self, observer: Observer) -> None:
        """Stop calling `observer`'s hooks."""
        hub = self._pipeline.observers
        if observer in hub.items:
            hub.remove(observer)
            observer.detached(self._root)

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
        return r.snapshot(queued=p.models.queued(), **extra)

    def budgets(self) -> dict[str, list[LocalBudget]]:
        """The live budgets per model class (one per key), for metrics and debugging.

        Read them with ``peek(client.now())``, which never changes them.
        """
        return self._pipeline.models.budgets()

    def now(self) -> float:
        """The client's clock (its event loop's time): the `now` its budgets take."""
        return self._pipeline.loop.time()

    @property
    def compressor(self) -> Compressor | None:
        """The `Compressor` the history of every ``messages.create``/``stream`` call goes
        through (None: off), shared by every `with_options` copy; set it, or call
        `asyncthrift.compression.enable_compression`."""
        return self._pipeline.compressor

    @compressor.setter
    def compressor(self, compressor: Compressor | None) -> None:
        self._pipeline.compressor = compressor

    def set_count_tokens_limit(self, rpm: float | None, *, period: float = 60.0) -> None:
        """Limit ``count_tokens`` calls to `rpm` per key (None: learn it from headers), before
        the first one (see `asyncthrift.counting.set_count_tokens_limit`)."""
        self._pipeline.models.set_count_limits(rpm, period)

    def model_class(self, model: str) -> ModelClass:
        """The class `model` queues in (built on first use): its ``gate``, ``budgets`` and
        input ``calibrator``, for metrics, debugging and tests (as `budgets`)."""
        return self._pipeline.models.for_model(model)

    def disabled_keys(self) -> dict[str, str]:
        """The keys the API refused (401/403), disabled for good, by name: what it said."""
        return self._pipeline.models.disabled()

    def model_classes(self) -> dict[str, ModelClass]:
        """Every model class built so far, by name (``count_tokens``'s too)."""
        return dict(self._pipeline.models.classes)


#: What `Thrift.with_options`/`copy` may change: how calls are made, not whose quota pays.
_COPY_OPTIONS: Final = frozenset(
    {
        "timeout",
        "default_headers",
        "set_default_headers",
        "default_query",
        "set_default_query",
    }
)

_MessagesT = TypeVar("_MessagesT")
_BetaT = TypeVar("_BetaT")


class ClientView(Passthrough, Generic[_MessagesT, _BetaT]):
    """``client.with_raw_response`` / ``client.with_streaming_response``: ``messages`` and
    ``beta`` scheduled; every other attribute is the SDK's view (first key), unscheduled."""

    __slots__ = ("beta", "messages")

    def __init__(self, messages: _MessagesT, beta: _BetaT, sdk: object) -> None:
        super().__init__(sdk)
        self.messages = messages
        self.beta = beta


def _check_fallback(fallback: object) -> dict[str, tuple[str, ...]] | None:
    """``fallback={model: [models...]}`` validated: model ids, no model its own fallback."""
    if fallback is None:
        return None
    if not isinstance(fallback, Mapping):
        raise TypeError(
            "fallback= must map a model id to a list of fallback model ids, e.g. "
            '{"claude-opus-4-1": ["claude-sonnet-4-6", "claude-haiku-4-5"]}'
        )
    out: dict[str, tuple[str, ...]] = {}
    for model, chain in fallback.items():
        if not isinstance(model, str) or not model:
            raise TypeError(f"fallback= keys must be model ids, got {model!r}")
        if isinstance(chain, str) or not isinstance(chain, Sequence):
            raise TypeError(f"fallback[{model!r}] must be a list of model ids, got {chain!r}")
        models = tuple(chain)
        if not models or not all(isinstance(m, str) and m for m in models):
            raise InvalidArgument(f"fallback[{model!r}] must be a non-empty list of model ids")
        if model in models or len(set(models)) != len(models):
            raise InvalidArgument(
                f"fallback[{model!r}] = {list(models)!r} repeats a model: each model may "
                "appear once in its chain, and never as its own fallback"
            )
        out[model] = models
    return out


def make_spend_ledger(
    limit_usd: float | None,
    period: SpendPeriod | None = None,
    shared: object = None,
    *,
    namespace: str = "asyncthrift",
) -> SpendLedger | None:
    """The ledger for ``Thrift(spend_cap_usd=, spend_period=, shared=)``: None without a cap;
    a Redis ledger when `shared` is a ``redis://`` URL or a redis client, counting every
    process that shares it; otherwise this process's own `SpendCap`."""
    if limit_usd is None:
        if period is not None:
            check_period(period)
            raise InvalidArgument(
                "spend_period= needs spend_cap_usd= (the cap to count per period)"
            )
        return None
    if shared is None:
        return SpendCap(limit_usd, period=period)
    return RedisSpendLedger(shared, limit_usd, period=period, namespace=namespace)

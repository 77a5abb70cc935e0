"""`Thrift`, the facade: the SDK's client, its Messages calls scheduled, shared, cached, retried.

`Thrift` validates its configuration (`_config`), builds one SDK client per key and the
request pipeline (`_pipeline`) that every call goes through (`_assemble`), and exposes what
a user of `anthropic.AsyncAnthropic` expects: ``messages`` (typed as the SDK's, see
`_messages`), ``beta`` (``beta.messages`` scheduled too, see `_beta`), ``with_raw_response``
and ``with_streaming_response``, ``with_options(...)``/``copy(...)``,
``close()``/``aclose()``, ``is_closed()``, ``base_url``, ``max_retries``, ``timeout``, and
the resources asyncthrift does not schedule (``models``, ``files``) passed straight to the
SDK client. What it tells
about itself (``stats()``, ``budgets()``, ``model_classes()``, ...) is its base class,
`_introspection.Introspection`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anthropic
from anthropic.types import Message, MessageTokensCount
from anthropic.types.beta import BetaMessage, BetaMessageTokensCount

from ..errors import InvalidArgument
from ..pipeline._keys import KeyConfig
from ..pipeline.retry import RetryPolicy
from ..savings.batches import Batches
from ..savings.compression import Compressor
from ..savings.packing import Pack
from ..scheduling.limits import LimitsSpec
from ..stores.cache import Cache
from ..stores.shared import SharedStore
from ..stores.spend import SpendPeriod
from ._assemble import assemble
from ._beta import BetaMessages
from ._config import ThriftConfig
from ._introspection import Introspection
from ._messages import Messages
from ._observers import Observer
from ._raw_responses import RawMessages, StreamingMessages
from ._views import Beta, ClientView, View

if TYPE_CHECKING:
    from collections.abc import Iterable

    import httpx2
    from anthropic.resources import AsyncFiles, AsyncModels

__all__ = ["ClientView", "KeyConfig", "Messages", "Thrift"]


class Thrift(Introspection):
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
        config = ThriftConfig.check(
            api_key,
            limits=limits,
            base_url=base_url,
            cache=cache,
            dedupe=dedupe,
            keys=keys,
            max_retries=max_retries,
            max_queue=max_queue,
            aging=aging,
            timeout=timeout,
            cache_scope=cache_scope,
            cache_ttl=cache_ttl,
            cache_truncated=cache_truncated,
            http=http,
            spend_cap_usd=spend_cap_usd,
            spend_period=spend_period,
            sdk_options=sdk_options,
            fallback=fallback,
            shared=shared,
            shared_fallback=shared_fallback,
            pack=pack,
            auto_cache_control=auto_cache_control,
            task=task,
        )
        self._pipeline = assemble(config)
        self._root: Thrift = self
        self._sdks: Sequence[anthropic.AsyncAnthropic] = self._pipeline.sdks
        self._max_retries = config.retry.max_retries
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
        """The Message Batches API on its own request budget (`asyncthrift.savings.batches`)."""
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

    # -- observers ---------------------------------------------------------------------------

    def add_observer(self, observer: Observer, *, name: str | None = None) -> None:
        """Call `observer`'s hooks for every call from now on; `name` sets the ``client``
        label the observers see (default ``"default"``)."""
        hub = self._pipeline.observers
        if name is not None:
            hub.name = name
        observer.attached(self._root, hub.name)
        if not isinstance(observer, Observer):
            raise TypeError(f"observers must be asyncthrift Observer instances, got {observer!r}")
        hub.add(observer)

    def remove_observer(self, observer: Observer) -> None:
        """Stop calling `observer`'s hooks."""
        hub = self._pipeline.observers
        if observer in hub.items:
            hub.remove(observer)
            observer.detached(self._root)

    # -- settings shared by every copy ----------------------------------------------------------

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

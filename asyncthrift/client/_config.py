"""`ThriftConfig`: `Thrift`'s options, checked once, in the order they are documented.

`Thrift(...)` keeps its keyword signature (what a user of `anthropic.AsyncAnthropic` expects);
its body is `ThriftConfig.check(...)` and then building from the checked, frozen result, so
a bad option raises its typed error before any HTTP client, Redis connection or task
exists, and no later step re-reads a raw argument. The cache, the shared store and the
spend ledger are resolved here too: their specs (``"redis://..."``, ``"memory"``) are
options, and resolving them is how they are checked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from ..pipeline._keys import KeyConfig, budget_limits, want_aiohttp
from ..pipeline.retry import RetryPolicy
from ..savings._pack_config import Pack, pack_option
from ..scheduling.lanes import QueueCounter
from ..scheduling.limits import LimitsSpec
from ..stores.cache import Cache, make_cache
from ..stores.shared import SharedStore, make_shared
from ..stores.spend import SpendCap, SpendLedger, SpendPeriod, check_period
from ..stores.spend_redis import RedisSpendLedger

__all__ = ["ThriftConfig", "check_fallback", "make_spend_ledger"]


@dataclass(frozen=True, slots=True)
class ThriftConfig:
    """`Thrift`'s options once checked: each as the client uses it (see `Thrift`)."""

    keys: tuple[KeyConfig, ...]
    limits: tuple[LimitsSpec, ...]  # per key, keys sharing a budget agreeing (`budget_limits`)
    base_url: str | None
    cache: Cache | None
    cache_scope: str
    cache_ttl: float | None
    cache_truncated: bool
    dedupe: bool
    retry: RetryPolicy
    queue: QueueCounter
    aging: float
    timeout: float | None
    use_aiohttp: bool
    http_client: Any  # the user's own (``sdk_options={"http_client": ...}``), or None
    sdk_options: Mapping[str, Any]  # for every SDK client, ``http_client`` taken out
    spend: SpendLedger | None
    shared: SharedStore | None
    fallback: dict[str, tuple[str, ...]] | None
    pack: Pack | None
    auto_cache_control: bool
    task: str | None

    @classmethod
    def check(
        cls,
        api_key: str | None,
        *,
        limits: LimitsSpec,
        base_url: str | None,
        cache: Cache | str | None,
        dedupe: bool,
        keys: Sequence[KeyConfig] | None,
        max_retries: int,
        max_queue: int | None,
        aging: float,
        timeout: float | None,
        cache_scope: str,
        cache_ttl: float | None,
        cache_truncated: bool,
        http: str,
        spend_cap_usd: float | None,
        spend_period: SpendPeriod | None,
        sdk_options: Mapping[str, Any] | None,
        fallback: Mapping[str, Sequence[str]] | None,
        shared: str | SharedStore | None,
        shared_fallback: float | str | None,
        pack: bool | Pack | None,
        auto_cache_control: bool,
        task: str | None,
    ) -> ThriftConfig:
        """Every option checked (a typed error naming it and what to pass instead), in the
        order `Thrift` always checked them; then the cache, shared store and spend ledger
        resolved from theirs."""
        _check_scalars(dedupe, cache_scope, aging, timeout)
        the_fallback = check_fallback(fallback)
        packing = pack_option(pack)
        _check_flags(auto_cache_control, task)
        retry = RetryPolicy(max_retries=max_retries)
        queue = QueueCounter(max_queue)
        base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        configs = _key_configs(api_key, limits, keys)
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
        options: dict[str, Any] = dict(sdk_options or {})
        user_http = options.pop("http_client", None)
        return cls(
            keys=tuple(configs),
            limits=tuple(specs),
            base_url=base_url,
            cache=the_cache,
            cache_scope=cache_scope,
            cache_ttl=cache_ttl,
            cache_truncated=cache_truncated,
            dedupe=dedupe,
            retry=retry,
            queue=queue,
            aging=float(aging),
            timeout=timeout,
            use_aiohttp=user_http is None and want_aiohttp(http),
            http_client=user_http,
            sdk_options=options,
            spend=spend,
            shared=the_shared,
            fallback=the_fallback,
            pack=packing,
            auto_cache_control=auto_cache_control,
            task=task,
        )

    def sdk_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of every SDK client but its key, endpoint and HTTP client."""
        kwargs = dict(self.sdk_options)
        kwargs["max_retries"] = 0  # retries are ours, through the scheduler
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs


def _check_scalars(dedupe: object, cache_scope: object, aging: object, timeout: object) -> None:
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


def _check_flags(auto_cache_control: object, task: object) -> None:
    if not isinstance(auto_cache_control, bool):
        raise TypeError(f"auto_cache_control= must be True or False, got {auto_cache_control!r}")
    if task is not None and (not isinstance(task, str) or not task):
        raise TypeError(f"task= must be a non-empty string or None, got {task!r}")


def _key_configs(
    api_key: str | None, limits: LimitsSpec, keys: Sequence[KeyConfig] | None
) -> list[KeyConfig]:
    """The keys: ``keys=[KeyConfig(...)]``, or one from ``api_key=`` (or the environment)."""
    if keys is not None:
        if api_key is not None or limits is not None:
            raise InvalidArgument("pass either keys=[KeyConfig(...)] or api_key=/limits=, not both")
        configs = list(keys)
        if not configs or not all(isinstance(k, KeyConfig) for k in configs):
            raise TypeError("keys= must be a non-empty list of KeyConfig")
        return configs
    api_key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not api_key:
        raise InvalidArgument(
            "no API key: pass api_key=, set ANTHROPIC_API_KEY, or pass keys=[KeyConfig(...)]"
        )
    return [KeyConfig(api_key=api_key, limits=limits)]


def check_fallback(fallback: object) -> dict[str, tuple[str, ...]] | None:
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

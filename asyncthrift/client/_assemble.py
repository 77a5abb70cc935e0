"""A new client's pipeline, assembled from its checked options (`_config.ThriftConfig`).

Why a module of its own: `ThriftConfig` checks options and `Pipeline` runs calls; between
them, this makes what each key needs once: its SDK client (with the hook that captures
rate-limit headers, on the HTTP stack chosen), its limits table and its cache scope. A
`with_options` copy shares the result and never comes here again.
"""

from __future__ import annotations

from ..core._sdk import QuickAnswers
from ..pipeline._departure import aiohttp_client, with_departures
from ..pipeline._dispatch import Observers
from ..pipeline._keys import Key, with_header_hook
from ..savings.prompt_cache import AutoCache
from ..scheduling.limits import LimitsTable
from ..stores.cache.keys import scope_for_key
from ._config import ThriftConfig
from ._pipeline import Pipeline

__all__ = ["assemble"]


def assemble(config: ThriftConfig) -> Pipeline:
    """The request pipeline of a new client: one SDK client per key (each with the
    header-capturing hook), its model classes, cache, counters and features."""
    sdk_kwargs = config.sdk_kwargs()
    built: list[Key] = []
    for i, (cfg, spec) in enumerate(zip(config.keys, config.limits, strict=True)):
        table = LimitsTable(spec)
        http = config.http_client
        if http is None and config.use_aiohttp:
            http = aiohttp_client()  # the SDK's, telling when a body is written
        sdk_kwargs["http_client"] = with_departures(with_header_hook(http, config.use_aiohttp))
        sdk = QuickAnswers(
            api_key=cfg.api_key, base_url=cfg.base_url or config.base_url, **sdk_kwargs
        )
        scope = "" if config.cache_scope == "global" else scope_for_key(cfg.api_key)
        built.append(Key(cfg.name or f"key{i}", sdk, table, scope, cfg.budget))
    return Pipeline(
        built,
        cache=config.cache,
        cache_ttl=config.cache_ttl,
        cache_truncated=config.cache_truncated,
        dedupe=config.dedupe,
        retry=config.retry,
        spend=config.spend,
        queue=config.queue,
        aging=config.aging,
        observers=Observers(),
        fallback=config.fallback,
        pack=config.pack,
        auto_cache=AutoCache() if config.auto_cache_control else None,
        task=config.task,
        shared=config.shared,
    )

"""API keys: their configuration, their SDK clients, and the hook that reads each response.

Each key gets its own `anthropic.AsyncAnthropic` (its retries off: retries are the
pipeline's) over an HTTP client carrying one response hook. The hook is how the pipeline
sees every response's headers, for every kind of call: the SDK sends from the caller's
task, so a context variable pairs each response with the attempt that is waiting for it,
without the SDK's slower raw-response path (measured at 0.91x the throughput of plain
``create``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anthropic

from ..errors import InvalidArgument
from ..scheduling.limits import LimitsSpec, LimitsTable

__all__ = ["HEADERS", "Key", "KeyConfig", "budget_limits", "want_aiohttp", "with_header_hook"]


def want_aiohttp(http: str) -> bool:
    """Whether to give the SDK its aiohttp transport: "auto" does when aiohttp is installed.

    The SDK recommends it for high concurrency, and it is measured at about a third of the
    CPU per request of the default httpx2 transport (bench/RESULTS.md).
    """
    if http not in ("auto", "aiohttp", "httpx"):
        raise InvalidArgument(f"http= must be 'auto', 'aiohttp' or 'httpx', got {http!r}")
    if http == "httpx":
        return False
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        if http == "aiohttp":
            raise InvalidArgument(
                "http='aiohttp' needs aiohttp: pip install 'asyncthrift[fast]'"
            ) from None
        return False
    return True


#: Where the response hook leaves the headers of the attempt running in this task.
HEADERS: ContextVar[list[Mapping[str, str]] | None] = ContextVar(
    "asyncthrift_headers", default=None
)


async def _capture_headers(response: Any) -> None:
    box = HEADERS.get()
    if box is not None:
        box.append(response.headers)


def with_header_hook(http: Any, use_aiohttp: bool) -> Any:
    """The HTTP client for one SDK client, with the header-capturing response hook."""
    hooks = {"response": [_capture_headers]}
    if http is None:
        if use_aiohttp:
            return anthropic.DefaultAioHttpClient(event_hooks=hooks)
        return anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
    current = dict(http.event_hooks)
    if _capture_headers not in current.get("response", []):
        current["response"] = [*current.get("response", []), _capture_headers]
        http.event_hooks = current
    return http


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One API key of a pool, with its own limits (and optionally its own endpoint).

    A pool is for keys you are entitled to use: separate workspaces, organisations or cloud
    deployments, each with its own limits. The key never appears in `repr()`.

    `budget` names the rate-limit budget the key draws on: Anthropic's limits belong to an
    organisation (or a workspace that caps it), not to a key, so keys naming the same
    `budget` share one set of buckets (its limits count once), while different budgets add
    up. Default: the key's own budget. Keys naming one budget must not disagree on `limits`.
    """

    api_key: str = field(repr=False)
    limits: LimitsSpec = None
    base_url: str | None = None
    name: str | None = None
    budget: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key:
            raise InvalidArgument("KeyConfig.api_key must be a non-empty string")
        if self.budget is not None and (not isinstance(self.budget, str) or not self.budget):
            raise InvalidArgument(
                f"KeyConfig.budget must be a non-empty string, got {self.budget!r}"
            )

    def __repr__(self) -> str:
        key = "<redacted>" if self.api_key else "<none>"
        budget = "" if self.budget is None else f", budget={self.budget!r}"
        return f"KeyConfig(name={self.name!r}, api_key={key}, limits={self.limits!r}{budget})"


def budget_limits(configs: Sequence[KeyConfig]) -> list[LimitsSpec]:
    """Each key's limits, those of keys sharing a `budget` made one; raises on a conflict.

    A key of a shared budget that gives no limits takes those its budget-mates give.
    """
    named: dict[str, LimitsSpec] = {}
    for cfg in configs:
        if cfg.budget is None or cfg.limits is None:
            continue
        seen = named.setdefault(cfg.budget, cfg.limits)
        if seen != cfg.limits:
            raise InvalidArgument(
                f"keys of budget {cfg.budget!r} give different limits ({seen!r} and "
                f"{cfg.limits!r}): keys of one budget share its buckets, so give the "
                "limits once (on one key, or the same on each)"
            )
    return [
        cfg.limits if cfg.budget is None else named.get(cfg.budget, cfg.limits) for cfg in configs
    ]


class Key:
    """A configured key: its SDK client, limits table, cache scope and budget's name."""

    __slots__ = ("budget", "limits", "name", "scope", "sdk")

    def __init__(
        self,
        name: str,
        sdk: anthropic.AsyncAnthropic,
        limits: LimitsTable,
        scope: str,
        budget: str | None = None,
    ):
        self.name = name
        self.sdk = sdk
        self.limits = limits
        self.scope = scope
        self.budget = name if budget is None else budget

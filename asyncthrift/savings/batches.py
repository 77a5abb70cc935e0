"""`client.batches`: the Message Batches API, scheduled on its own request budget.

Batches cost half of the Messages price and have limits of their own (requests to the batch
endpoints per minute, requests in the processing queue), separate from the Messages
buckets; so every call here waits on a budget of its own (`BatchBudget`), never on the
Messages scheduler, and a 429 holds that budget for its ``retry-after``.

- `Batches.create` takes any number of requests and splits them into as many batches as the
  API's per-batch limits need (100,000 requests, 256 MB), returning one `MessageBatch` each;
- `retrieve`, `cancel`, `delete`, `list` are the SDK's, scheduled and retried;
- `results` streams a batch's results (the SDK's `MessageBatchIndividualResponse`) and counts
  their usage and cost at the batch price in ``client.stats()``;
- `wait` polls a batch with backoff until it has ended, and returns at once when it has.

Types are the SDK's own (`anthropic.types.messages`).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar, cast

import anthropic
import orjson
from anthropic.resources.messages import AsyncBatches
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from ..core.prices import usage_cost
from ..errors import InvalidArgument
from ..scheduling.bucket import TokenBucket

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_REQUESTS",
    "BatchBudget",
    "BatchStats",
    "Batches",
    "split_requests",
    "stats_overrides",
]

_T = TypeVar("_T")

#: The API's limits per batch.
MAX_BATCH_REQUESTS: Final = 100_000
MAX_BATCH_BYTES: Final = 256 * 1024 * 1024
#: Bytes kept free under `MAX_BATCH_BYTES` for the envelope and headers.
_ENVELOPE: Final = 64 * 1024

_RETRY_STATUSES: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


class BatchStats:
    """Counters of one client's batch calls; merged into ``client.stats()``."""

    __slots__ = (
        "api_calls",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "rate_limited",
        "requests",
        "results",
        "retries",
    )

    def __init__(self) -> None:
        self.api_calls = self.retries = self.rate_limited = 0
        self.requests = self.results = 0
        self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0

    def count_result(self, response: MessageBatchIndividualResponse) -> None:
        self.results += 1
        result = response.result
        if result.type != "succeeded":
            return
        message = result.message
        u = message.usage
        self.input_tokens += u.input_tokens + (u.cache_creation_input_tokens or 0)
        self.output_tokens += u.output_tokens
        self.cost_usd += usage_cost(message.model, u, batch=True)


class BatchBudget:
    """The batch endpoints' own request budget: a token bucket (unlimited when `rpm` is
    None) plus a hold set by a 429's ``retry-after``. Calls wait here, never on the
    Messages scheduler."""

    __slots__ = ("_bucket", "_hold_until", "_loop_time", "period", "rpm")

    def __init__(
        self,
        rpm: float | None = None,
        period: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if rpm is not None and rpm <= 0:
            raise InvalidArgument(f"rpm must be positive or None, got {rpm!r}")
        self.rpm = rpm
        self.period = period
        self._loop_time = clock
        self._bucket: TokenBucket | None = None
        self._hold_until = 0.0

    def _now(self) -> float:
        return self._loop_time() if self._loop_time else asyncio.get_running_loop().time()

    async def acquire(self) -> None:
        while True:
            now = self._now()
            wait = self._hold_until - now
            if self.rpm is not None:
                if self._bucket is None:
                    self._bucket = TokenBucket(self.rpm, self.period, now)
                wait = max(wait, self._bucket.wait(1.0, now))
            if wait <= 0:
                if self._bucket is not None:
                    self._bucket.take(1.0, now)
                return
            await asyncio.sleep(wait)

    def hold(self, seconds: float) -> None:
        self._hold_until = max(self._hold_until, self._now() + seconds)


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def split_requests(
    requests: Iterable[Mapping[str, Any]],
    *,
    max_requests: int = MAX_BATCH_REQUESTS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[list[Mapping[str, Any]]]:
    """`requests` cut, in order, into chunks within the per-batch count and size limits."""
    limit = max(1, max_bytes - _ENVELOPE)
    chunks: list[list[Mapping[str, Any]]] = []
    chunk: list[Mapping[str, Any]] = []
    size = 0
    for request in requests:
        n = len(orjson.dumps(request)) + 1
        if n > limit:
            raise InvalidArgument(
                f"request {request.get('custom_id')!r} is {n:,} bytes: more than a batch holds"
            )
        if chunk and (len(chunk) >= max_requests or size + n > limit):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(request)
        size += n
    if chunk:
        chunks.append(chunk)
    return chunks


class Batches:
    """`client.batches`: the SDK's Message Batches resource on its own scheduled budget."""

    def __init__(
        self,
        sdk: anthropic.AsyncAnthropic,
        *,
        rpm: float | None = None,
        period: float = 60.0,
        max_retries: int = 5,
        max_requests: int = MAX_BATCH_REQUESTS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._sdk = sdk
        self._resource: AsyncBatches = sdk.messages.batches  # or the beta one: `beta_view`
        self.budget = BatchBudget(rpm, period)
        self.max_retries = max_retries
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.stats = BatchStats()

    def beta_view(self) -> Batches:
        """``client.beta.messages.batches``: the same budget, retries and counters, calling
        the SDK's beta batch endpoints (which answer the SDK's ``Beta*`` batch types)."""
        view = copy.copy(self)  # shares `budget` and `stats`
        view._resource = cast("AsyncBatches", self._sdk.beta.messages.batches)  # same shape
        return view

    # -- one scheduled call -----------------------------------------------------------------

    async def _call(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        attempt = 0
        while True:
            await self.budget.acquire()
            self.stats.api_calls += 1
            try:
                return await fn()
            except anthropic.APIStatusError as exc:
                if exc.status_code not in _RETRY_STATUSES or attempt >= self.max_retries:
                    raise
                if exc.status_code == 429:
                    self.stats.rate_limited += 1
                delay = _retry_after(exc)
                if delay is None:
                    delay = min(8.0, 0.5 * 2**attempt) * random.uniform(0.75, 1.0)
                self.budget.hold(delay)
            except anthropic.APIConnectionError:
                if attempt >= self.max_retries:
                    raise
                await asyncio.sleep(min(8.0, 0.5 * 2**attempt) * random.uniform(0.75, 1.0))
            attempt += 1
            self.stats.retries += 1

    # -- the API ----------------------------------------------------------------------------

    async def create(
        self, *, requests: Iterable[Mapping[str, Any]], **options: Any
    ) -> list[MessageBatch]:
        """Create as many batches as `requests` need under the per-batch limits, in order.

        Returns one `MessageBatch` per batch created. `options` go to the SDK's ``create``.
        """
        out = []
        for chunk in split_requests(
            requests, max_requests=self.max_requests, max_bytes=self.max_bytes
        ):
            out.append(await self.create_one(chunk, **options))
        return out

    async def create_one(
        self, requests: Sequence[Mapping[str, Any]], **options: Any
    ) -> MessageBatch:
        """One batch of `requests` (which must fit the per-batch limits): one API call."""
        sdk_requests: Any = requests
        batch = await self._call(lambda: self._resource.create(requests=sdk_requests, **options))
        self.stats.requests += len(requests)
        return batch

    async def retrieve(self, batch_id: str, **options: Any) -> MessageBatch:
        return await self._call(lambda: self._resource.retrieve(batch_id, **options))

    async def cancel(self, batch_id: str, **options: Any) -> MessageBatch:
        return await self._call(lambda: self._resource.cancel(batch_id, **options))

    async def delete(self, batch_id: str, **options: Any) -> Any:
        return await self._call(lambda: self._resource.delete(batch_id, **options))

    async def list(self, *, limit: int = 100, **options: Any) -> AsyncIterator[MessageBatch]:
        """Every batch of the key, newest first; each page is one scheduled call."""
        after: Any = anthropic.omit
        while True:
            page = await self._call(
                functools.partial(self._resource.list, limit=limit, after_id=after, **options)
            )
            for batch in page.data:
                yield batch
            if not page.has_more or not page.last_id:
                return
            after = page.last_id

    async def results(
        self, batch_id: str, **options: Any
    ) -> AsyncIterator[MessageBatchIndividualResponse]:
        """The results of an ended batch, as they are read; usage and cost (at the batch
        price) counted in ``client.stats()``."""
        decoder = await self._call(lambda: self._resource.results(batch_id, **options))
        async for response in decoder:
            self.stats.count_result(response)
            yield response

    async def wait(
        self,
        batch_id: str,
        *,
        poll: float = 1.0,
        max_poll: float = 60.0,
        backoff: float = 1.5,
    ) -> MessageBatch:
        """Poll `batch_id` until it has ended; the interval grows from `poll` to `max_poll`.

        Bound it with ``asyncio.timeout(...)`` if needed.
        """
        interval = poll
        while True:
            batch = await self.retrieve(batch_id)
            if batch.processing_status == "ended":
                return batch
            await asyncio.sleep(interval)
            interval = min(max_poll, interval * backoff)


def stats_overrides(batches: Batches | None, cost_usd: float) -> dict[str, int | float]:
    """The batch figures of a client's ``stats()``: its `Batches`' own fields (none before
    it is first used), and their cost added to `cost_usd` (the client's Messages cost)."""
    if batches is None:
        return {}
    s = batches.stats
    return {
        "batch_requests": s.requests,
        "batch_results": s.results,
        "batch_cost_usd": s.cost_usd,
        "cost_usd": cost_usd + s.cost_usd,
    }

"""The mock's Message Batches API: ``/v1/messages/batches`` and everything under it.

A batch progresses in (compressible) time rather than by work done: it is created
``in_progress`` with every request counted as ``processing``; request ``i`` (in submission
order) is finished ``batch_latency + (i + 1) * batch_seconds_per_request`` seconds after the
create; the batch ends when the last one is, or at ``batch_expiry`` (the unfinished ones
``expired``), or ``batch_cancel_latency`` after a cancel (``canceling`` meanwhile; the ones
not finished when the cancel came are ``canceled``). Like the API, ``request_counts`` only
move out of ``processing`` when the whole batch ends, and ``results_url`` appears then.

Answers are the same deterministic answers ``POST /v1/messages`` gives for the same params
(same text, same usage), so a batch run and a Messages run can be compared line by line.
Invalid params are ``errored`` results, not a failed create (the API validates them
asynchronously); a malformed envelope (no requests, a bad or repeated ``custom_id``, too many
requests, too large a body) fails the create with 400/413.

Limits, per api key and separate from the Messages buckets: ``batch_rpm`` requests per
``batch_period`` to any batch endpoint, and ``batch_queue_limit`` requests in the processing
queue (batches not yet ended); both answer 429 with ``retry-after``. ``GET`` lists batches
newest first with ``has_more``/``first_id``/``last_id`` and ``after_id``/``before_id``
cursors, as the API does.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..scheduling.bucket import TokenBucket
from ._batch_results import batch_result
from ._http_types import Request, Response

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["BatchStore"]

PREFIX: Final = "/v1/messages/batches"
_CUSTOM_ID: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _rfc3339(wall: float) -> str:
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(slots=True)
class _Batch:
    id: str
    key: str
    created: float  # loop time
    created_wall: float
    custom_ids: list[str]
    params: list[Any]
    cancel_at: float | None = None
    cancel_wall: float | None = None
    ended_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    results: bytes = b""
    deleted: bool = False

    @property
    def n(self) -> int:
        return len(self.custom_ids)


class BatchStore:
    """Every batch of one `MockServer`, and the handlers of the batch endpoints."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.batches: dict[str, _Batch] = {}
        self.order: list[str] = []  # creation order, oldest first
        self._buckets: dict[str, TokenBucket] = {}

    def clear(self) -> None:
        self.batches.clear()
        self.order.clear()
        self._buckets.clear()

    # -- time --------------------------------------------------------------------------------

    def _wall(self, batch: _Batch, t: float) -> float:
        return batch.created_wall + (t - batch.created)

    def _finish_time(self, batch: _Batch, i: int) -> float:
        cfg = self.server.config
        return batch.created + cfg.batch_latency + (i + 1) * cfg.batch_seconds_per_request

    def refresh(self, batch: _Batch, now: float) -> None:
        """End `batch` if its end (normal, expiry or cancel) has come by `now`."""
        if batch.ended_at is not None:
            return
        cfg = self.server.config
        normal = self._finish_time(batch, batch.n - 1)
        expiry = batch.created + cfg.batch_expiry
        cancel = math.inf if batch.cancel_at is None else batch.cancel_at + cfg.batch_cancel_latency
        end = min(normal, expiry, cancel)
        if now < end:
            return
        if end == normal:
            cutoff, rest = normal, "expired"  # nothing is left over
        elif end == cancel:
            assert batch.cancel_at is not None
            cutoff, rest = min(batch.cancel_at, expiry), "canceled"
        else:
            cutoff, rest = expiry, "expired"
        self._finalize(batch, end, cutoff, rest)

    def _finalize(self, batch: _Batch, end: float, cutoff: float, rest: str) -> None:
        c = self.server.counters
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        lines: list[bytes] = []
        for i, (custom_id, params) in enumerate(zip(batch.custom_ids, batch.params, strict=True)):
            if self._finish_time(batch, i) > cutoff + 1e-9:
                result: dict[str, Any] = {"type": rest}
            else:
                result = batch_result(self.server, params)
                if result["type"] == "succeeded":
                    usage = result["message"]["usage"]
                    c.batch_input_tokens += usage["input_tokens"]
                    c.batch_output_tokens += usage["output_tokens"]
            counts[result["type"]] += 1
            lines.append(orjson.dumps({"custom_id": custom_id, "result": result}))
        batch.results = b"\n".join(lines) + b"\n"
        batch.params = []  # answered: the bodies are no longer needed
        batch.counts = counts
        batch.ended_at = end
        c.batch_results += batch.n

    # -- representation ---------------------------------------------------------------------

    def view(self, batch: _Batch, base_url: str) -> dict[str, Any]:
        cfg = self.server.config
        if batch.ended_at is not None:
            status = "ended"
            counts = batch.counts
        else:
            status = "in_progress" if batch.cancel_at is None else "canceling"
            counts = {
                "processing": batch.n,
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            }
        ended = batch.ended_at
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _rfc3339(batch.created_wall),
            "expires_at": _rfc3339(batch.created_wall + cfg.batch_expiry),
            "ended_at": None if ended is None else _rfc3339(self._wall(batch, ended)),
            "cancel_initiated_at": None
            if batch.cancel_wall is None
            else _rfc3339(batch.cancel_wall),
            "archived_at": None,
            "results_url": None if ended is None else f"{base_url}{PREFIX}/{batch.id}/results",
        }

    # -- routing -----------------------------------------------------------------------------

    async def dispatch(self, request: Request, key: str) -> Response:
        server = self.server
        c = server.counters
        c.batch_api_requests += 1
        limited = self._rate_limit(key)
        if limited is not None:
            return limited
        path, method = request.path, request.method
        base = self._base_url(request)
        rest = path[len(PREFIX) :].strip("/")
        if not rest:
            if method == "POST":
                return await self._create(request, key, base)
            if method == "GET":
                return self._list(request, key, base)
            return server._error(405, f"method {method} not allowed for {path}")
        parts = rest.split("/")
        batch = self.batches.get(parts[0])
        if batch is None or batch.key != key or batch.deleted:
            return server._error(404, f"message batch {parts[0]!r} not found")
        now = server._now()
        self.refresh(batch, now)
        if len(parts) == 1:
            if method == "GET":
                return server._json(200, self.view(batch, base))
            if method == "DELETE":
                if batch.ended_at is None:
                    return server._error(
                        400, "a batch can only be deleted once it has ended: cancel it first"
                    )
                batch.deleted = True
                return server._json(200, {"id": batch.id, "type": "message_batch_deleted"})
        elif len(parts) == 2 and parts[1] == "cancel" and method == "POST":
            if batch.ended_at is None and batch.cancel_at is None:
                batch.cancel_at = now
                batch.cancel_wall = time.time()
                c.batch_cancels += 1
                self.refresh(batch, now)
            return server._json(200, self.view(batch, base))
        elif len(parts) == 2 and parts[1] == "results" and method == "GET":
            if batch.ended_at is None:
                return server._error(
                    400, f"message batch {batch.id} has not ended yet: its results are not ready"
                )
            c.batch_results_served += 1
            return Response(
                200,
                batch.results,
                [("request-id", server._id("req"))],
                content_type="application/binary",
            )
        return server._error(404, f"{method} {path} not found")

    def _base_url(self, request: Request) -> str:
        host = request.headers.get("host")
        if host:
            return f"http://{host}"
        return self.server.base_url

    def _rate_limit(self, key: str) -> Response | None:
        server = self.server
        cfg = server.config
        if cfg.batch_rpm is None:
            return None
        now = server._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(cfg.batch_rpm, cfg.batch_period, now)
        wait = bucket.wait(1.0, now)
        if wait > 0:
            server.counters.batch_rate_limited += 1
            return server._error(
                429,
                f"Message Batches API rate limit of {cfg.batch_rpm:g} requests per "
                f"{cfg.batch_period:g} s exceeded",
                server._retry_headers(wait),
            )
        bucket.take(1.0, now)
        return None

    async def _create(self, request: Request, key: str, base: str) -> Response:
        server = self.server
        cfg = server.config
        if len(request.body) > cfg.batch_max_bytes:
            return server._error(
                413, f"a batch must be at most {cfg.batch_max_bytes} bytes, got {len(request.body)}"
            )
        body = server._parse(request)
        if isinstance(body, Response):
            return body
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            return server._error(400, "requests: Field required (a list of requests)")
        requests: list[Any] = body["requests"]
        if not requests:
            return server._error(400, "requests: a batch needs at least one request")
        if len(requests) > cfg.batch_max_requests:
            return server._error(
                400,
                f"requests: a batch can hold at most {cfg.batch_max_requests:,} requests, "
                f"got {len(requests):,}",
            )
        ids: list[str] = []
        params: list[Any] = []
        seen: set[str] = set()
        for i, item in enumerate(requests):
            if not isinstance(item, dict):
                return server._error(400, f"requests.{i}: Input should be an object")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                return server._error(
                    400,
                    f"requests.{i}.custom_id: must be 1 to 64 letters, digits, '_' or '-', "
                    f"got {custom_id!r}",
                )
            if custom_id in seen:
                return server._error(
                    400, f"requests.{i}.custom_id: {custom_id!r} is used twice in this batch"
                )
            if not isinstance(item.get("params"), dict):
                return server._error(400, f"requests.{i}.params: Field required")
            seen.add(custom_id)
            ids.append(custom_id)
            params.append(item["params"])
        now = server._now()
        if cfg.batch_queue_limit is not None:
            queued = 0
            soonest = math.inf
            for other in self.batches.values():
                if other.key == key and other.ended_at is None:
                    self.refresh(other, now)
                    if other.ended_at is None:
                        queued += other.n
                        soonest = min(soonest, self._finish_time(other, other.n - 1))
            if queued + len(ids) > cfg.batch_queue_limit:
                server.counters.batch_rate_limited += 1
                wait = soonest - now if math.isfinite(soonest) else cfg.batch_period
                return server._error(
                    429,
                    f"Number of batch requests in the processing queue ({queued:,} + "
                    f"{len(ids):,}) would exceed your limit of {cfg.batch_queue_limit:,}",
                    server._retry_headers(max(wait, 0.001)),
                )
        batch = _Batch(server._id("msgbatch"), key, now, time.time(), ids, params)
        self.batches[batch.id] = batch
        self.order.append(batch.id)
        c = server.counters
        c.batch_creates += 1
        c.batch_requests += len(ids)
        view = self.view(batch, base)
        if cfg.batch_create_latency > 0:
            # The batch exists from now on; only its answer is late (a kill in this window
            # leaves a batch its creator never learnt the id of).
            await asyncio.sleep(cfg.batch_create_latency)
        return server._json(200, view)

    def _list(self, request: Request, key: str, base: str) -> Response:
        server = self.server
        query = urllib.parse.parse_qs(request.target.partition("?")[2])
        try:
            limit = int(query.get("limit", ["20"])[0])
        except ValueError:
            return server._error(400, "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return server._error(400, "limit: must be between 1 and 1000")
        after = query.get("after_id", [None])[0]
        before = query.get("before_id", [None])[0]
        now = server._now()
        newest_first = [
            b
            for b in (self.batches[i] for i in reversed(self.order))
            if b.key == key and not b.deleted
        ]
        ids = [b.id for b in newest_first]
        if after is not None:
            start = ids.index(after) + 1 if after in ids else len(ids)
            page = newest_first[start : start + limit]
            more = start + limit < len(ids)
        elif before is not None:
            stop = ids.index(before) if before in ids else 0
            page = newest_first[max(0, stop - limit) : stop]
            more = stop - limit > 0
        else:
            page = newest_first[:limit]
            more = limit < len(ids)
        for b in page:
            self.refresh(b, now)
        data = [self.view(b, base) for b in page]
        return server._json(
            200,
            {
                "data": data,
                "has_more": more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
        )

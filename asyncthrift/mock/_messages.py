"""``POST /v1/messages`` on the mock: from the request's bytes to its answer, in the API's order.

Authenticate (401), parse and validate (400/404), context window (400), faults (529, 500,
drop; nothing charged), rate limits (429, `_refusal`; nothing charged), then charge and
answer (200, `_answering` settles the output). The other endpoints are small and stay with
the server's routing (`_server`); this one is most of what the mock does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson

from ._answering import NO_BUDGET, Answering, stream_response
from ._answers import answer_for, packed_answer
from ._caching import CacheSplit, min_cacheable
from ._http_types import Request, Response, StreamResponse
from ._refusal import admit, unexplained_429
from ._validate import validate

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["answer_messages"]


async def answer_messages(server: MockServer, request: Request) -> Response | StreamResponse | None:
    c = server.counters
    c.requests += 1
    cfg = server.config
    key = server._api_key(request)
    if isinstance(key, Response):
        return server._answered(key)
    body = server._parse(request)
    if isinstance(body, Response):
        return server._answered(body)
    problem = validate(body, count_tokens=False, max_output_tokens=cfg.max_output_tokens)
    if problem is not None:
        return server._answered(
            server._error(problem.status, problem.message, error_type=problem.type)
        )
    assert isinstance(body, dict)
    model: str = body["model"]
    max_tokens: int = body["max_tokens"]
    analysis, seed = server._analyze(request.body, body)
    if analysis.total > cfg.context_window:
        return server._answered(
            server._error(
                400,
                f"prompt is too long: {analysis.total} tokens > {cfg.context_window} maximum",
            )
        )

    # Faults: one fixed set of draws per request keeps the sequence reproducible.
    rng = server._rng
    u, v, w = rng.random(), rng.random(), rng.random()
    faults = cfg.faults if cfg.key_faults is None else cfg.key_faults.get(key, cfg.faults)
    cls, budget = server._budget(key, model)
    lost = faults.overloaded + faults.server_error + faults.drop
    if u < lost + faults.rate_limited:
        if u >= lost:
            refusal = unexplained_429(server, budget, cls, analysis.total, max_tokens, faults)
            return server._answered(refusal)
        if u < faults.overloaded:
            c.overloaded += 1
            server._record(cls, analysis.total, max_tokens, 529)
            return server._answered(
                server._error(529, "Overloaded", server._retry_headers(cfg.overloaded_retry_after))
            )
        if u < faults.overloaded + faults.server_error:
            c.server_errors += 1
            server._record(cls, analysis.total, max_tokens, 500)
            return server._answered(
                server._error(500, "Internal server error", [("x-should-retry", "true")])
            )
        c.dropped += 1
        server._record(cls, analysis.total, max_tokens, 0)
        return None

    now = server._now()
    if cfg.prompt_caching and analysis.breakpoints:
        split = server._cache.split(key, analysis, min_cacheable(model), now)
    else:
        split = CacheSplit(analysis.total, 0, 0)
    charged_input = split.input_tokens + split.cache_creation
    reserve = cfg.output_charge == "reserve"
    cost = (1.0, float(charged_input), float(max_tokens) if reserve else 0.0)

    headers = [("request-id", server._id("req"))]
    stream = body.get("stream") is True
    # Headers as of admission unless they describe the completed response (see below).
    late_headers = budget is not None and not stream and cfg.headers_at == "completion"
    if budget is not None:
        refused = admit(server, budget, cls, cost, reserve, now, headers)
        if refused is not None:
            server._record(cls, charged_input, max_tokens, 429)
            return server._answered(refused)
        if not late_headers:
            headers.extend(budget.headers(now, server.wall()))
    if cfg.prompt_caching and analysis.breakpoints:
        server._cache.commit(key, analysis, min_cacheable(model), now)

    answer = packed_answer(
        body, cfg.output_tokens, max_tokens, faults.packed_items, seed ^ faults.seed
    ) or answer_for(seed, cfg.output_tokens, max_tokens, body.get("stop_sequences"))
    c.ok += 1
    c.by_status[200] += 1
    c.input_tokens += charged_input
    c.cache_read_tokens += split.cache_read
    c.cache_creation_tokens += split.cache_creation
    c.in_flight += 1
    if c.in_flight > c.peak_in_flight:
        c.peak_in_flight = c.in_flight
    server._record(cls, charged_input, answer.output_tokens, 200)
    settle = Answering(server, budget if budget is not None else NO_BUDGET, max_tokens, reserve)
    jitter = max(0.0, 1.0 + cfg.latency_jitter * (2.0 * w - 1.0))
    base, per_token = cfg.latency * jitter, cfg.latency_per_token * jitter
    usage = {
        "input_tokens": split.input_tokens,
        "cache_creation_input_tokens": split.cache_creation,
        "cache_read_input_tokens": split.cache_read,
    }
    if stream:
        c.streams += 1
        fail = v < faults.stream_error
        response = stream_response(server, model, answer, usage, settle, base, per_token, fail)
        response.headers = headers
        return response

    started = server._now()
    try:
        delay = base + per_token * answer.output_tokens
        if delay > 0:
            await asyncio.sleep(delay)
    except asyncio.CancelledError:
        # the client went away with abandoned="stop" (or the server is stopping): charge
        # only what was produced until now
        elapsed = server._now() - started - base
        produced = int(elapsed / per_token) if per_token > 0 and elapsed > 0 else 0
        settle.settle(min(produced, answer.output_tokens), completed=False)
        raise
    settle.settle(answer.output_tokens, completed=True)
    if request.gone:
        # abandoned="finish": generated to the end and charged, but nobody will read it
        c.cancelled += 1
        c.abandoned_output_tokens += answer.output_tokens
        return None
    if late_headers:
        # After the settle, so the unused reservation is back (or the actual output
        # charged), at the settle's instant: everything charged meanwhile is included.
        headers.extend(settle.budget.headers(settle.at, server.wall()))
    message = {
        "id": server._id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": {**usage, "output_tokens": answer.output_tokens},
    }
    return Response(200, orjson.dumps(message), headers)

"""The OpenAI cookbook's parallel processor (examples/api_request_parallel_processor.py),
ported to Anthropic's three limits.

Its logic, kept as is: one loop takes the next request (retry queue first), refills request
and token capacity continuously at limit / minute capped at the limit (both start full),
sends when capacity covers 1 request and the token estimate (prompt tokens by tiktoken's
cl100k + max_tokens), subtracts and never refunds, sleeps 1 ms per pass, pauses the whole
loop 15 s after any rate-limit error, and gives each request 5 attempts; ``retry-after`` is
ignored. The port: Anthropic limits input and output separately, so prompt tokens are
checked against ITPM and max_tokens against OTPM (the cookbook's single TPM bucket would
otherwise have to be the smaller of the two). Limits are the full ones, not the cookbook
CLI's default of half. The 15 s pause is scaled to compressed time (period / 60).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import anthropic

from . import AttemptCounter, RunContext

NAME = "cookbook"
TITLE = "OpenAI cookbook processor"

MAX_ATTEMPTS = 5
SECONDS_TO_PAUSE_AFTER_RATE_LIMIT_ERROR = 15.0
SECONDS_TO_SLEEP_EACH_LOOP = 0.001


def _tokenizer() -> tuple[Callable[[str], int], str]:
    """tiktoken's cl100k (the cookbook's encoder), read from LiteLLM's bundled copy.

    Never downloads: the BPE file is read from disk, and without it the estimate falls back
    to characters / 4 (said so in the results).
    """
    try:
        import importlib.util

        import tiktoken
        import tiktoken_ext.openai_public as openai_public

        spec = importlib.util.find_spec("litellm")
        if spec is None or spec.origin is None:
            raise FileNotFoundError("litellm's bundled tokenizers are not installed")
        bundled = os.path.join(os.path.dirname(spec.origin), "litellm_core_utils", "tokenizers")

        def local_bpe(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
            path = os.path.join(bundled, hashlib.sha1(url.encode()).hexdigest())
            with open(path, "rb") as f:
                return {
                    base64.b64decode(token): int(rank)
                    for token, rank in (line.split() for line in f.read().splitlines() if line)
                }

        real = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = local_bpe
        try:
            enc = tiktoken.Encoding(**openai_public.cl100k_base())
        finally:
            openai_public.load_tiktoken_bpe = real
        return (lambda text: len(enc.encode(text, disallowed_special=()))), "tiktoken cl100k"
    except (ImportError, OSError, ValueError):
        return (lambda text: max(1, len(text) // 4)), "characters / 4 (tiktoken unavailable)"


#: Loaded at import, before any timed run.
COUNT, HOW = _tokenizer()


def prompt_tokens(count: Callable[[str], int], body: dict[str, Any]) -> int:
    """The cookbook's num_tokens_consumed_from_request for chat: per-message overheads."""
    n = 0
    for m in body["messages"]:
        n += 4 + count(m["role"]) + count(m["content"] if isinstance(m["content"], str) else "")
    return n + 2


async def run(ctx: RunContext) -> None:
    count = COUNT
    ctx.notes.append(f"cookbook token estimate: {HOW}")
    counter = AttemptCounter(ctx)
    client = counter.sdk(max_retries=0)
    lim = ctx.workload.limits
    assert lim.rpm is not None and lim.itpm is not None and lim.otpm is not None
    period, loop = lim.period, asyncio.get_running_loop()
    pause = SECONDS_TO_PAUSE_AFTER_RATE_LIMIT_ERROR * ctx.scale

    pending = deque(range(len(ctx.workload.requests)))
    retry_queue: deque[int] = deque()
    attempts_left = [MAX_ATTEMPTS] * len(pending)
    estimates = [prompt_tokens(count, b) for b in ctx.workload.requests]
    in_progress = 0
    last_rate_limit_error = -1e9
    tasks: set[asyncio.Task[None]] = set()

    async def call_api(i: int) -> None:
        nonlocal in_progress, last_rate_limit_error
        counter.begin()
        try:
            await client.messages.create(**ctx.workload.requests[i])
        except anthropic.APIError as exc:
            if isinstance(exc, anthropic.RateLimitError):
                last_rate_limit_error = loop.time()
            if attempts_left[i] > 0:
                ctx.retries += 1
                retry_queue.append(i)
            else:
                ctx.done(i, False, exc)
                in_progress -= 1
        else:
            ctx.done(i, True)
            in_progress -= 1

    req_cap, in_cap, out_cap = float(lim.rpm), float(lim.itpm), float(lim.otpm)
    last_update = loop.time()
    next_request: int | None = None
    in_progress = len(pending)
    try:
        while True:
            if next_request is None:
                if retry_queue:
                    next_request = retry_queue.popleft()
                elif pending:
                    next_request = pending.popleft()
            now = loop.time()
            elapsed = now - last_update
            req_cap = min(req_cap + lim.rpm * elapsed / period, lim.rpm)
            in_cap = min(in_cap + lim.itpm * elapsed / period, lim.itpm)
            out_cap = min(out_cap + lim.otpm * elapsed / period, lim.otpm)
            last_update = now
            if next_request is not None:
                need_in = estimates[next_request]
                need_out = ctx.workload.requests[next_request]["max_tokens"]
                if req_cap >= 1 and in_cap >= need_in and out_cap >= need_out:
                    req_cap -= 1
                    in_cap -= need_in
                    out_cap -= need_out
                    attempts_left[next_request] -= 1
                    task = asyncio.create_task(call_api(next_request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    next_request = None
            if in_progress == 0:
                break
            await asyncio.sleep(SECONDS_TO_SLEEP_EACH_LOOP)
            since = loop.time() - last_rate_limit_error
            if since < pause:
                await asyncio.sleep(pause - since)
    finally:
        for t in list(tasks):
            t.cancel()
        await client.close()

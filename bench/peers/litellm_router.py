"""LiteLLM's Router with per-deployment rpm / itpm / otpm, enforced before each call.

Configured as PEERS.md describes and the installed version (1.110) documents: one
deployment ``anthropic/<model>`` at the mock with ``rpm``, ``itpm`` and ``otpm``,
``routing_strategy="simple-shuffle"`` and
``optional_pre_call_checks=["enforce_model_rate_limits"]``. Over a limit the Router does not
queue: it raises its own 429 with a ``retry-after``. Its ``RetryPolicy(RateLimitErrorRetries=N)``
would sleep that retry-after in real seconds, which compressed time cannot use, so the
same policy is applied here by the caller: on a 429 (LiteLLM's own or the server's) sleep
the retry-after and try again, up to 10 attempts.

Compressed time: LiteLLM's windows are calendar minutes (counters keyed by UTC ``%H-%M``).
Its clock (`get_utc_datetime`, where the rate-limit code reads it) is replaced by one that
runs 60 / period times faster from a minute boundary, so its minute is the workload's
period, and its own retry-after (in those fast seconds) is scaled back to real seconds. The
server's retry-after is already in real seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from typing import Any

from . import RunContext, gather_all

NAME = "litellm_router"
TITLE = "LiteLLM Router (rpm/itpm/otpm)"

MAX_ATTEMPTS = 10

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

# Imported here, when the bench loads the peer, not inside a timed run (it takes seconds).
import litellm  # noqa: E402
import litellm.router_rust.surface.legacy_members as _legacy  # noqa: E402
import litellm.router_rust.surface.model_info as _model_info  # noqa: E402
import litellm.router_utils.pre_call_checks.io_token_rate_limit_check as _io_check  # noqa: E402
import litellm.router_utils.pre_call_checks.model_rate_limit_check as _model_check  # noqa: E402
import litellm.utils as _lutils  # noqa: E402
from litellm import Router  # noqa: E402

litellm.suppress_debug_info = True


def _compress_litellm_clock(scale: float, real0: float | None = None) -> None:
    """Make LiteLLM's rate-limit minute last `60 * scale` real seconds.

    Its first minute starts at wall time `real0` (now by default). Processes given the same
    `real0` share one compressed clock: the same windows, the same ``%H-%M`` keys.
    """
    real0 = time.time() if real0 is None else real0
    fake0 = real0 - real0 % 60.0  # start at a minute boundary: the first window is whole

    def fake_utc() -> dt.datetime:
        return dt.datetime.fromtimestamp(fake0 + (time.time() - real0) / scale, dt.UTC)

    for module in (_lutils, _io_check, _model_check, _model_info, _legacy):
        module.get_utc_datetime = fake_utc  # type: ignore[attr-defined]
    init = _model_check.ModelRateLimitingCheck.__init__
    init.__defaults__ = (fake_utc,)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    if headers is None:
        return None
    raw = headers.get("retry-after")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


async def run(ctx: RunContext) -> None:
    _compress_litellm_clock(ctx.scale)
    lim = ctx.workload.limits
    router = Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": f"anthropic/{ctx.workload.requests[0]['model']}",
                    "api_base": ctx.base_url,
                    "api_key": ctx.api_key,
                    "rpm": int(lim.rpm or 0),
                    "itpm": int(lim.itpm or 0),
                    "otpm": int(lim.otpm or 0),
                },
            }
        ],
        routing_strategy="simple-shuffle",
        optional_pre_call_checks=["enforce_model_rate_limits"],
        num_retries=0,
    )

    async def one(i: int, body: dict[str, Any]) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                await router.acompletion(
                    model="bench", messages=body["messages"], max_tokens=body["max_tokens"]
                )
            except litellm.RateLimitError as exc:
                if attempt == MAX_ATTEMPTS - 1:
                    ctx.done(i, False, exc)
                    return
                ctx.retries += 1
                after = _retry_after(exc)
                own = not getattr(exc, "llm_provider", "")
                if after is None:
                    after = 1.0 / ctx.scale if own else 1.0
                await asyncio.sleep(after * ctx.scale if own else after)
            except Exception as exc:  # any other litellm error is final, as for the others
                ctx.done(i, False, exc)
                return
            else:
                ctx.done(i, True)
                return

    await gather_all(ctx, one)

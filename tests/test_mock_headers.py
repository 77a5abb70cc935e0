"""The mock's rate-limit header readings, over real HTTP with the real SDK.

The API documentation leaves open which instant a non-streamed response's headers describe,
how precise `-reset` is and which way token `-remaining` is rounded; the mock makes each a
`MockConfig` setting (defaults: completion, whole seconds, nearest). These tests pin what
every reading writes, for 200s, streams and 429s.

Limits use a huge period so refill during a test is far below one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anthropic
import httpx2
import pytest

from asyncthrift.mock import MockServer, spawn_mock_process
from asyncthrift.scheduling.limits import Limits

SONNET = "claude-sonnet-4-6"
HI = [{"role": "user", "content": "hi"}]  # 8 input tokens
RL = "anthropic-ratelimit-"
FROZEN = 1e7  # a period under which nothing refills during a test
SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MILLISECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DIMS = ("requests", "input-tokens", "output-tokens", "tokens")


@contextlib.asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[tuple[MockServer, anthropic.AsyncAnthropic]]:
    async with (
        MockServer(**overrides) as mock,
        anthropic.AsyncAnthropic(api_key="test", base_url=mock.base_url, max_retries=0) as client,
    ):
        yield mock, client


async def create(client: anthropic.AsyncAnthropic, max_tokens: int) -> httpx2.Headers:
    raw = await client.messages.with_raw_response.create(
        model=SONNET, max_tokens=max_tokens, messages=HI
    )
    return raw.headers


def remaining(h: httpx2.Headers, dim: str) -> int:
    return int(h[f"{RL}{dim}-remaining"])


async def until_in_flight(mock: MockServer, n: int) -> None:
    for _ in range(500):
        if mock.counters.in_flight == n:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"never {n} in flight")


# -- reset precision ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "form"), [("seconds", SECONDS), ("milliseconds", MILLISECONDS)]
)
async def test_reset_precision_of_200_and_429(precision: str, form: re.Pattern[str]) -> None:
    limits = Limits(rpm=1, itpm=10_000, otpm=6_000, period=60)
    async with serve(limits=limits, reset_precision=precision) as (_, client):
        before = time.time()
        ok = await create(client, 3000)
        after = time.time()
        with pytest.raises(anthropic.RateLimitError) as info:
            await create(client, 10)
    refused = info.value.response.headers
    for h in (ok, refused):
        for dim in DIMS:
            assert form.fullmatch(h[f"{RL}{dim}-reset"]), (dim, h[f"{RL}{dim}-reset"])
    # The requests bucket is full again 60 s after its one request: never early, and late
    # by less than the unit (plus the time the request took).
    reset = datetime.fromisoformat(ok[RL + "requests-reset"]).timestamp()
    unit = 1.0 if precision == "seconds" else 0.001
    assert before + 60.0 - 1e-3 <= reset <= after + 60.0 + unit


# -- which instant a non-streamed response describes -------------------------------------


async def test_completion_headers_include_the_requests_own_refund() -> None:
    limits = Limits(rpm=10, itpm=100_000, otpm=50_000, period=FROZEN)
    common: dict[str, Any] = {"limits": limits, "remaining_rounding": "exact"}
    async with serve(**common, output_tokens=(30, 30)) as (_, client):
        h = await create(client, 1000)
    assert remaining(h, "output-tokens") == 50_000 - 30  # max_tokens reserved, 970 refunded
    assert remaining(h, "requests") == 9 and remaining(h, "input-tokens") == 100_000 - 8
    async with serve(**common, output_tokens=(30, 30), headers_at="admission") as (_, client):
        h = await create(client, 1000)
    assert remaining(h, "output-tokens") == 50_000 - 1000  # the reservation, before the refund


async def test_completion_headers_include_the_actual_output_charge() -> None:
    limits = Limits(otpm=50_000, period=FROZEN)
    common: dict[str, Any] = {
        "limits": limits,
        "remaining_rounding": "exact",
        "output_charge": "actual",
        "output_tokens": (30, 30),
    }
    async with serve(**common) as (_, client):
        assert remaining(await create(client, 1000), "output-tokens") == 50_000 - 30
    async with serve(**common, headers_at="admission") as (_, client):
        assert remaining(await create(client, 1000), "output-tokens") == 50_000


@pytest.mark.parametrize("headers_at", ["completion", "admission"])
async def test_completion_headers_include_what_others_charged_meanwhile(headers_at: str) -> None:
    """A (max_tokens 1000) is admitted; B (2000) is admitted while A generates; A ends first."""
    limits = Limits(rpm=100, itpm=100_000, otpm=50_000, period=FROZEN)
    async with serve(
        limits=limits,
        remaining_rounding="exact",
        output_tokens=(30, 30),
        latency=0.4,
        headers_at=headers_at,
    ) as (mock, client):
        a = asyncio.create_task(create(client, 1000))
        await until_in_flight(mock, 1)
        b = asyncio.create_task(create(client, 2000))
        await until_in_flight(mock, 2)
        ha, hb = await a, await b
    if headers_at == "completion":
        # A at its end: B's request, input and whole reservation; A's own refund.
        assert remaining(ha, "requests") == 98 and remaining(ha, "input-tokens") == 100_000 - 16
        assert remaining(ha, "output-tokens") == 50_000 - 30 - 2000
        # B at its end: both settled.
        assert remaining(hb, "output-tokens") == 50_000 - 30 - 30
    else:
        assert remaining(ha, "requests") == 99 and remaining(ha, "input-tokens") == 100_000 - 8
        assert remaining(ha, "output-tokens") == 50_000 - 1000
        assert remaining(hb, "output-tokens") == 50_000 - 1000 - 2000
    assert remaining(hb, "requests") == 98


async def test_streams_always_send_their_headers_at_admission() -> None:
    limits = Limits(otpm=50_000, period=FROZEN)
    async with serve(limits=limits, remaining_rounding="exact", output_tokens=(30, 30)) as (
        mock,
        client,
    ):
        async with client.messages.stream(model=SONNET, max_tokens=1000, messages=HI) as stream:
            await stream.get_final_message()
        h = stream.response.headers
        assert remaining(h, "output-tokens") == 50_000 - 1000
        assert mock.config.headers_at == "completion"
        # ...and the stream's own refund is visible to the next response.
        assert remaining(await create(client, 1000), "output-tokens") == 50_000 - 30 - 30


@pytest.mark.parametrize("headers_at", ["completion", "admission"])
async def test_a_429_describes_the_instant_of_its_refusal(headers_at: str) -> None:
    """While A generates, B is refused: B's headers show A's reservation, not yet refunded."""
    limits = Limits(rpm=1, itpm=100_000, otpm=50_000, period=FROZEN)
    async with serve(
        limits=limits, remaining_rounding="exact", latency=0.3, headers_at=headers_at
    ) as (mock, client):
        a = asyncio.create_task(create(client, 1000))
        await until_in_flight(mock, 1)
        with pytest.raises(anthropic.RateLimitError) as info:
            await create(client, 10)
        await a
    h = info.value.response.headers
    assert remaining(h, "requests") == 0
    assert remaining(h, "output-tokens") == 50_000 - 1000
    assert remaining(h, "input-tokens") == 100_000 - 8
    assert h["retry-after"] and h["x-should-retry"] == "true"


# -- rounding of token -remaining ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rounding", "input_left", "output_left"),
    [
        ("nearest", "100000", "49000"),  # 99,992 and 48,500 (half goes up)
        ("down", "99000", "48000"),
        ("exact", "99992", "48500"),
    ],
)
@pytest.mark.parametrize("status", [200, 429])
async def test_remaining_rounding(
    rounding: str, input_left: str, output_left: str, status: int
) -> None:
    limits = Limits(rpm=1 if status == 429 else 10, itpm=100_000, otpm=50_000, period=FROZEN)
    async with serve(
        limits=limits, remaining_rounding=rounding, headers_at="admission", latency=0.3
    ) as (mock, client):
        a = asyncio.create_task(create(client, 1500))
        if status == 429:
            await until_in_flight(mock, 1)
            with pytest.raises(anthropic.RateLimitError) as info:
                await create(client, 10)
            h = info.value.response.headers
            await a
        else:
            h = await a
    assert h[RL + "input-tokens-remaining"] == input_left
    assert h[RL + "output-tokens-remaining"] == output_left
    assert h[RL + "tokens-remaining"] == output_left  # the tighter of the two
    assert h[RL + "requests-remaining"] == ("0" if status == 429 else "9")  # never rounded


async def test_the_defaults_round_nearest_in_whole_seconds_at_completion() -> None:
    limits = Limits(rpm=10, itpm=100_000, otpm=50_000, period=FROZEN)
    async with serve(limits=limits, output_tokens=(30, 30)) as (_, client):
        h = await create(client, 1500)
    assert h[RL + "output-tokens-remaining"] == "50000"  # 49,970 after the refund, nearest
    assert h[RL + "input-tokens-remaining"] == "100000"  # 99,992
    assert SECONDS.fullmatch(h[RL + "output-tokens-reset"])


# -- out of process -----------------------------------------------------------------------


async def test_spawned_mock_takes_the_header_settings() -> None:
    limits = Limits(rpm=10, itpm=100_000, otpm=50_000, period=FROZEN)
    with spawn_mock_process(
        limits=limits,
        output_tokens=(30, 30),
        reset_precision="milliseconds",
        headers_at="admission",
        remaining_rounding="down",
    ) as url:
        async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as client:
            h = await create(client, 1500)
    assert h[RL + "output-tokens-remaining"] == "48000"  # admission (48,500), rounded down
    assert h[RL + "input-tokens-remaining"] == "99000"
    assert MILLISECONDS.fullmatch(h[RL + "output-tokens-reset"])

"""The mock server driven by the real `anthropic` SDK over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anthropic
import httpx2
import pytest

from asyncthrift.mock import (
    Faults,
    MockConfig,
    MockServer,
    count_text,
    remote_reset,
    remote_stats,
    spawn_mock_process,
)
from asyncthrift.scheduling.limits import Limits

SONNET = "claude-sonnet-4-6"  # not in the SDK's deprecated list (that warns, warnings are errors)
HAIKU = "claude-haiku-4-5"
HI = [{"role": "user", "content": "hi"}]
RL = "anthropic-ratelimit-"


@contextlib.asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[tuple[MockServer, anthropic.AsyncAnthropic]]:
    async with (
        MockServer(**overrides) as mock,
        anthropic.AsyncAnthropic(api_key="test", base_url=mock.base_url, max_retries=0) as client,
    ):
        yield mock, client


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- answers ------------------------------------------------------------------------------


async def test_create_is_deterministic_and_shaped_like_the_api() -> None:
    async with serve(output_tokens=(20, 60)) as (mock, client):
        raw = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=1000, messages=HI
        )
        first = await raw.parse()
        second = await client.messages.create(model=SONNET, max_tokens=1000, messages=HI)
    assert raw.headers["request-id"].startswith("req_")
    assert first.id.startswith("msg_") and first.id != second.id
    assert first.type == "message" and first.role == "assistant" and first.model == SONNET
    assert first.content == second.content
    assert first.usage == second.usage
    assert first.stop_reason == "end_turn" and first.stop_sequence is None
    text = first.content[0].text  # type: ignore[union-attr]
    assert 20 <= first.usage.output_tokens <= 60
    assert count_text(text) == first.usage.output_tokens
    assert first.usage.input_tokens == 8  # 3 framing + 4 per message + 1 for "hi"
    assert first.usage.cache_creation_input_tokens == 0
    assert first.usage.cache_read_input_tokens == 0
    assert mock.counters.ok == 2 and mock.counters.output_tokens == 2 * first.usage.output_tokens


async def test_max_tokens_caps_the_answer() -> None:
    async with serve(output_tokens=(50, 50)) as (_, client):
        msg = await client.messages.create(model=SONNET, max_tokens=7, messages=HI)
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 7
    assert count_text(msg.content[0].text) == 7  # type: ignore[union-attr]


async def test_stop_sequence_cuts_the_answer() -> None:
    async with serve(output_tokens=(60, 60)) as (_, client):
        msg = await client.messages.create(
            model=SONNET, max_tokens=100, messages=HI, stop_sequences=["."]
        )
    text = msg.content[0].text  # type: ignore[union-attr]
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "."
    assert "." not in text and msg.usage.output_tokens == count_text(text) < 60


# -- errors -------------------------------------------------------------------------------


def _assert_error_body(body: object, etype: str) -> None:
    assert isinstance(body, dict)
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert body["error"]["type"] == etype and isinstance(body["error"]["message"], str)
    assert body["request_id"].startswith("req_")


@pytest.mark.parametrize(
    ("kwargs", "exc", "etype"),
    [
        ({"max_tokens": 0}, anthropic.BadRequestError, "invalid_request_error"),
        ({"messages": []}, anthropic.BadRequestError, "invalid_request_error"),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
        ({"messages": ask("")}, anthropic.BadRequestError, "invalid_request_error"),
        ({"extra_body": {"temperature": 3}}, anthropic.BadRequestError, "invalid_request_error"),
        ({"max_tokens": 10**6}, anthropic.BadRequestError, "invalid_request_error"),
        ({"model": "gpt-4o"}, anthropic.NotFoundError, "not_found_error"),
    ],
)
async def test_invalid_requests_map_to_sdk_exceptions(
    kwargs: dict[str, Any], exc: type[anthropic.APIStatusError], etype: str
) -> None:
    # An explicit timeout keeps the SDK from refusing a huge non-streaming max_tokens itself.
    params: dict[str, Any] = {
        "model": SONNET,
        "max_tokens": 10,
        "messages": HI,
        "timeout": 30,
        **kwargs,
    }
    async with serve() as (mock, client):
        with pytest.raises(exc) as info:
            await client.messages.create(**params)
    _assert_error_body(info.value.body, etype)
    assert info.value.response.headers["request-id"] == info.value.body["request_id"]  # type: ignore[index]
    assert mock.counters.by_status[info.value.status_code] == 1
    assert mock.counters.ok == 0


async def test_authentication() -> None:
    async with (
        serve(api_keys={"good"}) as (mock, client),
        httpx2.AsyncClient(base_url=mock.base_url) as http,
    ):
        missing = await http.post("/v1/messages", json={"model": SONNET})
        assert missing.status_code == 401
        _assert_error_body(missing.json(), "authentication_error")
        assert missing.headers["request-id"] == missing.json()["request_id"]
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(model=SONNET, max_tokens=10, messages=HI)
        async with anthropic.AsyncAnthropic(
            api_key="good", base_url=mock.base_url, max_retries=0
        ) as good:
            await good.messages.create(model=SONNET, max_tokens=10, messages=HI)
        # x-api-key works as well as the SDK's Authorization: Bearer.
        ok = await http.post(
            "/v1/messages",
            json={"model": SONNET, "max_tokens": 5, "messages": HI},
            headers={"x-api-key": "good"},
        )
        assert ok.status_code == 200
        bad_json = await http.post("/v1/messages", content=b"{", headers={"x-api-key": "good"})
        assert bad_json.status_code == 400
        _assert_error_body(bad_json.json(), "invalid_request_error")
        unknown = await http.get("/v1/nothing")
        assert unknown.status_code == 404
        _assert_error_body(unknown.json(), "not_found_error")


async def test_prompt_too_long_for_the_context_window() -> None:
    async with serve(context_window=50) as (_, client):
        with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
            await client.messages.create(model=SONNET, max_tokens=5, messages=ask("word " * 60))


# -- rate limits and headers -------------------------------------------------------------


async def test_headers_reflect_the_buckets_right_after_admission() -> None:
    limits = Limits(rpm=10, itpm=100_000, otpm=50_000, period=3600)  # refill ~0 during the test
    async with serve(
        limits=limits, headers_at="admission", remaining_rounding="exact", output_tokens=(30, 30)
    ) as (_, client):
        raw = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=1000, messages=ask("hello world")
        )
        msg = await raw.parse()
        h = raw.headers
        assert h[RL + "requests-limit"] == "10" and h[RL + "requests-remaining"] == "9"
        assert h[RL + "input-tokens-limit"] == "100000"
        assert int(h[RL + "input-tokens-remaining"]) == 100_000 - msg.usage.input_tokens
        assert int(h[RL + "output-tokens-remaining"]) == 50_000 - 1000  # max_tokens reserved
        # The combined header reports the tightest token dimension.
        assert h[RL + "tokens-limit"] == "50000"
        assert h[RL + "tokens-remaining"] == h[RL + "output-tokens-remaining"]
        reset = datetime.fromisoformat(h[RL + "output-tokens-reset"]).timestamp()
        assert reset == pytest.approx(time.time() + 1000 / (50_000 / 3600), abs=2.0)
        assert "retry-after" not in h

        # The unused 970 of the first reservation were refunded when it completed.
        raw2 = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=1000, messages=ask("hello world")
        )
        remaining = int(raw2.headers[RL + "output-tokens-remaining"])
        assert remaining == 50_000 - 30 - 1000


async def test_actual_output_charge_reserves_nothing() -> None:
    limits = Limits(otpm=50_000, period=3600)
    async with serve(
        limits=limits,
        headers_at="admission",  # this output is charged at completion
        remaining_rounding="exact",
        output_charge="actual",
        output_tokens=(30, 30),
    ) as (_, client):
        raw = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=1000, messages=HI
        )
        assert raw.headers[RL + "output-tokens-remaining"] == "50000"
        assert RL + "requests-limit" not in raw.headers  # unlimited: no header
        assert RL + "input-tokens-limit" not in raw.headers
        raw = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=1000, messages=HI
        )
        assert raw.headers[RL + "output-tokens-remaining"] == str(50_000 - 30)


async def test_token_remaining_is_rounded_down_to_a_thousand() -> None:
    limits = Limits(itpm=100_000, otpm=50_000, period=3600)
    async with serve(limits=limits, remaining_rounding="down", headers_at="admission") as (_, c):
        raw = await c.messages.with_raw_response.create(model=SONNET, max_tokens=1500, messages=HI)
    assert raw.headers[RL + "input-tokens-remaining"] == "99000"
    assert raw.headers[RL + "output-tokens-remaining"] == "48000"


async def test_rate_limited_requests_get_429_and_are_not_charged() -> None:
    limits = Limits(rpm=2, itpm=10_000, period=60)
    async with serve(limits=limits, retry_after_ms=True, record=True) as (mock, client):
        for _ in range(2):
            await client.messages.create(model=SONNET, max_tokens=10, messages=HI)
        charged = mock.counters.input_tokens
        for _ in range(2):
            with pytest.raises(anthropic.RateLimitError) as info:
                await client.messages.create(model=SONNET, max_tokens=10, messages=HI)
        h = info.value.response.headers
        _assert_error_body(info.value.body, "rate_limit_error")
        wait_ms = int(h["retry-after-ms"])
        assert 0 < wait_ms <= 30_000  # one request refills in 30 s
        assert int(h["retry-after"]) == math.ceil(wait_ms / 1000)
        assert h["x-should-retry"] == "true"
        assert h[RL + "requests-remaining"] == "0"
        assert h[RL + "input-tokens-remaining"] in ("9000", "10000")  # rounded down
        # A different model class has its own buckets.
        await client.messages.create(model=HAIKU, max_tokens=10, messages=HI)
        c = mock.counters
        assert c.rate_limited == 2 and c.by_status[429] == 2 and c.ok == 3
        assert c.input_tokens == charged + 8
        assert [a.status for a in c.log] == [200, 200, 429, 429, 200]
        assert [a.model_class for a in c.log] == ["sonnet"] * 4 + ["haiku"]


async def test_a_request_that_can_never_fit_is_not_retryable() -> None:
    async with serve(limits=Limits(otpm=1000, period=1)) as (_, client):
        with pytest.raises(anthropic.RateLimitError, match="never") as info:
            await client.messages.create(model=SONNET, max_tokens=2000, messages=HI)
    assert info.value.response.headers["x-should-retry"] == "false"


async def test_per_key_limits() -> None:
    config = MockConfig(
        limits=Limits(rpm=100, period=60), key_limits={"small": Limits(rpm=1, period=60)}
    )
    async with (
        serve(config=config) as (mock, client),
        anthropic.AsyncAnthropic(api_key="small", base_url=mock.base_url, max_retries=0) as small,
    ):
        await small.messages.create(model=SONNET, max_tokens=5, messages=HI)
        with pytest.raises(anthropic.RateLimitError):
            await small.messages.create(model=SONNET, max_tokens=5, messages=HI)
        raw = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=5, messages=HI
        )
        assert raw.headers[RL + "requests-remaining"] == "99"


async def test_shadow_load_lowers_what_the_server_reports() -> None:
    async def remaining_after_drain(shadow: float) -> int:
        async with serve(limits=Limits(rpm=20, period=1.0), shadow_load=shadow) as (_, client):
            for _ in range(12):
                await client.messages.create(model=SONNET, max_tokens=5, messages=HI)
            await asyncio.sleep(0.5)
            raw = await client.messages.with_raw_response.create(
                model=SONNET, max_tokens=5, messages=HI
            )
            return int(raw.headers[RL + "requests-remaining"])

    plain, shadowed = await asyncio.gather(remaining_after_drain(0.0), remaining_after_drain(0.5))
    assert shadowed <= plain - 3  # about 9 vs 4 (the shadow eats half of the refill)


# -- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize("latency", [0.0, 0.0005])
async def test_stream_final_message_equals_create(latency: float) -> None:
    async with serve(output_tokens=(40, 80), latency=latency, latency_per_token=latency) as (
        mock,
        client,
    ):
        created = await client.messages.create(model=SONNET, max_tokens=500, messages=HI)
        async with client.messages.stream(model=SONNET, max_tokens=500, messages=HI) as stream:
            final = await stream.get_final_message()
        events = []
        raw_stream = await client.messages.create(
            model=SONNET, max_tokens=500, messages=HI, stream=True
        )
        async for event in raw_stream:
            events.append(event)
    assert final.model_dump(exclude={"id"}) == created.model_dump(exclude={"id"})
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"} and len(kinds) > 6
    start = events[0]
    assert start.type == "message_start" and start.message.usage.output_tokens == 1
    assert start.message.usage.input_tokens == created.usage.input_tokens
    assert mock.counters.streams == 2 and mock.counters.in_flight == 0


async def test_stream_error_mid_stream_refunds_unsent_output() -> None:
    async with serve(
        limits=Limits(otpm=10_000, period=3600),
        output_tokens=(80, 80),
        faults=Faults(stream_error=1.0),
        remaining_rounding="exact",
    ) as (mock, client):
        text = ""
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model=SONNET, max_tokens=500, messages=HI) as s:
                async for chunk in s.text_stream:
                    text += chunk
        assert info.value.type == "overloaded_error"
        produced = count_text(text)
        assert 0 < produced < 80
        assert mock.counters.stream_errors == 1 and mock.counters.output_tokens == produced
        raw = await client.messages.with_raw_response.create(
            model=HAIKU, max_tokens=5, messages=HI
        )  # another class: just to reach the server again
        assert raw.status_code == 200


# -- faults -------------------------------------------------------------------------------


async def test_faults_map_to_sdk_exceptions_and_charge_nothing() -> None:
    limits = Limits(rpm=100, period=60)
    async with serve(limits=limits, faults=Faults(overloaded=1.0), retry_after_ms=True) as (
        mock,
        client,
    ):
        with pytest.raises(anthropic.OverloadedError) as over:
            await client.messages.create(model=SONNET, max_tokens=5, messages=HI)
        _assert_error_body(over.value.body, "overloaded_error")
        assert over.value.status_code == 529
        assert over.value.response.headers["retry-after"] == "1"
        assert over.value.response.headers["retry-after-ms"] == "1000"
        assert over.value.response.headers["x-should-retry"] == "true"
        assert mock.counters.overloaded == 1 and mock.counters.input_tokens == 0
    async with serve(faults=Faults(server_error=1.0)) as (mock, client):
        with pytest.raises(anthropic.InternalServerError) as err:
            await client.messages.create(model=SONNET, max_tokens=5, messages=HI)
        assert err.value.status_code == 500
        _assert_error_body(err.value.body, "api_error")
        assert mock.counters.server_errors == 1
    async with serve(faults=Faults(drop=1.0)) as (mock, client):
        with pytest.raises(anthropic.APIConnectionError):
            await client.messages.create(model=SONNET, max_tokens=5, messages=HI)
        assert mock.counters.dropped == 1 and mock.counters.in_flight == 0


async def test_an_unexplained_429_per_key_shows_room_left_and_charges_nothing() -> None:
    # Faults.rate_limited is the API's acceleration limit: a 429 although the buckets had
    # room, so its headers still show capacity; key_faults confines it to one key
    limits = Limits(rpm=100, itpm=100_000, otpm=10_000, period=60)
    refusing = {"bad": Faults(rate_limited=1.0, rate_limited_retry_after=3.0)}
    config = MockConfig(limits=limits, key_faults=refusing, api_keys=["bad", "good"])
    assert MockConfig.from_json(config.to_json()) == config
    async with MockServer(config) as mock:
        bad = anthropic.AsyncAnthropic(api_key="bad", base_url=mock.base_url, max_retries=0)
        good = anthropic.AsyncAnthropic(api_key="good", base_url=mock.base_url, max_retries=0)
        try:
            with pytest.raises(anthropic.RateLimitError) as refused:
                await bad.messages.create(model=SONNET, max_tokens=5, messages=HI)
            _assert_error_body(refused.value.body, "rate_limit_error")
            headers = refused.value.response.headers
            assert headers["retry-after"] == "3"
            assert headers["anthropic-ratelimit-requests-remaining"] == "100"  # room left
            assert "acceleration" in refused.value.message
            answer = await good.messages.create(model=SONNET, max_tokens=5, messages=HI)
            assert mock.counters.rate_limited == 1 and mock.counters.ok == 1
            # the 429 charged nothing: the input counted is the good key's request alone
            assert mock.counters.input_tokens == answer.usage.input_tokens
        finally:
            await bad.close()
            await good.close()


async def test_faults_are_deterministic_for_a_seed() -> None:
    async def outcomes(seed: int) -> list[str]:
        faults = Faults(overloaded=0.3, server_error=0.2, seed=seed)
        out = []
        async with serve(faults=faults) as (mock, client):
            for _ in range(12):
                try:
                    await client.messages.create(model=SONNET, max_tokens=5, messages=HI)
                    out.append("ok")
                except anthropic.APIStatusError as exc:
                    out.append(str(exc.status_code))
            assert mock.counters.overloaded == out.count("529")
            mock.reset()  # reseeds: the same sequence again
            again = []
            for _ in range(5):
                try:
                    await client.messages.create(model=SONNET, max_tokens=5, messages=HI)
                    again.append("ok")
                except anthropic.APIStatusError as exc:
                    again.append(str(exc.status_code))
            assert again == out[:5]
        return out

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert {"ok", "529", "500"} <= set(first)
    assert first != await outcomes(8)


async def settled(mock: MockServer) -> None:
    """Wait (real time, generously) until no answer is in progress on `mock`."""
    for _ in range(500):
        if mock.counters.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{mock.counters.in_flight} answers still in progress")


async def output_remaining(client: anthropic.AsyncAnthropic) -> int:
    """The output tokens the mock says remain, by a request that reserves and produces none
    (its headers are as of admission: the request's own max_tokens=1 is out of them)."""
    raw = await client.messages.with_raw_response.create(
        model=SONNET, max_tokens=1, messages=HI, stream=True
    )
    await (await raw.parse()).close()
    return int(raw.headers[RL + "output-tokens-remaining"]) + 1


@pytest.mark.parametrize("abandoned", ["finish", "stop"])
async def test_an_abandoned_answer_is_finished_and_charged_or_stopped(abandoned: str) -> None:
    # 100 tokens at 20 ms each: the client leaves 0.1 s in, about 5 tokens produced
    limits = Limits(otpm=10_000, period=3600)
    async with serve(
        limits=limits,
        latency_per_token=0.02,
        output_tokens=(100, 100),
        remaining_rounding="exact",
        abandoned=abandoned,
    ) as (mock, client):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                client.messages.create(model=SONNET, max_tokens=1000, messages=HI), 0.1
            )
        await settled(mock)
        c = dataclasses.replace(mock.counters)  # before the probe below
        assert c.cancelled == 1 and c.peak_in_flight == 1 and c.ok == 1
        assert c.output_tokens == c.abandoned_output_tokens
        left = await output_remaining(client)
    if abandoned == "finish":
        assert c.output_tokens == 100  # the whole answer, which nobody read
    else:
        assert c.output_tokens < 100  # only what was produced before the client left
    # the rest of max_tokens went back either way (refill over a few seconds: < 10 tokens)
    assert 0 <= left - (10_000 - c.output_tokens) < 10, (left, c.output_tokens)


@pytest.mark.parametrize("abandoned", ["finish", "stop"])
async def test_an_abandoned_stream_stops_and_is_charged_what_it_produced(abandoned: str) -> None:
    limits = Limits(otpm=10_000, period=3600)
    async with serve(
        limits=limits,
        latency_per_token=0.01,
        output_tokens=(200, 200),
        stream_chunk_words=2,
        remaining_rounding="exact",
        abandoned=abandoned,  # streams do not depend on it
    ) as (mock, client):
        delivered = 0
        async with client.messages.stream(model=SONNET, max_tokens=1000, messages=HI) as stream:
            async for text in stream.text_stream:
                delivered += count_text(text)
                if delivered >= 10:
                    break
        await settled(mock)
        c = dataclasses.replace(mock.counters)  # before the probe below
        left = await output_remaining(client)
    assert c.cancelled == 1 and c.streams == 1
    assert delivered <= c.output_tokens < 200, (delivered, c.output_tokens)
    assert c.abandoned_output_tokens == c.output_tokens
    assert 0 <= left - (10_000 - c.output_tokens) < 10, (left, c.output_tokens)


async def test_clock_skew_moves_every_reset() -> None:
    async with serve(
        limits=Limits(rpm=100, otpm=10_000), clock_skew=1000.0, reset_precision="milliseconds"
    ) as (_mock, client):
        raw = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=100, messages=HI
        )
        now = time.time()
    reset = datetime.fromisoformat(raw.headers[RL + "requests-reset"]).timestamp()
    # one request of 100 per minute: full again 0.6 s after it, on a clock 1000 s ahead
    assert 1000.0 < reset - now < 1002.0, reset - now


# -- count_tokens, caching ----------------------------------------------------------------


async def test_count_tokens_matches_usage() -> None:
    params: dict[str, Any] = {
        "model": SONNET,
        "system": "You are terse. 你好，世界！",
        "tools": [{"name": "get_time", "description": "Time now", "input_schema": {}}],
        "messages": [
            {"role": "user", "content": "What is 12345 * 2? Internationalization!"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me think."}]},
            {"role": "user", "content": [{"type": "text", "text": "日本語のテキスト"}]},
        ],
    }
    async with serve(count_tokens_rpm=1) as (mock, client):
        counted = await client.messages.count_tokens(**params)
        msg = await client.messages.create(max_tokens=10, **params)
        assert counted.input_tokens == msg.usage.input_tokens > 300
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.count_tokens(**params)
        assert mock.counters.count_tokens == 2 and mock.counters.requests == 1


async def test_prompt_caching_reads_are_not_charged() -> None:
    system = [
        {"type": "text", "text": "rule " * 1500, "cache_control": {"type": "ephemeral"}},
    ]
    async with serve(limits=Limits(itpm=100_000, period=3600), remaining_rounding="exact") as (
        mock,
        client,
    ):
        first = await client.messages.create(
            model=SONNET, max_tokens=5, system=system, messages=ask("one")
        )
        second = await client.messages.create(
            model=SONNET, max_tokens=5, system=system, messages=ask("two")
        )
        counted = await client.messages.count_tokens(model=SONNET, system=system, messages=HI)
    prefix = first.usage.cache_creation_input_tokens
    assert prefix is not None and prefix > 1500
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == prefix
    assert second.usage.cache_creation_input_tokens == 0
    assert first.usage.input_tokens == second.usage.input_tokens == 8 - 3  # the message part
    assert mock.counters.input_tokens == prefix + 2 * first.usage.input_tokens
    assert counted.input_tokens == prefix + 5  # count_tokens reports the whole prompt


# -- transport, counters, processes -------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with serve() as (mock, client):
        for i in range(30):
            await client.messages.create(model=SONNET, max_tokens=5, messages=ask(f"q{i}"))
        stats = mock.stats()
    assert stats["ok"] == 30 and stats["connections_opened"] == 1


async def test_concurrent_requests_are_counted_in_flight() -> None:
    async with serve(latency=0.1) as (mock, client):
        await asyncio.gather(
            *(client.messages.create(model=SONNET, max_tokens=5, messages=HI) for _ in range(10))
        )
    assert mock.counters.peak_in_flight == 10 and mock.counters.in_flight == 0


async def test_stats_and_reset_endpoints() -> None:
    async with (
        serve(limits=Limits(rpm=3, period=60)) as (mock, client),
        httpx2.AsyncClient(base_url=mock.base_url) as http,
    ):
        for _ in range(3):
            await client.messages.create(model=SONNET, max_tokens=5, messages=HI)
        stats = (await http.get("/_mock/stats")).json()
        assert stats["ok"] == 3 and stats["by_status"] == {"200": 3} and stats["requests"] == 3
        assert stats["input_tokens"] == 24 and stats["peak_in_flight"] == 1
        assert (await http.post("/_mock/reset")).json() == {"ok": True}
        assert mock.counters.ok == 0 and mock.counters.by_status == {}
        raw = await client.messages.with_raw_response.create(
            model=SONNET, max_tokens=5, messages=HI
        )
        assert raw.headers[RL + "requests-remaining"] == "2"  # buckets refilled by the reset


async def test_spawn_mock_process() -> None:
    with spawn_mock_process(limits=Limits(rpm=1, period=60), output_tokens=(5, 5)) as url:
        assert url.startswith("http://127.0.0.1:")
        async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as client:
            msg = await client.messages.create(model=SONNET, max_tokens=50, messages=HI)
            assert msg.usage.output_tokens == 5
            with pytest.raises(anthropic.RateLimitError):
                await client.messages.create(model=SONNET, max_tokens=50, messages=HI)
            stats = await asyncio.to_thread(remote_stats, url)
            assert stats["ok"] == 1 and stats["rate_limited"] == 1
            await asyncio.to_thread(remote_reset, url)
            assert (await asyncio.to_thread(remote_stats, url))["requests"] == 0
            await client.messages.create(model=SONNET, max_tokens=50, messages=HI)

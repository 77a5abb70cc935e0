"""A cold start's probe goes as a stream and answers as the non-streamed call would.

Everything else waits (or goes at the refill's pace) until the probe's headers say the key's
level; a stream's headers go out at its start, a non-streamed answer's after generation. So
the probe is sent as a stream and read to its end, and the caller gets the very `Message`
a non-streamed ``create`` returns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message

from asyncthrift import Limits, Thrift
from asyncthrift.mock import MockServer

from .fake_api import FakeAPI, ok, sse

MODEL = "claude-sonnet-4-6"


def body(text: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 200, "messages": [{"role": "user", "content": text}]}


async def test_the_probe_is_a_stream_answered_as_a_plain_create() -> None:
    limits = Limits(rpm=50, itpm=30_000, otpm=8_000)
    async with MockServer(limits=limits) as mock:
        sdk = anthropic.AsyncAnthropic(api_key="k", base_url=mock.base_url)
        direct = await sdk.messages.create(**body("the same question"))
        await sdk.close()
        assert mock.counters.streams == 0
        async with Thrift(api_key="k", base_url=mock.base_url, limits=limits) as client:
            probe = await client.messages.create(**body("the same question"))
            assert mock.counters.streams == 1  # the probe went as a stream
            later = await client.messages.create(**body("another question"))
            assert mock.counters.streams == 1  # and only the probe
    assert type(probe) is Message and type(later) is Message
    got, want = probe.to_dict(), direct.to_dict()
    assert got.pop("id") != want.pop("id")
    assert got == want
    assert probe._request_id is not None and probe._request_id.startswith("req_")


@pytest.mark.looptime
async def test_a_burst_waits_for_the_probes_headers_not_its_answer() -> None:
    async def upstream(request: dict[str, Any], n: int) -> httpx2.Response:
        answer = ok(request, output_tokens=20)
        if request.get("stream"):
            return sse(answer, 5.0)  # headers now, the answer 5 s later
        await asyncio.sleep(5.0)
        return answer

    api = FakeAPI(upstream)
    loop = asyncio.get_running_loop()
    async with Thrift(
        api_key="k",
        base_url="http://api.test",
        sdk_options=api.sdk_options(),
        limits={"claude-sonnet": Limits(rpm=60, itpm=60_000, otpm=12_000)},
    ) as client:
        start = loop.time()
        await asyncio.gather(*(client.messages.create(**body(f"q{i}")) for i in range(10)))
    sent = [t - start for t in api.calls]
    assert len(sent) == 10
    # the probe's answer takes 5 s; the other nine went once its headers came (a refill of
    # one request a second would have spread them over 9 s)
    assert max(sent) < 0.5, sent

"""Streaming under the scheduler, over the SDK's transport seam (no sockets, virtual time).

The fake API below speaks the SSE wire format, so the SDK's own decoder and types are
exercised; what is checked is that the caller sees exactly what the bare SDK shows, and that
the budget is reserved, reconciled and refunded as it must be however a stream ends.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pydantic
import pytest
from anthropic import AsyncStream
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message

from asyncthrift import Limits, Thrift
from asyncthrift.client.streaming import (
    REPLAY_HEADER,
    ReplayStream,
    ThriftEventStream,
    replay_events,
)

pytestmark = pytest.mark.looptime

MODEL = "claude-sonnet-4-6"
SECRET = "sk-ant-stream-secret"
WORDS = ["Hello", " there", ",", " streaming", " world", "."]


def req(text: str = "hello", max_tokens: int = 200, **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def events_for(
    words: list[str] = WORDS, *, input_tokens: int = 25, stop: str = "end_turn"
) -> list[dict[str, Any]]:
    """The event sequence the API streams for a one-text-block answer of `words`."""
    return [
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": 1,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
            for w in words
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": len(words)},
        },
        {"type": "message_stop"},
    ]


ERROR_EVENT = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

Script = Callable[[dict[str, Any], int], httpx2.Response]


class _Body(httpx2.AsyncByteStream):
    """A streamed SSE body that counts how it ended: read through, or closed by the client."""

    def __init__(self, api: FakeSSE, events: list[dict[str, Any]], hang_after: int | None):
        self.api = api
        self.events = events
        self.hang_after = hang_after
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.api.opened += 1
        for i, e in enumerate(self.events):
            if self.hang_after is not None and i >= self.hang_after:
                await asyncio.sleep(3600)
            yield sse(e)
            await asyncio.sleep(0.01)
        self._end()

    async def aclose(self) -> None:
        self._end()

    def _end(self) -> None:
        if not self.done:
            self.done = True
            self.api.closed += 1


class FakeSSE:
    """An in-memory API: `script(body, n)` answers the n-th request (1-based).

    `opened`/`closed` count streamed bodies started and finished (read to the end or closed
    by the client), so a test can see that an abandoned stream really hung up.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.opened = 0
        self.closed = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = orjson.loads(request.content)
        self.bodies.append(body)
        return self.script(body, len(self.bodies))

    def stream(
        self,
        events: list[dict[str, Any]],
        *,
        hang_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        """A 200 SSE response of `events`; after `hang_after` events it never sends more."""

        h = {"content-type": "text/event-stream", "request-id": "req_fake", **(headers or {})}
        return httpx2.Response(200, headers=h, stream=_Body(self, events, hang_after))

    def sdk_options(self) -> dict[str, Any]:
        return {"http_client": httpx2.AsyncClient(transport=httpx2.MockTransport(self))}

    def bare_sdk(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=SECRET, base_url="http://api.test", max_retries=0, **self.sdk_options()
        )


def thrift(api: FakeSSE, **kw: Any) -> Thrift:
    kw.setdefault("limits", Limits(rpm=1000, itpm=100_000, otpm=10_000))
    kw.setdefault("dedupe", False)
    return Thrift(api_key=SECRET, base_url="http://api.test", sdk_options=api.sdk_options(), **kw)


def levels(c: Thrift) -> tuple[float | None, ...]:
    budget = c.budgets()["sonnet"][0]
    return budget.peek(asyncio.get_running_loop().time())


def dumps(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(type(e).__name__, e.model_dump()) for e in events]


# -- the caller sees what the bare SDK shows --------------------------------------------------


async def test_create_stream_yields_the_bare_sdks_events() -> None:
    api = FakeSSE(lambda body, n: api.stream(events_for()))
    bare = api.bare_sdk()
    expected = [e async for e in await bare.messages.create(**req(), stream=True)]
    await bare.close()
    async with thrift(api) as c:
        stream = await c.messages.create(**req(), stream=True)
        assert isinstance(stream, AsyncStream) and isinstance(stream, ThriftEventStream)
        got = [e async for e in stream]
        assert stream.response.headers["request-id"] == "req_fake"
    assert dumps(got) == dumps(expected)
    assert len(got) == len(events_for()) - 1  # pings are dropped, as by the SDK
    assert "stream" in api.bodies[-1] and api.bodies[-1]["stream"] is True


async def test_messages_stream_gives_the_sdks_message_stream() -> None:
    api = FakeSSE(lambda body, n: api.stream(events_for()))
    async with thrift(api) as c:
        async with c.messages.stream(**req()) as stream:
            assert isinstance(stream, AsyncMessageStream)
            assert stream.request_id == "req_fake"
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text == "".join(WORDS)
        assert final.content[0].text == text  # type: ignore[union-attr]
        assert (final.usage.input_tokens, final.usage.output_tokens) == (25, len(WORDS))
        assert final.stop_reason == "end_turn"


async def test_usage_is_reconciled_at_message_stop() -> None:
    api = FakeSSE(lambda body, n: api.stream(events_for(input_tokens=40)))
    async with thrift(api, limits=Limits(rpm=1000, itpm=100_000, otpm=10_000, period=1e9)) as c:
        stream = await c.messages.create(**req(max_tokens=500), stream=True)
        _, _, out = levels(c)
        assert out == pytest.approx(10_000 - 500)  # max_tokens reserved while streaming
        async for event in stream:
            if event.type == "message_stop":
                # refunded as message_stop passes, before the caller reads the end
                assert isinstance(stream, ThriftEventStream) and stream.settled
                assert levels(c)[2] == pytest.approx(10_000 - len(WORDS))
        reqs, inp, out = levels(c)
        assert (reqs, inp, out) == (
            pytest.approx(999),
            pytest.approx(100_000 - 40),
            pytest.approx(10_000 - len(WORDS)),
        )
        s = c.stats()
        assert (s.requests, s.succeeded, s.failed, s.in_flight) == (1, 1, 0, 0)
        assert (s.input_tokens, s.output_tokens, s.upstream_calls) == (40, len(WORDS), 1)


# -- abandoning -------------------------------------------------------------------------------


#: Complete answers streamed first, so the client knows how long answers run (6 tokens,
#: about 0.12 s) before one is abandoned: it keeps an abandoned answer's output until the
#: answer would have ended, then keeps what the longest answer seen could have cost.
WARM = 8
WARMED = 10_000 - WARM * len(WORDS)  # the output level after the warm-up (no refill)


def warming_api(hang_after: int) -> FakeSSE:
    """A fake API whose first `WARM` streams are complete and later ones hang."""
    api: FakeSSE

    def script(body: dict[str, Any], n: int) -> httpx2.Response:
        return api.stream(events_for(), hang_after=None if n <= WARM else hang_after)

    api = FakeSSE(script)
    return api


async def warm_up(c: Thrift) -> None:
    for _ in range(WARM):
        async with c.messages.stream(**req(max_tokens=1000)) as stream:
            await stream.get_final_message()
    assert levels(c)[2] == pytest.approx(WARMED)


@pytest.mark.parametrize("beta", [False, True], ids=["messages", "beta.messages"])
async def test_abandoned_stream_hangs_up_and_keeps_its_output_until_it_would_have_ended(
    beta: bool,
) -> None:
    api = warming_api(hang_after=4)
    async with thrift(api, limits=Limits(otpm=10_000, period=1e9)) as c:
        await warm_up(c)
        resource: Any = c.beta.messages if beta else c.messages
        async with resource.stream(**req(max_tokens=1000)) as stream:
            seen = []
            async for text in stream.text_stream:
                seen.append(text)
                if len(seen) == 2:
                    break
        assert api.closed == WARM + 1  # the HTTP response was closed
        # the server may have produced more than was read, and this one ran for an hour
        # (it hung) where answers take ~0.12 s: it may be longer than any answer seen, so
        # its whole max_tokens stays spent
        assert levels(c)[2] == pytest.approx(WARMED - 1000, abs=0.1)  # (an hour's refill)
        s = c.stats()
        assert (s.requests, s.succeeded, s.failed, s.in_flight) == (WARM + 1, WARM, 1, 0)
        assert s.input_tokens == 25 * (WARM + 1)
        await asyncio.sleep(1)
        assert levels(c)[2] == pytest.approx(WARMED - 1000, abs=0.1)


@pytest.fixture
def no_stray_garbage() -> None:
    """Collect what earlier tests left before a test that collects its own garbage, so a
    socket another test leaked is not reported as this test's failure."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.usefixtures("no_stray_garbage")
async def test_stream_dropped_without_close_is_settled_when_collected() -> None:
    api = warming_api(hang_after=3)
    async with thrift(api, limits=Limits(otpm=10_000, period=1e9)) as c:
        await warm_up(c)
        stream = await c.messages.create(**req(max_tokens=1000), stream=True)
        it = stream.__aiter__()
        await it.__anext__()
        assert levels(c)[2] == pytest.approx(WARMED - 1000)
        del stream, it
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert api.closed == WARM + 1
        assert c.stats().in_flight == 0
        await asyncio.sleep(1)
        assert levels(c)[2] == pytest.approx(WARMED - len(WORDS))


@pytest.mark.usefixtures("no_stray_garbage")
async def test_never_iterated_stream_is_settled_when_collected() -> None:
    api = warming_api(hang_after=2)
    async with thrift(api, limits=Limits(otpm=10_000, period=1e9)) as c:
        await warm_up(c)
        stream = await c.messages.create(**req(max_tokens=1000), stream=True)
        del stream
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert c.stats().in_flight == 0
        await asyncio.sleep(1)
        assert levels(c)[2] == pytest.approx(WARMED - len(WORDS))


async def test_cancelling_the_reader_settles_the_stream() -> None:
    api = warming_api(hang_after=3)
    async with thrift(api, limits=Limits(otpm=10_000, period=1e9)) as c:
        await warm_up(c)

        async def read() -> None:
            async with c.messages.stream(**req(max_tokens=1000)) as stream:
                async for _ in stream:
                    pass

        task = asyncio.create_task(read())
        await asyncio.sleep(0.05)  # three events in, before answers seen would have ended
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats().in_flight == 0 and api.closed == WARM + 1
        assert levels(c)[2] == pytest.approx(WARMED - 1000)  # held while it could run...
        await asyncio.sleep(1)  # ...then all but the longest answer seen went back
        assert levels(c)[2] == pytest.approx(WARMED - len(WORDS))


async def test_cancelled_while_opening_keeps_input_and_then_gives_unused_output_back() -> None:
    api = warming_api(hang_after=0)
    async with thrift(api, limits=Limits(itpm=100_000, otpm=10_000, period=1e9)) as c:
        await warm_up(c)
        task = asyncio.create_task(c.messages.create(**req(max_tokens=1000), stream=True))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert levels(c)[2] == pytest.approx(WARMED - 1000)
        await asyncio.sleep(1)
        assert levels(c)[2] == pytest.approx(WARMED - len(WORDS))
        s = c.stats()
        assert (s.requests, s.failed, s.in_flight) == (WARM + 1, 1, 0)


# -- retries and errors -----------------------------------------------------------------------


async def test_429_before_the_first_event_is_retried_transparently() -> None:
    def script(body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 1:
            err = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
            return httpx2.Response(429, json=err, headers={"retry-after-ms": "500"})
        return api.stream(events_for())

    api = FakeSSE(script)
    async with thrift(api) as c:
        t0 = asyncio.get_running_loop().time()
        stream = await c.messages.create(**req(), stream=True)
        assert asyncio.get_running_loop().time() - t0 == pytest.approx(0.5, abs=0.05)
        events = [e async for e in stream]
        assert events[0].type == "message_start" and events[-1].type == "message_stop"
        s = c.stats()
        assert (s.rate_limited, s.retries, s.upstream_calls, s.succeeded) == (1, 1, 2, 1)


async def test_overloaded_error_event_before_the_first_event_is_retried() -> None:
    def script(body: dict[str, Any], n: int) -> httpx2.Response:
        return api.stream([ERROR_EVENT] if n == 1 else events_for())

    api = FakeSSE(script)
    async with thrift(api) as c:
        async with c.messages.stream(**req()) as stream:
            final = await stream.get_final_message()
        assert final.content[0].text == "".join(WORDS)  # type: ignore[union-attr]
        s = c.stats()
        assert (s.overloaded, s.retries, s.upstream_calls) == (1, 1, 2)


async def test_exhausted_retries_raise_the_sdks_own_error() -> None:
    api = FakeSSE(lambda body, n: api.stream([ERROR_EVENT]))
    async with thrift(api, max_retries=1) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await c.messages.create(**req(), stream=True)
        assert info.value.status_code == 200  # what the bare SDK raises for this event
        assert "overloaded_error" in str(info.value)
        assert len(api.bodies) == 2
        assert c.stats().in_flight == 0


async def test_an_error_mid_stream_surfaces_as_the_sdks_error() -> None:
    evs = events_for()
    broken = [*evs[:5], ERROR_EVENT]
    api = FakeSSE(lambda body, n: api.stream(broken))
    bare = api.bare_sdk()
    with pytest.raises(anthropic.APIStatusError) as bare_err:
        async for _ in await bare.messages.create(**req(), stream=True):
            pass
    await bare.close()
    async with thrift(api, limits=Limits(otpm=10_000, period=1e9)) as c:
        got = []
        with pytest.raises(anthropic.APIStatusError) as ours:
            async for e in await c.messages.create(**req(max_tokens=1000), stream=True):
                got.append(e)
        assert type(ours.value) is type(bare_err.value)
        assert str(ours.value) == str(bare_err.value)
        assert [e.type for e in got] == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
        ]
        # what was delivered: "Hello there", about 11/4 tokens, rounded up
        assert levels(c)[2] == pytest.approx(10_000 - 3)
        s = c.stats()
        assert (s.failed, s.overloaded, s.in_flight, s.retries) == (1, 1, 0, 0)


async def test_a_400_is_not_retried() -> None:
    def script(body: dict[str, Any], n: int) -> httpx2.Response:
        err = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
        return httpx2.Response(400, json=err)

    api = FakeSSE(script)
    async with thrift(api) as c:
        with pytest.raises(anthropic.BadRequestError):
            async with c.messages.stream(**req()):
                pass
        assert len(api.bodies) == 1


# -- cache and dedupe -------------------------------------------------------------------------


async def test_cached_answer_is_replayed_as_a_stream() -> None:
    api = FakeSSE(lambda body, n: api.stream(events_for()))
    async with thrift(api, cache="memory") as c:
        async with c.messages.stream(**req()) as first:
            live = await first.get_final_message()
        assert len(api.bodies) == 1
        stream = await c.messages.create(**req(), stream=True)
        assert isinstance(stream, ReplayStream)
        assert stream.response.headers[REPLAY_HEADER] == "cache"
        replayed = [e async for e in stream]
        assert replayed[0].type == "message_start"
        async with c.messages.stream(**req()) as again:
            final = await again.get_final_message()
        assert len(api.bodies) == 1
        assert final.model_dump(exclude={"parsed_output"}) == live.model_dump(
            exclude={"parsed_output"}
        )
        msg = await c.messages.create(**req())  # and the non-streamed path reads it too
        assert msg.content[0].text == live.content[0].text  # type: ignore[union-attr]
        assert msg.usage == live.usage
        s = c.stats()
        assert (s.cache_hits, s.upstream_calls) == (3, 1)


async def test_incomplete_stream_is_not_cached() -> None:
    api = FakeSSE(lambda body, n: api.stream(events_for(), hang_after=4))
    async with thrift(api, cache="memory") as c:
        async with c.messages.stream(**req()) as stream:
            await stream.__anext__()
        api.script = lambda body, n: api.stream(events_for())
        async with c.messages.stream(**req()) as stream:
            await stream.get_final_message()
        assert len(api.bodies) == 2


async def test_a_stream_joins_an_identical_call_in_flight() -> None:
    def script(body: dict[str, Any], n: int) -> httpx2.Response:
        message = {
            "id": "msg_shared",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "shared"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 3},
        }

        async def slow() -> AsyncIterator[bytes]:
            await asyncio.sleep(1)
            yield orjson.dumps(message)

        return httpx2.Response(200, headers={"content-type": "application/json"}, content=slow())

    api = FakeSSE(script)
    async with thrift(api, dedupe=True) as c:
        leader = asyncio.create_task(c.messages.create(**req()))
        await asyncio.sleep(0.1)
        async with c.messages.stream(**req()) as stream:
            text = "".join([t async for t in stream.text_stream])
            assert stream.response.headers[REPLAY_HEADER] == "dedupe"
        assert text == "shared"
        assert (await leader).content[0].text == "shared"  # type: ignore[union-attr]
        assert len(api.bodies) == 1
        assert c.stats().dedupe_joins == 1


# -- replays ----------------------------------------------------------------------------------


RICH = {
    "id": "msg_rich",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
        {
            "type": "text",
            "text": "The answer is 4.",
            "citations": [
                {
                    "type": "char_location",
                    "cited_text": "2+2=4",
                    "document_index": 0,
                    "document_title": "math",
                    "start_char_index": 0,
                    "end_char_index": 5,
                }
            ],
        },
        {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"expr": "2+2", "n": [1]}},
        {"type": "redacted_thinking", "data": "opaque"},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 50,
        "output_tokens": 30,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 7,
    },
}


async def test_replay_accumulates_back_to_the_same_message() -> None:
    message = Message.model_validate(RICH)
    sdk = anthropic.AsyncAnthropic(api_key=SECRET, base_url="http://api.test")
    stream = AsyncMessageStream(
        ReplayStream(message, source="cache", sdk=sdk), output_format=anthropic.NOT_GIVEN
    )
    final = await stream.get_final_message()
    assert Message.model_validate(final.to_dict()) == message
    kinds = [e.type for e in replay_events(message)]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == 4
    await sdk.close()


async def test_output_format_is_sent_and_parsed() -> None:
    class Answer(pydantic.BaseModel):
        value: int

    api = FakeSSE(lambda body, n: api.stream(events_for(['{"value":', " 4}"])))
    async with thrift(api) as c:
        async with c.messages.stream(**req(), output_format=Answer) as stream:
            final = await stream.get_final_message()
        assert api.bodies[0]["output_config"]["format"]["type"] == "json_schema"
        assert final.parsed_output == Answer(value=4)


async def test_an_omitted_output_format_streams_as_if_not_given() -> None:
    """As the SDK's ``stream``: ``output_format=anthropic.omit`` (code forwarding an optional
    argument) sends no ``output_config`` and parses nothing, on ``messages`` and
    ``beta.messages`` alike."""
    api = FakeSSE(lambda body, n: api.stream(events_for(["plain", " text"])))
    async with thrift(api) as c:
        async with c.messages.stream(**req(), output_format=anthropic.omit) as stream:
            final = await stream.get_final_message()
        async with c.beta.messages.stream(**req(), output_format=anthropic.omit) as beta:
            beta_final = await beta.get_final_message()
    assert [b.get("output_config") for b in api.bodies] == [None, None]
    assert final.content[0].text == beta_final.content[0].text == "plain text"  # type: ignore[union-attr]

"""What a user of `anthropic.AsyncAnthropic` expects of the client (issue #21): structured
outputs through ``messages.parse``, ``with_streaming_response``, the client-level raw and
streaming views, ``copy()``, ``is_closed()``, ``base_url``, ``max_retries``, ``timeout``.

Through the SDK's transport seam (`tests.fake_api`): every request is seen, so the tests can
say what went upstream, and how often.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
import pydantic
import pytest
from anthropic.types import ParsedMessage
from anthropic.types.beta.parsed_beta_message import ParsedBetaMessage

from asyncthrift import InvalidArgument, Limits, Thrift

from .fake_api import FakeAPI, message_json

MODEL = "claude-sonnet-4-6"
REQ: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Is 'win a prize now' spam?"}],
}


class Verdict(pydantic.BaseModel):
    label: str
    confidence: float


def verdict_api(seen: list[dict[str, Any]]) -> FakeAPI:
    def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        seen.append(body)
        if "max_tokens" not in body:  # count_tokens
            return httpx2.Response(200, json={"input_tokens": 40})
        answer = message_json(body, input_tokens=40, output_tokens=12)
        answer["content"] = [{"type": "text", "text": '{"label": "spam", "confidence": 0.9}'}]
        return httpx2.Response(200, json=answer, headers={"request-id": f"req_{n}"})

    return FakeAPI(handler)


def client(api: FakeAPI, **kw: Any) -> Thrift:
    return Thrift(api_key="k", base_url="http://api.test", sdk_options=api.sdk_options(), **kw)


async def test_parse_is_a_scheduled_create_answered_as_the_sdk_parses() -> None:
    seen: list[dict[str, Any]] = []
    api = verdict_api(seen)
    async with client(api, limits=Limits(rpm=100), cache="memory") as c:
        parsed = await c.messages.parse(**REQ, output_format=Verdict, priority="interactive")
        assert isinstance(parsed, ParsedMessage)
        assert parsed.parsed_output == Verdict(label="spam", confidence=0.9)
        # the request carried the schema as the SDK sends it
        fmt = seen[0]["output_config"]["format"]
        assert fmt["type"] == "json_schema"
        assert set(fmt["schema"]["properties"]) == {"label", "confidence"}
        # scheduled and counted like create, and cached under its full request
        again = await c.messages.parse(**REQ, output_format=Verdict)
        assert again.parsed_output == parsed.parsed_output
        s = c.stats()
        assert (s.requests, s.succeeded, s.upstream_calls, s.cache_hits) == (2, 2, 1, 1)
        assert (s.input_tokens, s.output_tokens) == (40, 12)
        assert len(api.calls) == 1
        # a plain create of the same messages is another request (no output_config)
        plain = await c.messages.create(**REQ)
        assert not isinstance(plain, ParsedMessage) and len(api.calls) == 2
        with pytest.raises(TypeError, match="does not stream"):
            await c.messages.parse(**REQ, output_format=Verdict, stream=True)


async def test_beta_parse_answers_the_beta_parsed_type_through_the_scheduler() -> None:
    seen: list[dict[str, Any]] = []
    api = verdict_api(seen)
    async with client(api, limits=Limits(rpm=100)) as c:
        parsed = await c.beta.messages.parse(**REQ, output_format=Verdict)
        assert isinstance(parsed, ParsedBetaMessage)
        assert parsed.parsed_output == Verdict(label="spam", confidence=0.9)
        assert seen[0]["output_config"]["format"]["type"] == "json_schema"
        s = c.stats()
        assert (s.requests, s.succeeded, s.upstream_calls) == (1, 1, 1)


async def test_with_streaming_response_is_scheduled_and_closed_after_the_block() -> None:
    seen: list[dict[str, Any]] = []
    api = verdict_api(seen)
    async with client(api, limits=Limits(rpm=100), cache="memory") as c:
        async with c.messages.with_streaming_response.create(**REQ) as response:
            assert response.status_code == 200 and response.request_id == "req_1"
            assert orjson.loads(await response.read())["type"] == "message"
            message = await response.parse()
            assert isinstance(message, anthropic.types.Message)
        assert response.is_closed
        async with c.with_streaming_response.messages.count_tokens(
            model=MODEL, messages=REQ["messages"]
        ) as counted:
            assert counted.status_code == 200
        async with c.beta.with_streaming_response.messages.create(**REQ) as beta:
            assert (await beta.parse()).type == "message"
        # each one scheduled and sent; a raw response is never cached (it is the caller's
        # to read), so the cache="memory" client made three calls for three requests
        s = c.stats()
        assert (s.requests, s.succeeded, s.upstream_calls, len(api.calls)) == (3, 3, 3, 3)


async def test_client_level_views_and_attributes_match_async_anthropic() -> None:
    api = verdict_api([])
    c = client(api, limits=Limits(rpm=100), max_retries=3, timeout=12.5)
    sdk = anthropic.AsyncAnthropic(api_key="k", base_url="http://api.test", timeout=12.5)
    try:
        assert c.base_url == sdk.base_url == httpx2.URL("http://api.test")
        assert c.max_retries == 3
        assert c.timeout == sdk.timeout == 12.5
        assert c.is_closed() is False
        raw = await c.with_raw_response.messages.create(**REQ)
        assert raw.headers["request-id"] == "req_1"
        assert (await raw.parse()).type == "message"
        assert c.stats().upstream_calls == 1  # through the pipeline
        # resources asyncthrift does not schedule are the SDK's own views
        assert type(c.with_raw_response.models).__name__ == "AsyncModelsWithRawResponse"
        assert type(c.with_streaming_response.models).__name__.endswith("StreamingResponse")
        assert type(c.beta.files).__name__ == type(sdk.beta.files).__name__
        copied = c.copy(timeout=3.0, max_retries=1)
        assert (copied.timeout, copied.max_retries) == (3.0, 1)
        assert c.with_options(timeout=4.0).timeout == 4.0
        await copied.messages.create(**REQ)
        assert c.stats().upstream_calls == 2  # a copy shares the counters (and budgets)
        with pytest.raises(InvalidArgument, match="cannot change api_key"):
            c.copy(api_key="another")
        with pytest.raises(InvalidArgument, match="cannot change base_url"):
            c.with_options(base_url="http://elsewhere.test")
    finally:
        await sdk.close()
        await copied.close()  # a copy closes the client it was made from, as the SDK's do
    assert c.is_closed() and copied.is_closed()


async def test_the_views_pass_public_names_through_and_copy_cleanly() -> None:
    import copy

    c = client(verdict_api([]))
    try:
        for view in (c.beta, c.beta.with_raw_response, c.with_raw_response):
            assert copy.copy(view) is not view  # no recursion through __getattr__
            with pytest.raises(AttributeError):
                view._private_of_the_sdk  # noqa: B018
        assert c.beta.files is not None and c.with_raw_response.files is not None
    finally:
        await c.close()


async def test_beta_calls_go_out_as_the_sdks_beta_calls_do() -> None:
    """Same URL, same ``anthropic-beta`` header as the bare SDK's beta calls: only the path
    to them (admission, retries, books) differs."""
    seen: list[httpx2.Request] = []

    async def transport(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("/count_tokens"):
            return httpx2.Response(200, json={"input_tokens": 9})
        return httpx2.Response(200, json=message_json(orjson.loads(request.content)))

    async def calls(messages: Any) -> None:
        await messages.create(**REQ, betas=["context-1m-2025-08-07"])
        await messages.count_tokens(
            model=MODEL, messages=REQ["messages"], betas=["token-counting-2024-11-01"]
        )

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(transport))
    bare = anthropic.AsyncAnthropic(api_key="k", base_url="http://api.test", http_client=http)
    await calls(bare.beta.messages)
    await bare.close()
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(transport))
    async with Thrift(
        api_key="k", base_url="http://api.test", sdk_options={"http_client": http}
    ) as c:
        await calls(c.beta.messages)
        await c.messages.create(**REQ)
        s = c.stats()
    theirs, ours, plain = seen[:2], seen[2:4], seen[4]
    for a, b in zip(theirs, ours, strict=True):
        assert a.url == b.url
        assert a.headers["anthropic-beta"] == b.headers["anthropic-beta"]
        assert orjson.loads(a.content) == orjson.loads(b.content)
    assert ours[0].headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert "anthropic-beta" not in plain.headers
    assert (s.requests, s.succeeded, s.upstream_calls) == (3, 3, 3)

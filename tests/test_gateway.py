"""``asyncthrift serve`` as clients see it: real gateway processes (uvicorn on loopback) in
front of the mock, driven with the anthropic SDK and raw HTTP.

- the SDK's answer and stream through the gateway equal its direct ones against the mock;
- 401 (nothing forwarded), 413 (declared or read past the cap), 400 (malformed JSON);
- an upstream 429 is retried inside, never passed on; a deadline passed gives 529;
- the upstream key never reaches a response or the log.

Queueing (priority, disconnect), replicas and the SIGTERM drain: `test_gateway_queue.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from asyncthrift.mock import Faults, remote_stats, spawn_mock_process
from tests.gateway_process import GatewayProcess, spawn_gateway

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "sk-ant-upstream-0123456789abcdef"
DIRECT_KEY = "sk-ant-direct-test-key"
CLIENT_KEY = "gw-client-key-one"
MODEL = "claude-sonnet-4-5"
MAX_BODY = 20_000


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    # the gateway's key meets a 429 on one request in two; the direct key never does
    faults = {UPSTREAM_KEY: Faults(rate_limited=0.5, rate_limited_retry_after=0.05, seed=4)}
    with spawn_mock_process(
        api_keys=[UPSTREAM_KEY, DIRECT_KEY], key_faults=faults, latency=0.01, batch_latency=0.05
    ) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(mock_url: str) -> Iterator[GatewayProcess]:
    with spawn_gateway(
        mock_url,
        "--client-key",
        CLIENT_KEY,
        "--max-body-bytes",
        str(MAX_BODY),
        "--limits",
        "rpm=1000,itpm=1000000,otpm=200000",
        api_key=UPSTREAM_KEY,
    ) as gw:
        yield gw


def _via(gw: GatewayProcess, key: str = CLIENT_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=gw.url, max_retries=0)


def _direct(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=DIRECT_KEY, base_url=url, max_retries=0)


def _request(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 60,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def _without_ids(value: Any) -> Any:
    """The answer with its ids (sequential per mock, so different per call) left out."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


async def test_an_answer_through_the_gateway_equals_the_direct_one(
    gateway: GatewayProcess, mock_url: str
) -> None:
    async with _via(gateway) as via, _direct(mock_url) as direct:
        for i in range(5):  # enough that some meet the upstream's 429 (retried inside)
            body = _request(f"question {i}: what is a token bucket?")
            raw = await via.messages.with_raw_response.create(**body)
            answer = await raw.parse()
            expected = await direct.messages.create(**body)
            assert _without_ids(answer.model_dump()) == _without_ids(expected.model_dump())
            assert raw.request_id is not None and raw.request_id.startswith("req_")
    assert remote_stats(mock_url)["rate_limited"] > 0  # the upstream did say 429...


async def test_a_stream_through_the_gateway_equals_the_direct_one(
    gateway: GatewayProcess, mock_url: str
) -> None:
    body = _request("tell me about queues, streamed")
    async with _via(gateway) as via, _direct(mock_url) as direct:
        got = [e.model_dump() async for e in await via.messages.create(**body, stream=True)]
        want = [e.model_dump() async for e in await direct.messages.create(**body, stream=True)]
        async with via.messages.stream(**body) as stream:
            final = await stream.get_final_message()
    assert _without_ids(got) == _without_ids(want)
    assert got[0]["type"] == "message_start"
    assert final.content[0].type == "text" and final.usage.output_tokens > 0
    async with (
        httpx.AsyncClient(base_url=gateway.url) as http,
        http.stream(
            "POST", "/v1/messages", json={**body, "stream": True}, headers=_auth()
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["request-id"].startswith("req_")
        text = (await response.aread()).decode()
    assert text.startswith("event: message_start\ndata: {")
    assert text.rstrip().endswith('event: message_stop\ndata: {"type":"message_stop"}')


async def test_count_tokens_and_unknown_fields_pass_through(
    gateway: GatewayProcess, mock_url: str
) -> None:
    count = {"model": MODEL, "messages": [{"role": "user", "content": "count these words"}]}
    async with _via(gateway) as via, _direct(mock_url) as direct:
        got = await via.messages.count_tokens(**count)
        want = await direct.messages.count_tokens(**count)
        assert got.input_tokens == want.input_tokens > 0
        # a field this SDK does not know rides in the body all the same
        body = _request("with an extra field")
        answer = await via.messages.create(**body, extra_body={"a_future_field": {"x": 1}})
        expected = await direct.messages.create(**body, extra_body={"a_future_field": {"x": 1}})
    assert _without_ids(answer.model_dump()) == _without_ids(expected.model_dump())


def _auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"x-api-key": key}


async def test_an_unknown_key_gets_401_and_nothing_is_forwarded(
    gateway: GatewayProcess, mock_url: str
) -> None:
    before = remote_stats(mock_url)["requests"]
    async with _via(gateway, key="not-a-client-key") as via:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await via.messages.create(**_request("let me in"))
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        none = await http.post("/v1/messages", json=_request("no key at all"))
        bearer_bad = await http.post(
            "/v1/messages", json=_request("x"), headers={"authorization": "Bearer nope"}
        )
        bearer_ok = await http.post(
            "/v1/messages",
            json=_request("bearer works"),
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
    assert none.status_code == bearer_bad.status_code == 401
    assert bearer_ok.status_code == 200
    assert remote_stats(mock_url)["requests"] == before + 1  # only the bearer one went on


async def test_oversized_bodies_get_413_and_malformed_json_400(gateway: GatewayProcess) -> None:
    big = _request("x" * (MAX_BODY + 10))

    async def chunks() -> Any:  # no Content-Length: caught while reading
        for _ in range(30):
            yield b"x" * 1000

    async with httpx.AsyncClient(base_url=gateway.url, headers=_auth()) as http:
        declared = await http.post("/v1/messages", json=big)
        streamed = await http.post("/v1/messages", content=chunks())
        malformed = await http.post("/v1/messages", content=b'{"model": ')
        not_object = await http.post("/v1/messages", content=b"[1, 2]")
        bad_lane = await http.post(
            "/v1/messages", json=_request("x"), headers={"asyncthrift-priority": "urgent"}
        )
    assert declared.status_code == streamed.status_code == 413
    assert declared.json()["error"]["type"] == "request_too_large"
    for response in (malformed, not_object, bad_lane):
        assert response.status_code == 400
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_the_upstream_key_never_leaves_the_gateway(
    gateway: GatewayProcess, mock_url: str
) -> None:
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, headers=_auth()) as http:
        for response in await asyncio.gather(
            http.post("/v1/messages", json=_request("ok")),
            http.post("/v1/messages", json={**_request("too long"), "max_tokens": 10**7}),
            http.post("/v1/messages", json={"model": MODEL}),  # missing fields
            http.get("/v1/models"),
            http.get("/v1/nowhere"),
            http.get("/healthz"),
            http.get("/metrics"),
            http.get("/status.json"),
        ):
            seen.append(f"{response.status_code} {response.headers} {response.text}")
    assert any(s.startswith("200") for s in seen)
    assert any("asyncthrift_gateway" in s for s in seen)  # the metrics were in the look
    assert any(s.startswith("400") for s in seen)
    for text in [*seen, gateway.log]:
        assert UPSTREAM_KEY not in text
        assert UPSTREAM_KEY[-12:] not in text
    assert CLIENT_KEY not in gateway.log
    assert '"path":"/v1/messages"' in gateway.log  # the access log is there, as JSON


async def test_message_batches_go_through_the_gateway(gateway: GatewayProcess) -> None:
    requests: Any = [
        {"custom_id": f"item-{i}", "params": _request(f"batch item {i}")} for i in range(3)
    ]
    async with _via(gateway) as via:
        batch = await via.messages.batches.create(requests=requests)
        assert batch.id.startswith("msgbatch_") and batch.request_counts.processing == 3
        for _ in range(200):  # the mock ends it after ~0.05 s
            batch = await via.messages.batches.retrieve(batch.id)
            if batch.processing_status == "ended":
                break
            await asyncio.sleep(0.05)
        assert batch.processing_status == "ended"
        assert batch.results_url is not None and batch.results_url.startswith(gateway.url)
        listed = [b.id async for b in await via.messages.batches.list(limit=10)]
        results = [r async for r in await via.messages.batches.results(batch.id)]
    assert batch.id in listed
    assert sorted(r.custom_id for r in results) == ["item-0", "item-1", "item-2"]
    assert all(r.result.type == "succeeded" for r in results)

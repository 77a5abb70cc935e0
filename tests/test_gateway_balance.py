"""The gateway bench's load balancer (`bench/gateway_balance.LeastOutstanding`).

`bench/bench_gateway.py` spreads its clients' requests over the replicas as a deployment's
balancer would: to the replica with the fewest requests outstanding when the request goes on
the wire, ties round robin, a request counted until its answer is read and closed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from gateway_balance import LeastOutstanding

URLS = ["http://127.0.0.1:1001", "http://127.0.0.1:1002", "http://127.0.0.1:1003"]


class _Body(httpx2.AsyncByteStream):
    """A streamed answer's body, as a real connection's is (read, then closed)."""

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b"{}"

    async def aclose(self) -> None:
        pass


class _Held:
    """An inner transport that answers each request when told to (`release`), and records
    which port each went to."""

    def __init__(self) -> None:
        self.ports: list[int | None] = []
        self.gates: list[asyncio.Event] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.ports.append(request.url.port)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return httpx2.Response(200, stream=_Body(), request=request)

    async def aclose(self) -> None:
        pass

    def release(self, i: int) -> None:
        self.gates[i].set()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_burst_is_round_robin_then_the_least_outstanding_wins() -> None:
    inner = _Held()
    balancer = LeastOutstanding(URLS, inner)  # type: ignore[arg-type]
    async with httpx2.AsyncClient(transport=balancer, base_url=URLS[0]) as client:
        first = [asyncio.create_task(client.get("/x")) for _ in range(6)]
        await _settle()
        # nothing answered yet: round robin, two each
        assert inner.ports == [1001, 1002, 1003, 1001, 1002, 1003]
        assert balancer.outstanding == [2, 2, 2]
        # replica 2 (port 1003) answers both of its requests: it has the fewest now
        inner.release(2)
        inner.release(5)
        await asyncio.gather(first[2], first[5])
        assert balancer.outstanding == [2, 2, 0]
        more = [asyncio.create_task(client.get("/x")) for _ in range(3)]
        await _settle()
        assert inner.ports[6:] == [1003, 1003, 1001]  # 0 -> 1 -> 2 outstanding, then a tie
        for i in range(len(inner.gates)):
            inner.release(i)
        responses = await asyncio.gather(*first, *more)
    assert [r.status_code for r in responses] == [200] * 9
    assert balancer.outstanding == [0, 0, 0]
    assert balancer.picked == [3, 2, 4]


async def test_a_request_that_fails_is_no_longer_outstanding() -> None:
    class Refusing:
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            raise httpx2.ConnectError("refused", request=request)

        async def aclose(self) -> None:
            pass

    balancer = LeastOutstanding(URLS[:2], Refusing())  # type: ignore[arg-type]
    async with httpx2.AsyncClient(transport=balancer) as client:
        for _ in range(3):
            with pytest.raises(httpx2.ConnectError):
                await client.get(URLS[0] + "/x")
    assert balancer.outstanding == [0, 0]
    assert balancer.picked == [2, 1]


async def test_the_sdk_through_it_reaches_real_replicas_on_loopback() -> None:
    """Two mock APIs as replicas; the bare SDK through the balancer: each request's answer
    comes from the replica it was sent to, and the burst is split evenly."""
    import anthropic

    from asyncthrift.mock import remote_stats, spawn_mock_process

    with spawn_mock_process(latency=0.2) as a, spawn_mock_process(latency=0.2) as b:
        picks: list[int] = []
        balancer = LeastOutstanding([a, b], httpx2.AsyncHTTPTransport(), on_pick=picks.append)
        http = anthropic.DefaultAsyncHttpxClient(transport=balancer)
        sdk = anthropic.AsyncAnthropic(api_key="k", base_url=a, max_retries=0, http_client=http)
        ask = sdk.messages.create
        hi: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]
        try:
            calls = (ask(model="claude-sonnet-4-5", max_tokens=16, messages=hi) for _ in range(6))
            answers = await asyncio.gather(*calls)
        finally:
            await sdk.close()
        counts = [remote_stats(a)["requests"], remote_stats(b)["requests"]]
    assert len(answers) == 6
    assert sorted(picks) == [0, 0, 0, 1, 1, 1]
    assert counts == [3, 3]
    assert balancer.outstanding == [0, 0]

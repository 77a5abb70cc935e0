"""The gateway queues instead of refusing: real gateway processes in front of the mock, with
compressed periods and small workloads.

- under a backlog, interactive requests overtake the batch lane;
- a client's own quota gives the gateway's 429; a deadline passed gives 529 + retry-after;
- a client that disconnects while queued leaves the queue at once and is never sent;
- two replicas sharing one Redis admit as one client (0 upstream 429s), and SIGTERM drains
  one of them without losing a request.

Assertions are on order and counts, never on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from asyncthrift import Limits
from asyncthrift.mock import remote_stats, spawn_mock_process
from tests.gateway_process import GatewayProcess, spawn_gateway, spawn_gateways

pytestmark = pytest.mark.slow

SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"


def _body(text: str, model: str = SONNET) -> dict[str, Any]:
    return {"model": model, "max_tokens": 40, "messages": [{"role": "user", "content": text}]}


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30.0) -> None:
    """Wait until `check` holds (polling); fail naming `what` after `limit` seconds (a bound
    on a hang, far above the time the condition needs)."""
    end = time.monotonic() + limit
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _health(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/healthz")
    body: dict[str, Any] = response.json()
    body["code"] = response.status_code
    return body


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with spawn_mock_process(latency=0.01) as url:
        yield url


#: Sonnet: a burst of 3, then one request every 0.3 s (a backlog drains fast); Haiku: one
#: request a minute (spent by the first, so everything after it waits).
LIMITS = "sonnet:rpm=3,period=0.9;haiku:rpm=1,period=60"
KEYS = """
[[clients]]
name = "alice"
key = "alice-key"
rpm = 1

[[clients]]
name = "bob"
key = "bob-key"
lane = "interactive"
"""
BOB = {"x-api-key": "bob-key"}


@pytest.fixture(scope="module")
def gateway(mock_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    keys = tmp_path_factory.mktemp("gateway") / "keys.toml"
    keys.write_text(KEYS)
    key = f"k-{uuid.uuid4().hex}"
    with spawn_gateway(mock_url, "--limits", LIMITS, "--keys-file", str(keys), api_key=key) as gw:
        yield gw


async def test_interactive_requests_overtake_a_batch_backlog(gateway: GatewayProcess) -> None:
    done: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:

        async def send(name: str, lane: str) -> int:
            response = await http.post(
                "/v1/messages",
                json=_body(name),
                headers={**BOB, "asyncthrift-priority": lane},
            )
            done.append(name)
            return response.status_code

        batch = [asyncio.create_task(send(f"batch-{i}", "batch")) for i in range(12)]

        async def backlog() -> bool:
            return (await _health(http))["queued"] >= 6

        await _eventually(backlog, "six batch requests queued")
        interactive = [send(f"interactive-{i}", "interactive") for i in range(3)]
        statuses = await asyncio.gather(*batch, *interactive)
    assert statuses == [200] * 15
    last_interactive = max(done.index(f"interactive-{i}") for i in range(3))
    # at least three batch requests that were queued when they came were served after them
    assert all(name.startswith("batch") for name in done[last_interactive + 1 :])
    assert len(done) - last_interactive - 1 >= 3, done


async def test_quota_deadline_and_disconnect_on_a_spent_budget(
    gateway: GatewayProcess, mock_url: str
) -> None:
    """One Haiku request per minute upstream: the first spends it; then a client over its own
    quota gets 429 at once, a request with a short deadline 529, and one whose client leaves
    while it waits is dropped from the queue and never sent."""
    before = remote_stats(mock_url)["requests"]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        alice = {"x-api-key": "alice-key"}
        first = await http.post("/v1/messages", json=_body("first", HAIKU), headers=alice)
        over = await http.post("/v1/messages", json=_body("second", HAIKU), headers=alice)
        late = await http.post(
            "/v1/messages",
            json=_body("in a hurry", HAIKU),
            headers={**BOB, "asyncthrift-deadline": "0.2"},
        )
        waiting = asyncio.create_task(
            http.post("/v1/messages", json=_body("patient", HAIKU), headers=BOB)
        )

        def queued(n: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                health = await _health(http)
                return bool(health["queued"] == n and health["in_flight"] == n)

            return check

        await _eventually(queued(1), "the patient request queued")
        waiting.cancel()  # the client goes away: its connection closes
        await _eventually(queued(0), "the queue emptied by the disconnect")
    sent = remote_stats(mock_url)["requests"] - before
    log = gateway.log
    assert first.status_code == 200
    assert over.status_code == 429
    assert over.json()["error"]["type"] == "rate_limit_error"
    assert "alice" in over.json()["error"]["message"]
    assert int(over.headers["retry-after"]) >= 1
    assert any(h.startswith("x-asyncthrift-client-ratelimit-requests") for h in over.headers)
    assert late.status_code == 529
    assert late.json()["error"]["type"] == "overloaded_error"
    assert int(late.headers["retry-after"]) >= 1
    assert sent == 1  # only the first: the others were answered by the gateway, or left
    assert '"status":499' in log and '"client":"bob"' in log


async def test_two_replicas_share_one_budget_and_sigterm_drains_one(redis_url: str) -> None:
    limits = Limits(rpm=6, period=1.5)  # a burst of 6, then one every 0.25 s
    key = f"k-{uuid.uuid4().hex}"  # a key of its own: no other test's state in Redis
    options = ("--limits", "rpm=6,period=1.5", "--shared", redis_url, "--grace", "30")
    with (
        spawn_mock_process(limits=limits, latency=0.01) as mock,
        spawn_gateways(mock, *options, count=2, api_key=key) as (one, two),
    ):
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=60) as a,
            httpx.AsyncClient(base_url=two.url, timeout=60) as b,
        ):
            # twice the budget, half through each replica, all at once
            first = [(a, b)[i % 2].post("/v1/messages", json=_body(f"r{i}")) for i in range(12)]
            answers = await asyncio.gather(*first)
            assert [r.status_code for r in answers] == [200] * 12
            # a backlog on replica one, then SIGTERM while it is queued
            tail = [
                asyncio.create_task(a.post("/v1/messages", json=_body(f"t{i}"))) for i in range(6)
            ]

            async def accepted() -> bool:  # every one of them has reached the gateway
                answered = sum(task.done() for task in tail)
                return answered + (await _health(a))["in_flight"] >= 6

            await _eventually(accepted, "six requests accepted by replica one")
            one.proc.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                return (await _health(a))["code"] == 503

            await _eventually(draining, "replica one draining")
            refused = await a.post("/v1/messages", json=_body("too late"))
            drained = await asyncio.gather(*tail)
        exit_code = await asyncio.to_thread(one.proc.wait, 30)
        stats = remote_stats(mock)
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "overloaded_error"
    assert [r.status_code for r in drained] == [200] * 6
    assert exit_code == 0
    assert stats["rate_limited"] == 0  # two replicas admitted as one client
    assert stats["ok"] == 18

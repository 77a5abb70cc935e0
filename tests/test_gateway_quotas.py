"""Per-client quotas and spend caps of the gateway (`asyncthrift.gateway.quotas`): refused at
once over the client's own quota, refunded to the usage on settle exactly once, and, with
``shared=redis://``, counted once across replicas. Time is an injected clock: nothing waits.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncthrift.errors import InvalidArgument
from asyncthrift.gateway.clients import ClientQuota, GatewayClient
from asyncthrift.gateway.quotas import ClientQuotas, QuotaGrant, QuotaRefusal
from tests.redis_server import RedisServer

H = "x-asyncthrift-client-ratelimit-"
#: 2026-12-07T10:00:00Z: a fixed wall clock for spend periods and reset headers.
NOON = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.UTC).timestamp()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client(name: str = "alice", **quota: int) -> GatewayClient:
    return GatewayClient(name=name, quota=ClientQuota(**quota) if quota else None)


def capped(cap: float, period: str | None = "day", name: str = "bob") -> GatewayClient:
    return GatewayClient(name=name, spend_cap_usd=cap, spend_period=period)


async def take(
    q: ClientQuotas, c: GatewayClient, i: int = 10, o: int = 10, usd: float = 0.0
) -> QuotaGrant | QuotaRefusal:
    return await q.admit(c, input_tokens=i, max_tokens=o, worst_usd=usd)


def local(*clients: GatewayClient, clock: Clock | None = None) -> ClientQuotas:
    return ClientQuotas(clients, clock=clock or Clock(), wall=lambda: NOON)


async def test_rpm_quota_refuses_at_once_with_the_clients_own_headers() -> None:
    alice = client(rpm=3)
    q = local(alice)
    grants = [await take(q, alice) for _ in range(3)]
    assert all(isinstance(g, QuotaGrant) for g in grants)
    assert grants[-1].headers[f"{H}requests-remaining"] == "0"  # type: ignore[union-attr]
    refused = await take(q, alice)
    assert isinstance(refused, QuotaRefusal)
    assert "'alice'" in refused.message and "3 per minute" in refused.message
    assert refused.headers[f"{H}requests-limit"] == "3"
    assert refused.headers[f"{H}requests-remaining"] == "0"
    assert refused.headers[f"{H}requests-reset"] == "2026-12-07T10:01:00Z"
    assert not any(k.startswith("anthropic-") for k in refused.headers)
    assert refused.retry_after == 20  # one request drains in 60 / 3 s


async def test_the_quota_drains_continuously_and_release_gives_the_request_back() -> None:
    clock = Clock()
    alice = client(rpm=2)
    q = local(alice, clock=clock)
    first, _second = await take(q, alice), await take(q, alice)
    assert isinstance(await take(q, alice), QuotaRefusal)
    clock.now += 29.0
    assert isinstance(await take(q, alice), QuotaRefusal)
    clock.now += 1.0  # 30 s: one request's worth has drained
    assert isinstance(await take(q, alice), QuotaGrant)
    assert isinstance(await take(q, alice), QuotaRefusal)
    assert isinstance(first, QuotaGrant)
    await first.release()
    assert isinstance(await take(q, alice), QuotaGrant)


async def test_tokens_are_reserved_as_max_tokens_and_refunded_to_the_usage() -> None:
    alice = client(itpm=1000, otpm=1000)
    q = local(alice)
    g = await take(q, alice, i=300, o=800)
    assert isinstance(g, QuotaGrant)
    refused = await take(q, alice, i=100, o=300)
    assert isinstance(refused, QuotaRefusal)
    assert "output tokens" in refused.message and "input tokens" not in refused.message
    assert refused.headers[f"{H}output-tokens-remaining"] == "200"
    assert refused.retry_after == 6  # 100 tokens over, draining at 1000 per 60 s
    await g.settle(input_tokens=250, output_tokens=100, cost_usd=0.0)
    await g.settle(input_tokens=0, output_tokens=0, cost_usd=0.0)  # exactly once
    await g.release()
    assert q.snapshot()["alice"]["used"] == {"rpm": 0.0, "itpm": 250.0, "otpm": 100.0}
    assert isinstance(await take(q, alice, i=700, o=900), QuotaGrant)


async def test_a_request_larger_than_the_quota_is_told_it_can_never_fit() -> None:
    alice = client(otpm=500)
    refused = await take(local(alice), alice, o=4096)
    assert isinstance(refused, QuotaRefusal)
    assert "never fit" in refused.message and "max_tokens" in refused.message


async def test_a_client_without_quota_or_cap_is_never_refused() -> None:
    free = client("free")
    q = local(free)
    for _ in range(1000):
        g = await take(q, free, i=10**6, o=10**6, usd=100.0)
        assert isinstance(g, QuotaGrant)
        await g.settle(input_tokens=1, output_tokens=1, cost_usd=1.0)


async def test_spend_cap_holds_the_worst_case_and_charges_the_true_cost() -> None:
    bob = capped(1.0)
    q = local(bob)
    g1 = await take(q, bob, usd=0.6)
    assert isinstance(g1, QuotaGrant)
    refused = await take(q, bob, usd=0.6)
    assert isinstance(refused, QuotaRefusal)
    assert "'bob'" in refused.message and "spend cap" in refused.message
    assert refused.headers["x-asyncthrift-client-spend-remaining-usd"] == "0.4000"
    assert refused.retry_after == 14 * 3600  # to midnight UTC
    await g1.settle(input_tokens=10, output_tokens=10, cost_usd=0.1)
    g2 = await take(q, bob, usd=0.6)
    assert isinstance(g2, QuotaGrant)
    await g2.release()
    assert q.snapshot()["bob"]["spent_usd"] == pytest.approx(0.1)


async def test_bad_quotas_fail_at_start_naming_the_client() -> None:
    with pytest.raises(InvalidArgument, match=r"'carol'.*rpm"):
        ClientQuotas([client("carol", rpm=0)])
    with pytest.raises(InvalidArgument, match=r"'dave'.*spend_period"):
        ClientQuotas([GatewayClient("dave", spend_cap_usd=1.0, spend_period="fortnight")])
    with pytest.raises(InvalidArgument, match="redis://"):
        ClientQuotas([], shared="http://localhost:6379")


# -- two replicas on one real Redis -------------------------------------------------------


def replica(url: str, ns: str, clock: Clock, *clients: GatewayClient) -> ClientQuotas:
    return ClientQuotas(clients, shared=url, prefix=ns, clock=clock, wall=lambda: NOON)


@pytest.mark.redis
async def test_two_replicas_count_one_quota(redis_url: str, redis_namespace: str) -> None:
    clock = Clock()
    alice = client(rpm=4, otpm=1000)
    a, b = (replica(redis_url, redis_namespace, clock, alice) for _ in range(2))
    try:
        got = [await take(r, alice, o=200) for r in (a, b, a, b)]
        assert all(isinstance(g, QuotaGrant) for g in got)
        refused = await take(b, alice, o=200)
        assert isinstance(refused, QuotaRefusal) and "4 per minute" in refused.message
        await got[0].settle(input_tokens=5, output_tokens=0, cost_usd=0.0)  # on a
        await a.flush()
        refused = await take(b, alice, o=200)  # the otpm refund is seen by b; rpm is not
        assert isinstance(refused, QuotaRefusal) and "requests" in refused.message
        await got[1].release()  # the request comes back, through b
        await b.flush()
        assert isinstance(await take(a, alice, o=200), QuotaGrant)
        clock.now += 15.0  # one request drains on both replicas' shared clock
        assert isinstance(await take(b, alice, o=200), QuotaGrant)
        assert isinstance(await take(a, alice, o=200), QuotaRefusal)
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.redis
async def test_concurrent_admissions_on_two_replicas_never_overshoot(
    redis_url: str, redis_namespace: str
) -> None:
    clock = Clock()
    alice = client(rpm=25)
    bob = capped(1.0)
    a, b = (replica(redis_url, redis_namespace, clock, alice, bob) for _ in range(2))
    try:
        results = await asyncio.gather(*(take(r, alice) for r in (a, b) for _ in range(20)))
        assert sum(isinstance(g, QuotaGrant) for g in results) == 25
        spend = await asyncio.gather(*(take(r, bob, usd=0.3) for r in (a, b) for _ in range(5)))
        assert sum(isinstance(g, QuotaGrant) for g in spend) == 3
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.redis
async def test_a_settlement_is_sent_in_the_background_and_aclose_waits_for_it(
    redis_url: str, redis_namespace: str
) -> None:
    bob = capped(1.0)
    a = replica(redis_url, redis_namespace, Clock(), bob)
    b = replica(redis_url, redis_namespace, Clock(), bob)
    try:
        g = await take(a, bob, usd=0.9)
        assert isinstance(g, QuotaGrant)
        handler = asyncio.ensure_future(g.release())
        await asyncio.sleep(0)
        handler.cancel()  # the handler is gone at once; its release was already under way
        assert g.settled
        await a.aclose()  # waits for the settlement nobody awaited
        assert isinstance(await take(b, bob, usd=0.9), QuotaGrant)
    finally:
        await b.aclose()


@pytest.mark.redis
async def test_redis_down_keeps_rate_quotas_local_and_refuses_spend_caps(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    alice, bob = client(rpm=2), capped(5.0)
    q = replica(own_redis_server.url, redis_namespace, Clock(), alice, bob)
    try:
        assert isinstance(await take(q, alice), QuotaGrant)
        own_redis_server.stop()
        assert isinstance(await take(q, alice), QuotaGrant)  # local: its own whole quota
        assert isinstance(await take(q, alice), QuotaGrant)
        assert isinstance(await take(q, alice), QuotaRefusal)
        refused = await take(q, bob, usd=0.01)
        assert isinstance(refused, QuotaRefusal) and "cannot be checked" in refused.message
    finally:
        await q.aclose()


@pytest.mark.redis
async def test_replicas_on_the_servers_clock_share_one_quota_and_no_name_reaches_redis(
    redis_url: str, redis_namespace: str
) -> None:
    import redis.asyncio as aioredis

    alice, bob = client("alice", rpm=2), capped(1.0, name="bob")
    a, b = (ClientQuotas([alice, bob], shared=redis_url, prefix=redis_namespace) for _ in range(2))
    try:
        assert isinstance(await take(a, alice), QuotaGrant)
        assert isinstance(await take(b, alice), QuotaGrant)  # rpm 2 drains 1 per 30 s
        assert isinstance(await take(a, alice), QuotaRefusal)
        assert isinstance(await take(b, bob, usd=0.5), QuotaGrant)
        raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
        keys = await raw.keys(f"{redis_namespace}*")
        await raw.aclose()
    finally:
        await a.aclose()
        await b.aclose()
    assert len(keys) == 3  # alice's quota, bob's quota and bob's spend today
    assert all(k.startswith(f"{redis_namespace}:{{") for k in keys)
    assert not any("alice" in k or "bob" in k for k in keys)


async def test_a_grant_carries_the_quota_left_for_the_response() -> None:
    alice = GatewayClient("alice", quota=ClientQuota(rpm=5, otpm=1000), spend_cap_usd=2.0)
    g = await take(local(alice), alice, o=300, usd=0.5)
    assert isinstance(g, QuotaGrant)
    assert g.headers[f"{H}requests-remaining"] == "4"
    assert g.headers[f"{H}output-tokens-remaining"] == "700"
    assert g.headers[f"{H}output-tokens-reset"] == "2026-12-07T10:00:18Z"  # 300 at 1000/min
    assert g.headers["x-asyncthrift-client-spend-remaining-usd"] == "1.5000"
    assert f"{H}input-tokens-limit" not in g.headers  # no itpm quota


@pytest.mark.redis
async def test_after_redis_returns_the_replicas_count_together_again(
    own_redis_server: RedisServer, redis_namespace: str
) -> None:
    clock = Clock()
    alice = client(rpm=4)
    url = own_redis_server.url
    a, b = (replica(url, redis_namespace, clock, alice) for _ in range(2))
    try:
        own_redis_server.stop()
        fallback = [await take(a, alice) for _ in range(2)]  # two failures open the circuit
        assert all(isinstance(g, QuotaGrant) and g.backend == "local" for g in fallback)
        await fallback[0].settle(input_tokens=1, output_tokens=1, cost_usd=0.0)  # locally
        own_redis_server.start(same_port=True)
        skipped = await take(a, alice)  # Redis is back, but the circuit waits its cooldown
        assert isinstance(skipped, QuotaGrant) and skipped.backend == "local"
        clock.now += 5.0  # past the cooldown: the next call probes Redis, and rejoins
        got = [await take(r, alice) for r in (a, b, a, b)]
        assert [g.backend for g in got if isinstance(g, QuotaGrant)] == ["redis"] * 4
        assert isinstance(await take(a, alice), QuotaRefusal)  # one quota again, in Redis
    finally:
        await a.aclose()
        await b.aclose()


# -- the Lua script and the local book decide alike ------------------------------------------

Op = tuple[str, int, int, int, int]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["admit", "admit", "settle", "release"]),
        st.integers(0, 20),  # seconds that pass first
        st.integers(0, 900),  # input tokens (admit) or used (settle)
        st.integers(0, 1300),  # max_tokens (admit) or output used (settle)
        st.integers(0, 3),  # worst case (admit) or cost (settle), in eighths of a dollar
    ),
    min_size=1,
    max_size=25,
)


async def replay(q: ClientQuotas, clock: Clock, ops: list[Op]) -> list[object]:
    """What `q` answers to `ops`: each admission's outcome, its headers and retry-after."""
    quota = ClientQuota(rpm=6, itpm=1200, otpm=1800)
    alice = GatewayClient("alice", quota=quota, spend_cap_usd=1.0, spend_period="day")
    grants: list[QuotaGrant] = []
    seen: list[object] = []
    for kind, dt, a, b, eighths in ops:
        clock.now += dt
        if kind == "admit":
            got = await q.admit(alice, input_tokens=a, max_tokens=b, worst_usd=eighths / 8)
            if isinstance(got, QuotaGrant):
                grants.append(got)
                seen.append(("grant", dict(got.headers)))
            else:
                seen.append(("refused", got.retry_after, dict(got.headers)))
        elif grants:
            g = grants.pop(a % len(grants))
            if kind == "release":
                await g.release()
            else:
                await g.settle(input_tokens=a, output_tokens=b, cost_usd=eighths / 8)
            await q.flush()
    return seen


@pytest.mark.redis
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_redis_and_local_books_decide_every_sequence_alike(redis_url: str, ops: list[Op]) -> None:
    """Both books do the same double arithmetic and Redis keeps every double exactly (17
    digits); dollars in eighths keep Redis's INCRBYFLOAT exact too. So any difference is a
    real divergence, never rounding."""

    async def both() -> tuple[list[object], list[object]]:
        local_clock, shared_clock = Clock(), Clock()
        local_q = ClientQuotas([], clock=local_clock, wall=lambda: NOON)
        shared_q = ClientQuotas(
            [],
            shared=redis_url,
            prefix=f"t-{uuid.uuid4().hex[:12]}",
            clock=shared_clock,
            wall=lambda: NOON,
        )
        try:
            return await replay(local_q, local_clock, ops), await replay(
                shared_q, shared_clock, ops
            )
        finally:
            await shared_q.aclose()

    local_seen, shared_seen = asyncio.run(both())
    assert shared_seen == local_seen

"""Stock given back pays the grants reserved ahead sooner, told without a call (`lease.lua`'s
notice, `_notices`, `SharedBudget.pay_sooner`).

The script's side runs against the session's real redis-server; the budget's side on a
scripted store in virtual time (looptime): deterministic whatever the load.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.scheduler import Gate
from asyncthrift.stores.shared import SharedBudget, SharedStore, budget_tag
from asyncthrift.stores.shared._notices import Notices, parse_notice
from asyncthrift.stores.shared._redis import Script, load_script
from tests.test_shared import args
from tests.test_shared_share import HEAD, LIMITS, Store, answer, needed


def with_unpaid(unpaid: tuple[float, float, float], **kw: Any) -> list[str]:
    """`args` with ARGV[45..47]: of the give, what was granted ahead and not yet paid."""
    return [*args(backlog=0, **kw), *(repr(float(x)) for x in unpaid)]


@pytest.fixture
async def bucket(redis_url: str, redis_namespace: str) -> Any:
    """(call, messages): the script on a fresh bucket, and what its channel received."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    script = Script(load_script("lease.lua"))
    keys = [f"{redis_namespace}:{{tag:sonnet}}:b", f"{redis_namespace}:{{tag:sonnet}}:p"]
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{redis_namespace}:{{tag:sonnet}}:n")

    async def call(unpaid: tuple[float, float, float] = (0, 0, 0), **kw: Any) -> list[str]:
        res: list[str] = await script(client, keys, with_unpaid(unpaid, **kw))
        return res

    async def messages() -> list[str]:
        """What arrived within 0.3 s (a subscription's confirmation reads as None)."""
        got = []
        for _ in range(3):
            m = await pubsub.get_message(timeout=0.1)
            if m is not None:
                got.append(str(m["data"]))
        return got

    await call(need=(1, 1, 1))  # cold: a probe
    await call(proof=("0", "6000", "600"), ask=(0, 0, 0))  # proved: requests at 0
    yield call, messages
    await pubsub.aclose()
    await client.aclose()


@pytest.mark.redis
async def test_stock_given_back_in_hand_below_zero_is_published(bucket: Any) -> None:
    call, messages = bucket
    await call(need=(3, 10, 10))  # requests at -3: paid by the refill (1/s) over 3 s
    res = await call(give=(2, 0, 0), holds=(0, 0, 0))
    (text,) = await messages()
    notice = parse_notice(text)
    assert notice is not None
    seq, sooner, epoch = notice
    assert seq == int(res[15]) and epoch == res[14]
    # 2 requests back in hand: every grant made before is paid 2 s of refill sooner
    assert sooner[0] == pytest.approx(2.0, rel=0.01) and sooner[1:] == (0.0, 0.0)


@pytest.mark.redis
async def test_a_give_of_what_was_itself_reserved_ahead_moves_nothing(bucket: Any) -> None:
    call, messages = bucket
    await call(need=(3, 10, 10))
    # 2 requests back, 1.5 of them granted ahead and not paid yet: only 0.5 was in hand
    await call(give=(2, 0, 0), unpaid=(1.5, 0, 0))
    (text,) = await messages()
    notice = parse_notice(text)
    assert notice is not None and notice[1][0] == pytest.approx(0.5, rel=0.02)
    await call(give=(1, 0, 0), unpaid=(1, 0, 0))  # all of it reserved ahead: no notice
    assert await messages() == []


@pytest.mark.redis
async def test_a_give_to_a_level_above_zero_is_not_published(bucket: Any) -> None:
    call, messages = bucket
    await call(give=(0, 100, 100))  # input and output are at their capacity, not below 0
    await call(need=(1, 10, 10))  # requests from 0 to -1
    await call(give=(0, 0, 5))
    assert await messages() == []


def reserved_ahead(seq: int) -> Any:
    """A `lease.lua` answer granting what the call needs: requests and input at once, the
    output entirely reserved ahead, paid from 2 s to 2 + need / 720 s; at sequence `seq`."""

    def reply(a: list[str]) -> list[str]:
        g = needed(a)
        ready = 2.0 + g[2] / 720.0
        return [
            "0", *map(str, g), str(ready), "0", "4", "10", "10000", str(-720 * ready), "4",
            str(g[0]), str(g[1]), "0", "e", str(seq), "0", "0", "0", "2.0",
        ]  # fmt: skip

    return reply


async def one_head_waiting(seq: int) -> tuple[Store, SharedBudget, asyncio.Task[Any]]:
    store = Store(reserved_ahead(seq))
    loop = asyncio.get_running_loop()
    budget = SharedBudget(store, LIMITS, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    head = asyncio.create_task(gate.acquire(HEAD))
    await store.calls_reach(1)
    await asyncio.sleep(0.5)
    assert not head.done()
    return store, budget, head


async def finish(store: Store, head: asyncio.Task[Any]) -> None:
    for t in [head, *store.tasks]:
        t.cancel()
    await asyncio.gather(head, *store.tasks, return_exceptions=True)


@pytest.mark.looptime
async def test_a_notice_admits_a_head_waiting_for_its_grant_without_a_call() -> None:
    store, budget, head = await one_head_waiting(seq=5)
    loop = asyncio.get_running_loop()
    at = loop.time()
    budget.pay_sooner("e", 6, (0.0, 0.0, 3.5))  # 3.5 s sooner: all of it paid by now
    await asyncio.wait_for(asyncio.shield(head), 0.01)
    assert loop.time() - at < 0.01 and budget.notices == 1
    # no call asked for the head (a later one only tops the lease up after the admission)
    assert all(float(a[4 + 7 * d + 1]) == 0 for _, a in store.calls[1:] for d in range(3))
    await finish(store, head)


@pytest.mark.looptime
async def test_a_notice_moves_only_grants_made_before_it_in_the_same_epoch() -> None:
    store, budget, head = await one_head_waiting(seq=5)
    loop = asyncio.get_running_loop()
    budget.pay_sooner("e", 5, (0.0, 0.0, 3.5))  # the same call granted it: behind already
    budget.pay_sooner("other", 9, (0.0, 0.0, 3.5))  # a bucket Redis lost and made anew
    budget.pay_sooner("e", 6, (0.0, 0.0, 0.0))  # nothing sooner in output
    assert budget.notices == 0
    await asyncio.wait_for(asyncio.shield(head), 5.0)
    # paid from 2 s to 2 + 1024 / 720 s after the call, as granted
    assert loop.time() == pytest.approx(store.calls[0][0] + 2.0 + 1024 / 720, abs=0.1)
    await finish(store, head)


@pytest.mark.looptime
async def test_a_partial_notice_pays_part_of_the_grant_at_once() -> None:
    store, budget, head = await one_head_waiting(seq=5)
    loop = asyncio.get_running_loop()
    at = loop.time()
    budget.pay_sooner("e", 6, (0.0, 0.0, 1.0))  # 1 s sooner: from 1 s to 1 + 1.42 s
    await asyncio.wait_for(asyncio.shield(head), 5.0)
    assert loop.time() == pytest.approx(store.calls[0][0] + 1.0 + 1024 / 720, abs=0.1)
    assert loop.time() - at > 1.0
    await finish(store, head)


@pytest.mark.redis
async def test_notices_hand_every_published_message_to_deliver(
    redis_url: str, redis_namespace: str
) -> None:
    """Real time, bounded generously: the subscription is up within seconds on any load."""
    store = SharedStore(redis_url, namespace=redis_namespace)
    loop = asyncio.get_running_loop()
    budget = store.budget("key", "sonnet", LIMITS, loop.time(), "k/sonnet")
    assert isinstance(budget, SharedBudget)
    got: list[tuple[str, str]] = []
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    notices = Notices(client, f"{redis_namespace}:{{*}}:n", lambda c, d: got.append((c, d)))
    notices.start()
    try:
        for _ in range(100):  # until the subscription is up
            await client.publish(budget.channel, "4 0 0 0.001 e")
            await asyncio.sleep(0.05)
            if got:
                break
        assert got and got[0] == (budget.channel, "4 0 0 0.001 e")
        assert budget.channel == f"{redis_namespace}:{{{budget_tag('key')}:sonnet}}:n"
        await client.publish("elsewhere:{x}:n", "1 0 0 1 e")  # another namespace's
        await asyncio.sleep(0.2)
        assert all(c == budget.channel for c, _ in got)
    finally:
        await notices.aclose()
        await store.aclose()
        await client.aclose()


def test_a_malformed_notice_is_ignored() -> None:
    assert parse_notice("garbage") is None
    assert parse_notice("x 0 0 1 e") is None
    assert parse_notice("7 0 0.5 1 1700000000.1:host:1:ab") == (
        7,
        (0.0, 0.5, 1.0),
        "1700000000.1:host:1:ab",
    )


async def after_the_last_answer(level_out: float) -> tuple[Store, float]:
    """One request admitted from a lease (the last call saw the output level at
    `level_out`), answered 0.3 s later with 944 of its 1,024 output tokens back; the store
    and the instant of the answer."""
    store = Store(lambda a: answer(granted=needed(a), level=(10.0, 10_000.0, level_out)))
    loop = asyncio.get_running_loop()
    budget = SharedBudget(store, LIMITS, loop.time(), "k/sonnet", ("b", "p"))
    gate = Gate([budget])
    budget.bind(gate)
    await asyncio.wait_for(gate.acquire(HEAD), 1.0)
    await asyncio.sleep(0.3)
    at = loop.time()
    gate.settled(budget, Cost(0, 0, 944))
    await asyncio.sleep(0.1)
    return store, at


GIVE_OUT = 4 + 7 * 2 + 3  # the output dimension's give in the script's arguments


@pytest.mark.looptime
async def test_a_process_out_of_work_gives_its_lease_back_at_once_while_others_wait() -> None:
    store, at = await after_the_last_answer(-2880.0)
    later = [a for t, a in store.calls if t >= at]
    assert len(later) == 1 and float(later[0][GIVE_OUT]) >= 944.0
    assert all(float(later[0][4 + 7 * d + 2]) == 0 for d in range(3))  # asks nothing
    for t in store.tasks:
        t.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)


@pytest.mark.looptime
async def test_with_nobody_waiting_the_lease_stays_until_the_idle_timeout() -> None:
    store, at = await after_the_last_answer(20_000.0)
    assert [t for t, _ in store.calls if t >= at] == []  # (sporadic work keeps its lease)
    for t in store.tasks:
        t.cancel()
    await asyncio.gather(*store.tasks, return_exceptions=True)

"""The scheduler in virtual time: limits hold, refunds are exact, nothing leaks, order holds."""

from __future__ import annotations

import asyncio
import math

import pytest

from asyncthrift.errors import DeadlineExceeded, QueueFull, RequestTooLarge
from asyncthrift.scheduling.bucket import Cost
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.scheduler import Gate, QueueCounter, lane_level

pytestmark = pytest.mark.looptime


def make_gate(limits: Limits, **kw: object) -> tuple[Gate, LocalBudget]:
    loop = asyncio.get_running_loop()
    budget = LocalBudget(limits, loop.time(), hold_bursts=False)
    return Gate([budget], loop=loop, **kw), budget  # type: ignore[arg-type]


async def test_admits_at_the_exact_instant_the_head_fits() -> None:
    gate, _ = make_gate(Limits(rpm=60, itpm=6000, otpm=600))
    loop = asyncio.get_running_loop()
    await gate.acquire(Cost(60, 6000, 600))  # drain everything
    t0 = loop.time()
    await gate.acquire(Cost(1, 300, 50))  # output needs 5 s, the slowest dimension
    assert loop.time() - t0 == pytest.approx(5.0)


async def test_fast_path_does_not_barge_past_waiters() -> None:
    gate, _ = make_gate(Limits(rpm=60))
    await gate.acquire(Cost(60, 0, 0))
    order: list[str] = []

    async def go(name: str, n: int) -> None:
        await gate.acquire(Cost(n, 0, 0))
        order.append(name)

    big = asyncio.create_task(go("big", 30))
    await asyncio.sleep(0)
    small = asyncio.create_task(go("small", 1))
    await asyncio.gather(big, small)
    assert order == ["big", "small"]


async def test_refund_wakes_the_head_at_once() -> None:
    gate, _ = make_gate(Limits(otpm=600))
    loop = asyncio.get_running_loop()
    first = await gate.acquire(Cost(1, 0, 600))
    waiter = asyncio.create_task(gate.acquire(Cost(1, 0, 500)))
    await asyncio.sleep(0.5)
    assert not waiter.done()
    first.settle(0, 50)  # produced 50 of 600: 550 back
    await asyncio.sleep(0)
    assert waiter.done()
    assert loop.time() == pytest.approx(0.5)


async def test_refunds_restore_the_budget_exactly() -> None:
    gate, budget = make_gate(Limits(rpm=100, itpm=10_000, otpm=5_000))
    before = budget.peek(0.0)
    res = [await gate.acquire(Cost(1, 123, 456)) for _ in range(10)]
    for r in res:
        r.release(sent=False)
    assert budget.peek(0.0) == pytest.approx(before)


async def test_cancelled_while_queued_costs_nothing() -> None:
    gate, budget = make_gate(Limits(rpm=10, itpm=1000, otpm=1000))
    await gate.acquire(Cost(10, 0, 0))
    loop = asyncio.get_running_loop()
    waiters = [asyncio.create_task(gate.acquire(Cost(1, 100, 100))) for _ in range(5)]
    await asyncio.sleep(1.0)
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert gate.waiting == 0
    levels = budget.peek(loop.time())
    assert levels[1] == pytest.approx(1000) and levels[2] == pytest.approx(1000)
    # the requests bucket is refilling from the initial drain only
    assert levels[0] == pytest.approx(10 / 60 * 1.0)


async def test_cancelled_right_after_admission_is_refunded() -> None:
    gate, budget = make_gate(Limits(rpm=10))
    await gate.acquire(Cost(10, 0, 0))
    task = asyncio.create_task(gate.acquire(Cost(1, 0, 0)))
    await asyncio.sleep(6.0)  # the timer fires at 6 s and resolves the future...
    task.cancel()  # ...but the waiter is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.peek(6.0)[0] == pytest.approx(1.0)  # the admitted request came back


async def test_in_flight_cancellation_keeps_input_and_returns_output() -> None:
    gate, budget = make_gate(Limits(rpm=10, itpm=1000, otpm=1000))
    res = await gate.acquire(Cost(1, 300, 400))
    res.release(sent=True, input_counted=True)
    res.release(sent=True, input_counted=True)  # exactly once
    res.settle(0, 0)
    assert budget.peek(0.0) == pytest.approx((9, 700, 1000))


async def test_priority_lanes_then_fifo() -> None:
    gate, _ = make_gate(Limits(rpm=60), aging=1000.0)
    await gate.acquire(Cost(60, 0, 0))
    order: list[str] = []

    async def go(name: str, prio: str) -> None:
        await gate.acquire(Cost(1, 0, 0), level=lane_level(prio))
        order.append(name)

    tasks = []
    for name, prio in [
        ("b1", "batch"),
        ("d1", "default"),
        ("i1", "interactive"),
        ("b2", "batch"),
        ("i2", "interactive"),
        ("d2", "default"),
    ]:
        tasks.append(asyncio.create_task(go(name, prio)))
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["i1", "i2", "d1", "d2", "b1", "b2"]


async def test_aging_lets_old_batch_work_through() -> None:
    gate, _ = make_gate(Limits(rpm=60), aging=5.0)  # one lane step = 5 s of waiting
    await gate.acquire(Cost(60, 0, 0))
    order: list[str] = []

    async def go(name: str, level: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await gate.acquire(Cost(1, 0, 0), level=level)
        order.append(name)

    # a batch request at t=0; interactive ones keep arriving every 0.5 s
    tasks = [asyncio.create_task(go("batch", 0, 0.0))]
    tasks += [asyncio.create_task(go(f"i{k}", 2, 0.5 * (k + 1))) for k in range(30)]
    await asyncio.gather(*tasks)
    pos = order.index("batch")
    # interactive boost is 2 * 5 s = 10 s: once the batch has waited 10 s longer than the
    # newest interactive arrival it goes first; it is neither first nor starved to the end
    assert 0 < pos < len(order) - 1
    assert order[pos - 1].startswith("i")


async def test_deadline_exceeded_leaves_nothing_behind() -> None:
    gate, _ = make_gate(Limits(rpm=60))
    loop = asyncio.get_running_loop()
    await gate.acquire(Cost(60, 0, 0))
    t0 = loop.time()
    with pytest.raises(DeadlineExceeded, match="deadline") as info:
        await gate.acquire(Cost(5, 0, 0), deadline=2.0)
    assert loop.time() - t0 == pytest.approx(2.0)
    assert info.value.retry_after == pytest.approx(3.0)  # when it would have fitted
    assert gate.waiting == 0
    await gate.acquire(Cost(3, 0, 0))  # the queue moves on
    assert loop.time() - t0 == pytest.approx(3.0)


async def test_queue_full() -> None:
    loop = asyncio.get_running_loop()
    budget = LocalBudget(Limits(rpm=60), loop.time(), hold_bursts=False)
    gate = Gate([budget], counter=QueueCounter(2), loop=loop)
    await gate.acquire(Cost(60, 0, 0))
    waiters = [asyncio.create_task(gate.acquire(Cost(1, 0, 0))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull, match="max_queue=2"):
        await gate.acquire(Cost(1, 0, 0))
    await asyncio.gather(*waiters)


async def test_request_too_large_fails_at_once() -> None:
    gate, _ = make_gate(Limits(rpm=60, otpm=1000))
    with pytest.raises(RequestTooLarge, match="max_tokens"):
        await gate.acquire(Cost(1, 10, 4096))


async def test_block_until_is_honoured_to_the_millisecond() -> None:
    gate, budget = make_gate(Limits(rpm=600))
    loop = asyncio.get_running_loop()
    budget.block_until(loop.time() + 1.234)
    gate.poke()
    t0 = loop.time()
    await gate.acquire(Cost(1, 0, 0))
    assert loop.time() - t0 == pytest.approx(1.234, abs=1e-6)


async def test_key_pool_uses_whichever_key_can_pay_first() -> None:
    loop = asyncio.get_running_loop()
    a = LocalBudget(Limits(rpm=60), loop.time(), name="a", hold_bursts=False)
    b = LocalBudget(Limits(rpm=120), loop.time(), name="b", hold_bursts=False)
    gate = Gate([a, b], loop=loop)
    used = [0, 0]
    for _ in range(180):
        res = await gate.acquire(Cost(1, 0, 0))
        used[res.index] += 1
    assert used == [60, 120] and loop.time() == 0.0
    t0 = loop.time()
    for _ in range(30):
        res = await gate.acquire(Cost(1, 0, 0))
        used[res.index] += 1
    # combined refill is 3 per second: 30 more take 10 s
    assert loop.time() - t0 == pytest.approx(10.0, rel=0.02)


async def test_timer_count_stays_one_with_many_waiters() -> None:
    gate, _ = make_gate(Limits(rpm=600))
    loop = asyncio.get_running_loop()
    await gate.acquire(Cost(600, 0, 0))
    tasks = [asyncio.create_task(gate.acquire(Cost(1, 0, 0))) for _ in range(2000)]
    await asyncio.sleep(0)
    scheduled = [h for h in loop._scheduled if not h._cancelled]  # type: ignore[attr-defined]
    assert len(scheduled) == 1
    await asyncio.gather(*tasks)
    assert loop.time() == pytest.approx(200.0)
    assert math.isinf(gate._timer_at)


async def test_try_acquire_is_the_fast_path_and_never_barges() -> None:
    gate, budget = make_gate(Limits(rpm=60))
    first = gate.try_acquire(Cost(1, 0, 0))
    assert first is not None and budget.peek(gate.now())[0] == pytest.approx(59)
    assert gate.try_acquire(Cost(60, 0, 0)) is None  # does not fit now: nothing taken
    assert budget.peek(gate.now())[0] == pytest.approx(59)
    waiter = asyncio.create_task(gate.acquire(Cost(60, 0, 0)))
    await asyncio.sleep(0)
    assert gate.waiting == 1
    assert gate.try_acquire(Cost(1, 0, 0)) is None  # somebody waits: no barging
    first.release(sent=False)
    await asyncio.sleep(0)
    assert waiter.done()


async def test_try_acquire_leaves_a_request_too_large_to_acquire() -> None:
    gate, _ = make_gate(Limits(otpm=100))
    assert gate.try_acquire(Cost(1, 0, 101)) is None
    with pytest.raises(RequestTooLarge):
        await gate.acquire(Cost(1, 0, 101))
    assert gate.waiting == 0


async def test_in_a_pool_a_refund_wakes_the_head_only_where_it_now_fits() -> None:
    loop = asyncio.get_running_loop()
    a = LocalBudget(Limits(otpm=600), loop.time(), hold_bursts=False)  # 10 tokens/s
    b = LocalBudget(Limits(otpm=6000), loop.time(), hold_bursts=False)  # 100 tokens/s
    gate = Gate([a, b], loop=loop)
    on_a = await gate.acquire(Cost(1, 0, 600))
    on_b = await gate.acquire(Cost(1, 0, 6000))
    assert (on_a.index, on_b.index) == (0, 1)
    waiter = asyncio.create_task(gate.acquire(Cost(1, 0, 500)))
    await asyncio.sleep(1.0)  # b refills to 100, a to 10: the head waits for b at t=5
    on_a.settle(0, 300)  # a gets 300 back: 310 < 500, and a reaches 500 only at t=20
    await asyncio.sleep(0)
    assert not waiter.done()
    await asyncio.sleep(2.0)
    on_b.settle(0, 5900)  # b gets 100 back at t=3: 400 < 500, still waits...
    await asyncio.sleep(0)
    assert not waiter.done()
    await asyncio.sleep(1.0)  # ...until b refills to 500 at t=4 (sooner than planned)
    assert waiter.done() and waiter.result().index == 1
    assert loop.time() == pytest.approx(4.0)

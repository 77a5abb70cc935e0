"""SingleFlight: one execution per key in flight, cancellation-safe, no orphan tasks."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from asyncthrift.pipeline.dedupe import SingleFlight


class Budget:
    """A stand-in for the scheduler's reservation: reserve before, refund on cancellation."""

    def __init__(self) -> None:
        self.available = 100
        self.calls = 0
        self.cancelled = 0

    async def upstream(self, result: Any = "answer", delay: float = 0.05) -> Any:
        self.calls += 1
        self.available -= 10
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            self.available += 10  # refunded: nothing was produced
            raise
        return result


def other_tasks() -> set[asyncio.Task[Any]]:
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not me}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_identical_concurrent_calls_share_one_execution() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    before = other_tasks()
    results = await asyncio.gather(*(flight.do_joined("k", budget.upstream) for _ in range(200)))
    assert [r for r, _ in results] == ["answer"] * 200
    assert [joined for _, joined in results].count(False) == 1
    assert budget.calls == 1
    assert (flight.leaders, flight.joins, flight.in_flight) == (1, 199, 0)
    await settle()
    assert other_tasks() == before


async def test_distinct_keys_run_separately() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    results = await asyncio.gather(
        *(
            flight.do_joined(f"k{i % 10}", functools.partial(budget.upstream, f"r{i % 10}"))
            for i in range(50)
        )
    )
    assert [r for r, _ in results] == [f"r{i % 10}" for i in range(50)]
    assert budget.calls == 10
    assert flight.joins == 40


async def test_sequential_calls_do_not_share() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    assert await flight.do_joined("k", budget.upstream) == ("answer", False)
    assert await flight.do_joined("k", budget.upstream) == ("answer", False)
    assert budget.calls == 2
    assert flight.joins == 0


async def test_exception_reaches_every_waiter_and_entry_is_cleared() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    boom = RuntimeError("upstream failed")
    calls = 0

    async def fail() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise boom

    results = await asyncio.gather(
        *(flight.do_joined("k", fail) for _ in range(20)), return_exceptions=True
    )
    assert calls == 1
    assert all(r is boom for r in results)
    assert flight.in_flight == 0
    # the next call starts afresh
    assert await flight.do_joined("k", Budget().upstream) == ("answer", False)


async def test_do_joined_and_has() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    assert not flight.has("k")
    first = asyncio.create_task(flight.do_joined("k", budget.upstream))
    await asyncio.sleep(0)
    assert flight.has("k") and (flight.leaders, flight.joins) == (1, 0)
    second = asyncio.create_task(flight.do_joined("k", budget.upstream))
    await asyncio.sleep(0)
    assert (flight.leaders, flight.joins) == (1, 1)
    assert await first == ("answer", False)
    assert await second == ("answer", True)
    assert not flight.has("k") and flight.in_flight == 0


async def test_leader_cancelled_followers_still_get_the_result() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    before = other_tasks()
    leader = asyncio.create_task(flight.do_joined("k", budget.upstream))
    await asyncio.sleep(0)
    followers = [asyncio.create_task(flight.do_joined("k", budget.upstream)) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await asyncio.gather(*followers) == [("answer", True)] * 5
    assert budget.calls == 1 and budget.cancelled == 0
    assert budget.available == 90  # charged once, for the one call that ran
    assert flight.cancelled == 0
    await settle()
    assert other_tasks() == before


async def test_follower_cancelled_others_unaffected() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    before = other_tasks()
    leader = asyncio.create_task(flight.do_joined("k", budget.upstream))
    await asyncio.sleep(0)
    follower = asyncio.create_task(flight.do_joined("k", budget.upstream))
    other = asyncio.create_task(flight.do_joined("k", budget.upstream))
    await asyncio.sleep(0.01)
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    assert await leader == ("answer", False)
    assert await other == ("answer", True)
    assert budget.calls == 1 and budget.cancelled == 0
    await settle()
    assert other_tasks() == before


async def test_all_cancelled_cancels_upstream_and_refunds() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    before = other_tasks()
    waiters = [
        asyncio.create_task(flight.do_joined("k", lambda: budget.upstream(delay=10)))
        for _ in range(10)
    ]
    await asyncio.sleep(0.01)
    assert budget.available == 90
    for w in waiters:
        w.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    # The last waiter waited for the work's cleanup: refunded, and no task is left behind,
    # without any extra turn of the loop.
    assert budget.cancelled == 1
    assert budget.available == 100
    assert flight.cancelled == 1 and flight.in_flight == 0
    assert other_tasks() == before


async def test_all_cancelled_one_by_one() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    before = other_tasks()
    waiters = [
        asyncio.create_task(flight.do_joined("k", lambda: budget.upstream(delay=10)))
        for _ in range(3)
    ]
    await asyncio.sleep(0.01)
    for i, w in enumerate(waiters):
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        assert budget.cancelled == (1 if i == 2 else 0)
    assert budget.available == 100
    assert other_tasks() == before


async def test_timeout_on_every_waiter_cancels_upstream() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    before = other_tasks()

    async def bounded() -> tuple[str, bool]:
        async with asyncio.timeout(0.02):
            return await flight.do_joined("k", lambda: budget.upstream(delay=10))

    results = await asyncio.gather(*(bounded() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results)
    assert budget.available == 100 and budget.cancelled == 1
    assert other_tasks() == before


async def test_new_call_after_abandonment_is_not_forgotten_by_the_old_one() -> None:
    """Go's rule: an old call removes the map entry only if it is still that call."""
    flight: SingleFlight[str, str] = SingleFlight()
    cleanup_started = asyncio.Event()
    release = asyncio.Event()

    async def slow_cleanup() -> str:
        try:
            await asyncio.sleep(10)
        finally:
            cleanup_started.set()
            await release.wait()
        return "old"

    old = asyncio.create_task(flight.do_joined("k", slow_cleanup))
    await asyncio.sleep(0)
    old.cancel()  # the only waiter: the work is cancelled; `old` waits for its cleanup
    await cleanup_started.wait()
    new = asyncio.create_task(flight.do_joined("k", lambda: Budget().upstream("new", delay=0.02)))
    await asyncio.sleep(0)
    assert flight.has("k")
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await old
    await asyncio.sleep(0)
    assert flight.has("k"), "the finished old call removed the new call's entry"
    assert await new == ("new", False)
    assert flight.leaders == 2


async def test_work_cancelled_from_inside_reaches_waiters_as_cancellation() -> None:
    flight: SingleFlight[str, str] = SingleFlight()

    async def gives_up() -> str:
        await asyncio.sleep(0.01)
        raise asyncio.CancelledError

    results = await asyncio.gather(
        *(flight.do_joined("k", gives_up) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert flight.in_flight == 0


async def test_join_creates_no_task() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    budget = Budget()
    leader = asyncio.create_task(flight.do_joined("k", budget.upstream))
    await asyncio.sleep(0)
    n = len(asyncio.all_tasks())
    coros = [flight.do_joined("k", budget.upstream) for _ in range(50)]
    # drive the joins inside this task (no task per join)
    gathered = asyncio.gather(*coros)  # gather wraps coroutines in tasks: count them out
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == n + 50  # only gather's own wrappers, no extra per join
    assert await gathered == [("answer", True)] * 50
    assert await leader == ("answer", False)
    assert budget.calls == 1


async def test_fn_raising_synchronously_leaves_no_entry() -> None:
    flight: SingleFlight[str, str] = SingleFlight()

    def broken() -> Any:
        raise ValueError("bad arguments")

    with pytest.raises(ValueError):
        await flight.do_joined("k", broken)
    assert flight.in_flight == 0 and flight.leaders == 0

"""`InlineFlight`: twins of a forwarded call share it, run in the first caller's task.

No clock: each step waits on events the test sets, so the order is the test's.
"""

from __future__ import annotations

import asyncio

import pytest

from asyncthrift.errors import DeadlineExceeded
from asyncthrift.pipeline._forward_flight import InlineFlight


class Upstream:
    """A call that waits for `release`, counting how often it was made and in which task."""

    def __init__(self) -> None:
        self.calls = 0
        self.tasks: list[asyncio.Task[object] | None] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        self.tasks.append(asyncio.current_task())
        self.started.set()
        await self.release.wait()
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        return f"answer {self.calls}"


async def test_twins_share_one_call_run_in_the_first_callers_task() -> None:
    flight: InlineFlight[str, str] = InlineFlight()
    upstream = Upstream()
    first = asyncio.ensure_future(flight.do("k", upstream))
    await upstream.started.wait()
    twins = [asyncio.ensure_future(flight.do("k", upstream)) for _ in range(3)]
    await asyncio.sleep(0)
    assert flight.has("k")
    upstream.release.set()
    assert await first == ("answer 1", False)
    assert [await t for t in twins] == [("answer 1", True)] * 3
    assert upstream.calls == 1 and upstream.tasks == [first]  # no task of its own
    assert not flight.has("k")


async def test_when_the_first_caller_leaves_a_waiting_twin_runs_the_call_itself() -> None:
    flight: InlineFlight[str, str] = InlineFlight()
    upstream = Upstream()
    first = asyncio.ensure_future(flight.do("k", upstream))
    await upstream.started.wait()
    twin = asyncio.ensure_future(flight.do("k", upstream))
    late = asyncio.ensure_future(flight.do("k", upstream))
    await asyncio.sleep(0)
    first.cancel()  # its client disconnected
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.sleep(0)
    upstream.release.set()
    # one of the twins ran it again, the other joined that one
    assert sorted([await twin, await late], key=lambda r: r[1]) == [
        ("answer 2", False),
        ("answer 2", True),
    ]
    assert upstream.calls == 2


async def test_a_twin_that_leaves_does_not_touch_the_call() -> None:
    flight: InlineFlight[str, str] = InlineFlight()
    upstream = Upstream()
    first = asyncio.ensure_future(flight.do("k", upstream))
    await upstream.started.wait()
    twin = asyncio.ensure_future(flight.do("k", upstream))
    await asyncio.sleep(0)
    twin.cancel()
    with pytest.raises(asyncio.CancelledError):
        await twin
    upstream.release.set()
    assert await first == ("answer 1", False)
    assert upstream.calls == 1


async def test_a_failure_reaches_every_twin_once_and_is_not_kept() -> None:
    flight: InlineFlight[str, str] = InlineFlight()
    upstream = Upstream()
    upstream.fail = ValueError("upstream said no")
    first = asyncio.ensure_future(flight.do("k", upstream))
    await upstream.started.wait()
    twin = asyncio.ensure_future(flight.do("k", upstream))
    await asyncio.sleep(0)
    upstream.release.set()
    for caller in (first, twin):
        with pytest.raises(ValueError, match="upstream said no"):
            await caller
    assert await flight.do("k", upstream) == ("answer 2", False)  # a new call


async def test_a_twin_does_not_inherit_the_first_callers_deadline() -> None:
    flight: InlineFlight[str, str] = InlineFlight()
    upstream = Upstream()
    upstream.fail = DeadlineExceeded("the first caller's deadline")
    first = asyncio.ensure_future(flight.do("k", upstream))
    await upstream.started.wait()
    twin = asyncio.ensure_future(flight.do("k", upstream))
    await asyncio.sleep(0)
    upstream.release.set()
    with pytest.raises(DeadlineExceeded):
        await first
    assert await twin == ("answer 2", False)  # ran it afresh

"""A consumer outside a shared budget: what `lease.lua` does with the processes' reports
(the others' charges each answer says, the estimates averaged and applied to the refill),
and the lease a process gives up to a reading below it (`_ceilings.HeaderCeilings`).

The script runs on a real redis-server (a fixture); refill is placed in time by moving the
bucket's timestamp back by seconds, so no load on the machine matters.
"""

from __future__ import annotations

from typing import Any

import pytest

from asyncthrift import Limits
from asyncthrift.scheduling.bucket import Cost, ServerView
from asyncthrift.stores.shared import SharedBudget
from tests import test_shared as base
from tests.test_shared import _proved, args, level
from tests.test_shared_clamp import _Store

lua = base.lua  # the script against a real redis-server (a fixture)


def report(charged: tuple[float, float, float], estimates: tuple[str, str, str]) -> str:
    """A process's report, last in the script's arguments (`_foreign.SharedForeign`)."""
    return " ".join(["F1", *(repr(float(c)) for c in charged), *estimates])


async def call(lua: Any, word: str, **kw: Any) -> list[float]:
    """One round trip with `word` last; the numbers of the answer's F1 word."""
    script = base.Script(base.load_script("lease.lua"))
    res = await script(lua.client, lua.keys, [*args(**kw), word])
    last = res[-1]
    assert last.startswith("F1 "), res
    return [float(x) for x in last.split()[1:]]


pytestmark = pytest.mark.redis


async def test_each_answer_says_what_the_other_processes_charged(lua: Any) -> None:
    await _proved(lua)
    await call(lua, report((10, 100, 50), ("x", "x", "x")), ask=(0, 0, 0))
    await call(lua, report((5, 20, 30), ("x", "x", "x")), ask=(0, 0, 0), pid="proc-b")
    await call(lua, report((2, 2, 2), ("x", "x", "x")), ask=(0, 0, 0), pid="proc-b")
    # proc-a: the others (proc-b) charged 7, 22, 32 so far; proc-a's own 10, 100, 50 are not
    # in it. proc-b holds nothing, so its rate moves nothing
    x = await call(lua, report((1, 1, 1), ("x", "x", "x")), ask=(0, 0, 0))
    assert x[0:3] == pytest.approx([7.0, 22.0, 32.0], abs=1e-6)
    assert x[9] == 0  # proc-a's record is not new


async def test_the_estimates_of_the_processes_are_averaged_and_slow_the_refill(
    lua: Any,
) -> None:
    await _proved(lua)
    await call(lua, report((0, 0, 0), ("x", "x", "4.0")), ask=(0, 0, 0))
    x = await call(lua, report((0, 0, 0), ("x", "x", "2.0")), ask=(0, 0, 0), pid="proc-b")
    assert x[6:9] == pytest.approx([0.0, 0.0, 3.0])  # the average, where one is known
    # 10 s of refill from an empty output level: 10 x (600 / 60 - 3) = 70, not 100
    await lua.client.hset(lua.keys[0], mapping={"l3": "0"})
    ts = float(await lua.client.hget(lua.keys[0], "ts"))
    await lua.client.hset(lua.keys[0], "ts", repr(ts - 10.0))
    await call(lua, report((0, 0, 0), ("x", "x", "4.0")), ask=(0, 0, 0))
    assert (await level(lua.client, lua.keys[0]))[2] == pytest.approx(70.0, abs=3.0)


async def test_a_call_without_a_report_refills_at_the_whole_rate(lua: Any) -> None:
    """No report (an older caller, or the script's own tests): nothing is learnt."""
    await _proved(lua)
    await lua.client.hset(lua.keys[0], mapping={"l3": "0"})
    ts = float(await lua.client.hget(lua.keys[0], "ts"))
    await lua.client.hset(lua.keys[0], "ts", repr(ts - 10.0))
    res = await lua(ask=(0, 0, 0))
    assert not res[-1].startswith("F1")
    assert (await level(lua.client, lua.keys[0]))[2] == pytest.approx(100.0, abs=3.0)


async def test_a_lease_above_the_servers_level_is_given_up() -> None:
    limits = Limits(rpm=60, itpm=60_000, otpm=6_000, period=60.0)
    budget = SharedBudget(_Store(), limits, 0.0, "k", ("b", "p"))  # type: ignore[arg-type]
    budget.give(Cost(0, 0, 3000), 10.0)  # the lease holds 3,000 output tokens
    assert budget.peek(10.0)[2] == pytest.approx(3000.0)
    # the server has 1,000, read as low as its rounding allows (500, as the ceiling reads
    # it): the lease beyond that can only be refused
    budget.observe(ServerView(output_limit=6000, output_remaining=1000), Cost(0, 0, 0), 10.0, 10.0)
    assert budget.peek(10.0)[2] == pytest.approx(500.0)
    # a reading above the lease takes nothing
    budget.observe(ServerView(output_limit=6000, output_remaining=4000), Cost(0, 0, 0), 11.0, 11.0)
    assert budget.peek(11.0)[2] == pytest.approx(500.0)
    # an exact count (not a multiple of a thousand) is read as it is
    budget.give(Cost(0, 0, 2500), 12.0)
    budget.observe(ServerView(output_limit=6000, output_remaining=1234), Cost(0, 0, 0), 12.0, 12.0)
    assert budget.peek(12.0)[2] == pytest.approx(1234.0)

"""An estimate a process stopped reporting no longer slows the shared refill (`lease.lua`).

Why: a process that got a 429 reports half the limit as someone else's (`ForeignFit.refused`)
and drops it a window later (`ForeignFit.stale`), but only a call carries that; a process that
had admitted its last request stopped calling, its record kept the old estimate in force for
the lease's lifetime, and the output refill stayed at half the limit for 20 s of a 50 s run
with a consumer at 40 % (`bench/bench_shared.py --period 60 --processes 4 --shadow-load 0.4`).
The script counts an estimate only while its record was reported within 0.375 of the period
(a window and a half, as `ForeignFit.stale`). On a real redis-server (a fixture); the record's
time is moved back instead of waiting.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import test_shared as base
from tests.test_shared import _proved
from tests.test_shared_foreign_redis import call, report

lua = base.lua  # the script against a real redis-server (a fixture)
pytestmark = pytest.mark.redis


async def _age(lua: Any, pid: str, seconds: float) -> None:
    """Move `pid`'s foreign record `seconds` into the past."""
    entries = (await lua.client.hget(lua.keys[0], "fx")).split(";")
    moved = []
    for entry in entries:
        words = entry.split()
        if words[0] == pid:
            words[1] = repr(float(words[1]) - seconds)
        moved.append(" ".join(words))
    await lua.client.hset(lua.keys[0], "fx", ";".join(moved))


async def test_an_estimate_not_reported_again_stops_counting(lua: Any) -> None:
    await _proved(lua)
    await call(lua, report((0, 0, 0), ("x", "x", "2.0")), ask=(0, 0, 0))
    x = await call(lua, report((0, 0, 0), ("x", "x", "4.0")), ask=(0, 0, 0), pid="proc-b")
    assert x[8] == pytest.approx(3.0)  # both count: the average
    await _age(lua, "proc-b", 20.0)  # within 0.375 of the 60 s period: still counts
    x = await call(lua, report((0, 0, 0), ("x", "x", "2.0")), ask=(0, 0, 0))
    assert x[8] == pytest.approx(3.0)
    await _age(lua, "proc-b", 5.0)  # 25 s: stale, though within the lease's lifetime (30 s)
    x = await call(lua, report((0, 0, 0), ("x", "x", "2.0")), ask=(0, 0, 0))
    assert x[8] == pytest.approx(2.0)

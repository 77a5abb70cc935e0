"""While the shared level is overdrawn, a process well ahead of the others (its backlog far
below its fair share of all the work waiting) asks only its head's need in an overdrawn
dimension, no slice for later (`_slices._ahead`): the room under the reserve-ahead floor
goes to the processes behind.

Without it the backlogs drifted apart at the real period (5 to 42 requests left at 4
processes) and the last process ended 6-9 s after the first. The store is scripted and the
clock virtual (looptime): deterministic whatever the load.
"""

from __future__ import annotations

import pytest

from tests.test_shared_share import BACKLOG, Store, answer, needed, queue, stop

pytestmark = pytest.mark.looptime

NEED = [4 + 7 * d + 1 for d in range(3)]  # each dimension's need in the script's arguments
ASK = [4 + 7 * d + 2 for d in range(3)]  # ... and its ask


async def asks_with_others_waiting(others: float, level_out: float) -> list[list[str]]:
    """The calls of a process with 10 requests queued, each answer granting the bare need
    (so every head calls), the others' backlog `others`, the output level `level_out`."""

    def reply(args: list[str]) -> list[str]:
        return answer(
            granted=needed(args),
            level=(10.0, 10_000.0, level_out),
            backlogs=float(args[BACKLOG]) + others,
        )

    store = Store(reply)
    _, tasks = await queue(store, 10)
    await store.calls_reach(4)
    await stop(store, tasks)
    return [a for _, a in store.calls]


def slices(calls: list[list[str]], d: int = 2) -> list[float]:
    """What each call asked beyond its need in dimension `d` (output tokens by default)."""
    return [float(a[ASK[d]]) - float(a[NEED[d]]) for a in calls]


async def test_a_process_far_ahead_asks_its_heads_need_only() -> None:
    # 9 waiting here against 100 elsewhere: a share of 0.08 against a fair 0.25
    calls = await asks_with_others_waiting(100.0, -2880.0)
    extra = slices(calls)
    assert extra[0] > 0  # the first call: the others' backlog is not known yet
    assert extra[1:4] == [0.0, 0.0, 0.0], extra
    # the requests and input levels are not overdrawn: their slices are asked as before
    # (cut to the need too, every head made a call)
    assert all(x > 0 for x in slices(calls, 0)[:4])


async def test_a_process_not_ahead_still_asks_a_slice() -> None:
    # 9 waiting here against 20 elsewhere: a share of 0.31, more than its fair 0.25
    extra = slices(await asks_with_others_waiting(20.0, -2880.0))
    assert all(x > 0 for x in extra[:4]), extra


async def test_a_level_not_overdrawn_grants_slices_to_everyone() -> None:
    # far ahead, but the level has room: nobody waits behind grants reserved ahead
    extra = slices(await asks_with_others_waiting(100.0, 20_000.0))
    assert all(x > 0 for x in extra[:4]), extra

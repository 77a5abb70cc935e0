"""The status page's budgets under ``--shared``: a shared budget admits from the lease it
takes from Redis, not from its local buckets (always full), so ``/status.json`` says the
budget is shared through Redis and gives this replica's lease per limit."""

from __future__ import annotations

import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.gateway.status import budget_levels
from asyncthrift.stores.shared import SharedBudget, SharedStore
from tests.fake_api import FakeAPI, ok

pytestmark = pytest.mark.usefixtures("redis_url")


async def test_a_shared_budget_shows_its_lease_not_its_idle_local_buckets(
    redis_url: str, redis_namespace: str
) -> None:
    api = FakeAPI(lambda body, n: ok(body, input_tokens=12, output_tokens=7))
    limits = Limits(rpm=100, itpm=50_000, otpm=10_000, period=2.0)  # a short lease round
    thrift = Thrift(
        api_key="sk-ant-shared-status",
        base_url="http://api.test",
        sdk_options=api.sdk_options(),
        limits=limits,
        shared=SharedStore(redis_url, namespace=redis_namespace),
    )
    async with thrift:
        for _ in range(3):
            await thrift.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            )
        [row] = budget_levels(thrift)
        [budget] = [b for members in thrift.budgets().values() for b in members]
        assert isinstance(budget, SharedBudget)
        leases = budget.peek(thrift.now())
    assert row["shared"] == "shared"
    by_dim = {limit["dim"]: limit for limit in row["limits"]}
    assert {d: v["capacity"] for d, v in by_dim.items()} == {
        "rpm": 100,
        "itpm": 50_000,
        "otpm": 10_000,
    }
    assert [by_dim[d]["lease"] for d in ("rpm", "itpm", "otpm")] == pytest.approx(leases, abs=1.0)
    assert all("level" not in limit for limit in row["limits"])  # no idle local bucket shown
    assert 0 <= by_dim["rpm"]["lease"] < 100  # a slice of the key, one request taken

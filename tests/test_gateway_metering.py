"""What count_tokens and message batches take from a client's quota and spend cap
(`asyncthrift.gateway.metering`): count_tokens one request and nothing else, a batch one
request and its requests' worst cost (at the Batches API's price) against the spend cap at
submission. Driven through the gateway's ASGI app in process, the library replaced by a
stand-in (what is checked is the gateway's accounting, not the upstream)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest

from asyncthrift.core.prices import cost_usd
from asyncthrift.gateway.app import Gateway, build_app
from asyncthrift.gateway.clients import ClientQuota, GatewayClient
from asyncthrift.gateway.config import GatewayConfig
from asyncthrift.gateway.metering import batch_charge, count_charge, message_charge

MODEL = "claude-sonnet-4-5"


def batch_of(n: int, max_tokens: int) -> dict[str, Any]:
    params = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return {"requests": [{"custom_id": f"r{i}", "params": params} for i in range(n)]}


def test_a_batch_holds_its_requests_worst_cost_at_the_batch_price() -> None:
    one = message_charge(batch_of(1, 1000)["requests"][0]["params"])
    charge = batch_charge(batch_of(3, 1000))
    assert charge.worst_usd == pytest.approx(3 * 0.5 * one.worst_usd)
    assert one.worst_usd == pytest.approx(cost_usd(MODEL, one.input_tokens, 1000))
    assert one.worst_usd > 0
    assert (charge.input_tokens, charge.max_tokens, charge.keep) == (0, 0, True)
    assert count_charge({"model": MODEL, "messages": []}) == (0, 0, 0.0, True)
    assert batch_charge({"requests": "nonsense"}).worst_usd == 0.0  # the upstream refuses it


class _Raw:
    status_code = 200
    headers: ClassVar[dict[str, str]] = {"request-id": "req_count"}

    async def read(self) -> bytes:
        return b'{"input_tokens": 9}'


class _Batch:
    _request_id = "req_batch"

    def to_json(self, indent: int | None = None) -> str:
        return '{"id": "msgbatch_1", "type": "message_batch", "results_url": null}'


class _StandIn:
    """The library as the handlers call it: count_tokens and batches.create_one."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        stand_in = self

        class Raw:
            async def count_tokens(self, **kwargs: Any) -> _Raw:
                stand_in.sent.append("count_tokens")
                return _Raw()

        class Messages:
            with_raw_response = Raw()

        class Batches:
            async def create_one(self, requests: list[Any], **kwargs: Any) -> _Batch:
                stand_in.sent.append(f"batch of {len(requests)}")
                return _Batch()

        self.messages = Messages()
        self.batches = Batches()


def gateway_with(
    *clients: tuple[str, GatewayClient],
) -> tuple[httpx.AsyncClient, _StandIn, Gateway]:
    gateway = Gateway(GatewayConfig(upstream_keys=("sk-up",), client_entries=clients))
    stand_in = _StandIn()
    gateway._thrift = stand_in  # type: ignore[assignment]  # the lifespan would open a Thrift
    transport = httpx.ASGITransport(app=build_app(gateway))
    return httpx.AsyncClient(transport=transport, base_url="http://gw"), stand_in, gateway


async def test_count_tokens_counts_one_request_against_the_clients_rpm() -> None:
    http, stand_in, _ = gateway_with(("k", GatewayClient(name="ci", quota=ClientQuota(rpm=2))))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with http:
        statuses = [
            (await http.post("/v1/messages/count_tokens", json=body, headers={"x-api-key": "k"}))
            for _ in range(3)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert "ci" in statuses[2].json()["error"]["message"]  # the client's own quota
    assert stand_in.sent == ["count_tokens", "count_tokens"]  # the third never forwarded


async def test_a_batch_over_the_clients_spend_cap_is_refused_before_it_is_submitted() -> None:
    cap = 1.0
    capped = GatewayClient(name="nb", spend_cap_usd=cap, spend_period="day")
    http, stand_in, gateway = gateway_with(("k", capped))
    big = batch_of(10, 64_000)  # worst 10 x 64k output tokens at half price: over $1
    assert batch_charge(big).worst_usd > cap
    small = batch_of(2, 1000)
    async with http:
        refused = await http.post("/v1/messages/batches", json=big, headers={"x-api-key": "k"})
        accepted = await http.post("/v1/messages/batches", json=small, headers={"x-api-key": "k"})
    assert refused.status_code == 429 and "nb" in refused.json()["error"]["message"]
    assert accepted.status_code == 200
    assert gateway.quotas is not None
    spent = gateway.quotas.snapshot()["nb"]["spent_usd"]  # the hold, kept as the charge
    assert spent == pytest.approx(batch_charge(small).worst_usd)
    assert stand_in.sent == ["batch of 2"]

"""The gateway's counters (`asyncthrift.gateway.telemetry`): the Prometheus text parses with
prometheus_client's own parser and says what was recorded; labels stay bounded; a bad call
never raises."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from asyncthrift.gateway.telemetry import GatewayTelemetry


def samples(t: GatewayTelemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, by (name, labels), through the official parser."""
    out = {}
    for family in text_string_to_metric_families(t.prometheus().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def busy() -> GatewayTelemetry:
    t = GatewayTelemetry(["alice", "bob"])
    for _ in range(3):
        t.queued("alice", "interactive")
    t.left_queue("alice", "interactive", waited=0.001, admitted=True)
    t.left_queue("alice", "interactive", waited=3.0, admitted=True)
    t.left_queue("alice", "interactive", waited=700.0, admitted=False)
    t.queued("bob", "batch")
    t.finished(
        "alice", "interactive", status=200, cost_usd=0.25, input_tokens=100, output_tokens=40
    )
    t.finished("alice", "interactive", status=200, cost_usd=0.5, input_tokens=10, output_tokens=4)
    t.refused("alice", "interactive", status=429, reason="quota")
    t.refused("mallory", "default", status=401, reason="unknown key")
    return t


def test_the_exposition_parses_and_carries_every_count() -> None:
    got = samples(busy())
    alice = {"client": "alice", "lane": "interactive"}
    assert got[("asyncthrift_gateway_queued", labels(**alice))] == 0
    assert got[("asyncthrift_gateway_queued", labels(client="bob", lane="batch"))] == 1
    assert got[("asyncthrift_gateway_admitted_total", labels(**alice))] == 2
    assert got[("asyncthrift_gateway_abandoned_total", labels(**alice))] == 1
    assert got[("asyncthrift_gateway_wait_seconds_bucket", labels(**alice, le="0.005"))] == 1
    assert got[("asyncthrift_gateway_wait_seconds_bucket", labels(**alice, le="5.0"))] == 2
    assert got[("asyncthrift_gateway_wait_seconds_bucket", labels(**alice, le="600.0"))] == 2
    assert got[("asyncthrift_gateway_wait_seconds_bucket", labels(**alice, le="+Inf"))] == 3
    assert got[("asyncthrift_gateway_wait_seconds_count", labels(**alice))] == 3
    assert got[("asyncthrift_gateway_wait_seconds_sum", labels(**alice))] == 703.001
    assert got[("asyncthrift_gateway_responses_total", labels(**alice, status="200"))] == 2
    assert got[("asyncthrift_gateway_spent_usd_total", labels(**alice))] == 0.75
    assert got[("asyncthrift_gateway_tokens_total", labels(**alice, kind="input"))] == 110
    assert got[("asyncthrift_gateway_tokens_total", labels(**alice, kind="output"))] == 44
    quota = labels(**alice, status="429", reason="quota")
    assert got[("asyncthrift_gateway_refused_total", quota)] == 1
    stranger = labels(client="unknown", lane="default", status="401", reason="unknown_key")
    assert got[("asyncthrift_gateway_refused_total", stranger)] == 1


def test_labels_stay_bounded_whatever_callers_send() -> None:
    t = GatewayTelemetry(["alice"])
    for i in range(500):
        t.refused(f"caller-{i}", "default", status=401, reason=f'why "{i}"\n')
        t.queued("alice", "urgent!")  # type: ignore[arg-type]
    got = samples(t)
    clients = {dict(k[1]).get("client") for k in got}
    reasons = {dict(k[1]).get("reason") for k in got} - {None}
    assert clients == {"alice", "unknown"}
    assert {dict(k[1]).get("lane") for k in got} == {"default", "other"}
    assert len(reasons) <= 33 and "other" in reasons
    open_ = GatewayTelemetry()  # no client list: any name, up to a bound
    for i in range(1500):
        open_.queued(f"c{i}", "default")
    assert len(open_.snapshot()["clients"]) == 1001


def test_recording_never_raises() -> None:
    t = GatewayTelemetry()
    bad: Any = object()
    t.left_queue("alice", "default", waited=bad, admitted=True)
    t.finished("alice", "default", status=bad, cost_usd=0.1, input_tokens=1, output_tokens=1)
    t.refused("alice", "default", status="x", reason="quota")  # type: ignore[arg-type]
    assert t.errors == 3
    t.queued("alice", "default")
    assert t.snapshot()["clients"]["alice"]["queued"] == 1


def test_the_snapshot_sums_per_client_and_per_lane() -> None:
    snap = busy().snapshot()
    alice = snap["clients"]["alice"]
    assert alice["admitted"] == 2 and alice["abandoned"] == 1 and alice["answered"] == 2
    assert alice["spent_usd"] == 0.75 and alice["refused"] == 1
    assert snap["lanes"]["batch"]["queued"] == 1
    assert snap["lanes"]["interactive"]["wait_p50_s"] == 5.0  # the bucket holding the median
    assert snap["lanes"]["default"] == {
        "queued": 0,
        "admitted": 0,
        "abandoned": 0,
        "wait_p50_s": None,
        "wait_p99_s": None,
    }
    assert snap["refused"] == {"429 quota": 1, "401 unknown_key": 1}


def test_a_lanes_wait_quantiles_count_every_clients_waits_together() -> None:
    t = GatewayTelemetry(["alice", "bob"])
    for _ in range(3):
        t.left_queue("alice", "batch", waited=0.001, admitted=True)
    t.left_queue("bob", "batch", waited=100.0, admitted=True)
    lane = t.snapshot()["lanes"]["batch"]
    assert (lane["wait_p50_s"], lane["wait_p99_s"]) == (0.005, 120.0)  # bucket upper bounds

"""`asyncthrift serve` under load: replicas on one key, the latency it adds, LiteLLM's proxy.

    PYTHONPATH=$PWD python bench/bench_gateway.py                 # everything, ~12 min
    PYTHONPATH=$PWD python bench/bench_gateway.py --quick         # smoke check, 10 s period
    PYTHONPATH=$PWD python bench/bench_gateway.py --replicas 2 --no-litellm --no-overhead

Every server is its own process on loopback (`bench/gateway_procs.py`): the mock API, a real
redis-server, the gateway replicas (``python -m asyncthrift serve --limits … --shared
redis://…``, one upstream key) and, beside them, LiteLLM's proxy. The clients are the bare
anthropic SDK with retries off (``max_retries=0``): a 429 a client sees is a failed request.

1. **All limits binding**, at the real 60 s period: the acceptance workloads' mixed requests
   and shape (`bench/acceptance.py`: answers of 200 ms + 1 ms per output token, 10 %
   jitter, about 80 tokens for ``max_tokens`` drawn from 64..1024), limits sized by its
   `sized_limits` so that the work is ``--beyond`` seconds beyond the first burst in every
   dimension, all sent at once and spread over the replicas as a load balancer would
   (``--balance least``, `bench/gateway_balance.py`: when a request goes on the wire, the
   replica answering fewest, ties round robin; ``round-robin``: request i to replica i mod R,
   as before). One replica (the baseline) has the key's
   whole budget to itself and no ``--shared``. Under each mock header setting given
   (``--settings``, rows of `acceptance.SETTINGS`). Reported: 429s seen by clients (and
   which kind), the makespan against two minimums computed by the other benches' code:
   ``ideal``, acceptance's clairvoyant FIFO client against the mock's exact buckets
   (`acceptance.ideal_makespan`: reserves ``max_tokens``, answers take the mock's latency;
   the least any client can do), and ``bound``, `theoretical_minimum` as `bench_shared.py`
   uses it (demand beyond the first bucket ÷ refill, no latency: not reachable); the mock's
   own 429s (those a gateway got and retried inside), when the requests went on the wire.
   With a miss, the per-replica breakdown and the timeline (admissions per twelfth of the
   period, estimated from each answer's completion minus the mock's latency for its
   length, beside the mock's own log) say where. ``--start warm`` first sends each replica
   one tiny request, so its budget exists before the burst.
   ``BENCH_GATEWAY_DEBUG_SHARED=1`` puts each replica's shared-budget round trips in its
   log (``--logs DIR`` keeps the logs).
2. **Nothing binding**: one gateway and the mock (fixed latency, no jitter, limits far
   above the demand). The same requests, one at a time, alternately direct to the mock and
   through the gateway (the bare SDK): the latency it adds is the difference of the
   percentiles; with and without ``--shared``. Then a
   closed loop of raw HTTP clients (aiohttp, ``--concurrency``) through the gateway: its
   requests per second per CPU core (requests ÷ the gateway process's CPU seconds, from
   /proc), beside the mock's own. The same for `bench/gateway_passthrough.py`, a reverse
   proxy on the same stack that only passes bytes on: the cost of one more process hop on
   this machine, the baseline measured in the same run.
3. **LiteLLM's proxy** on the binding workload, its documented multi-instance setup: one
   deployment with the key's rpm/itpm/otpm, ``router_settings`` with ``redis_host`` /
   ``redis_port``, ``enforce_model_rate_limits``, R proxy processes, one Redis; the same SDK
   clients round-robin. It runs from a throwaway venv (`gateway_procs.LITELLM_VENV`,
   ``python -m venv --system-site-packages``, the ``proxy`` extra's requirements but
   ``litellm-proxy``, which the index lacks: the proxy's code ships in ``litellm``); when
   it cannot start, the report says why. Its windows are calendar minutes, so only the
   60 s period compares it fairly (``--quick`` runs it only as a check of the setup).

Writes ``bench/results/gateway.md`` (and ``--out`` JSON with every outcome's timings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import acceptance
from bench_fastapi import cpu_seconds
from common import ROOT, md_table, percentile, revision, run, write_result
from gateway_balance import LeastOutstanding
from gateway_ideal import ideal_after_arrivals
from gateway_procs import (
    Server,
    children_cpu,
    gateway_replicas,
    litellm_proxies,
    litellm_unavailable,
    passthrough_proxies,
)

from asyncthrift import Limits
from asyncthrift.mock import remote_stats, spawn_mock_process
from asyncthrift.tools.demo import theoretical_minimum
from asyncthrift.tools.workload import mixed_workload
from tests.redis_server import RedisServer

CLIENT_KEY = "bench-client-key"
LITELLM_MASTER_KEY = "sk-bench-master"
#: the latency variant of `acceptance.VARIANTS` the binding runs use (the realistic one)
VARIANT = "fast"
#: the prefix of the headers of a 429 for a client's own quota (G2's `QuotaRefusal`)
QUOTA_HEADERS = "x-asyncthrift-client-ratelimit"
#: the nothing-binding phase: the mock answers in a fixed time (no jitter), so that a
#: difference in latency is the gateway's
FIXED_LATENCY = 0.05


@contextlib.contextmanager
def acceptance_period(period: float, beyond: float) -> Iterator[None]:
    """Run `acceptance`'s limit sizing and ideal client at another period and margin.

    They read the module's ``PERIOD`` and ``BEYOND_BURST`` (60 s and 30 s there); the
    compressed smoke check and ``--beyond`` need others, without copying their code.
    """
    saved = acceptance.PERIOD, acceptance.BEYOND_BURST
    acceptance.PERIOD, acceptance.BEYOND_BURST = period, beyond
    try:
        yield
    finally:
        acceptance.PERIOD, acceptance.BEYOND_BURST = saved


@dataclass(frozen=True, slots=True)
class Workload:
    bodies: list[dict[str, Any]]
    limits: Limits
    ideal: float  # acceptance's clairvoyant client, seconds

    @property
    def model(self) -> str:
        return str(self.bodies[0]["model"])


def binding_workload(n: int, period: float, beyond: float) -> Workload:
    bodies = mixed_workload(n, seed=11, max_tokens=acceptance.MAX_TOKENS)
    with acceptance_period(period, beyond):
        limits = acceptance.sized_limits(bodies)
        ideal = acceptance.ideal_makespan(bodies, limits, VARIANT)
    return Workload(bodies, limits, ideal)


def binding_mock(limits: Limits, setting: str) -> dict[str, Any]:
    base, per_token = acceptance.VARIANTS[VARIANT]
    return {
        "limits": limits,
        "output_tokens": acceptance.OUTPUT_TOKENS,
        "latency": base,
        "latency_per_token": per_token,
        "latency_jitter": acceptance.JITTER,
        "record": True,
        **acceptance.SETTINGS[setting],
    }


# -- the clients -------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One request as its client saw it; times in seconds since the driver's start."""

    replica: int
    sent: float  # when its HTTP request went on the wire (the SDK has built it by then)
    done: float
    status: int  # 200, the HTTP status of an error, 0 for a transport failure
    error: str  # the SDK's exception class, "" on success
    output_tokens: int
    client_quota: bool  # a 429 carrying the gateway's per-client quota headers
    max_tokens: int = 0  # the request's (what the output budget reserves for it)


#: where the httpx request hook writes the instant the current task's request is sent, and
#: the balancer the replica it went to: [sent, replica]
_SENT: contextvars.ContextVar[list[float]] = contextvars.ContextVar("sent")


async def _on_send(request: Any) -> None:
    holder = _SENT.get(None)
    if holder is not None:
        holder[0] = time.monotonic()


def _on_pick(replica: int) -> None:
    holder = _SENT.get(None)
    if holder is not None:
        holder[1] = replica


def _sdk(
    base_url: str,
    api_key: str,
    timeout: float,
    connections: int,
    balance_over: Sequence[str] | None = None,
) -> Any:
    """A bare SDK client (no retries); with `balance_over`, its requests go to those
    replicas through `LeastOutstanding` (`base_url` is then only nominal)."""
    import anthropic
    import httpx2

    # one connection per request in flight, as that many independent callers would have:
    # the SDK's default pool (100 connections) would queue them in the client instead
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=connections)
    hooks: dict[str, list[Any]] = {"request": [_on_send]}
    if balance_over is None:
        http = anthropic.DefaultAsyncHttpxClient(limits=limits, timeout=timeout, event_hooks=hooks)
    else:
        inner = httpx2.AsyncHTTPTransport(limits=limits)
        transport = LeastOutstanding(balance_over, inner, on_pick=_on_pick)
        http = anthropic.DefaultAsyncHttpxClient(
            transport=transport, timeout=timeout, event_hooks=hooks
        )
    return anthropic.AsyncAnthropic(
        api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout, http_client=http
    )


async def drive(
    bodies: Sequence[dict[str, Any]],
    urls: Sequence[str],
    api_key: str,
    per_request: float,
    balance: str = "least",
    open_connections: bool = False,
    yields: int = 0,
) -> tuple[list[Outcome], float]:
    """Send every body at once over the replicas at `urls`; the outcomes and the driver's
    start (wall time).

    `balance` "least": a load balancer's least-outstanding choice when the request goes on
    the wire (`gateway_balance.LeastOutstanding`); "round-robin": request i to
    ``urls[i % len(urls)]``, fixed when its task starts. One process builds every request
    with the SDK (~3 ms of CPU each with its connection). `yields` 0: every task starts at
    once and runs to its first wait in turn, so every request is built before the first
    byte of any goes out (the gateways' access logs: the first request reached them 0.6 s
    after the start on a quiet box, 1.2-3.1 s at load 4-13, and the last 0.1-0.6 s after
    that); `yields` n: the driver gives the loop n turns after starting each request, so
    each goes out as it is built, as a burst of independent callers reaches a balancer
    (the first at 0.03 s, the last 1.6 s after the start at load 3). Each outcome says when
    its request was handed to the transport. `open_connections`: before the clock starts,
    open about one keep-alive connection per body (concurrent ``GET /healthz``, through
    the same balancer), as long-lived clients behind a balancer keeping its upstream
    connections alive would have them; by default every request opens its own.
    """
    import anthropic

    if balance == "least":
        clients = [_sdk(urls[0], api_key, per_request, len(bodies), balance_over=urls)]
    elif balance == "round-robin":
        clients = [_sdk(u, api_key, per_request, len(bodies)) for u in urls]
    else:
        raise ValueError(f"balance: least or round-robin, not {balance!r}")
    if open_connections:
        per_client = -(-len(bodies) // len(clients))
        await asyncio.gather(
            *(
                c._client.get(str(c.base_url).rstrip("/") + "/healthz")
                for c in clients
                for _ in range(per_client)
            ),
            return_exceptions=True,
        )
    wall0 = time.time()
    t0 = time.monotonic()

    async def one(i: int, body: dict[str, Any]) -> Outcome:
        fixed = i % len(urls)
        client = clients[fixed % len(clients)]
        sent = [math.nan, float(fixed)]
        _SENT.set(sent)
        status, error, output, quota = 200, "", 0, False
        try:
            msg = await client.messages.create(**body)
            output = msg.usage.output_tokens
        except anthropic.APIStatusError as exc:
            status, error = exc.status_code, type(exc).__name__
            quota = any(
                h.startswith("x-asyncthrift-client-ratelimit") for h in exc.response.headers
            )
        except anthropic.APIError as exc:  # connection, timeout
            status, error = 0, type(exc).__name__
        done = time.monotonic() - t0
        return Outcome(
            int(sent[1]), sent[0] - t0, done, status, error, output, quota, body["max_tokens"]
        )

    try:
        tasks = []
        for i, b in enumerate(bodies):
            tasks.append(asyncio.create_task(one(i, b)))
            for _ in range(yields):  # let it reach the wire before the next is built
                await asyncio.sleep(0)
        outcomes = await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.close()
    return list(outcomes), wall0


# -- 1 and 3: the binding workload through R replicas ----------------------------------------


def binding_run(
    kind: str,
    replicas: int,
    setting: str,
    work: Workload,
    log_dir: Path,
    *,
    warm: bool = False,
    balance: str = "least",
    shared_one: bool = False,
    open_connections: bool = False,
    build_all_first: bool = False,
) -> dict[str, Any]:
    """One run of `work` through `replicas` gateways (`kind` "asyncthrift") or LiteLLM
    proxies (`kind` "litellm") sharing one Redis, in front of a fresh mock.

    `warm`: each replica first answers one tiny request (``max_tokens`` 1), so that its
    budget exists (and has made its first Redis call) before the burst, as in a gateway
    that has been serving for a while; the mock's counters and the clock start after it.
    `balance`: how the driver spreads requests (`drive`). `shared_one`: one replica through
    Redis too (``--shared``), to tell the shared layer's own cost from the replicas' split.
    `open_connections`: the clients' connections open before the clock starts (`drive`).
    `build_all_first`: the driver builds every request before the first goes out (`drive`'s
    ``yields`` 0, as before); by default each goes out as it is built (``yields`` 1).
    The CPU seconds of every process during the run are kept (``cpu``: the replicas';
    ``cpu_driver``, ``cpu_mock``, ``cpu_redis``): with 2 cores, what the run needed of them.
    """
    limits = work.limits
    cap = 3.0 * work.ideal + 60.0
    shared = replicas > 1 or shared_one
    run_dir = log_dir / f"{kind}-{replicas}-{setting}{'-warm' if warm else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with (
        RedisServer() as redis,
        spawn_mock_process(**binding_mock(limits, setting)) as upstream,
        _servers(kind, replicas, upstream, limits, redis, run_dir, shared=shared) as servers,
    ):
        key = CLIENT_KEY if kind == "asyncthrift" else LITELLM_MASTER_KEY
        if warm:
            tiny = {**work.bodies[0], "max_tokens": 1}
            run(drive([tiny] * len(servers), [s.url for s in servers], key, 60.0, balance))
        before = remote_stats(upstream)
        cpu0 = [s.cpu() for s in servers]
        others0 = _other_cpu(redis)
        urls = [s.url for s in servers]
        yields = 0 if build_all_first else 1
        outcomes, wall0 = run(drive(work.bodies, urls, key, cap, balance, open_connections, yields))
        cpu = [s.cpu() - c for s, c in zip(servers, cpu0, strict=True)]
        others = [b - a for a, b in zip(others0, _other_cpu(redis), strict=True)]
        after = remote_stats(upstream)
        mock_wall0 = time.time() - after["uptime"]
        ops = [_status_json(s) for s in servers] if kind == "asyncthrift" else []
        logs = {s.name: s.log_tail(1500) for s in servers}
    ok = [o for o in outcomes if o.status == 200]
    makespan = max((o.done for o in ok), default=float("nan"))
    received = after["ok"] + after["cancelled"] - before["ok"] - before["cancelled"]
    bound = theoretical_minimum(
        limits,
        received,
        after["input_tokens"] - before["input_tokens"],
        after["output_tokens"] - before["output_tokens"],
    )
    log = after["log"][len(before["log"]) :]  # the run's admissions, not the warm-up's
    sent = [o.sent for o in outcomes]
    after_arrivals = (
        ideal_after_arrivals(work.bodies, limits, VARIANT, sent)
        if len(ok) == len(outcomes) and all(math.isfinite(t) for t in sent)
        else None
    )
    statuses = Counter(o.status for o in outcomes)
    return {
        "kind": kind,
        "replicas": replicas,
        "setting": setting,
        "warm": warm,
        "balance": balance,
        "shared": shared,
        "open_connections": open_connections,
        "build_all_first": build_all_first,
        "period": limits.period,
        "limits": [limits.rpm, limits.itpm, limits.otpm],
        "requests": len(outcomes),
        "ok": len(ok),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(Counter(o.error for o in outcomes if o.error)),
        "client_429": statuses.get(429, 0),
        "client_429_quota": sum(1 for o in outcomes if o.status == 429 and o.client_quota),
        "mock_429": after["rate_limited"] - before["rate_limited"],
        "mock_requests": after["requests"] - before["requests"],
        "wire": [min(o.sent for o in outcomes), max(o.sent for o in outcomes)],
        "first_admission": min((e[0] for e in log), default=math.nan) - (wall0 - mock_wall0),
        "makespan": makespan,
        "ideal": work.ideal,
        "bound": bound,
        "ratio": makespan / work.ideal if len(ok) == len(outcomes) else None,
        "ratio_bound": makespan / bound if len(ok) == len(outcomes) and bound else None,
        # the same clairvoyant client, each request no sooner than it was sent (a diagnosis:
        # what the driver's sending costs, `gateway_ideal`); the target's figure is `ratio`
        "ideal_arrivals": after_arrivals,
        "ratio_arrivals": makespan / after_arrivals if after_arrivals else None,
        "cpu": cpu,
        "cpu_driver": others[0],
        "cpu_mock": others[1],
        "cpu_redis": others[2],
        "outcomes": [asdict(o) for o in outcomes],
        "mock_log": [[mock_wall0 + e[0] - wall0, *e[1:]] for e in log],
        "ops": ops,
        "server_logs": logs,
        "load": os.getloadavg(),
    }


def _other_cpu(redis: RedisServer) -> tuple[float, float, float]:
    """CPU seconds so far of this process (the driver), the mock and redis-server."""
    pid = redis.proc.pid if redis.proc is not None else None
    return (
        time.process_time(),
        children_cpu("--config-json"),
        cpu_seconds(pid) if pid is not None else 0.0,
    )


@contextlib.contextmanager
def _servers(
    kind: str,
    replicas: int,
    upstream: str,
    limits: Limits,
    redis: RedisServer,
    log_dir: Path,
    *,
    shared: bool = True,
) -> Iterator[list[Server]]:
    if kind == "asyncthrift":
        with gateway_replicas(
            replicas,
            upstream=upstream,
            limits=limits,
            # one replica (unless `shared`): the key's whole budget, no Redis (the baseline)
            shared=redis.url if shared else None,
            client_key=CLIENT_KEY,
            log_dir=log_dir,
        ) as servers:
            yield servers
    else:
        with litellm_proxies(
            replicas,
            model=mixed_workload(1)[0]["model"],
            upstream=upstream,
            limits=limits,
            redis_port=redis.port,
            master_key=LITELLM_MASTER_KEY,
            log_dir=log_dir,
        ) as servers:
            yield servers


def _status_json(server: Server) -> Any:
    """The replica's ``/status.json`` (G2's ops routes), if it has one."""
    import urllib.request

    try:
        with urllib.request.urlopen(server.url + "/status.json", timeout=2.0) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def per_replica(row: dict[str, Any]) -> list[list[object]]:
    """Per replica: requests, answered, 429s, other failures, the first and last answer, the
    admission rate after the burst (estimated) against its even share of the limit."""
    base, per_token = acceptance.VARIANTS[VARIANT]
    rpm_rate = row["limits"][0] / row["period"]
    out: list[list[object]] = []
    for r in range(row["replicas"]):
        mine = [o for o in row["outcomes"] if o["replica"] == r]
        ok = [o for o in mine if o["status"] == 200]
        admitted = sorted(o["done"] - base - per_token * o["output_tokens"] for o in ok)
        later = [t for t in admitted if t > 2.0]
        rate = len(later) / (later[-1] - 2.0) if len(later) > 1 else 0.0
        share = rpm_rate / row["replicas"]
        out.append(
            [
                r,
                f"{len(mine)} ({sum(o.get('max_tokens', 0) for o in mine) / 1000:.1f}k)",
                len(ok),
                sum(1 for o in mine if o["status"] == 429),
                sum(1 for o in mine if o["status"] not in (200, 429)),
                f"{admitted[0]:.2f}" if admitted else "—",
                f"{max(o['done'] for o in ok):.1f}" if ok else "—",
                f"{rate:.2f} ({rate / share:.0%})" if share else "—",
            ]
        )
    return out


def timeline(row: dict[str, Any]) -> list[str]:
    """Admissions per bin (a twelfth of the period: 5 s at 60 s) per replica, estimated from
    the answers, and the mock's own log per bin: answered 200 / refused 429."""
    base, per_token = acceptance.VARIANTS[VARIANT]
    bin_s = row["period"] / 12.0
    end = max([o["done"] for o in row["outcomes"]] + [0.0])
    nbins = int(end / bin_s) + 1
    lines = []
    for r in range(row["replicas"]):
        bins = [0] * nbins
        for o in row["outcomes"]:
            if o["replica"] == r and o["status"] == 200:
                t = o["done"] - base - per_token * o["output_tokens"]
                bins[min(nbins - 1, max(0, int(t / bin_s)))] += 1
        lines.append(f"replica {r} admitted: " + " ".join(f"{b:3d}" for b in bins))
    ok = [0] * nbins
    refused = [0] * nbins
    for t, _cls, _inp, _out, status in row["mock_log"]:
        k = min(nbins - 1, max(0, int(t / bin_s)))
        if status == 200:
            ok[k] += 1
        elif status == 429:
            refused[k] += 1
    lines.append("mock answered 200:  " + " ".join(f"{b:3d}" for b in ok))
    lines.append("mock refused 429:   " + " ".join(f"{b:3d}" for b in refused))
    lines.append(
        f"(bins of {bin_s:g} s from the start; limit {row['limits'][0] / row['period'] * bin_s:.1f}"
        " requests per bin after the first bucket)"
    )
    return lines


# -- 2: nothing binding --------------------------------------------------------------------


async def _latency_pairs(
    bodies: Sequence[dict[str, Any]], direct: str, gateway: str, key: str, warmup: int
) -> tuple[list[float], list[float]]:
    """Each body once direct and once through the gateway, one at a time, alternating which
    goes first; seconds per request seen by the SDK (the warm-up requests left out)."""
    clients = {
        "direct": _sdk(direct, "k-upstream", 60.0, 4),
        "gateway": _sdk(gateway, key, 60.0, 4),
    }
    got: dict[str, list[float]] = {"direct": [], "gateway": []}
    try:
        for i, body in enumerate(bodies):
            order = ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct")
            for name in order:
                t = time.perf_counter()
                await clients[name].messages.create(**body)
                if i >= warmup:
                    got[name].append(time.perf_counter() - t)
    finally:
        for c in clients.values():
            await c.close()
    return got["direct"], got["gateway"]


async def _closed_loop(
    url: str, key: str, bodies: Sequence[dict[str, Any]], concurrency: int
) -> tuple[float, Counter[int]]:
    """`concurrency` raw HTTP clients, each posting the next body when its last answer is
    in, until every body is sent; wall seconds and statuses."""
    import aiohttp

    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    statuses: Counter[int] = Counter()
    queue = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with http.post(url + "/v1/messages", json=body) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t, statuses


def overhead_run(
    kind: str, n: int, throughput_n: int, concurrency: int, shared: bool, log_dir: Path
) -> dict[str, Any]:
    """Latency added and requests per core of one server of `kind`, nothing binding."""
    wide = Limits(rpm=1_000_000, itpm=1_000_000_000, otpm=1_000_000_000)
    mock = {
        "limits": wide,
        "output_tokens": acceptance.OUTPUT_TOKENS,
        "latency": FIXED_LATENCY,
        "latency_per_token": 0.0,
        "latency_jitter": 0.0,
    }
    warmup = 20
    bodies = mixed_workload(n + warmup, seed=5, max_tokens=acceptance.MAX_TOKENS)
    loop_bodies = mixed_workload(throughput_n, seed=6, max_tokens=acceptance.MAX_TOKENS)
    run_dir = log_dir / f"overhead-{kind}{'-shared' if shared else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer()) if shared or kind == "litellm" else None
        upstream = stack.enter_context(spawn_mock_process(**mock))
        if kind == "asyncthrift":
            servers = stack.enter_context(
                gateway_replicas(
                    1,
                    upstream=upstream,
                    limits=wide,
                    shared=redis.url if redis is not None else None,
                    client_key=CLIENT_KEY,
                    log_dir=run_dir,
                )
            )
            key = CLIENT_KEY
        elif kind == "passthrough":
            servers = stack.enter_context(
                passthrough_proxies(1, upstream=upstream, log_dir=run_dir)
            )
            key = "k-upstream"  # passed on as it is
        else:
            assert redis is not None
            servers = stack.enter_context(
                litellm_proxies(
                    1,
                    model=bodies[0]["model"],
                    upstream=upstream,
                    limits=wide,
                    redis_port=redis.port,
                    master_key=LITELLM_MASTER_KEY,
                    log_dir=run_dir,
                )
            )
            key = LITELLM_MASTER_KEY
        server = servers[0]
        direct, via = run(_latency_pairs(bodies, upstream, server.url, key, warmup))
        cpu0, mock0 = server.cpu(), children_cpu("--config-json")
        wall, statuses = run(_closed_loop(server.url, key, loop_bodies, concurrency))
        cpu, mock_cpu = server.cpu() - cpu0, children_cpu("--config-json") - mock0
    added = {q: (percentile(via, q) - percentile(direct, q)) * 1000.0 for q in (50, 90, 99)}
    # each request's own difference against the direct one sent just before or after it:
    # the machine's slow moments hit both of a pair, so these move less between runs
    paired = [v - d for d, v in zip(direct, via, strict=True)]
    return {
        "kind": kind,
        "shared": shared,
        "requests": len(direct),
        "direct_ms": {q: percentile(direct, q) * 1000.0 for q in (50, 90, 99)},
        "via_ms": {q: percentile(via, q) * 1000.0 for q in (50, 90, 99)},
        "added_ms": added,
        "added_mean_ms": (statistics.fmean(via) - statistics.fmean(direct)) * 1000.0,
        "added_paired_ms": {q: percentile(paired, q) * 1000.0 for q in (50, 90, 99)},
        # how many requests took longer than the direct p99 plus 20 ms: a tail of its own
        "slow_tail": sum(1 for v in via if v > percentile(direct, 99) + 0.020),
        "latencies_ms": {
            "direct": [round(1000.0 * v, 3) for v in direct],
            "via": [round(1000.0 * v, 3) for v in via],
        },
        "throughput_requests": throughput_n,
        "concurrency": concurrency,
        "statuses": {str(k): v for k, v in statuses.items()},
        "wall": wall,
        "rps": throughput_n / wall,
        "cpu": cpu,
        "per_core": throughput_n / cpu if cpu else None,
        "cpu_ms_per_request": 1000.0 * cpu / throughput_n,
        "mock_cpu": mock_cpu,
        "mock_per_core": throughput_n / mock_cpu if mock_cpu else None,
        "load": os.getloadavg(),
    }


# -- the report ------------------------------------------------------------------------------


def _ratio_cell(row: dict[str, Any]) -> str:
    if row.get("skipped"):
        return f"not run: {row['skipped']}"
    if row["ratio"] is None:
        done = f"✗ {row['ok']}/{row['requests']} answered"
        return done + (f", last at {row['makespan']:.1f} s" if row["ok"] else "")
    cell = (
        f"{row['makespan']:.1f} s: **{row['ratio']:.2f}** × ideal {row['ideal']:.1f} s "
        f"({row['ratio_bound']:.2f} × bound {row['bound']:.1f} s"
    )
    if row.get("ratio_arrivals"):
        cell += (
            f"; {row['ratio_arrivals']:.2f} × {row['ideal_arrivals']:.1f} s after the "
            f"arrivals, first admission {row['first_admission']:.2f} s"
        )
    return cell + ")"


def _cpu_cell(row: dict[str, Any]) -> str:
    cell = " / ".join(f"{c:.1f}" for c in row["cpu"])
    if "cpu_driver" in row:
        cell += f"; {row['cpu_driver']:.1f}, {row['cpu_mock']:.1f}, {row['cpu_redis']:.1f}"
    return cell


def binding_table(rows: Sequence[dict[str, Any]]) -> str:
    return md_table(
        [
            "server",
            "replicas",
            "mock setting",
            "start",
            "makespan ÷ minimum",
            "429s seen by clients (client quota)",
            "other failures",
            "mock's 429s",
            "requests on the wire (s)",
            "CPU s: replicas / driver, mock, redis",
        ],
        [
            [
                r["kind"],
                r["replicas"],
                r["setting"],
                "warm" if r.get("warm") else "cold",
                _ratio_cell(r),
                "—" if r.get("skipped") else f"{r['client_429']} ({r['client_429_quota']})",
                "—"
                if r.get("skipped")
                else sum(v for k, v in r["statuses"].items() if k not in ("200", "429")),
                "—" if r.get("skipped") else r["mock_429"],
                "—" if r.get("skipped") else f"{r['wire'][0]:.2f}–{r['wire'][1]:.2f}",
                "—" if r.get("skipped") else _cpu_cell(r),
            ]
            for r in rows
        ],
    )


def overhead_table(rows: Sequence[dict[str, Any]]) -> str:
    return md_table(
        [
            "server",
            "latency direct p50 / p99 ms",
            "through it p50 / p99 ms",
            "added p50 / p90 / p99 ms",
            "paired p50 / p90 ms",
            "closed loop: requests/s (statuses)",
            "its CPU ms per request",
            "requests/s per core (the mock's)",
        ],
        [
            [
                r["kind"] + (" + Redis" if r["shared"] else ""),
                f"{r['direct_ms'][50]:.1f} / {r['direct_ms'][99]:.1f}",
                f"{r['via_ms'][50]:.1f} / {r['via_ms'][99]:.1f}",
                " / ".join(f"**{r['added_ms'][q]:.2f}**" for q in (50, 90, 99)),
                " / ".join(f"{r['added_paired_ms'][q]:.2f}" for q in (50, 90)),
                f"{r['rps']:.0f} ({', '.join(f'{k}: {v}' for k, v in r['statuses'].items())})",
                f"{r['cpu_ms_per_request']:.2f}",
                f"**{r['per_core']:.0f}** ({r['mock_per_core']:.0f})"
                if r["per_core"] and r["mock_per_core"]
                else "—",
            ]
            for r in rows
        ],
    )


def report(
    binding: Sequence[dict[str, Any]],
    overhead: Sequence[dict[str, Any]],
    notes: Sequence[str],
    args: argparse.Namespace,
) -> str:
    parts = []
    if binding:
        first = next((r for r in binding if not r.get("skipped")), None)
        if first is not None:
            rpm, itpm, otpm = first["limits"]
            parts.append(
                f"All limits binding: {first['requests']} mixed requests at once, period "
                f"{first['period']:g} s, limits rpm {rpm:g}, itpm {itpm:g}, otpm {otpm:g} "
                f"(the work is {args.beyond:g} s beyond the first bucket in every dimension); "
                f"bare SDK, max_retries=0, spread over the replicas by {args.balance} "
                "(least: a load balancer's least-outstanding choice, ties round robin). "
                "Minimum: ideal = acceptance's clairvoyant FIFO client, bound = "
                "theoretical_minimum (bench_shared's)."
            )
        parts.append(binding_table(binding))
        for r in binding:
            if r.get("skipped"):
                continue
            parts.append(
                f"**{r['kind']}, {r['replicas']} replicas, {r['setting']}, "
                f"{'warm' if r.get('warm') else 'cold'}** (load "
                f"{r['load'][0]:.1f}): requests on the wire {r['wire'][0]:.2f}–"
                f"{r['wire'][1]:.2f} s after the start, the mock's first admission at "
                f"{r['first_admission']:.2f} s; errors {r['errors'] or 'none'}\n\n"
                + md_table(
                    [
                        "replica",
                        "requests (their max_tokens)",
                        "answered",
                        "429s",
                        "other failures",
                        "first admission s (est.)",
                        "last answer s",
                        "admitted/s after 2 s (share of its even part of rpm)",
                    ],
                    per_replica(r),
                )
                + "\n\n```\n"
                + "\n".join(timeline(r))
                + "\n```"
            )
    if overhead:
        parts.append(
            f"Nothing binding: one server, the mock answering in a fixed {FIXED_LATENCY * 1000:g}"
            " ms; the same requests one at a time direct and through it (SDK, alternating), "
            "then a closed loop of raw HTTP clients through it; per core = requests ÷ its "
            "process's CPU seconds (/proc)."
        )
        parts.append(overhead_table(overhead))
    parts += [f"- {n}" for n in notes]
    return "\n\n".join(parts)


def summary(binding: Sequence[dict[str, Any]], overhead: Sequence[dict[str, Any]]) -> str:
    items = []
    for r in binding:
        if r.get("skipped"):
            items.append(f"{r['kind']} ×{r['replicas']}: not run")
            continue
        name = f"{r['kind']} ×{r['replicas']} {r['setting']}{' warm' if r.get('warm') else ''}"
        if r["ratio"] is None:
            items.append(f"{name}: ✗ {r['ok']}/{r['requests']}, {r['client_429']} × 429")
        else:
            items.append(f"{name}: {r['ratio']:.2f}, {r['client_429']} × 429")
    for r in overhead:
        items.append(
            f"{r['kind']}{' + Redis' if r['shared'] else ''} adds p50 {r['added_ms'][50]:.2f} / "
            f"p99 {r['added_ms'][99]:.2f} ms (paired p50 {r['added_paired_ms'][50]:.2f}), "
            f"{r['cpu_ms_per_request']:.2f} ms CPU and "
            f"{r['per_core'] or 0:.0f} requests/s per core"
        )
    return "; ".join(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="1 is the baseline: one gateway with the whole key, no Redis",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["completion-seconds", "admission-milliseconds"],
        choices=sorted(acceptance.SETTINGS),
        help="the mock's header settings (rows of bench/acceptance.py)",
    )
    parser.add_argument("--period", type=float, default=60.0)
    parser.add_argument("--beyond", type=float, default=25.0, help="seconds beyond the burst")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--quick", action="store_true", help="smoke check: 10 s period, less")
    parser.add_argument("--no-binding", action="store_true")
    parser.add_argument(
        "--start",
        nargs="+",
        choices=("cold", "warm"),
        default=["cold"],
        help="cold: the burst is each replica's first request; warm: one tiny request per "
        "replica first (its budget built before the clock starts)",
    )
    parser.add_argument(
        "--balance",
        choices=("least", "round-robin"),
        default="least",
        help="how the driver spreads requests over replicas: least outstanding when each "
        "goes on the wire, ties round robin (a load balancer's), or request i to replica "
        "i mod R (default least)",
    )
    parser.add_argument(
        "--shared-one",
        action="store_true",
        help="run a 1-replica row through Redis (--shared) too, not only the whole-key baseline",
    )
    parser.add_argument(
        "--open-connections",
        action="store_true",
        help="the clients' connections to the replicas open before the clock starts (one "
        "per request, kept alive), not opened by each request of the burst",
    )
    parser.add_argument(
        "--build-all-first",
        action="store_true",
        help="the driver builds all requests before the first goes out (as before this "
        "option): by default each goes on the wire as it is built",
    )
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument(
        "--no-asyncthrift", action="store_true", help="LiteLLM only (to check its setup)"
    )
    parser.add_argument(
        "--litellm-settings", nargs="+", default=None, help="default: the first of --settings"
    )
    parser.add_argument("--overhead-requests", type=int, default=300)
    parser.add_argument("--throughput-requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="JSON with every outcome")
    parser.add_argument("--logs", type=Path, default=None, help="keep the servers' logs here")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.period, args.requests = 10.0, 300
        args.beyond = 25.0 * args.period / 60.0
        args.overhead_requests, args.throughput_requests = 100, 400
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"servers' logs in {log_dir}; code {revision()}; load {os.getloadavg()}", flush=True)

    binding: list[dict[str, Any]] = []
    overhead: list[dict[str, Any]] = []
    notes: list[str] = []
    work = binding_workload(args.requests, args.period, args.beyond)
    if not args.no_binding and not args.no_asyncthrift:
        for replicas, setting, start in itertools.product(args.replicas, args.settings, args.start):
            row = binding_run(
                "asyncthrift",
                replicas,
                setting,
                work,
                log_dir,
                warm=start == "warm",
                balance=args.balance,
                shared_one=args.shared_one,
                open_connections=args.open_connections,
                build_all_first=args.build_all_first,
            )
            print(
                f"asyncthrift ×{replicas} {setting} {start}: {_ratio_cell(row)}, "
                f"{row['client_429']} × 429 at clients, {row['mock_429']} at the mock",
                flush=True,
            )
            binding.append(row)
    why_not = None if args.no_litellm else litellm_unavailable()
    if why_not:
        notes.append(f"LiteLLM's proxy not run: {why_not}")
        print(notes[-1], flush=True)
    if not args.no_litellm and not why_not and not args.no_binding:
        for replicas in [r for r in args.replicas if r > 1]:
            for setting in args.litellm_settings or args.settings[:1]:
                row = binding_run("litellm", replicas, setting, work, log_dir, balance=args.balance)
                print(
                    f"litellm ×{replicas} {setting}: {_ratio_cell(row)}, "
                    f"{row['client_429']} × 429 at clients, {row['mock_429']} at the mock",
                    flush=True,
                )
                binding.append(row)
    if not args.no_overhead:
        kinds = [("passthrough", False)]
        if not args.no_asyncthrift:
            kinds += [("asyncthrift", False), ("asyncthrift", True)]
        if not args.no_litellm and not why_not:
            kinds.append(("litellm", True))  # its rate-limit checks go through Redis
        for kind, shared in kinds:
            row = overhead_run(
                kind,
                args.overhead_requests,
                args.throughput_requests,
                args.concurrency,
                shared,
                log_dir,
            )
            print(summary([], [row]), flush=True)
            overhead.append(row)

    body = report(binding, overhead, notes, args)
    print()
    print(body)
    if args.out:
        args.out.write_text(json.dumps({"binding": binding, "overhead": overhead, "notes": notes}))
    if not args.no_write:
        path = write_result(
            "gateway", "`asyncthrift serve` under load", "auto", body, summary(binding, overhead)
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

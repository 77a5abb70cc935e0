"""Shared budgets on a real 3-master Redis Cluster and over TLS (``rediss://``), on loopback.

The cluster: three ``redis-server --cluster-enabled yes`` joined by
``redis-cli --cluster create ... --cluster-yes`` (no replicas). TLS: one ``redis-server
--tls-port`` with a throwaway self-signed certificate made by the ``openssl`` CLI. Both
fail (never skip) under CI when a binary is missing, as the other Redis tests do.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.stores.shared import SharedBudget, SharedStore
from tests.conftest_redis import in_ci, require_redis_server
from tests.redis_server import _free_port, _ping

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LIMITS = Limits(rpm=60, itpm=60_000, otpm=12_000, period=4.0)
#: the Redis call bound of these tests (seconds): far beyond any stall of a loaded machine
SLOW_MACHINE_BOUND = 5.0


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if in_ci():
            pytest.fail(f"{binary} is not on PATH (CI is set: the Redis tests must not skip)")
        pytest.skip(f"{binary} is not on PATH")
    return path


def _spawn(exe: str, workdir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            exe,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(workdir / "redis.log"),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def _wait(ready: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up on loopback")


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid, free port too: a node
    given 55536 or above cannot open its bus and never comes up."""
    while True:
        port = _free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@pytest.fixture
def redis_cluster() -> Iterator[list[int]]:
    """Three masters on loopback covering all 16384 slots; their ports."""
    exe = require_redis_server()
    cli = _require("redis-cli")
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="asyncthrift-cluster-"))
    try:
        ports: list[int] = []
        while len(ports) < 3:
            port = _cluster_port()
            if port not in ports:
                ports.append(port)
        for port in ports:
            d = tmp / str(port)
            d.mkdir()
            procs.append(
                _spawn(exe, d, port, "--cluster-enabled", "yes",
                       "--cluster-config-file", str(d / "nodes.conf"),
                       "--cluster-node-timeout", "2000")
            )  # fmt: skip
        for port in ports:
            _wait(lambda port=port: _ping(port), f"cluster node {port}")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

        def cluster_ok() -> bool:
            for p in ports:
                out = subprocess.run(
                    [cli, "-p", str(p), "cluster", "info"], capture_output=True, text=True
                ).stdout
                if "cluster_state:ok" not in out:
                    return False
            return True

        _wait(cluster_ok, "the cluster")
        yield ports
    finally:
        _stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def tls_redis() -> Iterator[tuple[int, str]]:
    """A redis-server listening only on a TLS port; (port, path of its CA certificate)."""
    exe = require_redis_server()
    openssl = _require("openssl")
    tmp = Path(tempfile.mkdtemp(prefix="asyncthrift-tls-"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = _free_port()
    proc = _spawn(exe, tmp, 0, "--tls-port", str(port), "--tls-cert-file", str(cert),
                  "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                  "--tls-auth-clients", "no")  # fmt: skip
    try:
        cli = _require("redis-cli")

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "redis.log").read_text(errors="replace")[-2000:])
            out = subprocess.run(
                [cli, "--tls", "--cacert", str(cert), "-p", str(port), "ping"],
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            return "PONG" in out

        _wait(up, "redis-server with TLS")
        yield port, str(cert)
    finally:
        _stop([proc])
        shutil.rmtree(tmp, ignore_errors=True)


async def _two_clients(shared: list[Any]) -> tuple[int, int, list[SharedBudget], int]:
    """120 requests through two clients sharing one budget: (429s at the mock, Redis
    commands, the shared budgets, the most processes the script reported while they ran)."""
    from asyncthrift.mock import remote_stats, spawn_mock_process
    from asyncthrift.tools.workload import mixed_workload

    bodies = mixed_workload(120, seed=3)
    with spawn_mock_process(limits=LIMITS, latency=0.02, output_tokens=(40, 200)) as url:
        clients = [Thrift(api_key="k", base_url=url, limits=LIMITS, shared=s) for s in shared]
        seen = 0

        async def watch() -> None:
            # the most processes any lease call reported while both ran (the last call's
            # answer alone may come after the other client went quiet for a period: under
            # a loaded full suite that happened)
            nonlocal seen
            while True:
                for c in clients:
                    for bs in c.budgets().values():
                        for b in bs:
                            if isinstance(b, SharedBudget):
                                seen = max(seen, b.processes)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        try:
            results = await asyncio.gather(
                *(clients[i % 2].messages.create(**b) for i, b in enumerate(bodies))
            )
            watcher.cancel()
            commands = 0
            budgets: list[SharedBudget] = []
            for c in clients:
                store = c.shared
                assert store is not None
                stats = store.stats()
                commands += stats.commands
                assert stats.errors == 0, (stats, repr(store.breaker.last_error))
                for bs in c.budgets().values():
                    for b in bs:
                        assert isinstance(b, SharedBudget) and b.mode == "shared"
                        budgets.append(b)
        finally:
            watcher.cancel()
            # closed even when an assertion fails, so no socket is left for a later test's
            # garbage collection to find
            for c in clients:
                await c.aclose()
        counters = await asyncio.to_thread(remote_stats, url)
    assert len(results) == 120
    return counters["rate_limited"], commands, budgets, seen


async def test_two_clients_share_one_budget_on_a_redis_cluster(redis_cluster: list[int]) -> None:
    from redis.asyncio.cluster import RedisCluster

    url = f"redis://127.0.0.1:{redis_cluster[0]}/0?cluster=true"
    # what is under test is the Cluster and the sharing; the time bound has its own tests
    # (test_breaker.py). A full suite on two busy cores can stall a call far past 50 ms
    # (a GC pause, a new pooled connection), and a timed-out call is a fallback admission,
    # not a shared one: a bound no loaded machine reaches
    stores = [SharedStore(url, timeout=SLOW_MACHINE_BOUND) for _ in range(2)]
    rate_limited, commands, budgets, processes = await _two_clients(list(stores))
    assert processes == 2, processes  # the two clients, seen by one script
    assert rate_limited == 0, rate_limited
    assert commands / 120 < 0.5, commands
    # both clients used the same two keys, in one slot, and the bucket lives there
    keys = {b.keys for b in budgets}
    assert len(keys) == 1
    ((bucket, seen),) = keys
    rc = RedisCluster(host="127.0.0.1", port=redis_cluster[0], decode_responses=True)
    try:
        assert await rc.cluster_keyslot(bucket) == await rc.cluster_keyslot(seen)
        assert await rc.exists(bucket) == 1
        # the set of processes seen lately lives in the bucket's slot (it may have dropped
        # the first client to close by now)
        assert await rc.zcard(seen) >= 1
    finally:
        await rc.aclose()


async def test_two_clients_share_one_budget_over_tls(tls_redis: tuple[int, str]) -> None:
    port, ca = tls_redis
    # what is under test is TLS and the sharing; the time bound has its own tests
    # (test_breaker.py); a new pooled connection's TLS handshake on a loaded machine is
    # bounded by `timeout` too (see asyncthrift.core._breaker), so: a bound no machine reaches
    stores = [
        SharedStore(f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=ca, timeout=SLOW_MACHINE_BOUND)
        for _ in range(2)
    ]
    rate_limited, commands, budgets, processes = await _two_clients(list(stores))
    assert processes == 2, processes
    assert rate_limited == 0, rate_limited
    assert commands / 120 < 0.5, commands
    assert len({b.keys for b in budgets}) == 1

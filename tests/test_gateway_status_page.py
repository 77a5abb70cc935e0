"""The status page in a real headless Chromium (Debian's ``chromium``): served by the ops
routes on a loopback port with known numbers, it must show them after its own JS fetched
``status.json`` (the HTML itself holds none), keep refreshing, and render a real screenshot.

Without chromium the test skips locally and FAILS under CI (``CI`` set), like the Redis tests.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import struct
import tempfile
import zlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from asyncthrift import Limits, Thrift
from asyncthrift.gateway.clients import ClientQuota, GatewayClient
from asyncthrift.gateway.quotas import ClientQuotas, QuotaGrant
from asyncthrift.gateway.status import gateway_status, ops_routes
from asyncthrift.gateway.telemetry import GatewayTelemetry
from tests.conftest_redis import in_ci
from tests.fake_api import FakeAPI, ok

INSTALL_HINT = "the status page test needs Debian's chromium (apt-get install chromium)"
#: Where the screenshot is left for a human to look at (CI keeps it as an artifact if asked).
SHOT = Path(tempfile.gettempdir()) / "asyncthrift-status-page.png"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if in_ci():
            pytest.fail(f"{INSTALL_HINT} (CI is set: this test must not skip)")
        pytest.skip(INSTALL_HINT)
    return exe


def known_telemetry() -> GatewayTelemetry:
    t = GatewayTelemetry(["alice", "bob"])
    for _ in range(7):
        t.queued("alice", "interactive")
    for _ in range(4):
        t.left_queue("alice", "interactive", waited=0.2, admitted=True)
    t.queued("bob", "batch")
    for _ in range(3):
        t.finished(
            "alice", "interactive", status=200, cost_usd=4.1, input_tokens=4321, output_tokens=87
        )
    t.refused("bob", "batch", status=429, reason="quota")
    return t


class Status:
    """The live half of /status.json, with known numbers; counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Mapping[str, Any]:
        self.calls += 1
        return {
            "draining": False,
            "budgets": [
                {
                    "name": "key-1",
                    "model_class": "sonnet",
                    "blocked_s": 0.0,
                    "limits": [
                        {"dim": "rpm", "level": 250.0, "capacity": 1000.0},
                        {"dim": "itpm", "level": 90000.0, "capacity": 450000.0},
                        {"dim": "otpm", "level": 81000.0, "capacity": 90000.0},
                    ],
                }
            ],
            "savings": {
                "cache_hits": 1234,
                "dedupe_joins": 56,
                "packed_calls": 78,
                "tokens_saved": 987654,
                "dollars_saved": 43.21,
                "cost_usd": 12.3,
            },
            "quotas": {
                "alice": {
                    "limits": {"rpm": 60, "itpm": None, "otpm": None},
                    "used": {"rpm": 45, "itpm": 0, "otpm": 0},
                    "spend_cap_usd": 50.0,
                    "spent_usd": 12.3,
                },
            },
        }


@pytest.fixture
async def page_url() -> AsyncIterator[tuple[str, Status]]:
    """The ops routes on a free loopback port, served by uvicorn in this test's loop."""
    status = Status()
    app = Starlette(routes=ops_routes(telemetry=known_telemetry(), status=status))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    for _ in range(3000):  # up to 30 s on a loaded machine; it starts in milliseconds
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", status
    finally:
        server.should_exit = True
        await task
        sock.close()


async def run_chromium(*args: str) -> bytes:
    """Chromium headless with `args`; its stdout. Virtual time runs the page's timers fast."""
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1280,1100",
            "--virtual-time-budget=5000",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": profile},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_page_renders_the_live_numbers_it_fetched(
    page_url: tuple[str, Status],
) -> None:
    url, status = page_url
    async with httpx.AsyncClient() as http:
        static = (await http.get(url)).text
    assert "1,234" not in static and "alice" not in static  # the numbers come from the fetch
    dom = await run_chromium("--dump-dom", url)
    text = text_of(dom.decode())
    assert 'data-loaded="' in dom.decode()
    assert int(re.search(r'data-loaded="(\d+)"', dom.decode())[1]) >= 2  # type: ignore[index]
    assert status.calls >= 2  # it refreshed itself
    assert "1,234 cache hits" in text and "987,654 tokens saved" in text
    assert "$43.21 dollars saved" in text and "78 packed calls" in text
    assert "750 / 1,000 used" in text  # rpm: level 250 of 1000 free
    assert "360,000 / 450,000 used" in text
    assert "alice 3 4 3 0 12,963 / 261 $12.30" in text  # queued, admitted, answered, refused
    assert "45 / 60" in text and "$12.30 / $50.00" in text  # alice's quota and spend cap
    assert "interactive 3 4 0 ≤ 250 ms ≤ 250 ms" in text  # queued, admitted, gave up, waits
    assert "429 quota" in text and "serving" in text


async def test_a_screenshot_of_the_page_is_drawn(page_url: tuple[str, Status]) -> None:
    """The screenshot shows the page as drawn: its header, and bars in the colours their
    levels call for (amber from 70 % used: rpm 75 %; green below: otpm 10 %)."""
    url, _ = page_url
    SHOT.unlink(missing_ok=True)
    await run_chromium(f"--screenshot={SHOT}", url)
    width, height, pixels = decode_png(SHOT.read_bytes())
    assert (width, height) == (1280, 1100)
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), 3)}
    header, background = bytes.fromhex("111827"), bytes.fromhex("f5f6f8")
    amber, green = bytes.fromhex("f79009"), bytes.fromhex("12b76a")
    assert pixels[:3] == header and {background, amber, green} <= colours
    assert len(colours) > 200  # text, antialiased: not a blank or one-colour page


def decode_png(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of an 8-bit RGB or RGBA PNG (what Chromium writes): just
    enough of the format to look at pixels without an imaging library."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, head = 8, [], b""
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        head = data if kind == b"IHDR" else head
        chunks += [data] if kind == b"IDAT" else []
        pos += 12 + size
    width, height, depth, colour = struct.unpack(">IIBB", head[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    step = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * step
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b, c = prev[i], prev[i - step] if i >= step else 0
            line[i] = (line[i] + _predict(kind, a, b, c)) & 0xFF
        out += b"".join(bytes(line[i : i + 3]) for i in range(0, stride, step))
        prev = line
    return width, height, bytes(out)


def _predict(kind: int, a: int, b: int, c: int) -> int:
    """The PNG filter's predictor for one byte (left a, up b, upper-left c)."""
    if kind == 0:
        return 0
    if kind == 1:
        return a
    if kind == 2:
        return b
    if kind == 3:
        return (a + b) // 2
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


@pytest.mark.looptime
async def test_status_json_carries_a_thrifts_live_budgets_and_savings() -> None:
    """`gateway_status` over a real `Thrift` (the SDK's transport seam), through the routes:
    budgets per limit, savings, quota use, strict JSON, and never the key."""
    secret = "sk-ant-status-secret-42"
    api = FakeAPI(lambda body, n: ok(body, input_tokens=12, output_tokens=7))
    alice = GatewayClient("alice", quota=ClientQuota(rpm=10))
    quotas = ClientQuotas([alice], clock=lambda: 0.0)
    thrift = Thrift(
        api_key=secret,
        base_url="http://api.test",
        sdk_options=api.sdk_options(),
        limits=Limits(rpm=100, itpm=50_000, otpm=10_000),
    )
    async with thrift:
        grant = await quotas.admit(alice, input_tokens=12, max_tokens=50, worst_usd=0.01)
        assert isinstance(grant, QuotaGrant)
        await thrift.messages.create(
            model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        routes = ops_routes(
            telemetry=GatewayTelemetry(["alice"]),
            status=lambda: gateway_status(thrift, draining=True, quotas=quotas),
        )
        transport = httpx.ASGITransport(app=Starlette(routes=routes))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            got = await http.get("/status.json")
            metrics = await http.get("/metrics")
    assert got.status_code == 200 and secret not in got.text
    body = got.json()
    assert body["draining"] is True and body["savings"]["requests"] == 1
    [budget] = body["budgets"]
    caps = {limit["dim"]: limit["capacity"] for limit in budget["limits"]}
    assert caps == {"rpm": 100, "itpm": 50_000, "otpm": 10_000}
    rpm = next(limit for limit in budget["limits"] if limit["dim"] == "rpm")
    assert rpm["level"] == pytest.approx(99)  # one request taken (virtual time: no refill)
    assert body["quotas"]["alice"]["used"]["rpm"] == 1
    assert body["quotas"]["alice"]["limits"]["rpm"] == 10
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")


async def served(status: Any) -> dict[str, Any]:
    """/status.json of the ops routes over `status`, through the ASGI app (no socket)."""
    app = Starlette(routes=ops_routes(telemetry=GatewayTelemetry(), status=status))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        got = await http.get("/status.json")
    assert got.status_code == 200
    return dict(got.json())


async def test_status_given_per_model_class_is_served_in_the_pages_shape() -> None:
    """A `status` giving budgets per model class ({limits, available} per dimension) and the
    whole `stats` is served as the page reads it."""
    budget = {
        "name": "upstream-1",
        "limits": {"rpm": 50, "itpm": None, "otpm": 8000},
        "available": {"rpm": 20.0, "itpm": None, "otpm": float("inf")},
    }
    body = await served(lambda: {"budgets": {"sonnet": [budget]}, "stats": {"cache_hits": 9}})
    assert body["budgets"] == [
        {
            "name": "upstream-1",
            "model_class": "sonnet",
            "blocked_s": 0.0,
            "limits": [{"dim": "rpm", "level": 20.0, "capacity": 50}],  # otpm: no finite level
        }
    ]
    assert body["savings"] == {"cache_hits": 9}


async def test_a_failing_status_leaves_the_telemetry_served() -> None:
    def broken() -> Mapping[str, Any]:
        raise RuntimeError("no thrift yet")

    body = await served(broken)
    assert body["status_error"] == "RuntimeError: no thrift yet"
    assert body["lanes"]["interactive"]["queued"] == 0


#: A period of ten hours: what the two requests took refills by under 0.5 in 45 s, so the
#: page shows exactly 2 used however slowly the machine runs (quotas take the same period).
LONG_LIMITS = "rpm=400,period=36000"


@pytest.mark.slow
async def test_a_real_gateway_serves_its_own_live_status_page(tmp_path: Path) -> None:
    """``asyncthrift serve`` in front of the mock, with a client quota: after two answers,
    the page drawn by Chromium shows that client, its quota use and the upstream budget
    from ``--limits``; ``/metrics`` parses and counts the same two answers."""
    from prometheus_client.parser import text_string_to_metric_families

    from asyncthrift.mock import spawn_mock_process
    from tests.gateway_process import spawn_gateway

    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[[clients]]\nname = "carol"\nkey = "carol-key"\nrpm = 7\n'
        'spend_cap_usd = 25\nspend_period = "day"\n'
    )
    body = {"model": "claude-sonnet-4-5", "max_tokens": 40, "messages": [{"role": "user"}]}
    with (
        spawn_mock_process(latency=0.01) as mock_url,
        spawn_gateway(mock_url, "--limits", LONG_LIMITS, "--keys-file", str(keys)) as gw,
    ):
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
            for text in ("one", "two"):
                body["messages"] = [{"role": "user", "content": text}]
                answer = await http.post(
                    "/v1/messages", json=body, headers={"x-api-key": "carol-key"}
                )
                assert answer.status_code == 200, answer.text
            metrics = (await http.get("/metrics")).text
        dom = (await run_chromium("--dump-dom", gw.url + "/")).decode()
    text = text_of(dom)
    assert re.search(r"carol 0 2 2 0 [\d,]+ / [\d,]+ \$0\.\d\d", text), text
    assert "rpm 2 / 7" in text  # carol's own quota, as the page draws it
    assert "rpm 2 / 400 used" in text  # the upstream budget from --limits
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    answered = (
        "asyncthrift_gateway_responses_total",
        (("client", "carol"), ("lane", "default"), ("status", "200")),
    )
    assert samples[answered] == 2
    assert "carol-key" not in dom and "carol-key" not in metrics

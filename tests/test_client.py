"""The facade over the SDK's transport seam, in virtual time: retries, refunds, safety."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2
import pytest

from asyncthrift import BudgetExceeded, KeyConfig, Limits, RequestTooLarge, Thrift
from asyncthrift.errors import DeadlineExceeded

from .fake_api import FakeAPI, error, ok

pytestmark = pytest.mark.looptime

MODEL = "claude-sonnet-4-6"
SECRET = "sk-ant-secret-123456"


def req(text: str = "hello", max_tokens: int = 100, **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        **kw,
    }


def client(api: FakeAPI, **kw: Any) -> Thrift:
    kw.setdefault("api_key", SECRET)
    return Thrift(base_url="http://api.test", sdk_options=api.sdk_options(), **kw)


async def test_returns_the_sdks_message_and_counts() -> None:
    api = FakeAPI(lambda body, n: ok(body, input_tokens=12, output_tokens=7))
    async with client(api, limits=Limits(rpm=100)) as c:
        msg = await c.messages.create(**req())
        assert isinstance(msg, anthropic.types.Message)
        assert msg.content[0].text == "ok"  # type: ignore[union-attr]
        s = c.stats()
        assert (s.requests, s.succeeded, s.upstream_calls, s.retries) == (1, 1, 1, 0)
        assert (s.input_tokens, s.output_tokens) == (12, 7)
        assert s.cost_usd == pytest.approx((12 * 3 + 7 * 15) / 1e6)


async def test_retry_after_ms_is_honoured_to_the_millisecond() -> None:
    def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 1:
            return error(429, "rate_limit_error", {"retry-after-ms": "1234", "retry-after": "2"})
        return ok(body)

    api = FakeAPI(handler)
    async with client(api, limits=Limits(rpm=100)) as c:
        await c.messages.create(**req())
        assert len(api.calls) == 2
        assert api.calls[1] - api.calls[0] == pytest.approx(1.234, abs=1e-6)
        s = c.stats()
        assert (s.rate_limited, s.retries, s.succeeded) == (1, 1, 1)


async def test_a_429_holds_the_whole_model_class_not_others() -> None:
    def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 1:
            return error(429, "rate_limit_error", {"retry-after": "3"})
        return ok(body)

    api = FakeAPI(handler)
    loop = asyncio.get_running_loop()
    async with client(api, limits=Limits(rpm=1000)) as c:
        t0 = loop.time()
        first = asyncio.create_task(c.messages.create(**req("a")))
        await asyncio.sleep(0.5)
        haiku = await c.messages.create(**{**req("b"), "model": "claude-haiku-4-5"})
        assert haiku is not None and loop.time() - t0 == pytest.approx(0.5)
        same_class = await c.messages.create(**req("c"))  # sonnet: blocked until t0 + 3
        assert same_class is not None and loop.time() - t0 == pytest.approx(3.0, abs=1e-6)
        await first


@pytest.mark.parametrize(
    "status,kind",
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
    ],
)
async def test_never_retries_what_cannot_succeed(status: int, kind: str) -> None:
    api = FakeAPI(lambda body, n: error(status, kind, {"x-should-retry": "true"}))
    async with client(api, limits=Limits(rpm=100, itpm=10_000, otpm=10_000)) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await c.messages.create(**req())
        assert info.value.status_code == status
        assert len(api.calls) == 1
        s = c.stats()
        assert (s.failed, s.retries) == (1, 0)
        # the output reservation came back; the request stays spent
        levels = c.budgets()["sonnet"][0].peek(asyncio.get_running_loop().time())
        assert levels[2] == pytest.approx(10_000)


async def test_retries_5xx_529_and_connection_errors_with_backoff() -> None:
    script = [
        error(529, "overloaded_error"),
        error(500, "api_error"),
        httpx2.ConnectError("boom"),
        error(503, "api_error"),
    ]

    def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        if n <= len(script):
            item = script[n - 1]
            if isinstance(item, Exception):
                raise item
            return item
        return ok(body)

    api = FakeAPI(handler)
    async with client(api, limits=Limits(rpm=100)) as c:
        msg = await c.messages.create(**req())
        assert msg.id == "msg_test"
        s = c.stats()
        assert (
            s.upstream_calls,
            s.retries,
            s.overloaded,
            s.server_errors,
            s.connection_errors,
        ) == (
            5,
            4,
            1,
            2,
            1,
        )
        gaps = [b - a for a, b in zip(api.calls, api.calls[1:], strict=False)]
        assert all(0 <= g <= 20.0 for g in gaps)


async def test_x_should_retry_false_is_obeyed() -> None:
    api = FakeAPI(lambda body, n: error(500, "api_error", {"x-should-retry": "false"}))
    async with client(api) as c:
        with pytest.raises(anthropic.InternalServerError):
            await c.messages.create(**req())
        assert len(api.calls) == 1


async def test_gives_up_after_max_retries() -> None:
    api = FakeAPI(lambda body, n: error(529, "overloaded_error"))
    async with client(api, max_retries=2) as c:
        with pytest.raises(anthropic.APIStatusError):
            await c.messages.create(**req())
        assert len(api.calls) == 3


async def test_usage_reconciles_the_reservation_exactly() -> None:
    api = FakeAPI(lambda body, n: ok(body, input_tokens=40, output_tokens=30))
    async with client(api, limits=Limits(rpm=100, itpm=10_000, otpm=10_000)) as c:
        await c.messages.create(**req(max_tokens=500))
        now = asyncio.get_running_loop().time()
        levels = c.budgets()["sonnet"][0].peek(now)
        assert levels == pytest.approx((99, 10_000 - 40, 10_000 - 30))


async def test_cancelled_in_flight_keeps_input_and_output_when_nothing_was_observed() -> None:
    release = asyncio.Event()

    async def slow(body: dict[str, Any], n: int) -> httpx2.Response:
        await release.wait()
        return ok(body)

    api = FakeAPI(slow)
    no_refill = Limits(rpm=100, itpm=10_000, otpm=10_000, period=1e9)
    async with client(api, limits=no_refill) as c:
        task = asyncio.create_task(c.messages.create(**req(max_tokens=800)))
        await asyncio.sleep(1)
        budget = c.budgets()["sonnet"][0]
        during = budget.peek(asyncio.get_running_loop().time())
        assert during[2] == pytest.approx(10_000 - 800)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats().in_flight == 0
        await asyncio.sleep(3600)
        after = budget.peek(asyncio.get_running_loop().time())
        # the server may finish the answer and charge it, and no answer was ever seen to
        # say how long it could be: the whole reservation stays spent (tests/test_abandoned)
        assert after[2] == pytest.approx(during[2])
        assert after[1] == pytest.approx(during[1])  # input kept (the server counted it)
        assert during[1] < 10_000


async def test_server_headers_shrink_the_local_budget() -> None:
    headers = {
        "anthropic-ratelimit-requests-limit": "100",
        "anthropic-ratelimit-requests-remaining": "10",  # someone else spent 89
    }
    api = FakeAPI(lambda body, n: ok(body, headers=headers))
    async with client(api, limits=Limits(rpm=100)) as c:
        await c.messages.create(**req())
        level = c.budgets()["sonnet"][0].peek(asyncio.get_running_loop().time())[0]
        # the first answer of a cold start is read at its lowest; its headers went out at
        # its start (the probe goes as a stream), so they certainly count it: 10, not 9
        assert level == pytest.approx(10)


async def test_request_too_large_fails_before_sending() -> None:
    api = FakeAPI(lambda body, n: ok(body))
    async with client(api, limits=Limits(rpm=100, otpm=1000)) as c:
        with pytest.raises(RequestTooLarge, match="max_tokens"):
            await c.messages.create(**req(max_tokens=4096))
        assert api.calls == []


async def test_deadline_bounds_the_wait_for_admission() -> None:
    api = FakeAPI(lambda body, n: ok(body))
    async with client(api, limits=Limits(rpm=60)) as c:
        await asyncio.gather(*(c.messages.create(**req(str(i))) for i in range(60)))
        with pytest.raises(DeadlineExceeded):
            await c.messages.create(**req("late"), deadline=0.5)
        assert len(api.calls) == 60
        assert c.stats().queued == 0


async def test_key_pool_spreads_over_keys_by_their_limits() -> None:
    api = FakeAPI(lambda body, n: ok(body))
    keys = [
        KeyConfig(api_key="sk-a", limits=Limits(rpm=30)),
        KeyConfig(api_key="sk-b", limits=Limits(rpm=60)),
    ]
    async with Thrift(
        keys=keys, base_url="http://api.test", sdk_options=api.sdk_options(), dedupe=False
    ) as c:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(c.messages.create(**req(str(i))) for i in range(90)))
        assert loop.time() == pytest.approx(0.0)
        assert api.keys.count("sk-a") == 30 and api.keys.count("sk-b") == 60


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"limits": Limits}, TypeError, "limits must be"),
        ({"limits": "tier9"}, ValueError, "tier1"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_queue": -5}, ValueError, "max_queue"),
        ({"cache": "memcached://x"}, ValueError, "memory"),
        ({"dedupe": "yes"}, TypeError, "dedupe"),
        ({"spend_cap_usd": -1}, ValueError, "spend_cap_usd"),
        ({"http": "curl"}, ValueError, "http="),
    ],
)
async def test_bad_client_arguments_fail_at_once(
    kwargs: dict[str, Any], exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        Thrift(api_key=SECRET, **kwargs)


@pytest.mark.parametrize(
    "extra,exc,match",
    [
        ({"priority": "urgent"}, ValueError, "interactive"),
        ({"priority": True}, TypeError, "priority"),
        ({"deadline": "soon"}, TypeError, "deadline"),
        ({"deadline": -1}, ValueError, "deadline"),
        ({"max_tokens": "100"}, TypeError, "max_tokens"),
        ({"max_tokens": 0}, ValueError, "max_tokens"),
    ],
)
async def test_bad_request_options_fail_before_anything_is_queued(
    extra: dict[str, Any], exc: type[Exception], match: str
) -> None:
    api = FakeAPI(lambda body, n: ok(body))
    async with client(api, limits=Limits(rpm=100)) as c:
        with pytest.raises(exc, match=match):
            await c.messages.create(**{**req(), **extra})
        assert api.calls == [] and c.stats().queued == 0


async def test_missing_key_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        Thrift()


async def test_the_key_never_shows() -> None:
    api = FakeAPI(lambda body, n: error(401, "authentication_error"))
    c = client(api, limits=Limits(rpm=10))
    assert SECRET not in repr(c)
    assert SECRET not in repr(KeyConfig(api_key=SECRET))
    with pytest.raises(anthropic.AuthenticationError) as info:
        await c.messages.create(**req())
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in repr(c.stats())
    assert SECRET not in repr(c.budgets())
    await c.aclose()


async def test_spend_cap_refuses_before_sending_and_counts_what_was_spent() -> None:
    api = FakeAPI(lambda body, n: ok(body, input_tokens=1000, output_tokens=1000))
    # each call: worst case ~ (estimate in + 10_000 out) at Sonnet's $3/$15 per M; actual
    # 1000 in + 1000 out = $0.018
    async with client(api, spend_cap_usd=0.2) as c:
        for _ in range(3):
            await c.messages.create(**req(max_tokens=10_000))
        with pytest.raises(BudgetExceeded, match="spend cap"):
            for _ in range(20):
                await c.messages.create(**req(max_tokens=10_000))
        spent = c.stats().cost_usd
        assert spent <= 0.2
        assert len(api.calls) == round(spent / 0.018)  # a refused request was never sent


async def test_spend_cap_holds_worst_case_for_requests_in_flight() -> None:
    gate = asyncio.Event()

    async def slow(body: dict[str, Any], n: int) -> httpx2.Response:
        await gate.wait()
        return ok(body, input_tokens=10, output_tokens=10)

    api = FakeAPI(slow)
    async with client(api, spend_cap_usd=0.05) as c:
        # worst case of one call is ~ 3000 * $15/M = $0.045: a second one in flight would
        # overshoot the cap, so it is refused while the first is held
        first = asyncio.create_task(c.messages.create(**req(max_tokens=3000)))
        await asyncio.sleep(0.1)
        with pytest.raises(BudgetExceeded):
            await c.messages.create(**req("other", max_tokens=3000))
        gate.set()
        await first
        await c.messages.create(**req("after", max_tokens=3000))  # the hold became $0.0002
        assert len(api.calls) == 2

"""Adaptive max_tokens (issue #12): reserve what a task's answers need, never return a cut one.

Virtual time: the fake API answers about 80 tokens (cut at ``max_tokens``, as the API
does) after a latency, under a binding OTPM limit.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx2
import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.savings.adaptive import Adaptive

from .fake_api import FakeAPI, message_json

pytestmark = pytest.mark.looptime

MODEL = "claude-sonnet-4-5"
OTPM = 40_000  # the burst's actual output (400 x ~80) fits; its reservations at 1024 do not


def model(lengths: list[int], latency: float = 4.0) -> FakeAPI:
    async def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        await asyncio.sleep(latency)
        want = lengths[int(body["messages"][0]["content"])]
        out = min(want, body["max_tokens"])
        data = message_json(body, input_tokens=20, output_tokens=out)
        data["stop_reason"] = "max_tokens" if want > body["max_tokens"] else "end_turn"
        data["content"][0]["text"] = f"{want}:{out}"
        return httpx2.Response(200, json=data)

    return FakeAPI(handler)


def client(api: FakeAPI, **kw: Any) -> Thrift:
    return Thrift(
        api_key="k",
        base_url="http://api.test",
        sdk_options=api.sdk_options(),
        limits=Limits(rpm=100_000, itpm=10_000_000, otpm=OTPM),
        **kw,
    )


async def makespan(task: str | None, lengths: list[int]) -> tuple[float, list[str], Thrift]:
    api = model(lengths)
    loop = asyncio.get_running_loop()
    async with client(api) as c:
        t0 = loop.time()
        extra = {} if task is None else {"task": task}
        msgs = await asyncio.gather(
            *(
                c.messages.create(
                    model=MODEL,
                    max_tokens=1024,
                    messages=[{"role": "user", "content": str(i)}],
                    dedupe=False,
                    **extra,
                )
                for i in range(len(lengths))
            )
        )
        return loop.time() - t0, [m.content[0].text for m in msgs], c  # type: ignore[union-attr]


async def test_makespan_halves_and_no_answer_is_cut() -> None:
    rng = random.Random(7)
    lengths = [max(20, int(rng.gauss(80, 12))) for _ in range(400)]
    lengths[300] = 600  # a long answer after the limit has been learnt: asked again in full
    plain, plain_texts, _ = await makespan(None, lengths)
    adaptive, texts, c = await makespan("classify", lengths)
    assert adaptive <= 0.5 * plain, (adaptive, plain)
    assert texts == plain_texts == [f"{n}:{n}" for n in lengths]  # every answer complete
    s = c.stats()
    assert s.max_tokens_lowered > 300 and s.max_tokens_reasked >= 1
    assert s.max_tokens_reserve_saved > 300 * 800 and s.max_tokens_dollars_lost > 0


def test_the_limit_is_a_high_percentile_with_a_margin_never_above_the_caller() -> None:
    a = Adaptive(min_samples=10)
    assert a.limit(MODEL, "t", 1024) == 1024  # nothing learnt yet
    for n in range(1, 101):
        a.observe(MODEL, "t", n)
    assert a.limit(MODEL, "t", 1024) == 99 * 5 // 4 + 1 + 8  # ceil(99 * 1.25) + 8
    assert a.limit(MODEL, "t", 50) == 50
    assert a.limit(MODEL, "other", 1024) == 1024


async def test_a_client_default_task_and_the_option_are_validated() -> None:
    with pytest.raises(TypeError, match="task="):
        Thrift(api_key="k", task="")
    api = model([80] * 30, latency=0.1)
    async with client(api, task="faq") as c:
        for i in range(30):
            await c.messages.create(
                model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": str(i)}]
            )
        assert c.stats().max_tokens_lowered == 10
        with pytest.raises(TypeError, match="task="):
            await c.messages.create(
                model=MODEL, max_tokens=9, messages=[{"role": "user", "content": "0"}], task=3
            )

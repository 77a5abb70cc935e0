"""Automatic prompt caching (issue #12), against the mock over HTTP: it bills as the API does."""

from __future__ import annotations

import copy
from typing import Any

from asyncthrift import Thrift
from asyncthrift.mock import MockServer
from asyncthrift.savings.prompt_cache import AutoCache, Marked

MODEL = "claude-sonnet-4-5"
LONG = "You are the support assistant of a shop. " * 400  # ~ 3 000 tokens


def req(question: str, system: Any = LONG, **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 64,
        "system": system,
        "messages": [{"role": "user", "content": question}],
        **kw,
    }


async def test_a_long_system_prompt_is_marked_when_seen_again_then_read() -> None:
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url, auto_cache_control=True) as c,
    ):
        bodies = [req(f"question {i}") for i in range(4)]
        before = copy.deepcopy(bodies)
        msgs = [await c.messages.create(**b) for b in bodies]
        assert bodies == before  # the callers' arguments are never changed
        u = [m.usage for m in msgs]
        assert (u[0].cache_creation_input_tokens, u[0].cache_read_input_tokens) == (0, 0)
        assert u[1].cache_creation_input_tokens > 1024 and u[1].cache_read_input_tokens == 0
        assert u[2].cache_read_input_tokens == u[1].cache_creation_input_tokens
        assert u[3].cache_read_input_tokens == u[1].cache_creation_input_tokens
        s = c.stats()
        assert s.prompt_cache_marked == 3
        assert s.prompt_cache_tokens_saved == 2 * u[1].cache_creation_input_tokens
        assert s.prompt_cache_dollars_saved > 0  # two reads pay back the one write


async def test_off_by_default_and_short_prompts_are_never_marked() -> None:
    async with MockServer() as mock:
        async with Thrift(api_key="k", base_url=mock.base_url) as c:
            for i in range(3):
                m = await c.messages.create(**req(f"q{i}"))
                assert m.usage.cache_creation_input_tokens == 0
        async with Thrift(api_key="k", base_url=mock.base_url, auto_cache_control=True) as c:
            for i in range(3):
                m = await c.messages.create(**req(f"q{i}", system="Be brief."))
                assert m.usage.cache_creation_input_tokens == 0
            assert c.stats().prompt_cache_marked == 0


def test_never_more_than_four_breakpoints_and_the_longest_prefix_wins() -> None:
    auto = AutoCache()
    mark = {"type": "ephemeral"}
    four = [{"type": "text", "text": f"part {i} " + LONG, "cache_control": mark} for i in range(4)]
    full = req("x", system=four)
    assert auto.mark(full, 1.0, 0.0) == (full, None)
    assert auto.mark(full, 1.0, 1.0) == (full, None)
    turns = [
        {"role": "user", "content": LONG},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "next"},
    ]
    body = req("x", system="Be brief.", messages=turns)
    assert auto.mark(body, 1.0, 0.0)[1] is None  # first sight: not worth a write yet
    out, marked = auto.mark(body, 1.0, 10.0)
    assert isinstance(marked, Marked)
    assert out["messages"][1]["content"] == [{"type": "text", "text": "ok", "cache_control": mark}]
    assert out["system"] == "Be brief." and body["messages"][1]["content"] == "ok"
    assert auto.mark(body, 1.0, 10.0 + 301.0)[1] is None  # seen too long ago


def test_a_confirmed_prefix_is_charged_as_cached_until_it_expires() -> None:
    from anthropic.types import Usage

    auto = AutoCache(ttl=300)
    marked = Marked("k", 2000.0)
    assert auto.cached_tokens(marked, 0.0) == 0.0
    auto.confirm(
        marked, Usage(input_tokens=5, output_tokens=1, cache_creation_input_tokens=2000), 0.0
    )
    assert auto.cached_tokens(marked, 299.0) == 2000.0
    assert auto.cached_tokens(marked, 301.0) == 0.0
    auto.confirm(marked, Usage(input_tokens=2005, output_tokens=1), 302.0)  # a miss: forget it
    assert auto.cached_tokens(marked, 303.0) == 0.0

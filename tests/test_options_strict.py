"""Per-request options are validated alike (issue #14): strict bools, None means default."""

from __future__ import annotations

from typing import Any

import pytest

from asyncthrift import Thrift
from asyncthrift._options import split_options, stream_requested
from asyncthrift.mock import MockServer
from asyncthrift.scheduler import LANES

BASE = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize("value", ["yes", "false", 1, 0, [], "True"])
async def test_stream_must_be_a_bool(value: object) -> None:
    async with Thrift(api_key="k", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(TypeError, match=r"stream= must be True, False or None"):
            await client.messages.create(**BASE, stream=value)
    with pytest.raises(TypeError):
        stream_requested({"stream": value})


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (None, False)])
def test_stream_accepts_bools_and_none(value: object, expected: bool) -> None:
    assert stream_requested({"stream": value}) is expected
    assert stream_requested({}) is False


@pytest.mark.parametrize("name", ["cache", "dedupe"])
@pytest.mark.parametrize("value", ["yes", 1, 0])
def test_cache_and_dedupe_must_be_bools(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=rf"{name}= must be True, False or None"):
        split_options({**BASE, name: value})


def test_none_means_default_for_priority_and_deadline_alike() -> None:
    opts, params = split_options({**BASE, "priority": None, "deadline": None})
    assert opts.level == LANES["default"] and opts.deadline is None
    assert "priority" not in params and "deadline" not in params
    opts, _ = split_options({**BASE, "priority": None, "cache": None, "dedupe": None})
    assert (opts.cache, opts.dedupe) == (None, None)


@pytest.mark.parametrize("value", [1.5, b"batch", True, object()])
def test_a_bad_priority_says_what_is_accepted_including_none(value: Any) -> None:
    with pytest.raises(TypeError, match=r"or None \(the default lane\)"):
        split_options({**BASE, "priority": value})


def test_a_bad_deadline_says_none_means_no_deadline() -> None:
    with pytest.raises(TypeError, match=r"or None \(no deadline\)"):
        split_options({**BASE, "deadline": "5"})


async def test_priority_none_and_stream_false_reach_the_api() -> None:
    async with MockServer() as mock:
        async with Thrift(api_key="k", base_url=mock.base_url) as client:
            msg = await client.messages.create(**BASE, priority=None, deadline=None, stream=False)
            assert msg.content
            stream = await client.messages.create(**BASE, priority=None, stream=True)
            events = [event async for event in stream]
            assert events[-1].type == "message_stop"
        assert mock.counters.requests == 2

"""Per-request options are validated alike (issue #14): strict bools, None means default."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from asyncthrift import InvalidArgument, Thrift
from asyncthrift.bulk.config import BulkConfig
from asyncthrift.mock import MockServer
from asyncthrift.pipeline._classes import close_model
from asyncthrift.pipeline._options import split_options, stream_requested
from asyncthrift.scheduling.budget import LocalBudget
from asyncthrift.scheduling.limits import Limits
from asyncthrift.scheduling.scheduler import LANES, Gate

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


# -- bad values raise asyncthrift.InvalidArgument (a ValueError) saying what to change (#21) --


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"max_tokens": -5}, r"max_tokens must be >= 1"),
        ({"max_tokens": 0}, r"max_tokens must be >= 1"),
        ({"deadline": -1}, r"deadline= must be >= 0 seconds"),
        ({"deadline": float("nan")}, r"deadline= must be >= 0 seconds"),
        ({"priority": "urgent"}, r"use 'interactive', 'default', 'batch'"),
    ],
)
def test_a_bad_request_value_is_an_invalid_argument(change: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidArgument, match=says) as caught:
        split_options({**BASE, **change})
    assert isinstance(caught.value, ValueError)  # `except ValueError` still catches it


async def test_a_bad_call_raises_invalid_argument_before_anything_is_sent() -> None:
    async with MockServer() as mock, Thrift(api_key="k", base_url=mock.base_url) as client:
        with pytest.raises(InvalidArgument, match="max_tokens"):
            await client.messages.create(**{**BASE, "max_tokens": -5})
        with pytest.raises(InvalidArgument, match="deadline"):
            await client.messages.create(**BASE, deadline=-1)
        assert mock.counters.requests == 0


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"api_key": "k", "limits": "tier9"}, r"unknown limits preset 'tier9': use one of tier1"),
        ({"api_key": "k", "max_retries": -1}, r"max_retries must be >= 0"),
        ({"api_key": "k", "max_queue": -1}, r"max_queue must be"),
        ({"api_key": "k", "aging": -1}, r"aging= must be"),
        ({"api_key": "k", "aging": float("inf")}, r"aging= must be a finite"),
        ({"api_key": "k", "aging": float("nan")}, r"aging= must be a finite"),
        ({"api_key": "k", "timeout": 0}, r"timeout= must be"),
        ({"api_key": "k", "cache_scope": "team"}, r"cache_scope= must be"),
        ({"api_key": "k", "cache": "disk"}, r"cache"),
        ({"api_key": "k", "http": "curl"}, r"http= must be"),
        ({"api_key": "k", "spend_cap_usd": -1}, r"spend_cap_usd= must be"),
        ({"api_key": "k", "shared_fallback": 0.5}, r"shared_fallback= needs shared="),
        ({"api_key": "k", "keys": []}, r"pass either keys="),
        ({"api_key": "k", "spend_cap_usd": 1, "spend_period": "fortnight"}, r"spend_period= must"),
    ],
)
def test_a_bad_client_option_is_an_invalid_argument(options: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        Thrift(**options)


def test_bad_values_of_the_bulk_runner_and_the_scheduler_are_invalid_arguments(
    tmp_path: Path,
) -> None:
    with pytest.raises(InvalidArgument, match="max_in_flight must be an int >= 1"):
        BulkConfig(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", max_in_flight=0)
    with pytest.raises(InvalidArgument, match="aging must be a finite number"):
        Gate([LocalBudget(Limits(rpm=60), 0.0)], aging=math.inf)


def test_a_missing_api_key_is_an_invalid_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(InvalidArgument, match="no API key: pass api_key=, set ANTHROPIC_API_KEY"):
        Thrift()


@pytest.mark.parametrize(
    ("model", "guess"),
    [
        ("claude-nonexistent-9", None),
        ("claude-instant", None),
        ("claude-sonet-4-5", "claude-sonnet-4-5"),
        ("claude-haiku-4.5", "claude-haiku-4-5"),
        ("claude-opus-4.1", "claude-opus-4-1"),
        ("Claude-Sonnet4", "claude-sonnet-4"),
    ],
)
def test_an_unknown_model_is_only_matched_to_a_close_one(model: str, guess: str | None) -> None:
    assert close_model(model) == guess


async def test_no_far_fetched_hint_for_an_unknown_model() -> None:
    async with Thrift(api_key="k", base_url="http://127.0.0.1:9", limits="tier2") as client:
        with pytest.raises(InvalidArgument, match="unknown model 'claude-nonexistent-9'") as err:
            await client.messages.create(**{**BASE, "model": "claude-nonexistent-9"})
    assert "did you mean" not in str(err.value)

"""The mock's parts without the SDK: tokenizer, answers, server buckets, HTTP, config, CLI.

Every test is `async def`, even the pure ones: for a sync test the looptime plugin asks the
event loop policy for a loop, which creates one that nobody closes (a ResourceWarning, an
error under this project's filterwarnings, whenever the garbage collector happens to run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import time
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncthrift.mock import Faults, MockConfig, MockServer, count_text
from asyncthrift.mock.__main__ import build_parser, config_from_args
from asyncthrift.mock._answers import answer_for, split_deltas
from asyncthrift.mock._config import RemainingRounding
from asyncthrift.mock._ratelimit import ServerBudget, rfc3339
from asyncthrift.mock._tokenizer import analyze_input
from asyncthrift.scheduling.limits import Limits

# -- tokenizer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("hi", 1),
        ("hello world", 2),
        ("internationalization", 5),  # 6 letters, then 4 per token
        ("12345", 2),
        ("a, b.", 4),
        ("line\n\n  next", 3),
        ("你好世界", 4),
        ("你好世界你好", 7),  # one extra token per full run of 5 CJK characters
        ("café", 2),
        ("😀", 2),
    ],
)
async def test_count_text(text: str, tokens: int) -> None:
    assert count_text(text) == tokens


async def test_tokenizer_differs_from_a_chars_per_token_estimate() -> None:
    english = "The quick brown fox jumps over the lazy dog. " * 20
    chinese = "速率限制是每个模型类别分别计算的。" * 20
    assert count_text(english) != len(english) // 4
    assert 1.0 < count_text(chinese) / len(chinese) < 1.3


async def test_request_overheads_and_string_or_block_content_agree() -> None:
    as_string = {"model": "claude-x", "messages": [{"role": "user", "content": "hi there"}]}
    as_blocks = {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
    }
    assert analyze_input(as_string).total == analyze_input(as_blocks).total == 3 + 4 + 2
    with_system = {**as_string, "system": "be brief"}
    assert analyze_input(with_system).total == 9 + 3 + 2


async def test_cache_breakpoints() -> None:
    block = {"type": "text", "text": "x " * 10, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    body = {
        "model": "claude-x",
        "system": [block],
        "messages": [{"role": "user", "content": "hi"}],
        "cache_control": {"type": "ephemeral"},  # top level: the end of the prompt
    }
    analysis = analyze_input(body)
    assert [(bp.tokens, bp.ttl) for bp in analysis.breakpoints] == [(16, 3600.0), (21, 300.0)]
    assert analysis.total == 21
    # The prefix hash ignores cache_control itself but not the content.
    other = {**body, "system": [{**block, "cache_control": {"type": "ephemeral"}}]}
    assert analyze_input(other).breakpoints[0].key == analysis.breakpoints[0].key
    changed = {**body, "system": [{**block, "text": "y " * 10}]}
    assert analyze_input(changed).breakpoints[0].key != analysis.breakpoints[0].key


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    lo=st.integers(1, 300),
    span=st.integers(0, 300),
    max_tokens=st.integers(1, 700),
    words=st.integers(1, 9),
)
async def test_answers_count_exactly_their_output_tokens(
    seed: int, lo: int, span: int, max_tokens: int, words: int
) -> None:
    answer = answer_for(seed, (lo, lo + span), max_tokens)
    assert count_text(answer.text) == answer.output_tokens
    if answer.stop_reason == "max_tokens":
        assert answer.output_tokens == max_tokens < lo + span
    else:
        assert answer.stop_reason == "end_turn"
        assert lo <= answer.output_tokens <= min(lo + span, max_tokens)
    assert answer.text[:1].isupper()
    deltas = split_deltas(answer.text, words)
    assert "".join(deltas) == answer.text
    assert sum(count_text(d) for d in deltas) == answer.output_tokens


# -- server buckets -----------------------------------------------------------------------


async def test_shadow_load_eats_its_share_of_the_refill_exactly() -> None:
    budget = ServerBudget(Limits(rpm=100, period=10), shadow=0.25, now=0.0)
    budget.take((100.0, 0.0, 0.0), 0.0)
    wait, which = budget.check((1.0, 0.0, 0.0), 0.0)
    assert which == 0 and wait == pytest.approx(1 / 7.5)  # refill 10/s, shadow takes 2.5/s
    budget.check((1.0, 0.0, 0.0), 2.0)
    dim = budget.dims[0]
    assert dim is not None and dim.bucket.level(2.0) == pytest.approx(15.0)
    # When the bucket is full and idle, the shadow's consumption is invisible (capped).
    budget.check((1.0, 0.0, 0.0), 100.0)
    assert dim.bucket.level(100.0) == pytest.approx(100.0)
    # The shadow never pushes a bucket into debt.
    budget.take((150.0, 0.0, 0.0), 100.0)
    budget.check((1.0, 0.0, 0.0), 101.0)
    assert dim.bucket.level(101.0) == pytest.approx(-40.0)


async def test_headers_of_a_budget() -> None:
    limits = Limits(rpm=10, itpm=5000, otpm=3000, period=60)
    budget = ServerBudget(limits, 0.0, now=0.0, rounding="down", precision="milliseconds")
    budget.take((1.0, 1234.0, 2500.0), 0.0)
    wall = 1_700_000_000.0
    h = dict(budget.headers(0.0, wall))
    assert h["anthropic-ratelimit-requests-remaining"] == "9"
    assert h["anthropic-ratelimit-input-tokens-remaining"] == "3000"
    assert h["anthropic-ratelimit-output-tokens-remaining"] == "0"
    assert h["anthropic-ratelimit-tokens-remaining"] == "0"
    assert h["anthropic-ratelimit-tokens-limit"] == "3000"
    reset = datetime.fromisoformat(h["anthropic-ratelimit-output-tokens-reset"])
    assert reset.timestamp() == pytest.approx(wall + 2500 / 50, abs=0.002)
    budget.rounding = "exact"
    exact = dict(budget.headers(0.0, wall))
    assert exact["anthropic-ratelimit-input-tokens-remaining"] == "3766"


def _remaining(rounding: RemainingRounding, capacity: float, spent: float) -> tuple[str, str]:
    """(input-tokens-remaining, requests-remaining) after `spent` of both from full."""
    budget = ServerBudget(Limits(rpm=capacity, itpm=capacity), 0.0, now=0.0, rounding=rounding)
    budget.take((spent, spent, 0.0), 0.0)
    h = dict(budget.headers(0.0, 1e9))
    tokens = h["anthropic-ratelimit-input-tokens-remaining"]
    assert h["anthropic-ratelimit-tokens-remaining"] == tokens
    return tokens, h["anthropic-ratelimit-requests-remaining"]


@pytest.mark.parametrize(
    ("capacity", "spent", "down", "nearest", "exact"),
    [
        (5000, 1234, "3000", "4000", "3766"),
        (5000, 1501, "3000", "3000", "3499"),
        (5000, 1500, "3000", "4000", "3500"),  # half goes up
        (5000, 0, "5000", "5000", "5000"),
        (5000, 4600, "0", "0", "400"),
        (5000, 4400, "0", "1000", "600"),
        (5000, 6000, "0", "0", "0"),  # in debt: never negative
        (5600, 0, "5000", "5000", "5600"),  # up would exceed the limit: back down
        (5600, 100, "5000", "5000", "5500"),
        (7333.5, 0.25, "7000", "7000", "7333"),  # a fractional level is floored first
    ],
)
async def test_remaining_rounding_directions(
    capacity: float, spent: float, down: str, nearest: str, exact: str
) -> None:
    cases: list[tuple[RemainingRounding, str]] = [
        ("down", down),
        ("nearest", nearest),
        ("exact", exact),
    ]
    for rounding, expected in cases:
        tokens, requests = _remaining(rounding, capacity, spent)
        assert tokens == expected, rounding
        assert requests == str(max(0, math.floor(capacity - spent)))  # requests: never rounded


async def test_combined_tokens_headers_pick_the_tightest_before_rounding() -> None:
    # input 1400 left, output 1100 left: both round to 1000 "nearest"; output is the tighter
    budget = ServerBudget(Limits(itpm=2000, otpm=3000, period=60), 0.0, now=0.0)
    budget.take((0.0, 600.0, 1900.0), 0.0)
    h = dict(budget.headers(0.0, 1e9))
    assert h["anthropic-ratelimit-tokens-limit"] == "3000"
    assert h["anthropic-ratelimit-tokens-remaining"] == "1000"
    assert h["anthropic-ratelimit-tokens-reset"] == h["anthropic-ratelimit-output-tokens-reset"]


async def test_headers_take_the_shadow_share_first() -> None:
    # never_fits and completion read headers without a check() first: the shadow must
    # still have taken its share, exactly as a check would have.
    budget = ServerBudget(Limits(rpm=100, period=10), shadow=0.5, now=0.0)
    budget.take((100.0, 0.0, 0.0), 0.0)
    h = dict(budget.headers(4.0, 1e9))  # refill 10/s, shadow 5/s: 20 after 4 s
    assert h["anthropic-ratelimit-requests-remaining"] == "20"


async def test_rfc3339() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1.0001) == "1970-01-01T00:00:01.001Z"  # rounded up: never early
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rfc3339(1.7e9 + 0.9999))
    assert rfc3339(0.0, "seconds") == "1970-01-01T00:00:00Z"
    assert rfc3339(1.0, "seconds") == "1970-01-01T00:00:01Z"
    assert rfc3339(1.0001, "seconds") == "1970-01-01T00:00:02Z"  # up, never early
    assert rfc3339(59.9995, "seconds") == "1970-01-01T00:01:00Z"
    assert rfc3339(1_736_951_039.2, "seconds") == "2025-01-15T14:24:00Z"  # the documented form
    # the prefix cache is bounded and never serves a stale second
    for k in range(1000):
        assert rfc3339(1.7e9 + 7 * k, "seconds") == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(1.7e9 + 7 * k)
        )


@settings(max_examples=200, deadline=None)
@given(t=st.floats(0.0, 4e9, allow_nan=False))
async def test_rfc3339_is_never_early_and_late_by_less_than_its_unit(t: float) -> None:
    ms = datetime.fromisoformat(rfc3339(t, "milliseconds")).timestamp()
    whole = datetime.fromisoformat(rfc3339(t, "seconds")).timestamp()
    slack = 1e-6  # float noise of t * 1000 and of datetime's microseconds
    assert t - slack <= ms < t + 0.001 + slack
    assert ms <= whole < ms + 1.0 and whole.is_integer()


# -- HTTP ---------------------------------------------------------------------------------


async def _exchange(port: int, data: bytes, until_closed: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        if until_closed:
            return await asyncio.wait_for(reader.read(), 2.0)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
    finally:
        writer.close()
        await writer.wait_closed()


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\n"
        b"content-length: %d\r\n%b\r\n%b" % (len(body), extra, body)
    )


BODY = orjson.dumps(
    {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
)


async def test_http_pipelining_close_expect_and_chunked_bodies() -> None:
    async with MockServer() as mock:
        two = await _exchange(
            mock.port, _post(BODY) + _post(BODY, b"connection: close\r\n"), until_closed=True
        )
        assert two.count(b"HTTP/1.1 200 OK") == 2 and b"connection: close" in two
        # Expect: 100-continue is answered before the body is sent.
        reader, writer = await asyncio.open_connection("127.0.0.1", mock.port)
        head = _post(b"", b"expect: 100-continue\r\n").replace(
            b"content-length: 0", b"content-length: %d" % len(BODY)
        )
        writer.write(head)
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0) == (
            b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(BODY)
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)).startswith(
            b"HTTP/1.1 200 OK"
        )
        writer.close()
        await writer.wait_closed()
        chunked = await _exchange(
            mock.port,
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            until_closed=True,
        )
        assert chunked.startswith(b"HTTP/1.1 501") and b"request-id: req_" in chunked
        garbage = await _exchange(mock.port, b"NONSENSE\r\n\r\n", until_closed=True)
        assert garbage.startswith(b"HTTP/1.1 400")


async def test_body_too_large_is_413() -> None:
    async with MockServer(max_body_bytes=100) as mock:
        answer = await _exchange(mock.port, _post(b"x" * 200), until_closed=True)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"type":"request_too_large"' in answer


# -- config and command line ---------------------------------------------------------------


async def test_config_validation() -> None:
    with pytest.raises(ValueError):
        MockConfig(output_tokens=(10, 5))
    with pytest.raises(ValueError):
        MockConfig(shadow_load=1.0)
    with pytest.raises(ValueError):
        Faults(overloaded=0.7, drop=0.5)
    with pytest.raises(ValueError):
        MockConfig(limits="tier9")
    assert MockConfig(api_keys=["a", "b"]).api_keys == frozenset({"a", "b"})
    with pytest.raises(ValueError, match="clock_skew"):
        MockConfig(clock_skew=math.inf)
    assert MockConfig().abandoned == "finish"  # the reading hardest on a client
    names = ("reset_precision", "headers_at", "remaining_rounding", "output_charge", "abandoned")
    for name in names:
        bad: dict[str, Any] = {name: "sometimes"}
        with pytest.raises(ValueError, match=name):
            MockConfig(**bad)


async def test_header_settings_defaults_and_the_old_round_remaining_name() -> None:
    default = MockConfig()
    assert (default.reset_precision, default.headers_at, default.remaining_rounding) == (
        "seconds",
        "completion",
        "nearest",
    )
    # round_remaining keeps its old meaning (True: down, False: exact) and is folded away
    assert MockConfig(round_remaining=False).remaining_rounding == "exact"
    legacy = MockConfig(round_remaining=True)
    assert legacy.remaining_rounding == "down" and legacy.round_remaining is None
    assert dataclasses.replace(legacy, remaining_rounding="nearest").remaining_rounding == "nearest"
    assert dataclasses.replace(default, round_remaining=False).remaining_rounding == "exact"
    old_json = orjson.loads(MockConfig().to_json())
    old_json.pop("remaining_rounding")
    old_json["round_remaining"] = False
    assert MockConfig.from_json(orjson.dumps(old_json)).remaining_rounding == "exact"


async def test_config_json_round_trip() -> None:
    config = MockConfig(
        limits={"claude-sonnet": Limits(rpm=5, itpm=100, period=2), "*": Limits(rpm=1)},
        key_limits={"k": "tier2"},
        api_keys=frozenset({"k"}),
        faults=Faults(overloaded=0.1, seed=3),
        output_tokens=(1, 2),
        record=True,
        reset_precision="milliseconds",
        headers_at="admission",
        remaining_rounding="down",
        abandoned="stop",
        clock_skew=-2.7,
    )
    assert MockConfig.from_json(config.to_json()) == config


async def test_command_line_flags() -> None:
    flags = (
        "--rpm 50 --itpm 30000 --otpm 8000 --period 6 --latency 0.2 --output-tokens 5 9 "
        "--overloaded 0.1 --drop 0.05 --shadow-load 0.3 --seed 4 --retry-after-ms"
    )
    args = build_parser().parse_args(flags.split())
    config = config_from_args(args)
    assert config.limits == Limits(50, 30_000, 8_000, 6)
    assert config.output_tokens == (5, 9) and config.latency == 0.2
    assert config.faults == Faults(overloaded=0.1, drop=0.05, seed=4)
    assert config.shadow_load == 0.3 and config.retry_after_ms
    assert config.host == "127.0.0.1" and config.port == 0
    preset = config_from_args(build_parser().parse_args(["--limits", "tier1", "--period", "6"]))
    assert isinstance(preset.limits, dict) and preset.limits["haiku"].period == 6
    assert (config.reset_precision, config.headers_at, config.remaining_rounding) == (
        "seconds",
        "completion",
        "nearest",
    )  # the same defaults as MockConfig's


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("--reset-precision milliseconds", {"reset_precision": "milliseconds"}),
        ("--headers-at admission", {"headers_at": "admission"}),
        ("--remaining-rounding down", {"remaining_rounding": "down"}),
        ("--no-round-remaining", {"remaining_rounding": "exact"}),
        ("--abandoned stop --clock-skew 2.7", {"abandoned": "stop", "clock_skew": 2.7}),
        (
            "--reset-precision seconds --headers-at completion --remaining-rounding exact",
            {
                "reset_precision": "seconds",
                "headers_at": "completion",
                "remaining_rounding": "exact",
            },
        ),
    ],
)
async def test_command_line_header_flags(flags: str, expected: dict[str, object]) -> None:
    config = config_from_args(build_parser().parse_args(flags.split()))
    assert {name: getattr(config, name) for name in expected} == expected
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--remaining-rounding", "up"])

"""The one request pipeline: unknown model ids, what is charged for errors, the mock's 404."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import pytest

from asyncthrift import Limits, Thrift
from asyncthrift.errors import UnknownModel
from asyncthrift.mock import MockServer


def req(model: str = "claude-sonnet-4-6", **kw: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


async def test_the_mock_answers_an_unknown_claude_family_with_404() -> None:
    async with MockServer() as mock, Thrift(api_key="k", base_url=mock.base_url) as c:
        with pytest.raises(anthropic.NotFoundError):
            await c.messages.create(**req("claude-sonet-4-6"))


async def test_a_claude_typo_under_configured_limits_is_an_error_with_a_suggestion() -> None:
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits="tier2") as c,
    ):
        with pytest.raises(UnknownModel, match="did you mean 'claude-sonnet"):
            await c.messages.create(**req("claude-sonet-4-6"))
        assert mock.counters.requests == 0


async def test_unknown_ids_share_one_class_and_one_label(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from asyncthrift.observability.metrics import PrometheusMetrics

    metrics = PrometheusMetrics(CollectorRegistry())
    caplog.set_level(logging.WARNING, logger="asyncthrift")
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url, observers=[metrics], max_retries=0) as c,
    ):
        # 300 ids, each new: one would be enough to make a class of its own, so more prove
        # nothing more (3000 cost ~12 s of a CI run)
        for i in range(300):
            with pytest.raises(anthropic.NotFoundError):
                await c.messages.create(**req(f"attacker-model-{i}"))
        assert set(c.budgets()) == {"unknown"}
        text = generate_latest(metrics.registry).decode()
    assert "attacker-model" not in text
    warnings = [r for r in caplog.records if "names no known model class" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_400_gives_the_input_charge_back() -> None:
    limits = Limits(rpm=100, itpm=10_000, otpm=10_000)
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=limits) as c,
    ):
        bad = {**req(), "messages": [{"role": "robot", "content": "x" * 400}]}  # a 400
        with pytest.raises(anthropic.BadRequestError):
            await c.messages.create(**bad)
        _, inp, out = c.budgets()["sonnet"][0].peek(c.now())
        assert inp == pytest.approx(10_000, abs=1) and out == pytest.approx(10_000, abs=1)


async def test_arguments_the_sdk_refuses_are_neither_charged_nor_counted() -> None:
    limits = Limits(rpm=100, itpm=10_000, otpm=10_000)
    async with (
        MockServer() as mock,
        Thrift(api_key="k", base_url=mock.base_url, limits=limits) as c,
    ):
        with pytest.raises(TypeError):
            await c.messages.create(**req(), no_such_argument=1)
        reqs, inp, _ = c.budgets()["sonnet"][0].peek(c.now())
        assert reqs == pytest.approx(100, abs=0.01) and inp == pytest.approx(10_000, abs=1)
        assert c.stats().upstream_calls == 0 and mock.counters.requests == 0

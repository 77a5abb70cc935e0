"""Input estimation: fast heuristic, calibrated online against the mock's tokenizer."""

from __future__ import annotations

import pytest

from asyncthrift.core.tokens import Calibrator, estimate_input_tokens, text_tokens
from asyncthrift.mock._tokenizer import analyze_input
from asyncthrift.tools.workload import mixed_workload


def test_text_heuristic_by_script() -> None:
    assert text_tokens("") == 0
    assert text_tokens("a" * 400) == pytest.approx(100)
    assert text_tokens("令牌桶" * 100) == pytest.approx(300)
    mixed = "hello " * 10 + "你好" * 10
    assert text_tokens(mixed) == pytest.approx(60 / 4 + 20)


def test_estimate_covers_system_tools_and_blocks() -> None:
    base = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 400}]}
    with_system = {**base, "system": [{"type": "text", "text": "y" * 400}]}
    with_tools = {
        **base,
        "tools": [{"name": "t", "input_schema": {"type": "object"}, "description": "z" * 400}],
    }
    with_image = {
        **base,
        "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
    }
    e = estimate_input_tokens
    assert e(with_system) == pytest.approx(e(base) + 100)
    assert e(with_tools) > e(base) + 100
    assert e(with_image) > 1000


@pytest.mark.parametrize("share", [0.0, 1.0], ids=["english", "chinese"])
def test_calibration_converges_within_a_few_dozen_responses(share: float) -> None:
    cal = Calibrator()
    bodies = mixed_workload(120, seed=9, chinese_share=share)
    ratios = []
    for body in bodies:
        raw, actual = estimate_input_tokens(body), analyze_input(body).total
        ratios.append(cal.charge(raw) / actual)
        cal.observe(raw, actual)
    settled = ratios[40:]
    assert min(settled) >= 1.0  # never under-charges once calibrated: no 429s from estimates
    assert max(settled) <= 1.08  # and wastes at most a few percent until the refund


def test_mixed_languages_widen_the_margin_instead_of_under_charging() -> None:
    cal = Calibrator()
    for i, body in enumerate(mixed_workload(200, seed=2, chinese_share=0.5)):
        raw, actual = estimate_input_tokens(body), analyze_input(body).total
        if i >= 20:
            assert cal.charge(raw) >= actual
        cal.observe(raw, actual)
    assert cal.margin > 0.05


def test_one_outlier_cannot_swing_the_ratio() -> None:
    cal = Calibrator()
    for _ in range(30):
        cal.observe(1000, 1100)
    before = cal.ratio
    cal.observe(1000, 50_000)  # a huge cached prefix or image the heuristic missed
    assert cal.ratio < before * 1.05
    assert cal.ratio == pytest.approx(1.1, rel=0.06)

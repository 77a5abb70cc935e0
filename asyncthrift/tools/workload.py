"""Deterministic mixed workloads (English and Chinese prompts) for the demo and load tests.

Prompts vary in length and language so that all three limits can bind at once, and so that
the input estimator has something to calibrate: Chinese text is about one token per
character, English about four characters per token.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["DEFAULT_MODEL", "mixed_workload"]

DEFAULT_MODEL = "claude-sonnet-4-6"

_EN = (
    "Summarise the customer's complaint and propose a reply that keeps them with us. "
    "The parcel arrived two days late, the box was damaged and the manual was missing. "
    "List the three most important risks in this plan and how to reduce each of them. "
    "Explain the difference between a token bucket and a fixed window rate limiter. "
    "Translate the following release note into plain language for non-technical users. "
)
_ZH = (
    "请总结这位客户的投诉，并给出一个能留住客户的回复。包裹晚到了两天，盒子破损，说明书也不见了。"
    "请列出这个计划中最重要的三个风险，以及如何降低每一个风险。"
    "请解释令牌桶限流和固定窗口限流之间的区别，并举一个例子。"
    "请把下面的发布说明翻译成非技术用户也能看懂的语言。"
)


def _text(rng: random.Random, source: str, length: int) -> str:
    start = rng.randrange(len(source))
    doubled = source * (length // len(source) + 2)
    return doubled[start : start + length]


def mixed_workload(
    n: int,
    *,
    seed: int = 7,
    model: str = DEFAULT_MODEL,
    chinese_share: float = 0.4,
    max_tokens: tuple[int, ...] = (256, 384, 512),
    english_chars: tuple[int, int] = (400, 4000),
    chinese_chars: tuple[int, int] = (150, 1200),
) -> list[dict[str, Any]]:
    """`n` Messages request bodies; the same arguments always give the same list."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        if rng.random() < chinese_share:
            body = _text(rng, _ZH, rng.randint(*chinese_chars))
        else:
            body = _text(rng, _EN, rng.randint(*english_chars))
        out.append(
            {
                "model": model,
                "max_tokens": rng.choice(max_tokens),
                "messages": [{"role": "user", "content": f"[{i}] {body}"}],
            }
        )
    return out

"""Fewer calls, fewer tokens, same answers (issue #12): each technique alone and all together.

The workload (the issue's): an FAQ bot, 300 questions over 60 distinct ones under one 8 KB
system prompt, plus 200 short reviews to classify under one instruction prompt; Sonnet
prices; requests arrive at random over ``--span`` seconds. Every variant runs it against
the same mock (`asyncthrift.mock`, over HTTP, reset between variants so each starts with
an empty prompt cache), and is billed from the mock's own counters as the API bills: fresh
input at the input price, cache writes at 1.25x, cache reads at 0.1x, output at the
output price. Every caller's answer is checked to be its own: the mock's answer to that
request alone, or its answer to that item of a packed call.

A second workload (issue #21) checks that packing never costs more than it saves: 200
one-word classification requests under a short instruction prompt whose answers (the mock's
default, 16-256 tokens) run longer than their ``max_tokens`` (16 and 64), and the same at
``max_tokens=400`` (answers fit, but the prompt is too short to pay for the answers' JSON
wrapping) and under a long shared prompt (where packing pays); packing off and on, at the
latency the project measures against (200 ms + 1 ms per output token).

    python bench/bench_savings.py [--span 3] [--faults 0.1] [--only long-answers]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
from common import md_table, write_result

from asyncthrift import Thrift
from asyncthrift.core.prices import cost_usd
from asyncthrift.mock import MockConfig, MockServer
from asyncthrift.mock._answers import answer_for, item_answer, request_hash
from asyncthrift.mock._config import Faults
from asyncthrift.savings.packing import Pack

MODEL = "claude-sonnet-4-5"
OUTPUT = (40, 200)
REVIEW_SYSTEM = (
    "Classify the sentiment of the customer review as positive, negative or mixed, "
    "and give a one-sentence reason."
)
_WORDS = [
    "order",
    "shipping",
    "refund",
    "account",
    "password",
    "delivery",
    "invoice",
    "warranty",
    "store",
    "return",
    "payment",
    "card",
    "address",
    "product",
    "size",
    "colour",
    "exchange",
    "support",
    "hours",
    "days",
    "business",
]


def faq_system(rng: random.Random) -> str:
    lines = ["You are the support assistant of an online shop. Policies follow."]
    while sum(len(x) + 1 for x in lines) < 8192:
        lines.append(" ".join(rng.choice(_WORDS) for _ in range(14)) + ".")
    return "\n".join(lines)[:8192]


def workload(seed: int, span: float) -> list[tuple[float, dict[str, Any]]]:
    """(arrival second, create() arguments) for the 500 requests, in arrival order."""
    rng = random.Random(seed)
    system = faq_system(rng)
    questions = [
        f"Q{i}: how do I " + " ".join(rng.choice(_WORDS) for _ in range(8)) + "?" for i in range(60)
    ]
    reviews = [
        f"Review {i}: " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 20)))
        for i in range(200)
    ]
    bodies = [
        {"model": MODEL, "max_tokens": 400, "system": system, "messages": [_user(q)]}
        for q in questions * 5
    ] + [
        {"model": MODEL, "max_tokens": 1024, "system": REVIEW_SYSTEM, "messages": [_user(r)]}
        for r in reviews
    ]
    rng.shuffle(bodies)
    arrivals = sorted(rng.uniform(0, span) for _ in bodies)
    return list(zip(arrivals, bodies, strict=True))


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def hand_cached(body: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "text", "text": body["system"], "cache_control": {"type": "ephemeral"}}
    return {**body, "system": [block]}


def is_own(body: dict[str, Any], text: str) -> bool:
    solo = answer_for(request_hash(body), OUTPUT, 1 << 20).text
    item = item_answer(MODEL, body["system"], body["messages"][0]["content"], OUTPUT)
    return text in (solo, item)


Send = Callable[[dict[str, Any]], Awaitable[Any]]


async def drive(reqs: list[tuple[float, dict[str, Any]]], send: Send) -> list[str]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(at: float, body: dict[str, Any]) -> str:
        await asyncio.sleep(max(0.0, t0 + at - loop.time()))
        message = await send(body)
        return str(message.content[0].text)

    return list(await asyncio.gather(*(one(at, b) for at, b in reqs)))


async def variant(
    mock: MockServer,
    reqs: list[tuple[float, dict[str, Any]]],
    *,
    bare: bool = False,
    hand: bool = False,
    task: bool = False,
    **options: Any,
) -> dict[str, Any]:
    mock.reset()
    sent = [(at, hand_cached(b) if hand else b) for at, b in reqs]
    t0 = time.perf_counter()
    stats = None
    if bare:
        sdk = anthropic.AsyncAnthropic(api_key="k", base_url=mock.base_url, max_retries=0)
        async with sdk:
            texts = await drive(sent, lambda b: sdk.messages.create(**b))
    else:
        async with Thrift(api_key="k", base_url=mock.base_url, **options) as client:

            def send(b: dict[str, Any]) -> Awaitable[Any]:
                extra = {"task": "classify"} if task and b["system"] == REVIEW_SYSTEM else {}
                return client.messages.create(**b, **extra)

            texts = await drive(sent, send)
            stats = client.stats()
    c = mock.counters
    fresh = c.input_tokens - c.cache_creation_tokens
    dollars = cost_usd(MODEL, fresh, c.output_tokens, c.cache_creation_tokens, c.cache_read_tokens)
    own = sum(is_own(b, t) for (_, b), t in zip(reqs, texts, strict=True))
    return {
        "calls": c.requests,
        "input": fresh,
        "writes": c.cache_creation_tokens,
        "reads": c.cache_read_tokens,
        "output": c.output_tokens,
        "usd": dollars,
        "own": own,
        "seconds": time.perf_counter() - t0,
        "stats": stats,
    }


VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("bare SDK", {"bare": True}),
    ("bare SDK, cache_control by hand", {"bare": True, "hand": True}),
    ('asyncthrift cache="memory" + dedupe', {"cache": "memory"}),
    ("… + packing", {"cache": "memory", "pack": True}),
    ("… + packing, Pack(cost_guard=False)", {"cache": "memory", "pack": Pack(cost_guard=False)}),
    ("… + auto prompt caching", {"cache": "memory", "auto_cache_control": True}),
    ('… + adaptive max_tokens (task="classify")', {"cache": "memory", "task": True}),
    ("packing (150 ms) + cache_control by hand, no cache", {"pack": True, "hand": True}),
    (
        "all together",
        {"cache": "memory", "pack": True, "auto_cache_control": True, "task": True},
    ),
]


LONG_ANSWER_CASES: list[tuple[str, int, bool]] = [
    ("short prompt, max_tokens=16 (answers run longer)", 16, False),
    ("short prompt, max_tokens=64 (most answers run longer)", 64, False),
    ("short prompt, max_tokens=400 (answers fit)", 400, False),
    ("8 KB shared prompt, max_tokens=400", 400, True),
]
CLASSIFY_SYSTEM = "Classify the sentiment of the review in one word: positive, negative or mixed."


def classification(
    seed: int, span: float, max_tokens: int, long_prompt: bool
) -> list[tuple[float, dict[str, Any]]]:
    """200 distinct one-line reviews to classify, arriving at random over `span` seconds."""
    rng = random.Random(seed)
    system = faq_system(rng) if long_prompt else CLASSIFY_SYSTEM
    bodies = [
        {
            "model": MODEL,
            "max_tokens": max_tokens,
            "system": system,
            "messages": [_user(f"Review {i}: " + " ".join(rng.choice(_WORDS) for _ in range(6)))],
        }
        for i in range(200)
    ]
    arrivals = sorted(rng.uniform(0, span) for _ in bodies)
    return list(zip(arrivals, bodies, strict=True))


def is_own_cut(body: dict[str, Any], text: str) -> bool:
    """`text` is the mock's answer to `body` alone (cut at its max_tokens), or to its item."""
    solo = answer_for(request_hash(body), MOCK_OUTPUT, body["max_tokens"]).text
    item = item_answer(MODEL, body["system"], body["messages"][0]["content"], MOCK_OUTPUT)
    return text in (solo, item)


MOCK_OUTPUT = (16, 256)  # the mock's default answer lengths


async def long_answers(span: float, seed: int) -> tuple[str, str]:
    """Packing off and on where answers run longer than max_tokens (and two controls)."""
    config = MockConfig(output_tokens=MOCK_OUTPUT, latency=0.2, latency_per_token=0.001)
    rows = []
    worst_calls = worst_usd = 0.0
    async with MockServer(config) as mock:
        for name, max_tokens, long_prompt in LONG_ANSWER_CASES:
            reqs = classification(seed, span, max_tokens, long_prompt)
            got = {}
            for pack in (False, True):
                mock.reset()
                async with Thrift(api_key="k", base_url=mock.base_url, pack=pack) as client:
                    texts = await drive(reqs, lambda b: client.messages.create(**b))
                    s = client.stats()
                c = mock.counters
                fresh = c.input_tokens - c.cache_creation_tokens
                usd = cost_usd(
                    MODEL, fresh, c.output_tokens, c.cache_creation_tokens, c.cache_read_tokens
                )
                own = sum(is_own_cut(b, t) for (_, b), t in zip(reqs, texts, strict=True))
                got[pack] = (c.requests, usd, own, s)
            (off_calls, off_usd, off_own, _), (on_calls, on_usd, on_own, s) = got[False], got[True]
            worst_calls = max(worst_calls, on_calls / off_calls)
            worst_usd = max(worst_usd, on_usd / off_usd)
            why = ", ".join(
                f"{k} {getattr(s, 'pack_paused_' + k)}"
                for k in ("long_answers", "resends", "cost")
                if getattr(s, "pack_paused_" + k)
            )
            rows.append(
                [
                    name,
                    off_calls,
                    on_calls,
                    f"{on_calls / off_calls:.0%}",
                    f"${off_usd:.4f}",
                    f"${on_usd:.4f}",
                    f"{on_usd / off_usd:.0%}",
                    f"{s.packed_calls} / {s.packed_items} / {s.pack_resent} / {s.pack_alone}",
                    why or "-",
                    f"{off_own}/{len(reqs)}, {on_own}/{len(reqs)}",
                ]
            )
    table = md_table(
        [
            "workload (200 requests)",
            "calls, pack off",
            "calls, pack on",
            "on/off",
            "billed, off",
            "billed, on",
            "on/off",
            "packed calls / items / re-sent / alone",
            "paused (why)",
            "answers its own (off, on)",
        ],
        rows,
    )
    summary = (
        f"long answers: packing on at most {worst_calls:.0%} of the calls and "
        f"{worst_usd:.0%} of the dollars of packing off"
    )
    return table + "\n", summary


async def main(span: float, faults: float, seed: int) -> tuple[str, str]:
    reqs = workload(seed, span)
    config = MockConfig(output_tokens=OUTPUT, latency=0.3, latency_per_token=0.002)
    rows = []
    extra = []
    async with MockServer(config) as mock:
        results = [(name, await variant(mock, reqs, **opts)) for name, opts in VARIANTS]
    faulty = MockConfig(
        output_tokens=OUTPUT,
        latency=0.3,
        latency_per_token=0.002,
        faults=Faults(packed_items=faults, seed=seed),
    )
    async with MockServer(faulty) as mock:
        name = f"all together, mock garbling {faults:.0%} of packed items"
        results.append((name, await variant(mock, reqs, **VARIANTS[-1][1])))
    base = results[0][1]["usd"]
    for name, r in results:
        rows.append(
            [
                name,
                r["calls"],
                f"{r['input']:,}",
                f"{r['writes']:,}",
                f"{r['reads']:,}",
                f"{r['output']:,}",
                f"${r['usd']:.3f}",
                f"{r['usd'] / base:.0%}",
                f"{r['own']}/{len(reqs)}",
            ]
        )
        s = r["stats"]
        if s is not None:
            extra.append(
                [
                    name,
                    f"{s.cache_calls_saved} / ${s.cache_dollars_saved:.3f}",
                    f"{s.dedupe_calls_saved} / ${s.dedupe_dollars_saved:.3f}",
                    f"{s.packing_calls_saved} / ${s.packing_dollars_saved:.3f}",
                    f"{s.packed_items} / {s.pack_resent}",
                    f"{s.prompt_cache_tokens_saved:,} / ${s.prompt_cache_dollars_saved:.3f}",
                    f"{s.max_tokens_reserve_saved:,} / {s.max_tokens_reasked}",
                ]
            )
    table = md_table(
        [
            "variant",
            "upstream calls",
            "input",
            "cache writes",
            "cache reads",
            "output",
            "billed",
            "vs bare",
            "answers its own",
        ],
        rows,
    )
    saved = md_table(
        [
            "variant (stats())",
            "cache: calls / $",
            "dedupe: calls / $",
            "packing: calls / $",
            "packed items / re-sent",
            "prompt cache: tokens read / $",
            "max_tokens: OTPM reserve saved / re-asked",
        ],
        extra,
    )
    last = results[-2][1]
    summary = f"all together: {last['calls']} calls, ${last['usd']:.3f} (bare: ${base:.3f})"
    return f"{table}\n\n{saved}\n", summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--span", type=float, default=3.0, help="arrivals spread (s)")
    parser.add_argument("--faults", type=float, default=0.1, help="packed items garbled")
    parser.add_argument("--seed", type=int, default=12, help="workload and fault seed")
    parser.add_argument(
        "--only",
        choices=["long-answers"],
        help="run only the workload whose answers run longer than max_tokens (#21)",
    )
    args = parser.parse_args()
    long_body, long_summary = asyncio.run(long_answers(args.span, args.seed))
    if args.only is None:
        body, summary = asyncio.run(main(args.span, args.faults, args.seed))
        body += "\nAnswers longer than max_tokens (#21):\n\n" + long_body
        summary += "; " + long_summary
    else:
        body, summary = long_body, long_summary
    print(body)
    print(write_result("savings", "Fewer calls, fewer tokens (#12, #21)", "asyncio", body, summary))

"""The bench's workloads: the same requests, limits and mock for every client.

Three workloads, each a list of Messages API bodies submitted all at once:

- ``english``: mixed English prompts, mostly short with a tail of long ones, and a spread of
  ``max_tokens`` (so output reservations, not just request counts, bind).
- ``chinese``: the same shape in Chinese, about one token per character (the mock counts
  ~1.2): a client that estimates four characters per token under-counts input five-fold.
- ``shared``: English, but another consumer the clients cannot see spends 40 % of the key's
  refill (the mock's ``shadow_load``); only the server's rate-limit headers reveal it.

Time is compressed: every limit is per `PERIOD` seconds instead of 60, and the mock uses the
same period, so a workload shaped like minutes of real traffic runs in seconds. The
theoretical minimum makespan is what no client can beat: for each dimension, what the
workload needs beyond the initial full bucket, divided by the refill rate left to us.

`acceptance` gives the scheduler's acceptance workloads of ``tests/test_workloads_http.py``
(600 mixed requests with all three limits binding, the same in Chinese, and 400 on a key
another consumer eats 40 % of), and `HEADER_VARIANTS` the readings of the rate-limit headers
the API documentation leaves open, as `MockConfig` settings; ``bench/bench_headers.py`` runs
each workload under each variant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from asyncthrift import Limits
from asyncthrift.mock import MockConfig
from asyncthrift.mock._answers import answer_for, request_hash
from asyncthrift.mock._tokenizer import analyze_input
from asyncthrift.tools.workload import mixed_workload

__all__ = [
    "HEADER_VARIANTS",
    "MODEL",
    "PERIOD",
    "Acceptance",
    "Workload",
    "acceptance",
    "build",
    "mock_config",
]

MODEL = "claude-sonnet-4-6"
PERIOD = 6.0
LIMITS = Limits(rpm=500, itpm=40_000, otpm=16_000, period=PERIOD)
OUTPUT_TOKENS = (16, 160)
LATENCY = 0.25
LATENCY_PER_TOKEN = 0.002
LATENCY_JITTER = 0.3
SHADOW_LOAD = 0.4

_VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "more will if no out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even "
    "most made after also did many before must through back years where much your way "
    "well down should because each just those people how too little state good very make "
    "world still own see men work long get here between both life being under never day "
    "same another know while last might us great old year off come since against go came "
    "right used take three quota budget token bucket request latency throughput queue "
    "scheduler invoice summary contract customer report analysis translate classify "
    "extract review"
)
_WORDS = tuple(_VOCABULARY.split())

_HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也"
    "能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现"
    "实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表"
    "间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系"
    "军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资"
)


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload: its requests, the limits clients are told, and what the mock enforces."""

    name: str
    title: str
    requests: list[dict[str, Any]]
    limits: Limits
    shadow_load: float = 0.0
    input_tokens: list[int] = field(default_factory=list)
    """True input tokens of each request (the mock's count)."""
    output_tokens: list[int] = field(default_factory=list)
    """Output tokens each request will produce (the mock's answers are deterministic)."""

    @property
    def theoretical_min(self) -> float:
        """Seconds no client can beat: the binding dimension's need beyond the full bucket."""
        lim = self.limits
        share = 1.0 - self.shadow_load
        worst = 0.0
        for total, cap in (
            (len(self.requests), lim.rpm),
            (sum(self.input_tokens), lim.itpm),
            (sum(self.output_tokens), lim.otpm),
        ):
            if cap is not None:
                worst = max(worst, (total - cap) / (cap / lim.period * share))
        mean_latency = LATENCY + LATENCY_PER_TOKEN * (
            sum(self.output_tokens) / len(self.output_tokens)
        )
        return worst + mean_latency


def _english(rng: random.Random, words: int) -> str:
    sentences = []
    while words > 0:
        n = min(words, rng.randint(6, 18))
        words -= n
        s = " ".join(rng.choice(_WORDS) for _ in range(n))
        sentences.append(s[0].upper() + s[1:] + ".")
    return " ".join(sentences)


def _chinese(rng: random.Random, chars: int) -> str:
    out = []
    while chars > 0:
        n = min(chars, rng.randint(8, 30))
        chars -= n
        out.append("".join(rng.choice(_HANZI) for _ in range(n)) + "。")
    return "".join(out)


def _size(rng: random.Random, factor: float = 1.0) -> int:
    """Prompt size in tokens: mostly short, a quarter medium, a few long."""
    r = rng.random()
    if r < 0.70:
        n = rng.randint(10, 80)
    elif r < 0.95:
        n = rng.randint(80, 400)
    else:
        n = rng.randint(400, 1500)
    return round(n * factor)


def _body(text: str, rng: random.Random, task: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": rng.choice((128, 256, 256, 512)),
        "messages": [{"role": "user", "content": f"{task}\n\n{text}"}],
    }


def _finish(name: str, title: str, bodies: list[dict[str, Any]], shadow: float) -> Workload:
    inputs = [analyze_input(b).total for b in bodies]
    outputs = [
        answer_for(request_hash(b), OUTPUT_TOKENS, b["max_tokens"]).output_tokens for b in bodies
    ]
    return Workload(name, title, bodies, LIMITS, shadow, inputs, outputs)


def build(scale: float = 1.0, seed: int = 2024) -> list[Workload]:
    """The three workloads; `scale` multiplies the request counts (for quick runs)."""
    rng = random.Random(seed)
    n_en, n_zh, n_sh = (max(10, round(k * scale)) for k in (340, 350, 280))
    english = [
        _body(_english(rng, _size(rng)), rng, rng.choice(("Summarise:", "Classify:", "Reply:")))
        for _ in range(n_en)
    ]
    chinese = [
        _body(_chinese(rng, _size(rng, 1.4)), rng, rng.choice(("总结：", "翻译成英文：", "分类：")))
        for _ in range(n_zh)
    ]
    shared = [
        _body(_english(rng, _size(rng)), rng, rng.choice(("Summarise:", "Extract:")))
        for _ in range(n_sh)
    ]
    return [
        _finish("english", "Mixed English", english, 0.0),
        _finish("chinese", "Chinese (~1 token per character)", chinese, 0.0),
        _finish(
            "shared", f"Key shared with an unseen consumer ({SHADOW_LOAD:.0%})", shared, SHADOW_LOAD
        ),
    ]


def mock_config(shadow_load: float = 0.0) -> MockConfig:
    """The mock every client runs against: the workloads' limits, realistic latency."""
    return MockConfig(
        limits=LIMITS,
        shadow_load=shadow_load,
        output_tokens=OUTPUT_TOKENS,
        latency=LATENCY,
        latency_per_token=LATENCY_PER_TOKEN,
        latency_jitter=LATENCY_JITTER,
        retry_after_ms=True,  # whole-second retry-after is 10x coarser in compressed time
        record=True,
    )


# -- the acceptance workloads under each reading of the headers --------------------------------

#: The header readings the documentation leaves open, as `MockConfig` settings, by name:
#: {admission, completion} x {seconds, milliseconds}; token `-remaining` keeps the mock's
#: default rounding ("nearest": it can read up to 499 tokens more than remain).
HEADER_VARIANTS: dict[str, dict[str, str]] = {
    f"{at}-{precision}": {"headers_at": at, "reset_precision": precision}
    for at in ("completion", "admission")
    for precision in ("seconds", "milliseconds")
}


@dataclass(frozen=True, slots=True)
class Acceptance:
    """One acceptance workload of ``tests/test_workloads_http.py``, with its mock settings."""

    name: str
    title: str
    bodies: list[dict[str, Any]]
    limits: Limits
    output_tokens: tuple[int, int]
    shadow_load: float = 0.0
    latency: float = 0.02
    latency_per_token: float = 0.0
    latency_jitter: float = 0.0
    #: `MockConfig.shadow_schedule`: the other consumer's share changes at these instants.
    shadow_schedule: tuple[tuple[float, float], ...] = ()

    @property
    def share(self) -> float:
        """The part of every limit's refill left to us at the start (the rest is the other's)."""
        return 1.0 - self.shadow_load

    def mock_config(self, **variant: str) -> MockConfig:
        """The mock of the acceptance test, with `variant` header settings, recording."""
        return MockConfig(
            limits=self.limits,
            shadow_load=self.shadow_load,
            shadow_schedule=self.shadow_schedule,
            output_tokens=self.output_tokens,
            latency=self.latency,
            latency_per_token=self.latency_per_token,
            latency_jitter=self.latency_jitter,
            record=True,
            **variant,  # type: ignore[arg-type]
        )

    def minimum(self, requests: float, input_tokens: float, output_tokens: float) -> float:
        """The least time `requests` carrying those tokens take at our share of the limits.

        Max over dimensions of (demand beyond the initial full bucket) / refill rate, as the
        acceptance tests compute it from what the mock served; with a `shadow_schedule`, the
        time the refill left to us (changing at its instants) takes to cover that demand.
        """
        lim = self.limits
        worst = 0.0
        dims = ((lim.rpm, requests), (lim.itpm, input_tokens), (lim.otpm, output_tokens))
        for cap, demand in dims:
            if cap is not None and demand > cap:
                worst = max(worst, self._time_to_refill(demand - cap, cap / lim.period))
        return worst

    def _time_to_refill(self, need: float, rate: float) -> float:
        """Seconds until `need` units have refilled at `rate` times the share left to us."""
        t, share = 0.0, self.share
        for at, other in self.shadow_schedule:
            if need <= rate * share * (at - t):
                break
            need -= rate * share * (at - t)
            t, share = at, 1.0 - other
        return t + need / (rate * share)

    @property
    def planned_minimum(self) -> float:
        """`minimum` for the demand the limits were sized on (known before the run)."""
        lo, hi = self.output_tokens
        inputs = sum(analyze_input(b).total for b in self.bodies)
        return self.minimum(len(self.bodies), inputs, len(self.bodies) * (lo + hi) / 2)


def _sized_limits(bodies: list[dict[str, Any]], period: float, out: tuple[int, int]) -> Limits:
    """Limits under which all three dimensions bind about equally for `bodies`."""
    n = len(bodies)
    total_in = sum(analyze_input(b).total for b in bodies)
    total_out = n * (out[0] + out[1]) / 2
    return Limits(rpm=n / 2, itpm=total_in / 2, otpm=total_out / 2, period=period)


def acceptance() -> list[Acceptance]:
    """The three acceptance workloads, exactly as the tests build them."""
    mixed = mixed_workload(600, seed=11, chinese_share=0.4)
    chinese = mixed_workload(600, seed=11, chinese_share=1.0)
    shared = mixed_workload(400, seed=5)
    return [
        Acceptance(
            "mixed",
            "600 mixed requests, all three limits binding",
            mixed,
            _sized_limits(mixed, 20.0, (40, 400)),
            (40, 400),
        ),
        Acceptance(
            "chinese",
            "600 Chinese requests, all three limits binding",
            chinese,
            _sized_limits(chinese, 20.0, (40, 400)),
            (40, 400),
        ),
        Acceptance(
            "shared",
            f"400 mixed requests, another consumer eats {SHADOW_LOAD:.0%} of the key",
            shared,
            _sized_limits(shared, 10.0, (40, 300)),
            (40, 300),
            shadow_load=SHADOW_LOAD,
        ),
    ]

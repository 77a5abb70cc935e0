"""`MockConfig` and `Faults`: everything that shapes the mock's behaviour, in one value.

Both are frozen so one config can be shared by several servers and serialised for a child
process (`to_json` / `from_json`) without surprises.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

import orjson

from ..scheduling.limits import Limits, LimitsSpec, LimitsTable

__all__ = ["Faults", "MockConfig"]


def _probability(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(f"Faults.{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True, slots=True)
class Faults:
    """Injected failures, each a probability per Messages request that passed validation.

    `overloaded` (529 overloaded_error), `server_error` (500 api_error), `drop` (the
    connection is closed without any response) and `rate_limited` (a 429 rate_limit_error
    the buckets do not explain, as the API's acceleration limits on quickly growing traffic
    give: its headers still show capacity left, and `retry-after` is `rate_limited_retry_after`
    seconds) are exclusive outcomes decided by one draw; their sum must not exceed 1.
    `stream_error` applies to admitted streams only: an ``event: error`` overloaded_error
    after about half the deltas. The RNG is seeded with `seed` and draws the same number of
    values per request, so a given arrival order always gets the same faults. Faults are
    decided before rate limiting and never charge buckets.
    """

    overloaded: float = 0.0
    server_error: float = 0.0
    drop: float = 0.0
    stream_error: float = 0.0
    seed: int = 0
    packed_items: float = 0.0
    """Per item of a packed call (a packing prompt): the probability that the reply leaves it
    out, answers it twice, garbles it, or files its answer under another id."""
    rate_limited: float = 0.0
    rate_limited_retry_after: float = 1.0

    def __post_init__(self) -> None:
        exclusive = ("overloaded", "server_error", "drop", "rate_limited")
        for name in (*exclusive, "stream_error", "packed_items"):
            _probability(name, getattr(self, name))
        if sum(getattr(self, name) for name in exclusive) > 1.0 + 1e-12:
            raise ValueError(
                "Faults.overloaded + server_error + drop + rate_limited must not exceed 1"
            )
        after = self.rate_limited_retry_after
        if not (isinstance(after, int | float) and math.isfinite(after) and after >= 0):
            raise ValueError(f"Faults.rate_limited_retry_after must be >= 0, got {after!r}")


OutputCharge = Literal["reserve", "actual"]
ResetPrecision = Literal["seconds", "milliseconds"]
HeadersAt = Literal["completion", "admission"]
RemainingRounding = Literal["down", "nearest", "exact"]
AnswerFrom = Literal["request", "last_turn"]
Abandoned = Literal["finish", "stop"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "output_charge": get_args(OutputCharge),
    "reset_precision": get_args(ResetPrecision),
    "headers_at": get_args(HeadersAt),
    "remaining_rounding": get_args(RemainingRounding),
    "answer_from": get_args(AnswerFrom),
    "abandoned": get_args(Abandoned),
}

#: Default (lo, hi) range of answer lengths in output tokens.
DEFAULT_OUTPUT_TOKENS: tuple[int, int] = (16, 256)


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How a `MockServer` behaves. Every field has a default that models the real API.

    Where the API's documentation leaves a behaviour open, the default is its documented form
    or, where it shows none, the reading hardest on a client.

    Rate limiting:
      limits: anything `LimitsTable` accepts (None = unlimited, a `Limits`, a preset name,
        or a mapping of model-family prefix to `Limits`); `Limits.period` compresses time.
      key_limits: per-api-key override of `limits` (same accepted forms).
      key_faults: per-api-key override of `faults` (one seeded RNG serves every key).
      output_charge: "reserve" charges max_tokens at admission and refunds the unused part at
        completion; "actual" only requires a non-empty output bucket at admission and charges
        what was produced at completion.
      shadow_load: fraction in [0, 1) of every bucket's refill eaten by an invisible second
        consumer of the same key.
      shadow_schedule: ((t, share), ...): from `t` seconds after a key's first request (per
        model class) the other consumer eats `share` instead (a consumer that starts and
        stops mid-run); `shadow_load` holds before the first entry. Times ascending.
      retry_after_ms: also send `retry-after-ms` on 429 and 529.
      count_tokens_rpm / count_tokens_period: count_tokens' own request limit per key.
    Rate-limit headers (where the documentation leaves a choice open, each reading is a
    setting: a client must be right under all of them, so tests and benches can try each):
      reset_precision: `-reset` as RFC 3339 in whole "seconds" (``2025-01-15T14:24:00Z``, the
        form the documentation shows) or with "milliseconds". Both round *up*: the reset says
        when the bucket will be full again, and a later instant is still true of a full
        bucket while an earlier one would not be, so a reset is never early. Read back, a
        whole-second reset is therefore up to 1 s late.
      headers_at: which instant the headers of a non-streamed 200 describe. "completion":
        the buckets when the response is sent, after generation (the request's own output
        settled first: the unused part of its reservation refunded, or its actual output
        charged) and including whatever other requests were charged and refilled meanwhile,
        as a server that writes the headers with the body would report. "admission": the
        buckets right after this request was charged. Streams always send their headers
        when they start (at admission); a 429 is answered at once, so its headers are as of
        the refusal.
      remaining_rounding: how token `-remaining` is "rounded to a thousand" (the API does
        not say which way): "nearest" (half up, capped at the limit; the default because it
        can report up to 499 tokens *more* than remain, which is what hurts a client that
        reads the number as a floor), "down" (never more than remains), or "exact".
        Requests `-remaining` is never rounded.
      clock_skew: seconds the mock's wall clock runs ahead of its clients' (negative:
        behind), as a server's clock may: it shows in every `-reset` (a client whose clock
        is 2.7 s behind the server's is ``clock_skew=2.7``). Loop-time behaviour is unchanged.
      round_remaining: the older boolean spelling, kept working: True means "down" (what it
        always did), False "exact"; None (the default) defers to `remaining_rounding`. It is
        folded into `remaining_rounding` at construction and then reads None.
    A client that goes away (the documentation is silent; each reading is a setting):
      abandoned: what happens to an admitted non-streamed request whose client disconnects
        (or half-closes) before its answer is sent. "finish" (the default: users report that
        requests they timed out still used their quota, and an HTTP server notices a gone
        client only when it writes): the answer is generated to the end and its whole output
        charged (and counted in `MockCounters.output_tokens`, `abandoned_output_tokens`).
        "stop": generation stops at the disconnect and only the output produced so far is
        charged; the rest of the reservation goes back at once. Streams do not depend on it:
        a stream stops at its first write after the client went away and is charged for
        what it produced until then.
    Answers and timing:
      answer_from: what the deterministic answer is a hash of: the whole "request" (any
        change gives another answer), or only the "last_turn" (model, options, system and
        the last user message; the history is ignored, as a model answering the last
        question would), to check that history compression leaves answers unchanged.
      output_tokens: (lo, hi) range of the deterministic answer length, capped by max_tokens.
      latency: seconds before the answer (time to first token for streams).
      latency_per_token: seconds per output token (spread over a stream's deltas).
      latency_jitter: relative jitter of the total latency, seeded (0.1 = ±10 %).
      stream_chunk_words: words per `text_delta` event.
      overloaded_retry_after: `retry-after` seconds sent with 529s.
    Validation and limits of the model:
      api_keys: if set, only these keys are valid (others get 401).
      context_window: prompts with more input tokens get 400 "prompt is too long".
      max_output_tokens: max_tokens above this gets 400.
      max_body_bytes: larger bodies get 413 request_too_large.
    Prompt caching:
      prompt_caching: honour `cache_control` breakpoints (reads are not charged to ITPM).
      cache_ttl_scale: multiplies the 5 min / 1 h TTLs (compress time as `period` does).
    Observation:
      record: keep an admission log (`MockCounters.log`) for plots.
    Message Batches (see `_batches`; time compresses like `Limits.period`):
      batch_latency: seconds from a create until its first request is finished.
      batch_seconds_per_request: seconds each further request adds (in submission order).
      batch_expiry: seconds after which an unfinished batch ends, the rest ``expired``
        (24 h on the API).
      batch_cancel_latency: seconds a canceled batch stays ``canceling`` before it ends.
      batch_create_latency: seconds before a create is answered (the batch exists at once).
      batch_max_requests / batch_max_bytes: the API's per-batch limits (100,000 / 256 MB).
      batch_rpm / batch_period: requests to the batch endpoints per period, per key (None:
        unlimited); separate from the Messages limits.
      batch_queue_limit: requests of not-yet-ended batches a key may have (None: unlimited).
    """

    host: str = "127.0.0.1"
    port: int = 0
    limits: LimitsSpec = None
    key_limits: Mapping[str, LimitsSpec] | None = None
    api_keys: Collection[str] | None = None
    output_charge: OutputCharge = "reserve"
    shadow_load: float = 0.0
    shadow_schedule: tuple[tuple[float, float], ...] = ()
    reset_precision: ResetPrecision = "seconds"
    headers_at: HeadersAt = "completion"
    remaining_rounding: RemainingRounding = "nearest"
    round_remaining: bool | None = None
    clock_skew: float = 0.0
    abandoned: Abandoned = "finish"
    retry_after_ms: bool = False
    count_tokens_rpm: float | None = None
    count_tokens_period: float = 60.0
    output_tokens: tuple[int, int] = DEFAULT_OUTPUT_TOKENS
    answer_from: AnswerFrom = "request"
    latency: float = 0.0
    latency_per_token: float = 0.0
    latency_jitter: float = 0.0
    stream_chunk_words: int = 4
    overloaded_retry_after: float = 1.0
    faults: Faults = field(default_factory=Faults)
    key_faults: Mapping[str, Faults] | None = None
    context_window: int = 200_000
    max_output_tokens: int = 64_000
    max_body_bytes: int = 32 * 1024 * 1024
    prompt_caching: bool = True
    cache_ttl_scale: float = 1.0
    record: bool = False
    batch_latency: float = 1.0
    batch_seconds_per_request: float = 0.0
    batch_expiry: float = 86_400.0
    batch_cancel_latency: float = 0.5
    batch_create_latency: float = 0.0
    batch_max_requests: int = 100_000
    batch_max_bytes: int = 256 * 1024 * 1024
    batch_rpm: float | None = None
    batch_period: float = 60.0
    batch_queue_limit: int | None = None

    def __post_init__(self) -> None:
        if self.api_keys is not None and not isinstance(self.api_keys, frozenset):
            object.__setattr__(self, "api_keys", frozenset(self._iter_keys(self.api_keys)))
        lo_hi = tuple(self.output_tokens)
        if len(lo_hi) != 2 or not all(isinstance(v, int) for v in lo_hi):
            raise ValueError(f"output_tokens must be (lo, hi) integers, got {self.output_tokens!r}")
        lo, hi = lo_hi
        if not 1 <= lo <= hi:
            raise ValueError(f"output_tokens must satisfy 1 <= lo <= hi, got {lo_hi!r}")
        object.__setattr__(self, "output_tokens", (lo, hi))
        if self.round_remaining is not None:
            legacy = "down" if self.round_remaining else "exact"
            object.__setattr__(self, "remaining_rounding", legacy)
            object.__setattr__(self, "round_remaining", None)
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                allowed = " or ".join(repr(c) for c in choices)
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")
        skew = self.clock_skew
        if not (isinstance(skew, int | float) and math.isfinite(skew)):
            raise ValueError(f"clock_skew must be a finite number of seconds, got {skew!r}")
        if not 0.0 <= self.shadow_load < 1.0:
            raise ValueError(f"shadow_load must be in [0, 1), got {self.shadow_load!r}")
        schedule = tuple((float(t), float(share)) for t, share in self.shadow_schedule)
        times = [t for t, _ in schedule]
        if times != sorted(times) or any(not 0.0 <= s < 1.0 for _, s in schedule):
            raise ValueError(
                "shadow_schedule must be (seconds, share) pairs with ascending seconds and "
                f"shares in [0, 1), got {self.shadow_schedule!r}"
            )
        object.__setattr__(self, "shadow_schedule", schedule)
        for name in (
            "latency",
            "latency_per_token",
            "latency_jitter",
            "overloaded_retry_after",
            "batch_latency",
            "batch_seconds_per_request",
            "batch_cancel_latency",
            "batch_create_latency",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.count_tokens_rpm is not None and self.count_tokens_rpm <= 0:
            raise ValueError("count_tokens_rpm must be positive or None")
        if not self.batch_expiry > 0 or not self.batch_period > 0:
            raise ValueError("batch_expiry and batch_period must be positive")
        if self.batch_rpm is not None and self.batch_rpm <= 0:
            raise ValueError("batch_rpm must be positive or None")
        if self.batch_max_requests < 1 or self.batch_max_bytes < 1:
            raise ValueError("batch_max_requests and batch_max_bytes must be >= 1")
        if self.stream_chunk_words < 1:
            raise ValueError("stream_chunk_words must be >= 1")
        # Fail at construction, not at the first request, on a malformed limits spec.
        LimitsTable(self.limits)
        for spec in (self.key_limits or {}).values():
            LimitsTable(spec)

    @staticmethod
    def _iter_keys(keys: Iterable[str]) -> Iterable[str]:
        if isinstance(keys, str):
            return (keys,)
        return keys

    # -- serialisation for a child process -------------------------------------------------

    def to_json(self) -> str:
        """This config as JSON (`Limits` become objects tagged with ``"__limits__"``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("limits",):
                value = _limits_to_json(value)
            elif f.name == "key_limits" and value is not None:
                value = {k: _limits_to_json(v) for k, v in value.items()}
            elif f.name == "api_keys" and value is not None:
                value = sorted(value)
            elif f.name == "faults":
                value = asdict(value)
            elif f.name == "key_faults" and value is not None:
                value = {k: asdict(v) for k, v in value.items()}
            out[f.name] = value
        return orjson.dumps(out).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> MockConfig:
        """Inverse of `to_json`."""
        raw = orjson.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a MockConfig JSON must be an object")
        kwargs: dict[str, Any] = dict(raw)
        kwargs["limits"] = _limits_from_json(raw.get("limits"))
        if raw.get("key_limits") is not None:
            kwargs["key_limits"] = {k: _limits_from_json(v) for k, v in raw["key_limits"].items()}
        if raw.get("api_keys") is not None:
            kwargs["api_keys"] = frozenset(raw["api_keys"])
        if "faults" in raw:
            kwargs["faults"] = Faults(**raw["faults"])
        if raw.get("key_faults") is not None:
            kwargs["key_faults"] = {k: Faults(**v) for k, v in raw["key_faults"].items()}
        if "output_tokens" in raw:
            kwargs["output_tokens"] = tuple(raw["output_tokens"])
        return cls(**kwargs)


def _one_limits_to_json(limits: Limits) -> dict[str, Any]:
    return {"__limits__": True, **{f.name: getattr(limits, f.name) for f in fields(limits)}}


def _limits_to_json(spec: Any) -> Any:
    if isinstance(spec, Limits):
        return _one_limits_to_json(spec)
    if isinstance(spec, Mapping):
        return {k: _one_limits_to_json(v) for k, v in spec.items()}
    return spec  # None or a preset name


def _limits_from_json(raw: Any) -> Any:
    if isinstance(raw, dict):
        if raw.get("__limits__"):
            return Limits(**{k: v for k, v in raw.items() if k != "__limits__"})
        return {k: _limits_from_json(v) for k, v in raw.items()}
    return raw

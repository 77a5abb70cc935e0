"""The `Cache` protocol, its counters, and the Message <-> bytes codec.

A cache stores opaque bytes under string keys; what the bytes mean (an encoded
`anthropic.types.Message`) is decided here, once, so every backend stores the same format and
one process can read what another wrote. The protocol is structural: any object with these
methods works, so an application can plug in its own store without subclassing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol, get_args, runtime_checkable

import orjson
from anthropic.types import ContentBlock, Message, StopReason, Usage
from pydantic import ValidationError

from ._clone import clone_model

__all__ = [
    "COMPLETE_STOP_REASONS",
    "MAX_TOKEN_COUNT",
    "REQUEST_ID_KEY",
    "TRUNCATED_SKIP_WARNING",
    "TRUNCATED_STOP_REASONS",
    "Cache",
    "CacheStats",
    "InvalidEntry",
    "OwnEntry",
    "decode_message",
    "encode_message",
    "encode_own",
    "is_cacheable",
    "is_truncated",
    "reject_entry",
]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of one cache's counters (each counts operations, not requests).

    - `hits` / `misses`: `get` calls that found / did not find a live entry.
    - `sets`: entries stored.
    - `errors`: operations that failed (backend error, timeout, undecodable value); a failed
      `get` also counts as a miss, never as an exception to the caller.
    - `timeouts`: the subset of `errors` that hit the per-operation time bound.
    - `skipped`: operations not attempted because the backend is known to be down (circuit
      open): they cost nothing and count as misses / no-ops.
    - `evictions`: entries dropped to stay within the size bounds.
    - `expirations`: entries found past their TTL and dropped.
    - `entries` / `bytes`: current size, where the backend knows it (0 otherwise).
    - `invalid`: entries found that were not a well-formed encoded answer (corrupt, or
      written by something else), rejected by the client and deleted (see `reject_entry`);
      each also counted as a miss by the client, which then asks the API.
    """

    hits: int = 0
    misses: int = 0
    sets: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    evictions: int = 0
    expirations: int = 0
    entries: int = 0
    bytes: int = 0
    invalid: int = 0


@runtime_checkable
class Cache(Protocol):
    """What asyncthrift needs from an answer cache.

    Implementations must never raise on `get`/`set` for backend trouble: a cache outage must
    not become an outage of the application, so failures are counted in `stats` and behave
    as a miss (get) or a no-op (set).
    """

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None if absent, expired or unavailable."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value` under `key` for `ttl` seconds (None: the cache's default TTL)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the cache must not be used afterwards."""
        ...

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        ...


async def reject_entry(cache: Cache, key: str) -> None:
    """Tell `cache` the value under `key` did not decode: it counts it and deletes it.

    Backends that have a ``reject(key)`` coroutine (the bundled ones) do both; for any other
    `Cache` this does nothing, and the next `set` of a good answer replaces the entry.
    """
    reject = getattr(cache, "reject", None)
    if reject is not None:
        await reject(key)


COMPLETE_STOP_REASONS: Final[frozenset[str]] = frozenset({"end_turn", "stop_sequence", "tool_use"})
"""Stop reasons of a finished answer, which the same request would get again."""

TRUNCATED_STOP_REASONS: Final[frozenset[str]] = frozenset(
    {"max_tokens", "model_context_window_exceeded"}
)
"""Stop reasons of an answer cut short by a length limit: cacheable only on request.

``pause_turn`` (an unfinished server-tool turn), ``refusal`` and a missing stop reason are
never stored: they are not the complete answer the request asked for.
"""


TRUNCATED_SKIP_WARNING: Final = (
    "an answer cut at a length limit (stop_reason=%r) was not cached: with the default "
    "cache_truncated=False only complete answers are stored, so a cut answer (half a JSON "
    "object, a sentence ended mid-way) is not served again for cache_ttl where asking again "
    "may fit; pass Thrift(cache_truncated=True) to cache cut answers too, or raise max_tokens "
    "(said once per client; stats().cache_truncated_skipped counts them)"
)
"""Logged once per client, at the first cut answer its cache skips."""


def is_truncated(msg: Message) -> bool:
    """Whether `msg` was cut short by a length limit (``max_tokens`` or the context window)."""
    return msg.stop_reason in TRUNCATED_STOP_REASONS


def is_cacheable(msg: Message, allow_truncated: bool = False) -> bool:
    """Whether `msg` is a complete, successful answer worth storing."""
    reason = msg.stop_reason
    if reason in COMPLETE_STOP_REASONS:
        return True
    return allow_truncated and reason in TRUNCATED_STOP_REASONS


def encode_message(msg: Message) -> bytes:
    """`msg` as orjson bytes, exactly the fields that were set (as the server sent them).

    ``exclude_unset`` keeps entries small and faithful: fields the server did not send are
    restored to their defaults on decode, so ``decode_message(encode_message(m)) == m``.
    Fields this SDK version does not know (kept by the SDK as extras) are kept too, and so
    is the SDK's ``_request_id`` (the original answer's ``request-id`` header, which a
    cached answer carries again), under `REQUEST_ID_KEY`.

    """
    obj = msg.model_dump(mode="json", exclude_unset=True)
    request_id = getattr(msg, "_request_id", None)
    if isinstance(request_id, str):
        obj[REQUEST_ID_KEY] = request_id
    return orjson.dumps(obj)


def encode_own(msg: Message) -> bytes:
    """`encode_message` for an in-process cache (one that hands back the object it was
    given): the same bytes, as an `OwnEntry`, which `decode_message` validates once."""
    return OwnEntry(encode_message(msg))


REQUEST_ID_KEY: Final = "_request_id"
"""Where an entry keeps the original answer's request id (no API field starts with ``_``).
An entry written without it (by an older version) decodes with ``_request_id`` None."""


class InvalidEntry(ValueError):
    """Bytes under a cache key that are not a complete, well-formed encoded `Message`."""


class OwnEntry(bytes):
    """An entry `encode_own` wrote in this process, for a cache that hands back the very
    object it was given (`MemoryCache`).

    Its first `decode_message` validates it completely, like any entry, and keeps the
    validated `Message` (`checked`); every later one returns a copy of that message
    (`clone_model`: new models, lists and dicts) instead of validating the same bytes
    again. Bytes read from Redis, or stored by anything else, are plain `bytes`, validated
    on every read. The bytes are the usual encoding, readable by any `decode_message`.
    """

    checked: Message | None = None


MAX_TOKEN_COUNT: Final = 100_000_000
"""The largest token count a cached ``usage`` may carry (100x the largest context window):
above it an entry is taken for corrupt, not for an answer."""


def _block_types() -> frozenset[str]:
    """The content block ``type`` tags this SDK version knows."""
    tags: set[str] = set()
    for member in get_args(get_args(ContentBlock)[0]):
        field = member.model_fields.get("type")
        if field is not None:
            tags.update(t for t in get_args(field.annotation) if isinstance(t, str))
    return frozenset(tags)


_KNOWN_BLOCKS: Final = _block_types()
_KNOWN_STOP_REASONS: Final = frozenset(t for t in get_args(StopReason) if isinstance(t, str))
_USAGE_COUNTS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def decode_message(data: bytes) -> Message:
    """The `Message` that `encode_message` encoded, equal to the original (a new object on
    every call: the caller may change it).

    A shared cache is input from outside the process, so an entry is validated completely
    before anything uses it: strict types (no string or float where a count belongs), token
    counts in ``0..MAX_TOKEN_COUNT``, the content a list of well-formed blocks. The one
    leniency is for what a newer SDK may have written: a block type or stop reason this SDK
    does not know is kept (the rest of the entry must still validate strictly), and the
    message is built the way the SDK builds such a response. An `OwnEntry` is validated so
    on its first read only; later reads copy what that read validated.
    Raises `InvalidEntry` (a `ValueError`) for anything else.
    """
    if type(data) is OwnEntry:
        checked = data.checked
        if checked is None:
            checked = data.checked = decode_message(bytes(data))
        return clone_model(checked)
    try:
        obj = orjson.loads(data)
    except (TypeError, ValueError) as exc:
        raise InvalidEntry(f"cache entry is not JSON ({exc})") from None
    # the request id is not the API's: out before validation (no extra field to move back)
    request_id = obj.pop(REQUEST_ID_KEY, None) if type(obj) is dict else None
    try:
        # the usual entry, from Python objects: fewer instructions than
        # ``model_validate_json``; what strict mode accepts from orjson's output it also
        # accepts as JSON, which adds only strings parsed into a type (a datetime): those
        # entries take the JSON fallback
        # (pydantic's validator itself: `model_validate` is a Python wrapper around it)
        msg: Message = Message.__pydantic_validator__.validate_python(obj, strict=True)
    except ValidationError:
        msg = _decode_json(data)
        request_id = _pop_request_id(msg)
    _check_usage(msg)
    if request_id is not None and type(request_id) is not str:
        raise InvalidEntry(f"cache entry has {REQUEST_ID_KEY}={request_id!r}")
    # what ``msg._request_id = ...`` does for a name pydantic does not know (the SDK declares
    # it only for type checkers), without pydantic's ``__setattr__`` dispatch on every hit
    object.__setattr__(msg, "_request_id", request_id)
    return msg


def _pop_request_id(msg: Message) -> object:
    """The stored request id, taken out of a fallback-decoded message's extras."""
    extra = msg.__pydantic_extra__
    request_id = None if extra is None else extra.pop(REQUEST_ID_KEY, None)
    msg.__pydantic_fields_set__.discard(REQUEST_ID_KEY)
    return request_id


def _decode_json(data: bytes) -> Message:
    """`data` validated as JSON (``container.expires_at`` is a datetime written as a
    string), or as written by a newer SDK."""
    try:
        return Message.model_validate_json(data, strict=True)
    except ValidationError:
        return _decode_newer(data)
    except (TypeError, ValueError) as exc:  # pragma: no cover - parsed by orjson already
        raise InvalidEntry(f"cache entry is not an encoded Message ({exc})") from None


def _decode_newer(data: bytes) -> Message:
    """`data` as a message carrying block types or a stop reason this SDK does not know."""
    try:
        obj = orjson.loads(data)
    except (TypeError, ValueError) as exc:
        raise InvalidEntry(f"cache entry is not JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("type") != "message":
        raise InvalidEntry("cache entry is not an encoded Message")
    content = obj.get("content")
    if not isinstance(content, list):
        raise InvalidEntry("cache entry's content is not a list")
    known: list[object] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str) or not kind:
            raise InvalidEntry("cache entry has a content block without a type")
        if kind in _KNOWN_BLOCKS:
            known.append(block)
    stop_reason = obj.get("stop_reason")
    newer_stop = isinstance(stop_reason, str) and stop_reason not in _KNOWN_STOP_REASONS
    if len(known) == len(content) and not newer_stop:
        raise InvalidEntry("cache entry does not validate as a Message")
    core = {**obj, "content": known, "stop_reason": None if newer_stop else stop_reason}
    try:
        Message.model_validate_json(orjson.dumps(core), strict=True)
    except (TypeError, ValueError) as exc:
        raise InvalidEntry(f"cache entry does not validate as a Message ({exc})") from None
    from anthropic._models import construct_type

    msg = construct_type(type_=Message, value=obj)
    if not isinstance(msg, Message):  # pragma: no cover - construct_type returns Message
        raise InvalidEntry("cache entry is not an encoded Message")
    return msg


def _check_usage(msg: Message) -> None:
    """Token counts the client adds up and prices: whole numbers in a plausible range."""
    usage = msg.usage
    # the exact type first: `isinstance` on a pydantic model class runs `ABCMeta`'s check
    if type(usage) is not Usage and not isinstance(usage, Usage):  # pragma: no cover
        raise InvalidEntry("cache entry has no usage")
    counts = usage.__dict__
    # `type(...) is int`: no bool, no int subclass; the usual entry passes on these lines
    try:
        i, o = counts["input_tokens"], counts["output_tokens"]
        w, r = counts["cache_creation_input_tokens"], counts["cache_read_input_tokens"]
    except KeyError:  # pragma: no cover - validated above: every field is set
        i = o = w = r = None
    if (
        type(i) is int
        and type(o) is int
        and 0 <= i <= MAX_TOKEN_COUNT
        and 0 <= o <= MAX_TOKEN_COUNT
        and (w is None or (type(w) is int and 0 <= w <= MAX_TOKEN_COUNT))
        and (r is None or (type(r) is int and 0 <= r <= MAX_TOKEN_COUNT))
    ):
        return
    for name in _USAGE_COUNTS:
        value = counts.get(name)
        if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
            continue
        if value is None and name.startswith("cache_"):
            continue
        raise InvalidEntry(f"cache entry has usage.{name}={value!r}")

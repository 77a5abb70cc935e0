"""Request fingerprints: the cache and dedupe key of a Messages request.

A key is ``"msg1:<scope>:<xxh3-128 hex>"``. The hash covers the canonical orjson encoding
(sorted keys) of everything that can change the answer: the whole request body the SDK would
send — model, system, messages, tools, tool_choice, sampling parameters, max_tokens,
thinking, ``extra_body``, and any parameter this module does not know about — and nothing that
cannot: the API key, ``metadata``, ``stream``, transport options (``timeout``,
``extra_headers``, ``extra_query``) and asyncthrift's own per-request options (``priority``,
``deadline``, ``cache``, ``dedupe``, ...).

Why these choices:

* **xxh3-128 over orjson**, not MD5 over ``json.dumps``: orjson with ``OPT_SORT_KEYS`` is an
  order of magnitude faster than ``json.dumps(sort_keys=True)`` and xxh3 hashes at memory
  speed; 128 bits make accidental collisions irrelevant. This is not a MAC: it keys a cache,
  it does not authenticate anything.
* **Unknown parameters are included.** A needless miss costs one API call; a wrong hit returns
  somebody else's answer. Only options known not to change the answer are excluded
  (`EXCLUDED_PARAMS`).
* **Equal requests share a key.** Content given as a string and as a list holding one plain
  text block is the same request to the API, for message content, ``system`` and
  ``tool_result`` content, so both canonicalise to the string. ``temperature=1`` and
  ``temperature=1.0`` are equal. Parameters set to ``None`` (or the SDK's ``NOT_GIVEN``/
  ``omit``) count as absent. ``extra_body`` is merged into the body as the SDK does.
* **``cache_control`` markers are stripped** (top level, tools, system blocks, message content
  blocks and blocks nested in ``tool_result``). They only tell the server where a prompt-cache
  prefix ends, which changes billing, never the answer; stripping them means adding or moving
  breakpoints (by hand or automatically) keeps the cache warm. They are stripped only at those
  positions, so a tool input schema with a property that happens to be called
  ``cache_control`` still counts.
* **A version prefix** (``msg1``) means a change of canonical form or hash never reads entries
  written in the old format: bump `KEY_VERSION`.
* **Scope.** Entries are scoped per API key by default (`scope_for_key`, a keyed hash that
  never reveals the key), so two tenants never read each other's answers; an empty scope
  (``"_"`` in the key) shares entries globally.

Speed: the common request (string contents, no markers) is never copied; a message, block or
body dict is rebuilt only where something actually changes (copy on write). At 1 KB the cost
is mostly the interpreter's, not the bytes', so `canonical_body` is written for it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any, Final

import orjson
import xxhash
from anthropic import NotGiven, Omit
from pydantic import BaseModel

__all__ = ["EXCLUDED_PARAMS", "KEY_VERSION", "canonical_body", "fingerprint", "scope_for_key"]

KEY_VERSION: Final = "msg1"
"""Bump when the canonical form or the hash changes: old entries then simply stop matching."""

EXCLUDED_PARAMS: Final[frozenset[str]] = frozenset(
    {
        # never part of the answer: credentials, identity and bookkeeping
        "api_key",
        "metadata",
        # `stream` changes the framing of the response, not its content
        "stream",
        # SDK transport options
        "extra_headers",
        "extra_query",
        "timeout",
        "max_retries",
        # asyncthrift's own per-request options
        "priority",
        "deadline",
        "cache",
        "dedupe",
        "cache_ttl",
        "cache_scope",
        "allow_truncated",
        # prompt-cache breakpoint at the top level: billing only (see module docstring)
        "cache_control",
    }
)
"""Top-level request keys that never change the answer and are left out of the key."""

_SORT: Final = orjson.OPT_SORT_KEYS
_dumps: Final = orjson.dumps  # bound once: the 1 KB key costs about 2 µs, lookups show
_hash_hex: Final = xxhash.xxh3_128_hexdigest
_DROP_TYPES: Final = frozenset({type(None), NotGiven, Omit})  # values that mean "absent"
_SKIP: Final = EXCLUDED_PARAMS | {"extra_body"}


def fingerprint(params: Mapping[str, Any], *, scope: str = "") -> str:
    """The cache/dedupe key of a Messages request: ``"msg1:<scope or _>:<32 hex digits>"``.

    `params` are the keyword arguments of ``messages.create`` (the SDK's and asyncthrift's;
    the latter are ignored). `scope` separates tenants: pass `scope_for_key(api_key)` to keep
    each key's answers to itself, or ``""`` to share them. Raises `TypeError` for a value that
    cannot be encoded (for example a generator for ``messages``: materialise it first, the key
    must not consume what the request will send).
    """
    prefix = _GLOBAL_PREFIX if not scope else _scoped_prefix(scope)
    try:
        data = _dumps(canonical_body(params), default=_default, option=_SORT)
    except orjson.JSONEncodeError as exc:
        raise TypeError(
            f"cannot fingerprint this request ({exc}): parameters must be JSON-like (dicts, "
            "lists, tuples, str, numbers, bools, None, pydantic models); materialise "
            "iterators and generators into lists before sending"
        ) from exc
    return prefix + _hash_hex(data)


_GLOBAL_PREFIX: Final = f"{KEY_VERSION}:_:"


@functools.lru_cache(maxsize=256)
def _scoped_prefix(scope: str) -> str:
    if ":" in scope:
        raise ValueError(f"fingerprint scope must not contain ':', got {scope!r}")
    return f"{KEY_VERSION}:{scope}:"


@functools.lru_cache(maxsize=256)
def scope_for_key(api_key: str) -> str:
    """A 16-hex-digit scope naming `api_key` without revealing it.

    BLAKE2b with a fixed personalisation: the same key always gives the same scope in every
    process (so a shared Redis works), a different key gives a different one, and the key
    itself — or anything that would help guess it — never reaches the cache.
    """
    return hashlib.blake2b(api_key.encode(), digest_size=8, person=b"asyncthrift.scop").hexdigest()


def canonical_body(params: Mapping[str, Any]) -> dict[str, Any]:
    """The answer-relevant part of `params` in canonical form (shared, not deep-copied).

    ``fingerprint`` hashes ``orjson.dumps`` of this with sorted keys. It builds new
    containers only where something changes and shares the rest with `params`: treat the
    result as read-only.

    This is the hot path of every cached or deduplicated request, so it is written for
    CPython's interpreter, measured at each step (``bench/bench_fingerprint.py``): one loop
    over the top-level items that drops excluded keys and absent values together (a truth
    test first, so only falsy values pay for the type check), and one pass over the messages
    that decides the usual shapes inline, without a call per message. Set algebra on the
    keys, a per-shape plan cache and skipping the walk after a first encoding were all
    measured slower.
    """
    if "extra_body" in params:
        extra = params["extra_body"]
        if isinstance(extra, Mapping):
            params = {**params, **extra}
    body: dict[str, Any] = {}
    for k, v in params.items():
        if k in _SKIP or (not v and type(v) in _DROP_TYPES):
            continue  # excluded, or None / NOT_GIVEN / omit meaning "absent"
        body[k] = v
    v = body.get("temperature")
    if type(v) is int:
        body["temperature"] = float(v)
    v = body.get("top_p")
    if type(v) is int:
        body["top_p"] = float(v)
    v = body.get("messages")
    if type(v) is list:
        # A single-turn request with string content (the FAQ shape) needs no walk at all.
        if len(v) != 1 or type(m := v[0]) is not dict or type(m.get("content")) is not str:
            body["messages"] = _canon_messages(v)
    elif isinstance(v, tuple):
        body["messages"] = _canon_messages(v)
    v = body.get("system")
    if v is not None and type(v) is not str and isinstance(v, list | tuple):
        body["system"] = _canon_content(v)
    v = body.get("tools")
    if v is not None and (type(v) is list or isinstance(v, tuple)):
        body["tools"] = _canon_list(v)
    return body


def _canon_messages(messages: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    """`messages` in canonical form; the same object when nothing changes (the usual case).

    The hot loop of fingerprinting long conversations. String content, one plain text block
    and a block list that needs no change are decided inline; `out` stays None (no copy)
    until the first message that changes.
    """
    out: list[Any] | None = None
    for i, m in enumerate(messages):
        if type(m) is dict:
            c = m.get("content")
            if type(c) is str:
                if out is not None:
                    out.append(m)
                continue
            if type(c) is list:
                if len(c) == 1:
                    b = c[0]
                    if (
                        type(b) is dict
                        and b.get("type") == "text"
                        and (len(b) == 2 or (len(b) == 3 and "cache_control" in b))
                        and type(b.get("text")) is str
                    ):
                        if out is None:
                            out = list(messages[:i])
                        out.append({**m, "content": b["text"]})
                        continue
                for b in c:
                    if (
                        type(b) is not dict
                        or "cache_control" in b
                        or (b.get("type") == "tool_result" and type(b.get("content")) is not str)
                    ):
                        break  # this list needs the full treatment
                else:
                    if out is not None:
                        out.append(m)
                    continue
            if type(c) is not str and isinstance(c, list | tuple):
                nc = _canon_content(c)
                nm = m if nc is c else {**m, "content": nc}
            else:
                nm = m
        else:
            nm = _canon_odd_message(m)
        if out is None:
            if nm is m:
                continue
            out = list(messages[:i])
        out.append(nm)
    return messages if out is None else out


def _canon_odd_message(m: Any) -> Any:
    """A message given as a pydantic model or a dict subclass."""
    if isinstance(m, BaseModel):
        m = m.model_dump(mode="json", exclude_none=True)
    elif isinstance(m, Mapping):
        m = dict(m)
    else:
        return m  # not JSON-like: orjson will say so
    content = m.get("content")
    if isinstance(content, list | tuple):
        m["content"] = _canon_content(content)
    return m


def _canon_content(blocks: list[Any] | tuple[Any, ...]) -> str | list[Any] | tuple[Any, ...]:
    """A content list in canonical form: one plain text block becomes its string."""
    new = _canon_list(blocks)
    if len(new) == 1:
        b = new[0]
        if type(b) is dict and len(b) == 2 and b.get("type") == "text":
            text = b.get("text")
            if type(text) is str:
                return text
    return new


def _canon_list(blocks: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    """`blocks` with each block canonical; the same object if nothing changed."""
    out: list[Any] | None = None
    for i, b in enumerate(blocks):
        if type(b) is dict and "cache_control" not in b and b.get("type") != "tool_result":
            nb = b  # the common case, decided without a call
        else:
            nb = _canon_block(b)
        if nb is not b and out is None:
            out = list(blocks[:i])
        if out is not None:
            out.append(nb)
    return blocks if out is None else out


def _canon_block(b: Any) -> Any:
    if type(b) is not dict:
        if isinstance(b, BaseModel):
            # The SDK sends models as their JSON dump; unset/None fields mean "absent".
            b = b.model_dump(mode="json", exclude_none=True)
        if not isinstance(b, dict):
            return b
    if "cache_control" in b:
        b = {k: v for k, v in b.items() if k != "cache_control"}
    if b.get("type") == "tool_result":
        content = b.get("content")
        if type(content) is not str and isinstance(content, list | tuple):
            nc = _canon_content(content)
            if nc is not content:
                b = {**b, "content": nc}
    return b


def _default(obj: Any) -> Any:
    """orjson fallback for what it does not encode natively."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", exclude_none=True)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-like")

"""Request fingerprints: equal requests share a key, answer-changing edits change it."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest
import xxhash
from anthropic import NOT_GIVEN, omit
from anthropic.types import TextBlock, ToolUseBlock
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncthrift.stores.cache.keys import (
    EXCLUDED_PARAMS,
    KEY_VERSION,
    canonical_body,
    fingerprint,
    scope_for_key,
)

KEY_RE = re.compile(r"^msg1:(_|[0-9a-f]{16}):[0-9a-f]{32}$")


def base() -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "You answer FAQ questions briefly.",
        "messages": [
            {"role": "user", "content": "What is the refund policy?"},
            {"role": "assistant", "content": "Thirty days."},
            {"role": "user", "content": "And for digital goods?"},
        ],
    }


def test_key_format_and_version() -> None:
    key = fingerprint(base())
    assert KEY_RE.match(key), key
    assert key.startswith(f"{KEY_VERSION}:_:")
    scoped = fingerprint(base(), scope=scope_for_key("sk-ant-123"))
    assert KEY_RE.match(scoped), scoped
    assert scoped.split(":")[2] == key.split(":")[2]  # same body hash, other scope


def test_deterministic_and_key_order_free() -> None:
    a = base()
    b = {k: a[k] for k in reversed(list(a))}
    b["messages"] = [{"content": m["content"], "role": m["role"]} for m in a["messages"]]
    assert fingerprint(a) == fingerprint(b) == fingerprint(copy.deepcopy(a))


def test_string_content_equals_one_text_block() -> None:
    a = base()
    b = copy.deepcopy(a)
    b["messages"][0]["content"] = [{"type": "text", "text": "What is the refund policy?"}]
    b["messages"][2]["content"] = ({"text": "And for digital goods?", "type": "text"},)
    b["system"] = [{"type": "text", "text": "You answer FAQ questions briefly."}]
    assert fingerprint(a) == fingerprint(b)


def test_two_blocks_or_extra_fields_are_not_collapsed() -> None:
    a = base()
    two = copy.deepcopy(a)
    two["messages"][0]["content"] = [
        {"type": "text", "text": "What is the refund "},
        {"type": "text", "text": "policy?"},
    ]
    cited = copy.deepcopy(a)
    cited["messages"][0]["content"] = [
        {"type": "text", "text": "What is the refund policy?", "citations": [{"x": 1}]}
    ]
    keys = {fingerprint(a), fingerprint(two), fingerprint(cited)}
    assert len(keys) == 3


def test_tool_result_string_equals_one_text_block() -> None:
    def req(content: Any) -> dict[str, Any]:
        r = base()
        r["messages"].append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": content}],
            }
        )
        return r

    assert fingerprint(req("42")) == fingerprint(req([{"type": "text", "text": "42"}]))
    assert fingerprint(req("42")) != fingerprint(req("43"))


def test_cache_control_markers_are_stripped_where_they_are_markers() -> None:
    a = base()
    a["tools"] = [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]
    b = copy.deepcopy(a)
    eph = {"type": "ephemeral"}
    b["cache_control"] = eph
    b["system"] = [{"type": "text", "text": a["system"], "cache_control": eph}]
    b["messages"][0]["content"] = [
        {
            "type": "text",
            "text": "What is the refund policy?",
            "cache_control": {**eph, "ttl": "1h"},
        }
    ]
    b["tools"][0]["cache_control"] = eph
    assert fingerprint(a) == fingerprint(b)
    # ... but a tool schema property that happens to be named cache_control is content.
    c = copy.deepcopy(a)
    c["tools"][0]["input_schema"]["properties"]["cache_control"] = {"type": "string"}
    assert fingerprint(a) != fingerprint(c)


def test_client_options_do_not_change_the_key() -> None:
    a = base()
    b = {
        **a,
        "metadata": {"user_id": "u-1"},
        "stream": False,
        "priority": "batch",
        "deadline": 3.0,
        "cache": True,
        "dedupe": False,
        "extra_headers": {"x": "y"},
        "extra_query": {"q": "1"},
        "timeout": 30,
        "api_key": "sk-secret",
    }
    assert fingerprint(a) == fingerprint(b)
    assert "api_key" in EXCLUDED_PARAMS and "metadata" in EXCLUDED_PARAMS


def test_absent_none_and_sdk_sentinels_are_equal() -> None:
    a = base()
    b = {**a, "temperature": None, "tools": NOT_GIVEN, "thinking": omit}
    assert fingerprint(a) == fingerprint(b)


def test_int_and_float_sampling_values_are_equal() -> None:
    assert fingerprint({**base(), "temperature": 1}) == fingerprint({**base(), "temperature": 1.0})
    assert fingerprint({**base(), "top_p": 1}) == fingerprint({**base(), "top_p": 1.0})
    assert fingerprint({**base(), "temperature": 0}) != fingerprint({**base(), "temperature": 1})


def test_extra_body_counts_as_body() -> None:
    a = base()
    assert fingerprint({**a, "extra_body": {"temperature": 0.2}}) == fingerprint(
        {**a, "temperature": 0.2}
    )
    assert fingerprint({**a, "extra_body": {"top_k": 5}}) != fingerprint(a)
    # extra_body wins over the keyword, as in the SDK
    assert fingerprint({**a, "temperature": 0.9, "extra_body": {"temperature": 0.2}}) == (
        fingerprint({**a, "temperature": 0.2})
    )


def test_pydantic_blocks_equal_their_dicts() -> None:
    a = base()
    a["messages"][1]["content"] = [{"type": "text", "text": "Thirty days."}]
    b = copy.deepcopy(a)
    b["messages"][1]["content"] = [TextBlock(type="text", text="Thirty days.", citations=None)]
    assert fingerprint(a) == fingerprint(b)
    tool = ToolUseBlock(type="tool_use", id="tu_1", name="lookup", input={"q": "x"})
    c = copy.deepcopy(a)
    c["messages"][1]["content"] = [tool]
    d = copy.deepcopy(a)
    d["messages"][1]["content"] = [
        {"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"q": "x"}}
    ]
    assert fingerprint(c) == fingerprint(d)


def test_tuple_and_list_messages_are_equal() -> None:
    a = base()
    b = {**a, "messages": tuple(a["messages"])}
    assert fingerprint(a) == fingerprint(b)


def test_input_is_not_mutated() -> None:
    a = base()
    a["messages"][0]["content"] = [
        {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    ]
    a["system"] = [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]
    snapshot = copy.deepcopy(a)
    canonical_body(a)
    fingerprint(a)
    assert a == snapshot


def test_common_request_is_not_copied() -> None:
    a = base()
    body = canonical_body(a)
    assert body["messages"] is a["messages"]


def test_scope() -> None:
    a = base()
    assert fingerprint(a, scope="") != fingerprint(a, scope=scope_for_key("k1"))
    assert fingerprint(a, scope=scope_for_key("k1")) != fingerprint(a, scope=scope_for_key("k2"))
    with pytest.raises(ValueError, match="':'"):
        fingerprint(a, scope="a:b")


def test_scope_for_key_hides_the_key() -> None:
    key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
    s = scope_for_key(key)
    assert re.fullmatch(r"[0-9a-f]{16}", s)
    assert s == scope_for_key(key)
    assert s != scope_for_key(key + "x")
    assert key not in fingerprint(base(), scope=s)


def test_unencodable_values_raise_type_error() -> None:
    a = base()
    gen = {**a, "messages": (m for m in a["messages"])}
    with pytest.raises(TypeError, match="materialise"):
        fingerprint(gen)
    with pytest.raises(TypeError):
        fingerprint({**a, "temperature": object()})


# -- property tests ---------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=40)
block_texts = st.lists(texts, min_size=1, max_size=3)
messages_st = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), texts), min_size=1, max_size=6
)
tools_st = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
            "description": texts,
            "input_schema": st.just({"type": "object", "properties": {"q": {"type": "string"}}}),
        }
    ),
    max_size=3,
    unique_by=lambda t: str(t["name"]),
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    req: dict[str, Any] = {
        "model": draw(
            st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"])
        ),
        "max_tokens": draw(st.integers(1, 64_000)),
        "messages": [{"role": r, "content": t} for r, t in draw(messages_st)],
    }
    optional = {
        "system": texts,
        "temperature": st.floats(0, 1, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        "top_k": st.integers(1, 500),
        "stop_sequences": st.lists(texts, min_size=1, max_size=3),
        "tools": tools_st,
        "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"}]),
        "thinking": st.builds(
            lambda b: {"type": "enabled", "budget_tokens": b}, st.integers(1024, 32_000)
        ),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            req[name] = draw(strategy)
    return req


def reorder(obj: Any, rnd: Any) -> Any:
    """The same JSON value with every dict's keys in a random order."""
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: reorder(v, rnd) for k, v in items}
    if isinstance(obj, list):
        return [reorder(v, rnd) for v in obj]
    return obj


def as_blocks(req: dict[str, Any], which: list[bool]) -> dict[str, Any]:
    """`req` with some string contents (and maybe system) given as one text block."""
    out = copy.deepcopy(req)
    for m, flip in zip(out["messages"], which, strict=False):
        if flip and isinstance(m["content"], str):
            m["content"] = [{"type": "text", "text": m["content"]}]
    if which and which[0] and isinstance(out.get("system"), str):
        out["system"] = [{"text": out["system"], "type": "text"}]
    return out


@settings(max_examples=200, deadline=None)
@given(req=requests(), rnd=st.randoms(use_true_random=False), which=st.lists(st.booleans()))
def test_semantically_equal_requests_share_a_key(
    req: dict[str, Any], rnd: Any, which: list[bool]
) -> None:
    key = fingerprint(req)
    assert fingerprint(reorder(req, rnd)) == key
    assert fingerprint(as_blocks(req, which)) == key
    assert fingerprint(reorder(as_blocks(req, which), rnd)) == key
    noisy = {**req, "metadata": {"user_id": "u"}, "priority": "batch", "stream": False}
    assert fingerprint(noisy) == key


def _mutations(req: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, changed copy) for edits that change the answer."""
    out: list[tuple[str, dict[str, Any]]] = []

    def edit(name: str, fn: Any) -> None:
        r = copy.deepcopy(req)
        fn(r)
        out.append((name, r))

    edit("model", lambda r: r.__setitem__("model", r["model"] + "-x"))
    edit("max_tokens", lambda r: r.__setitem__("max_tokens", r["max_tokens"] + 1))
    edit(
        "last text",
        lambda r: r["messages"][-1].__setitem__("content", r["messages"][-1]["content"] + "."),
    )
    edit(
        "first text",
        lambda r: r["messages"][0].__setitem__("content", "!" + r["messages"][0]["content"]),
    )
    edit(
        "role",
        lambda r: r["messages"][0].__setitem__(
            "role", {"user": "assistant", "assistant": "user"}[r["messages"][0]["role"]]
        ),
    )
    edit("append turn", lambda r: r["messages"].append({"role": "user", "content": "more"}))
    edit(
        "drop turn",
        lambda r: (
            r["messages"].pop()
            if len(r["messages"]) > 1
            else r["messages"].append({"role": "user", "content": "x"})
        ),
    )
    edit("system", lambda r: r.__setitem__("system", r.get("system", "") + " Be terse."))
    edit("temperature", lambda r: r.__setitem__("temperature", (r.get("temperature") or 0.0) + 0.5))
    edit("top_p", lambda r: r.__setitem__("top_p", (r.get("top_p") or 0.0) + 0.25))
    edit("top_k", lambda r: r.__setitem__("top_k", (r.get("top_k") or 0) + 1))
    edit("stop", lambda r: r.__setitem__("stop_sequences", [*r.get("stop_sequences", []), "STOP!"]))
    edit(
        "tools",
        lambda r: r.__setitem__(
            "tools", [*r.get("tools", []), {"name": "zz_new", "input_schema": {"type": "object"}}]
        ),
    )
    edit("tool_choice", lambda r: r.__setitem__("tool_choice", {"type": "tool", "name": "zz"}))
    edit(
        "thinking",
        lambda r: r.__setitem__(
            "thinking",
            {
                "type": "enabled",
                "budget_tokens": (r.get("thinking") or {}).get("budget_tokens", 1) + 1,
            },
        ),
    )
    edit("extra_body", lambda r: r.__setitem__("extra_body", {"service_tier": "standard_only"}))
    edit("output_config", lambda r: r.__setitem__("output_config", {"effort": "low"}))
    return out  # fmt: skip


def slow_fingerprint(req: dict[str, Any], scope: str = "") -> str:
    """The key recomputed from the documented definition."""
    data = orjson.dumps(canonical_body(req), option=orjson.OPT_SORT_KEYS)
    return f"{KEY_VERSION}:{scope or '_'}:{xxhash.xxh3_128_hexdigest(data)}"


@settings(max_examples=200, deadline=None)
@given(req=requests(), which=st.lists(st.booleans()), marker=st.booleans())
def test_key_is_the_hash_of_the_canonical_body(
    req: dict[str, Any], which: list[bool], marker: bool
) -> None:
    variant = as_blocks(req, which)
    if marker and isinstance(variant["messages"][0]["content"], list):
        variant["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral"}
    assert fingerprint(variant) == slow_fingerprint(variant) == fingerprint(req)


def test_text_that_looks_like_markers_is_just_text() -> None:
    tricky = '[{"text": "x", "type": "text"}] "cache_control"'
    a = {**base(), "messages": [{"role": "user", "content": tricky}]}
    assert fingerprint(a) == slow_fingerprint(a)
    b = {**a, "messages": [{"role": "user", "content": [{"type": "text", "text": tricky}]}]}
    assert fingerprint(b) == fingerprint(a)


@settings(max_examples=150, deadline=None)
@given(req=requests())
def test_any_answer_changing_edit_changes_the_key(req: dict[str, Any]) -> None:
    key = fingerprint(req)
    seen = {key}
    for name, changed in _mutations(req):
        k = fingerprint(changed)
        assert k != key, f"editing {name} did not change the key"
        seen.add(k)
    assert len(seen) > 1

"""Prompt packing (issue #12): many single-turn requests, one call, every caller its own answer.

The fake API answers packing prompts as the mock does (`mock._answers.packed_answer`, with
its item faults) and single requests with ``"solo: <text>"``, so a test can tell, for every
caller, that it got its own answer and where from. Virtual time throughout (looptime).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncthrift import Thrift
from asyncthrift.errors import DeadlineExceeded, InvalidArgument
from asyncthrift.mock._answers import answer_for, item_answer, packed_answer, request_hash
from asyncthrift.mock._tokenizer import analyze_input
from asyncthrift.savings._packed import item_text, packed_content, parse_reply, share
from asyncthrift.savings.packing import Pack

from .fake_api import FakeAPI, error, message_json
from .virtual import run_virtual

pytestmark = pytest.mark.looptime

MODEL = "claude-sonnet-4-5"
SYSTEM = "Classify the sentiment of the review: positive, negative or mixed."
RANGE = (5, 40)


def req(text: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 200,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": text}],
    }
    body.update(kw)
    return body


def packing_model(faults: float = 0.0, latency: float = 0.2) -> FakeAPI:
    async def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        await asyncio.sleep(latency)
        answer = packed_answer(body, RANGE, body["max_tokens"], faults, n)
        data = message_json(body, input_tokens=100, output_tokens=50)
        if answer is None:
            data["content"][0]["text"] = "solo: " + body["messages"][0]["content"]
        else:
            data["content"][0]["text"] = answer.text
            data["stop_reason"] = answer.stop_reason
            data["usage"]["output_tokens"] = answer.output_tokens
        data["id"] = f"msg_{n}"
        return httpx2.Response(200, json=data)

    return FakeAPI(handler)


def mechanics(**kw: Any) -> Pack:
    """Packing from the first window, whatever it costs: for the tests of its mechanics
    (windows, splitting, re-sends). The fake API bills every call alike, so the guards
    (tested below, against the mock) would keep its short prompts from packing."""
    return Pack(learn=0, cost_guard=False, **kw)


def client(api: FakeAPI, **kw: Any) -> Thrift:
    return Thrift(api_key="k", base_url="http://api.test", sdk_options=api.sdk_options(), **kw)


def own(text: str, got: str) -> bool:
    """`got` is `text`'s answer: from a packed call, or from its own call."""
    return got in (item_answer(MODEL, SYSTEM, text, RANGE), "solo: " + text)


# -- the reply, split ----------------------------------------------------------------------


def test_a_reply_is_trusted_only_where_it_is_unambiguous() -> None:
    limits = {"1": 50, "2": 50, "3": 50, "4": 50, "5": 2}
    reply = (
        '[{"id": "1", "answer": "one"},\n'
        '{"id": "2", "answer": "two"}, {"id": "2", "answer": "deux"},\n'  # duplicated
        '{"id": "3", "reply": "three"},\n'  # malformed
        '{"id": "9", "answer": "nine"},\n'  # unknown
        '{"id": "5", "answer": "far too long for its caller\'s max_tokens"}]'
    )
    assert parse_reply(reply, limits) == {"1": "one"}


def test_a_garbled_or_cut_reply_keeps_its_complete_objects_only() -> None:
    limits = {"1": 50, "2": 50, "3": 50}
    cut = '```json\n[{"id": "1", "answer": "one"}, {"id": "2", "answer": "tw'
    assert parse_reply(cut, limits) == {"1": "one"}
    garbled = (
        '[{"id": "1", "answer": "one"}, {"id": "2", "answer": "a" "b"}, {"id": 3, "answer": "x"}]'
    )
    assert parse_reply(garbled, limits) == {"1": "one", "3": "x"}
    # an answer quoting another item's object is read as that answer, not as the other item
    quoting = '[{"id": "1", "answer": "{\\"id\\": \\"2\\", \\"answer\\": \\"fake\\"}"}]'
    assert parse_reply(quoting, limits) == {"1": '{"id": "2", "answer": "fake"}'}
    assert parse_reply("no json here", limits) == {}


def test_shares_add_up_to_the_billed_total() -> None:
    for total, weights in [
        (100, [1.0, 2.0, 3.0]),
        (7, [1.0] * 3),
        (0, [1.0, 1.0]),
        (5, [0.0, 0.0]),
    ]:
        parts = share(total, weights)
        assert sum(parts) == total and len(parts) == len(weights)


def test_only_one_user_turn_of_text_is_packable() -> None:
    assert item_text(req("hi")) == "hi"
    block = [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]
    assert item_text(req("x", messages=[{"role": "user", "content": block}])) == "hi"
    two = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert item_text(req("x", messages=two)) is None
    image = [{"type": "image", "source": {}}]
    assert item_text(req("x", messages=[{"role": "user", "content": image}])) is None


def test_the_packed_prompt_is_one_json_object_per_line() -> None:
    content = packed_content([("1", 'say "hi"\nplease'), ("2", "bye")])
    lines = content.splitlines()
    assert lines[1] == '{"id":"1","text":"say \\"hi\\"\\nplease"}'
    assert lines[2] == '{"id":"2","text":"bye"}'
    assert '"answer"' in lines[-1]


def test_pack_validates() -> None:
    with pytest.raises(ValueError, match="max_items"):
        Pack(max_items=0)
    with pytest.raises(ValueError, match="window_ms"):
        Pack(window_ms=-1)
    with pytest.raises(TypeError, match="pack="):
        Thrift(api_key="k", pack="yes")  # type: ignore[arg-type]


# -- end to end --------------------------------------------------------------------------


async def test_a_window_of_requests_goes_out_as_one_call() -> None:
    api = packing_model()
    async with client(api, pack=mechanics(window_ms=100)) as c:
        texts = [f"review {i}: fine" for i in range(10)]
        msgs = await asyncio.gather(*(c.messages.create(**req(t)) for t in texts))
        assert len(api.calls) == 1
        for t, m in zip(texts, msgs, strict=True):
            assert m.content[0].text == item_answer(MODEL, SYSTEM, t, RANGE)  # type: ignore[union-attr]
            assert m.stop_reason == "end_turn"
        s = c.stats()
        assert (s.requests, s.upstream_calls, s.packed_calls, s.packed_items) == (10, 1, 1, 10)
        assert s.packing_calls_saved == 9 and s.packing_tokens_saved > 0
        assert sum(m.usage.input_tokens for m in msgs) == s.input_tokens == 100
        assert sum(m.usage.output_tokens for m in msgs) == s.output_tokens
        assert len({m.id for m in msgs}) == 10


async def test_the_window_is_bounded_by_max_items_priority_and_deadline() -> None:
    api = packing_model(latency=0.0)
    async with client(api, pack=mechanics(window_ms=1000, max_items=4), dedupe=False) as c:
        t0 = asyncio.get_running_loop().time()
        await asyncio.gather(*(c.messages.create(**req(f"a{i}")) for i in range(8)))
        assert len(api.calls) == 2 and api.calls[1] - t0 == pytest.approx(0.0, abs=1e-6)
        await asyncio.gather(
            c.messages.create(**req("b1")), c.messages.create(**req("b2", priority="interactive"))
        )
        assert api.calls[-1] - api.calls[-2] == pytest.approx(0.010, abs=1e-6)
        await asyncio.gather(
            c.messages.create(**req("c1")), c.messages.create(**req("c2", deadline=0.4))
        )
        assert api.calls[-1] - api.calls[-2] == pytest.approx(0.1, abs=1e-6)


async def test_different_prompts_and_opted_out_requests_are_not_packed() -> None:
    api = packing_model(latency=0.0)
    async with client(api, pack=mechanics()) as c:
        await asyncio.gather(
            c.messages.create(**req("a")),
            c.messages.create(**req("b", system="Another system prompt.")),
            c.messages.create(**req("c", pack=False)),
            c.messages.create(**req("d", stop_sequences=["x"])),
        )
        assert len(api.calls) == 4 and c.stats().packed_calls == 0


async def test_pack_per_request_without_a_client_default() -> None:
    api = packing_model(latency=0.0)
    async with client(api) as c:
        msgs = await asyncio.gather(
            *(c.messages.create(**req(f"r{i}", pack=True)) for i in range(3))
        )
        assert c.packer is not None and c.packer.config == Pack()
        # the default guards: a new group's first `learn` requests go alone, to learn it
        assert len(api.calls) == 3 and c.stats().pack_alone == 3
        assert all(own(f"r{i}", m.content[0].text) for i, m in enumerate(msgs))  # type: ignore[union-attr]


async def test_a_reply_cut_by_max_tokens_resends_what_it_did_not_answer() -> None:
    api = packing_model(latency=0.0)
    # each item needs up to 40 tokens; the packed call may have 8 + 5 * (12 + 10)
    async with client(api, pack=mechanics(max_output_tokens=118)) as c:
        texts = [f"long {i}" for i in range(5)]
        msgs = await asyncio.gather(*(c.messages.create(**req(t, max_tokens=10)) for t in texts))
        for t, m in zip(texts, msgs, strict=True):
            assert m.content[0].text == "solo: " + t or own(t, m.content[0].text)  # type: ignore[union-attr]
        assert c.stats().pack_resent >= 1


async def test_twins_share_one_item_and_each_item_is_cached_under_its_own_key() -> None:
    api = packing_model(latency=0.0)
    async with client(api, pack=mechanics(), cache="memory") as c:
        texts = ["q1", "q2", "q1", "q3", "q2"]
        first = await asyncio.gather(*(c.messages.create(**req(t)) for t in texts))
        assert len(api.calls) == 1 and c.stats().packed_items == 3
        again = await c.messages.create(**req("q2", pack=False))
        assert again.content[0].text == first[1].content[0].text  # type: ignore[union-attr]
        s = c.stats()
        assert len(api.calls) == 1 and s.cache_calls_saved == 1 and s.dedupe_calls_saved == 2


async def test_a_failed_packed_call_falls_back_to_single_calls() -> None:
    async def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        if packed_answer(body, RANGE, body["max_tokens"], 0.0, n) is not None:
            return httpx2.Response(
                400,
                json={"type": "error", "error": {"type": "invalid_request_error", "message": "x"}},
            )
        data = message_json(body)
        data["content"][0]["text"] = "solo: " + body["messages"][0]["content"]
        return httpx2.Response(200, json=data)

    api = FakeAPI(handler)
    async with client(api, pack=mechanics()) as c:
        msgs = await asyncio.gather(*(c.messages.create(**req(f"f{i}")) for i in range(3)))
        assert [m.content[0].text for m in msgs] == [f"solo: f{i}" for i in range(3)]  # type: ignore[union-attr]
        assert len(api.calls) == 4 and c.stats().pack_resent == 3


async def test_without_pack_the_path_is_unchanged() -> None:
    api = packing_model(latency=0.0)
    async with client(api, dedupe=False) as c:
        # twins at once: no window holds them, no twin in flight is shared, both go out
        await asyncio.gather(c.messages.create(**req("x")), c.messages.create(**req("x")))
        s = c.stats()
        assert c.packer is None and len(api.calls) == 2
        assert (s.pack_alone, s.packed_calls, s.dedupe_calls_saved) == (0, 0, 0)


# -- property: faults, windows, deadlines, cancellations ------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=0.5),  # arrival
            st.integers(min_value=0, max_value=12),  # which text (twins share one)
            st.sampled_from([None, 0.05, 1.0]),  # deadline
            st.sampled_from(["default", "interactive", "batch"]),
            st.sampled_from([None, 0.0, 0.1, 0.3]),  # cancel after
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=0, max_value=2**16),
    st.sampled_from([0, 2]),  # learn: pack at once, or after teachers (the others wait)
)
def test_every_caller_gets_its_own_answer_exactly_once(
    plan: list[tuple[float, int, float | None, str, float | None]],
    max_items: int,
    seed: int,
    learn: int,
) -> None:
    async def scenario() -> None:
        api = packing_model(faults=0.1, latency=0.15)
        rng = random.Random(seed)
        window = rng.choice([20, 150])
        cfg = mechanics(window_ms=window, max_items=max_items, pause_s=0.2)
        if learn:
            cfg = Pack(window_ms=window, max_items=max_items, learn=learn, pause_s=0.2)
        async with client(api, pack=cfg, dedupe=rng.random() < 0.5) as c:

            async def one(at: float, k: int, deadline: float | None, prio: str) -> str:
                await asyncio.sleep(at)
                m = await c.messages.create(**req(f"text {k}", deadline=deadline, priority=prio))
                assert m.stop_reason == "end_turn"
                return m.content[0].text  # type: ignore[union-attr]

            tasks = [asyncio.create_task(one(at, k, d, p)) for at, k, d, p, _ in plan]
            for task, (at, _, _, _, cancel) in zip(tasks, plan, strict=True):
                if cancel is not None:
                    asyncio.get_running_loop().call_later(at + cancel, task.cancel)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for (_, k, deadline, _, cancel), r in zip(plan, results, strict=True):
                if isinstance(r, asyncio.CancelledError):
                    assert cancel is not None
                    continue
                if isinstance(r, DeadlineExceeded):  # the first answer teaches the budget
                    assert deadline is not None
                    continue
                assert isinstance(r, str), r
                assert own(f"text {k}", r)
            s = c.stats()
            assert s.succeeded + s.failed == len(plan) or s.in_flight == 0
            # every caller is done: no window left open (closing the client would hide one)
            assert c.packer is not None and c.packer.open_windows == 0
        await asyncio.sleep(1)

    run_virtual(scenario())


async def test_client_pack_answers_a_list_in_order() -> None:
    api = packing_model(latency=0.0)
    async with client(api, pack=mechanics()) as c:
        texts = [f"item {i}" for i in range(6)]
        msgs = await c.pack([req(t) for t in texts])
        assert len(api.calls) == 1
        assert [m.content[0].text for m in msgs] == [  # type: ignore[union-attr]
            item_answer(MODEL, SYSTEM, t, RANGE) for t in texts
        ]


# -- with model fallback ----------------------------------------------------------------------


async def test_a_packed_call_falls_back_as_a_whole_and_its_items_are_not_cached() -> None:
    other = "claude-haiku-4-5"

    def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        if body["model"] == MODEL:
            return error(529, "overloaded_error", {"retry-after": "30"})
        answer = packed_answer(body, RANGE, body["max_tokens"], 0.0, n)
        assert answer is not None  # only the packed call is sent
        data = message_json(body, input_tokens=100, output_tokens=answer.output_tokens)
        data["content"][0]["text"] = answer.text
        return httpx2.Response(200, json=data)

    seen: list[str] = []

    def record(body: dict[str, Any], n: int) -> Any:
        seen.append(body["model"])
        return handler(body, n)

    api = FakeAPI(record)
    async with client(api, pack=mechanics(), cache="memory", fallback={MODEL: [other]}) as c:
        texts = [f"item {i}" for i in range(3)]
        msgs = await c.pack([req(t) for t in texts])
        assert [m.model for m in msgs] == [other] * 3
        assert [m.content[0].text for m in msgs] == [  # type: ignore[union-attr]
            item_answer(other, SYSTEM, t, RANGE) for t in texts
        ]
        assert seen == [MODEL, other]
        s = c.stats()
        assert s.fallbacks == 3 and s.packed_calls == 1 and s.packed_items == 3
        await c.pack([req(t) for t in texts])  # not cached as MODEL's answers: asked again
        assert len(seen) == 4 and c.stats().cache_hits == 0


# -- never more calls, never more dollars (issue #21) ------------------------------------------

MOCK_RANGE = (16, 256)  # the mock's default answer lengths


def billed_model(
    faults: float = 0.0, output_range: tuple[int, int] = MOCK_RANGE, log: list[int] | None = None
) -> FakeAPI:
    """Answers and bills as the mock does (its answers, its tokenizer, its packed replies,
    cut at max_tokens), in virtual time: 200 ms + 1 ms per output token. `log` collects
    each packed call's ``max_tokens``."""

    async def handler(body: dict[str, Any], n: int) -> httpx2.Response:
        packed = packed_answer(body, output_range, body["max_tokens"], faults, n)
        if packed is not None and log is not None:
            log.append(body["max_tokens"])
        answer = (
            packed
            if packed is not None
            else answer_for(request_hash(body), output_range, body["max_tokens"])
        )
        await asyncio.sleep(0.2 + 0.001 * answer.output_tokens)
        data = message_json(
            body, input_tokens=analyze_input(body).total, output_tokens=answer.output_tokens
        )
        data["content"][0]["text"] = answer.text
        data["stop_reason"] = answer.stop_reason
        data["id"] = f"msg_{n}"
        return httpx2.Response(200, json=data)

    return FakeAPI(handler)


LONG_SYSTEM = "You answer questions about the shop's policies. " + " ".join(
    f"Policy {i}: an order may be returned within {i} days of its delivery." for i in range(120)
)


async def classify(pack: Any, max_tokens: int, *, system: str = SYSTEM, n: int = 40) -> Any:
    """The issue's workload: `n` one-word classification requests, all at once."""
    api = billed_model()
    async with client(api, pack=pack) as c:
        words = ["great", "awful", "fine", "meh", "superb", "bad", "ok", "love"]
        await asyncio.gather(
            *(
                c.messages.create(
                    **req(
                        f"Review {i}: {words[i % 8]} product", max_tokens=max_tokens, system=system
                    )
                )
                for i in range(n)
            )
        )
        return c.stats()


@pytest.mark.parametrize("max_tokens", [16, 64])
async def test_answers_longer_than_max_tokens_cost_no_call_and_no_dollar_more(
    max_tokens: int,
) -> None:
    off = await classify(False, max_tokens)
    on = await classify(True, max_tokens)
    assert off.upstream_calls == 40
    assert on.upstream_calls <= off.upstream_calls, (on.upstream_calls, on.pack_resent)
    assert on.cost_usd <= off.cost_usd * 1.0001, (on.cost_usd, off.cost_usd)
    # learnt from the group's first answers alone: they run long, so packing is off, and
    # stats() says so (and why)
    assert on.pack_paused == on.pack_paused_long_answers == 1
    assert on.pack_paused_at > 0 and on.pack_resent == 0 and on.pack_alone == 40


async def test_a_short_shared_prompt_is_not_packed_at_a_loss_a_long_one_is_packed() -> None:
    # answers fit, but the system prompt is too short to pay for the answers' JSON wrapping
    off = await classify(False, 400)
    on = await classify(True, 400)
    assert on.upstream_calls <= off.upstream_calls and on.cost_usd <= off.cost_usd * 1.0001
    assert on.packed_calls == 0 and on.pack_alone == 40
    # a long shared prompt: packing pays, in calls and in dollars
    off = await classify(False, 400, system=LONG_SYSTEM)
    on = await classify(True, 400, system=LONG_SYSTEM)
    assert on.packed_calls >= 2 and on.pack_resent == 0
    assert on.upstream_calls < off.upstream_calls / 3
    assert on.cost_usd < off.cost_usd * 0.6, (on.cost_usd, off.cost_usd)
    assert on.pack_alone == Pack().learn  # the group's teachers, and nothing else


async def test_a_group_whose_replies_are_garbled_is_paused_then_resumed() -> None:
    api = billed_model(faults=0.6)
    cfg = mechanics(pause_s=60.0)
    async with client(api, pack=cfg, dedupe=False) as c:

        async def burst(tag: str) -> None:
            await asyncio.gather(*(c.messages.create(**req(f"{tag} {i}")) for i in range(16)))

        await burst("a")
        s = c.stats()
        assert s.packed_calls == 1 and s.pack_paused == s.pack_paused_resends == 1
        calls = s.upstream_calls
        await burst("b")  # off: alone, no packed call
        s = c.stats()
        assert s.packed_calls == 1 and s.pack_alone == 16 and s.upstream_calls == calls + 16
        await asyncio.sleep(61.0)  # the pause is over: packing is tried again
        await burst("c")
        assert c.stats().packed_calls == 2


async def test_the_packed_max_tokens_is_learnt_from_the_replies() -> None:
    sent: list[int] = []
    api = billed_model(output_range=(5, 40), log=sent)
    async with client(api, pack=mechanics(), dedupe=False) as c:
        for tag in ("a", "b"):
            await asyncio.gather(
                *(c.messages.create(**req(f"{tag} {i}", max_tokens=700)) for i in range(10))
            )
        s = c.stats()
    assert s.packed_calls == 2 and s.pack_resent == 0  # the second reply was not cut
    # the first: every item at its caller's limit; the second: what the replies take
    assert sent[0] == 10 * (700 + 12) + 8
    assert 10 * 20 < sent[1] < 10 * 100, sent


def test_an_answers_length_is_calibrated_by_the_replys_own_usage() -> None:
    answer = "word " * 16  # 20 tokens by the local estimate (4 characters a token)
    reply = '[{"id": "1", "answer": "' + answer + '"}]'
    assert parse_reply(reply, {"1": 18}) == {}  # too long by the estimate
    # the reply's usage says a token is 1.25 estimated tokens long here: 16 tokens, it fits
    assert parse_reply(reply, {"1": 18}, ratio=0.8) == {"1": answer}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"learn": -1}, r"Pack\.learn must be an int >= 0, got -1"),
        ({"learn": 1.5}, r"Pack\.learn must be an int >= 0, got 1\.5"),
        ({"max_resend_share": 1.5}, r"Pack\.max_resend_share must be a share in \[0, 1\]"),
        ({"pause_s": -1.0}, r"Pack\.pause_s must be seconds >= 0, got -1\.0"),
        ({"pause_s": float("inf")}, r"Pack\.pause_s must be seconds >= 0"),
        ({"window_ms": -1}, r"Pack\.window_ms must be milliseconds >= 0, got -1"),
        ({"max_items": 0}, r"Pack\.max_items must be an int >= 1, got 0"),
    ],
)
def test_pack_validates_its_guards(bad: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        Pack(**bad)  # type: ignore[arg-type]


def test_pack_cost_guard_is_a_bool() -> None:
    with pytest.raises(TypeError, match="cost_guard"):
        Pack(cost_guard=1)  # type: ignore[arg-type]


async def test_a_new_groups_first_requests_teach_it_and_the_others_wait_for_them() -> None:
    api = billed_model()
    async with client(api, pack=True) as c:
        texts = [f"Question {i}: may I return item {i}?" for i in range(12)]
        msgs = await asyncio.gather(
            *(c.messages.create(**req(t, system=LONG_SYSTEM, max_tokens=400)) for t in texts)
        )
        s = c.stats()
        # three alone (as without packing), the nine others in one packed call after them
        assert s.pack_alone == 3 and s.packed_calls == 1 and s.packed_items == 9
        assert s.upstream_calls == 4 and s.pack_resent == 0 and s.pack_paused == 0
        for t, m in zip(texts, msgs, strict=True):
            body = req(t, system=LONG_SYSTEM, max_tokens=400)
            solo = answer_for(request_hash(body), MOCK_RANGE, 400).text
            assert m.content[0].text in (solo, item_answer(MODEL, LONG_SYSTEM, t, MOCK_RANGE))  # type: ignore[union-attr]

"""History compression on repetitive support chats: tokens saved, answers unchanged."""

from __future__ import annotations

from typing import Any

from asyncthrift import Thrift
from asyncthrift.mock import MockServer
from asyncthrift.savings.compression import Compressor, enable_compression

MODEL = "claude-sonnet-4-5"
GREETING = "Thank you for contacting Acme support, my name is Dana and I am happy to help today."
DISCLAIMER = (
    "Please note that refunds are processed within five to seven business days after the "
    "returned item reaches our warehouse. For your security we never ask for your full card "
    "number over chat. "
)
ORDER = "My order number is 88812 and it was placed on the third of March for two blue kettles."
CODE = "```\nGET /v1/orders/88812\nAuthorization: Bearer ...\n```"


def support_chat(turns: int = 12) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages.append(
            {"role": "user", "content": f"{ORDER} Question {i}: where is parcel {i} now? {CODE}"}
        )
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": f"{GREETING} {DISCLAIMER}Parcel {i} left depot {i}."},
                ],
            }
        )
    messages.append({"role": "user", "content": f"{ORDER} {ORDER} Can I change the address?"})
    return messages


def test_drops_repeats_but_never_the_last_turn_code_or_tools() -> None:
    chat = support_chat()
    tool = {"type": "tool_result", "tool_use_id": "t1", "content": DISCLAIMER * 3}
    chat[3]["content"].append(tool)
    compressor = Compressor(min_tokens=100)
    out, saved = compressor.compress(chat)
    assert saved > 0 and compressor.sentences_dropped > 20
    assert out[-1] == chat[-1]  # the question being answered is untouched
    assert out[0] == chat[0]  # the first occurrence stays
    assert out[3]["content"][-1] == tool  # tool payloads are never touched
    for m in out[:-1]:
        if m["role"] == "user":
            assert CODE in m["content"]  # code blocks are kept verbatim
    later = out[5]["content"][0]["text"]
    assert GREETING not in later and "Parcel 2 left depot 2." in later
    assert chat[5]["content"][0]["text"].startswith(GREETING)  # the input is not modified


def test_short_histories_are_sent_as_they_are() -> None:
    chat = support_chat(2)
    out, saved = Compressor().compress(chat)
    assert saved == 0 and out == chat


async def test_on_a_client_tokens_saved_and_answers_unchanged() -> None:
    chat = support_chat()
    async with MockServer(answer_from="last_turn") as mock:
        async with Thrift(api_key="k", base_url=mock.base_url, cache=None) as plain:
            before = await plain.messages.create(model=MODEL, max_tokens=64, messages=chat)
        tokens_plain = mock.counters.input_tokens
        async with Thrift(api_key="k", base_url=mock.base_url, cache=None) as client:
            compressor = enable_compression(client, Compressor(min_tokens=100))
            after = await client.messages.create(model=MODEL, max_tokens=64, messages=chat)
            stats = client.stats()
        tokens_compressed = mock.counters.input_tokens - tokens_plain
    assert after.content == before.content  # the answer to the last turn is unchanged
    assert tokens_compressed < 0.7 * tokens_plain
    assert stats.compression_tokens_saved == compressor.tokens_saved > 0
    assert before.usage.input_tokens - after.usage.input_tokens > 0.3 * before.usage.input_tokens

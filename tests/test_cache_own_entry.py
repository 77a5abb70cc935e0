"""An in-process cache's entries are validated once, not on every hit (`OwnEntry`), and a
hit still gets a message of its own; entries from anywhere else are validated every time."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
import pytest
from anthropic._models import construct_type
from anthropic.types import Message

from asyncthrift.stores.cache import MemoryCache
from asyncthrift.stores.cache._clone import clone_model
from asyncthrift.stores.cache._written import WrittenEntries
from asyncthrift.stores.cache.base import (
    REQUEST_ID_KEY,
    InvalidEntry,
    OwnEntry,
    decode_message,
    encode_message,
    encode_own,
)
from tests.test_cache import MESSAGES, sdk_message


@pytest.mark.parametrize("over", list(MESSAGES.values()), ids=list(MESSAGES))
def test_an_own_entry_decodes_equal_to_the_original_every_time(over: dict[str, Any]) -> None:
    msg = sdk_message(**over)
    object.__setattr__(msg, "_request_id", "req_original")
    entry = encode_own(msg)
    assert type(entry) is OwnEntry and entry == encode_message(msg)  # the same bytes
    first, second = decode_message(entry), decode_message(entry)
    fresh = decode_message(bytes(entry))  # what any reader of these bytes gets
    for back in (first, second):
        assert back == msg and back.model_dump() == msg.model_dump()
        assert back.__pydantic_fields_set__ == fresh.__pydantic_fields_set__
        # the original answer's request id, carried again (read back through the codec)
        assert orjson.loads(encode_message(back))[REQUEST_ID_KEY] == "req_original"
    assert entry.checked is not None  # validated by the first read, kept for the next
    assert second is not first and second is not entry.checked


def test_a_hit_can_change_its_message_without_changing_the_next() -> None:
    entry = encode_own(sdk_message(**MESSAGES["tool_use"]))
    first = decode_message(entry)
    first.content[0].text = "changed"  # type: ignore[union-attr]
    first.content[1].input["q"] = "changed"  # type: ignore[index, union-attr]
    first.content.append(first.content[0])
    first.usage.output_tokens = 10**9
    second = decode_message(entry)
    assert second.content[0].text == "Looking it up."  # type: ignore[union-attr]
    assert second.content[1].input == {"q": "refund"}  # type: ignore[union-attr]
    assert len(second.content) == 2 and second.usage.output_tokens == 9


def test_an_own_entry_is_validated_completely_on_its_first_read() -> None:
    """The guarantee of strict decoding holds for this process's own entries too: a
    message whose counts are out of range is refused on its first read, and not kept."""
    bad = sdk_message(usage={"input_tokens": -1, "output_tokens": 9})
    entry = encode_own(bad)
    for _ in range(2):
        with pytest.raises(InvalidEntry, match=r"usage\.input_tokens"):
            decode_message(entry)
    assert entry.checked is None
    with pytest.warns(UserWarning, match="Expected `int`"):  # pydantic's, dumping a str count
        wrong_type = encode_own(sdk_message(usage={"input_tokens": "25", "output_tokens": 9}))
    with pytest.raises(InvalidEntry):
        decode_message(wrong_type)


def test_plain_bytes_are_validated_on_every_read() -> None:
    """Bytes from Redis or from anyone's `set` are not trusted, however often they decode."""
    data = encode_message(sdk_message())
    assert type(data) is bytes
    assert decode_message(data) == decode_message(data)
    poisoned = orjson.dumps({**orjson.loads(data), "usage": {"input_tokens": 1.5}})
    for _ in range(2):
        with pytest.raises(InvalidEntry):
            decode_message(poisoned)


def test_clone_shares_only_immutable_values() -> None:
    expires = "2026-12-07T15:00:00Z"
    msg = Message.model_validate(
        {
            **orjson.loads(encode_message(sdk_message(**MESSAGES["tool_use"]))),
            "container": {"id": "c1", "expires_at": expires},
        }
    )
    copy = clone_model(msg)
    assert copy == msg and copy is not msg
    assert copy.content is not msg.content and copy.content[1] is not msg.content[1]
    assert copy.content[1].input is not msg.content[1].input  # type: ignore[union-attr]
    assert copy.usage is not msg.usage and copy.container is not msg.container
    assert copy.container is not None and msg.container is not None
    assert isinstance(copy.container.expires_at, datetime.datetime)
    assert copy.container.expires_at == msg.container.expires_at


def test_clone_copies_values_of_unknown_types_deeply() -> None:
    msg = construct_type(type_=Message, value={**MESSAGES["text"], "brand_new": {1, 2}})
    assert isinstance(msg, Message)
    copy = clone_model(msg)
    assert copy == msg
    new, old = copy.__pydantic_extra__, msg.__pydantic_extra__
    assert new is not None and old is not None and new["brand_new"] is not old["brand_new"]


def test_memory_cache_charges_an_own_entry_for_the_message_it_keeps() -> None:
    data = encode_message(sdk_message())
    plain, own = MemoryCache(), MemoryCache()
    plain.set_nowait("k", data)
    own.set_nowait("k", encode_own(sdk_message()))
    assert own.stats.bytes > plain.stats.bytes + len(data)
    bounded = MemoryCache(max_bytes=own.stats.bytes * 2 + 1)
    for i in range(5):
        bounded.set_nowait(str(i), encode_own(sdk_message()))
    assert len(bounded) == 2 and bounded.stats.bytes <= bounded.max_bytes


def test_bytes_this_process_wrote_to_a_shared_cache_are_validated_once() -> None:
    written = WrittenEntries()
    data = encode_message(sdk_message())
    written.wrote("k", data)
    read = bytes(data)  # what Redis hands back: equal bytes, another object
    mine = written.own("k", read)
    assert type(mine) is OwnEntry and mine == read
    assert decode_message(mine) == decode_message(read)
    assert written.own("k", read) is mine  # the same entry: validated once, copied after
    other = encode_message(sdk_message(id="msg_from_another_process"))
    assert written.own("k", other) is other  # another process's bytes: validated as usual
    assert written.own("unknown", read) is read


def test_bytes_this_process_wrote_are_still_refused_if_invalid() -> None:
    written = WrittenEntries()
    data = encode_message(sdk_message(usage={"input_tokens": -1, "output_tokens": 9}))
    written.wrote("k", data)
    for _ in range(2):
        with pytest.raises(InvalidEntry):
            decode_message(written.own("k", bytes(data)))

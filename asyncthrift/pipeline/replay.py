"""Cached and shared answers served as streams: `ReplayStream` and `replay_events`.

A request whose answer is cached, or whose twin is in flight, is answered by replaying that
`Message` as the well-formed event sequence the API would have streamed, in the SDK's own
`AsyncStream` type; accumulating it gives the `Message` back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import anthropic
import httpx2
import orjson
from anthropic import AsyncStream
from anthropic.types import Message, RawMessageStreamEvent

from ..core._sdk import build_event

__all__ = ["REPLAY_HEADER", "ReplayStream", "replay_events"]

REPLAY_HEADER: Final = "x-asyncthrift-replay"
"""Response header of a replayed stream: ``cache`` or ``dedupe`` (absent on a live stream)."""


class ReplayStream(AsyncStream[RawMessageStreamEvent]):
    """A cached or shared `Message` served as the SDK's `AsyncStream` of raw events.

    Nothing is sent and nothing is reserved. ``response`` is a synthetic 200 whose
    ``request-id`` is the message id and whose `REPLAY_HEADER` says where the answer came from.
    """

    def __init__(self, message: Message, *, source: str, sdk: anthropic.AsyncAnthropic) -> None:
        response = httpx2.Response(
            200,
            headers={"request-id": message.id, REPLAY_HEADER: source},
            request=httpx2.Request("POST", str(sdk.base_url).rstrip("/") + "/v1/messages"),
        )
        super().__init__(
            cast_to=RawMessageStreamEvent,  # type: ignore[arg-type]
            response=response,
            client=sdk,
        )
        self._message = message
        self.source = source

    async def __stream__(self) -> AsyncIterator[RawMessageStreamEvent]:
        for event in replay_events(self._message):
            yield event


def replay_events(message: Message) -> list[RawMessageStreamEvent]:
    """The event sequence the API would stream for `message`, one delta per block.

    Accumulating it (the SDK's `AsyncMessageStream.get_final_message()`) gives back `message`:
    ``message_start`` carries the input usage and an output count of 1, as the API's does;
    ``message_delta`` carries the stop reason and the full usage.
    """
    dump = message.model_dump(mode="json", exclude_unset=True)
    usage = dict(dump.get("usage") or {})
    start = {
        **dump,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": min(1, usage.get("output_tokens", 0))},
    }
    events = [build_event({"type": "message_start", "message": start})]
    for index, block in enumerate(dump.get("content") or []):
        first, deltas = _block_events(block)
        start_event = {"type": "content_block_start", "index": index, "content_block": first}
        events.append(build_event(start_event))
        events.extend(
            build_event({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
        )
        events.append(build_event({"type": "content_block_stop", "index": index}))
    delta_usage = {
        k: v
        for k, v in usage.items()
        if k
        in (
            "output_tokens",
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "server_tool_use",
        )
    }
    events.append(
        build_event(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": dump.get("stop_reason"),
                    "stop_sequence": dump.get("stop_sequence"),
                },
                "usage": delta_usage,
            }
        )
    )
    events.append(build_event({"type": "message_stop"}))
    return events


def _block_events(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A content block as (its ``content_block_start`` form, its deltas)."""
    kind = block.get("type")
    if kind == "text":
        start: dict[str, Any] = {**block, "text": ""}
        deltas: list[dict[str, Any]] = []
        if block.get("text"):
            deltas.append({"type": "text_delta", "text": block["text"]})
        citations = block.get("citations")
        if citations:
            start["citations"] = []
            deltas.extend({"type": "citations_delta", "citation": c} for c in citations)
        return start, deltas
    if kind in ("tool_use", "server_tool_use"):
        partial = orjson.dumps(block.get("input") or {}).decode()
        return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": partial}]
    if kind == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return {**block, "thinking": "", "signature": ""}, deltas
    # redacted_thinking, server tool results and anything newer arrive whole at the start
    return block, []

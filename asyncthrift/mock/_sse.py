"""Server-sent events of a streamed Message, byte for byte as the API frames them.

Static events are constants and a text delta is a template around one `orjson.dumps` of
the text, because a stream has dozens of events and this is the mock's hottest path.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ._answers import Answer

__all__ = ["delta_event", "error_event", "start_events", "stop_events"]


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_BLOCK_START: Final = _event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
_PING: Final = _event("ping", {"type": "ping"})
_BLOCK_STOP: Final = _event("content_block_stop", {"type": "content_block_stop", "index": 0})
_MESSAGE_STOP: Final = _event("message_stop", {"type": "message_stop"})
_DELTA_HEAD: Final = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)


def start_events(message_id: str, model: str, usage: dict[str, int]) -> bytes:
    """message_start (output_tokens 1, as the API reports), content_block_start, ping."""
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    return _event("message_start", {"type": "message_start", "message": message}) + (
        _BLOCK_START + _PING
    )


def delta_event(text: str) -> bytes:
    """One content_block_delta carrying a text_delta."""
    return _DELTA_HEAD + orjson.dumps(text) + b"}}\n\n"


def stop_events(answer: Answer) -> bytes:
    """content_block_stop, message_delta (stop reason, cumulative output), message_stop."""
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
        "usage": {"output_tokens": answer.output_tokens},
    }
    return _BLOCK_STOP + _event("message_delta", delta) + _MESSAGE_STOP


def error_event(request_id: str) -> bytes:
    """An overloaded_error arriving mid-stream, after the 200 status was sent."""
    body = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": request_id,
    }
    return _event("error", body)

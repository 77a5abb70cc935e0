"""Request validation with the real API's statuses, error types and message style.

A client that sends something the real API would reject should fail against the mock too,
with the same SDK exception. Unknown top-level fields are accepted on purpose: the SDK
grows new parameters faster than this list, and a false 400 would be worse than a miss.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Problem", "validate"]


class Problem(NamedTuple):
    status: int
    type: str
    message: str


def _bad(message: str) -> Problem:
    return Problem(400, "invalid_request_error", message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_blocks(where: str, blocks: list[Any], final_assistant: bool) -> Problem | None:
    for j, block in enumerate(blocks):
        if not isinstance(block, dict):
            return _bad(f"{where}.{j}: Input should be a valid dictionary")
        kind = block.get("type")
        if not isinstance(kind, str):
            return _bad(f"{where}.{j}.type: Field required")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                return _bad(f"{where}.{j}.text: Input should be a valid string")
            if not text and not final_assistant:
                return _bad("messages: text content blocks must be non-empty")
    return None


def _check_messages(messages: object) -> Problem | None:
    if messages is None:
        return _bad("messages: Field required")
    if not isinstance(messages, list):
        return _bad("messages: Input should be a valid list")
    if not messages:
        return _bad("messages: at least one message is required")
    last = len(messages) - 1
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return _bad(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            return _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        final_assistant = i == last and role == "assistant"
        if isinstance(content, str):
            if not content and not final_assistant:
                return _bad("messages: text content blocks must be non-empty")
        elif isinstance(content, list):
            problem = _check_blocks(f"messages.{i}.content", content, final_assistant)
            if problem is not None:
                return problem
        elif content is None:
            return _bad(f"messages.{i}.content: Field required")
        else:
            return _bad(f"messages.{i}.content: Input should be a valid string or list")
    return None


def _check_optional(body: dict[str, Any]) -> Problem | None:
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            return _bad("system: Input should be a valid string or list")
        for j, block in enumerate(system):
            if not (isinstance(block, dict) and block.get("type") == "text"):
                return _bad(f"system.{j}: Input should be a text block")
            if not isinstance(block.get("text"), str):
                return _bad(f"system.{j}.text: Input should be a valid string")
    if "stream" in body and not isinstance(body["stream"], bool):
        return _bad("stream: Input should be a valid boolean")
    temperature = body.get("temperature")
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 1):
        return _bad("temperature: Input should be a number between 0 and 1")
    top_p = body.get("top_p")
    if top_p is not None and not (_is_number(top_p) and 0 <= top_p <= 1):
        return _bad("top_p: Input should be a number between 0 and 1")
    top_k = body.get("top_k")
    if top_k is not None and not (_is_int(top_k) and top_k >= 0):
        return _bad("top_k: Input should be an integer >= 0")
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        return _bad("stop_sequences: Input should be a valid list of strings")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return _bad("tools: Input should be a valid list")
        for j, tool in enumerate(tools):
            if not (isinstance(tool, dict) and isinstance(tool.get("name"), str)):
                return _bad(f"tools.{j}.name: Field required")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return _bad("metadata: Input should be a valid dictionary")
    return None


#: Model families the mock serves (a ``claude-*`` id naming none of them is a 404).
_FAMILIES = ("opus", "sonnet", "haiku")


def validate(body: object, *, count_tokens: bool, max_output_tokens: int) -> Problem | None:
    """The first problem with a Messages (or count_tokens) body, or None if it is valid.

    Schema errors come first (400 invalid_request_error); an unknown model id (one not
    starting with ``claude-``, or of no known family) is then a 404 not_found_error, as on
    the real API.
    """
    if not isinstance(body, dict):
        return _bad("request body must be a JSON object")
    model = body.get("model")
    if model is None:
        return _bad("model: Field required")
    if not isinstance(model, str):
        return _bad("model: Input should be a valid string")
    max_tokens = body.get("max_tokens")
    if not count_tokens:
        if max_tokens is None:
            return _bad("max_tokens: Field required")
        if not _is_int(max_tokens):
            return _bad("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            return _bad("max_tokens: Input should be greater than or equal to 1")
    problem = _check_messages(body.get("messages")) or _check_optional(body)
    if problem is not None:
        return problem
    if not model.startswith("claude-") or not any(f in model for f in _FAMILIES):
        return Problem(404, "not_found_error", f"model: {model}")
    if not count_tokens and isinstance(max_tokens, int) and max_tokens > max_output_tokens:
        return _bad(
            f"max_tokens: {max_tokens} > {max_output_tokens}, which is the maximum allowed "
            f"number of output tokens for {model}"
        )
    return None

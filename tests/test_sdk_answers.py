"""An answer's `Message` built by pydantic's validation (`core._sdk.QuickAnswers`) is the
object the SDK builds, field for field, and the SDK still builds every answer the strict
check does not take (issue 17 point 5: the SDK's `construct_type` was ~90 µs of a request's
~600 µs of client CPU with nothing binding).

Through the SDK's transport seam (`tests.fake_api`): the bare SDK and a `Thrift` read the same
bytes."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import _base_client
from anthropic.types import Message

from asyncthrift import Thrift

from .fake_api import FakeAPI, message_json

MODEL = "claude-sonnet-4-6"
REQ: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def _answer(**changes: Any) -> dict[str, Any]:
    body = message_json(REQ)
    body.update(changes)
    return body


#: name -> (answer body, whether the strict validation takes it)
ANSWERS: dict[str, tuple[dict[str, Any], bool]] = {
    "text": (_answer(), True),
    "tool use": (
        _answer(
            content=[
                {"type": "text", "text": "calling", "citations": None},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, {"b": None}]}},
            ],
            stop_reason="tool_use",
        ),
        True,
    ),
    "thinking": (
        _answer(
            content=[
                {"type": "thinking", "thinking": "x", "signature": "s"},
                {"type": "redacted_thinking", "data": "d"},
                {"type": "text", "text": "y"},
            ]
        ),
        True,
    ),
    "usage without cache fields": (_answer(usage={"input_tokens": 3, "output_tokens": 4}), True),
    "a block field this SDK does not know": (
        _answer(content=[{"type": "text", "text": "x", "new_field": 3}]),
        True,
    ),
    "a top-level field this SDK does not know": (_answer(new_top={"a": 1}), False),
    "a block this SDK does not know": (_answer(content=[{"type": "new_block", "x": 1}]), False),
    "a stop reason this SDK does not know": (_answer(stop_reason="new_reason"), False),
    "a field of another type": (_answer(content=[{"type": "text", "text": 5}]), False),
    "a float count": (_answer(usage={"input_tokens": 3.0, "output_tokens": 4}), False),
    "a date to parse": (
        _answer(container={"id": "c", "expires_at": "2026-01-01T00:00:00Z"}),
        False,
    ),
}


def _api(body: dict[str, Any]) -> FakeAPI:
    """Answers `body`; a stream (a cold start's probe) a plain answer, as events."""

    def handler(request: dict[str, Any], n: int) -> httpx2.Response:
        answer = message_json(request) if request.get("stream") else body
        return httpx2.Response(200, json=answer, headers={"request-id": f"req_{n}"})

    return FakeAPI(handler)


def _fields_set(value: Any) -> Any:
    """Every model's ``model_fields_set`` in `value`, nested."""
    if isinstance(value, anthropic.BaseModel):
        return (
            type(value).__name__,
            sorted(value.model_fields_set),
            {k: _fields_set(getattr(value, k)) for k in type(value).model_fields},
        )
    if isinstance(value, list):
        return [_fields_set(v) for v in value]
    return value


@pytest.fixture
def constructed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The SDK's `construct_type` calls that build a `Message`."""
    calls: list[object] = []
    real = _base_client.construct_type  # type: ignore[attr-defined]

    def counting(*, type_: Any, value: object) -> object:
        if type_ is Message:
            calls.append(type_)
        return real(type_=type_, value=value)

    monkeypatch.setattr(_base_client, "construct_type", counting)
    return calls


@pytest.mark.parametrize("name", list(ANSWERS))
async def test_answer_is_the_sdks_and_built_quickly_when_strict_takes_it(
    name: str, constructed: list[object]
) -> None:
    body, quick = ANSWERS[name]
    bare_api, thrift_api = _api(copy.deepcopy(body)), _api(copy.deepcopy(body))
    bare = anthropic.AsyncAnthropic(api_key="k", max_retries=0, **bare_api.sdk_options())
    expected = await bare.messages.create(**REQ)
    assert constructed  # the bare SDK builds it itself
    constructed.clear()
    async with Thrift(api_key="k", limits=None, sdk_options=thrift_api.sdk_options()) as client:
        await client.messages.create(**REQ)  # a cold start's probe, a stream
        assert thrift_api.calls and constructed == []
        got = await client.messages.create(**{**REQ, "max_tokens": 65})
    await bare.close()

    assert type(got) is type(expected)
    assert got == expected
    assert _fields_set(got) == _fields_set(expected)
    with warnings.catch_warnings():  # the SDK's own, on what it built loosely
        warnings.simplefilter("ignore")
        assert got.to_json() == expected.to_json()
    assert repr(got) == repr(expected)
    assert got._request_id == f"req_{len(thrift_api.calls)}" == "req_2"
    # the quick build where the strict check takes the answer, the SDK's own elsewhere
    assert (constructed == []) is quick


async def test_strict_response_validation_is_the_sdks(constructed: list[object]) -> None:
    """A client asking for the SDK's strict response validation gets the SDK's (an error
    for an answer that does not validate), not the quick build's fallback."""
    body, _ = ANSWERS["a field of another type"]
    api = _api(body)
    options = {**api.sdk_options(), "_strict_response_validation": True}
    async with Thrift(api_key="k", limits=None, sdk_options=options) as client:
        await client.messages.create(**REQ)  # a cold start's probe, a stream
        with pytest.raises(anthropic.APIResponseValidationError):
            await client.messages.create(**{**REQ, "max_tokens": 65})

"""Every use of the `anthropic` SDK's private names, in one place.

The rest of asyncthrift uses only the SDK's public API and this module. When an SDK release
moves one of these names, this is the one file to change, and CI runs the streaming,
cache-replay and integration tests against both the lowest and the newest SDK the pins
allow (``.ci/run``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import anthropic
import httpx2
import orjson
import pydantic
from anthropic._models import construct_type
from anthropic._types import Body, Headers, Query, SequenceNotStr
from anthropic.lib._parse._response import ResponseFormatT, parse_beta_response, parse_response
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent

if TYPE_CHECKING:
    from anthropic.lib.tools._tool_params import BetaToolLike as BetaToolLike
    from anthropic.types import Message
    from anthropic.types.beta import BetaMessage
    from anthropic.types.beta.parsed_beta_message import ParsedBetaMessage
    from anthropic.types.parsed_message import ParsedMessage

__all__ = [
    "Body",
    "Headers",
    "Passthrough",
    "Query",
    "QuickAnswers",
    "ResponseFormatT",
    "SequenceNotStr",
    "accumulate",
    "aiohttp_transport",
    "build_event",
    "collected_message",
    "http_client",
    "parsed",
    "parsed_beta",
    "plain_message",
    "status_error",
    "stream_parts",
    "validated",
    "with_output_format",
]

_ACCUMULATE_TAKES_BUFS = "json_bufs" in inspect.signature(accumulate_event).parameters


def aiohttp_transport() -> tuple[type[Any], Any] | None:
    """The transport class `anthropic.DefaultAioHttpClient` builds (vendored in the SDK) and
    the SDK's connection limits, to build one that traces its writes
    (`pipeline._departure`); None where this SDK release keeps them elsewhere."""
    try:
        from anthropic._constants import DEFAULT_CONNECTION_LIMITS
        from anthropic._vendor.httpx_aiohttp import AiohttpTransport
    except ImportError:
        return None
    return AiohttpTransport, DEFAULT_CONNECTION_LIMITS


def build_event(data: dict[str, Any]) -> RawMessageStreamEvent:
    """A stream event built exactly as the SDK builds one from the wire."""
    return cast("RawMessageStreamEvent", construct_type(type_=RawMessageStreamEvent, value=data))


def accumulate(
    event: RawMessageStreamEvent,
    snapshot: ParsedMessage[Any] | None,
    json_bufs: dict[int, bytes],
) -> ParsedMessage[Any]:
    """Fold `event` into `snapshot`, as the SDK's `AsyncMessageStream` does."""
    if _ACCUMULATE_TAKES_BUFS:
        return accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    fold: Any = accumulate_event  # releases before json_bufs kept partial JSON themselves
    return cast("ParsedMessage[Any]", fold(event=event, current_snapshot=snapshot))


def collected_message(
    snapshot: ParsedMessage[Any], headers: Mapping[str, str], carried: set[str]
) -> Message:
    """A stream read to its end as the `Message` a non-streamed ``create`` returns: the same
    class (not the accumulator's `ParsedMessage`), with the response's ``_request_id`` (and
    ``_workspace_id`` where the SDK sets one). `carried`: the message's fields the server
    sent (in ``message_start`` or a ``message_delta``); a null the accumulator set on its
    own (``stop_details``) is left unset, as the non-streamed answer leaves it, so that the
    two serialize alike."""
    from anthropic.types import Message

    value = {k: v for k, v in snapshot.to_dict().items() if v is not None or k in carried}
    return _with_ids(construct_type(type_=Message, value=value), headers)


def plain_message(body: bytes, headers: Mapping[str, str]) -> Message:
    """A non-streamed answer's body as the SDK's `Message` (with its ``_request_id``)."""
    from anthropic.types import Message

    data = orjson.loads(body)
    message = validated(Message, data)
    if message is None:
        message = construct_type(type_=Message, value=data)
    return _with_ids(message, headers)


@functools.cache
def _quick_fields() -> tuple[tuple[type[pydantic.BaseModel], frozenset[str]], ...]:
    """The answer models `validated` builds, with their fields' names (pydantic 2 only)."""
    if not pydantic.VERSION.startswith("2."):
        return ()
    from anthropic.types import Message
    from anthropic.types.beta import BetaMessage

    return tuple((model, frozenset(model.model_fields)) for model in (Message, BetaMessage))


def validated(cast_to: object, data: object) -> Any | None:
    """`data` (an answer's parsed JSON) as `cast_to` built by pydantic's validation in
    strict mode, which gives exactly what the SDK's `construct_type` gives for the data it
    accepts (in C: ~10 µs for a short `Message` against ~90 µs); None for any other model,
    for data the strict check refuses (a field of another type or shape, a block or stop
    reason this SDK does not know, a date to parse) or that has top-level fields the
    model does not (`construct_type` leaves those out of ``model_fields_set``): the SDK's
    own construction then, as before."""
    # by identity: a stream's event type (a union) hashes slowly, and this sees every event
    quick = next((q for q in _quick_fields() if q[0] is cast_to), None)
    if quick is None or not isinstance(data, dict) or not data.keys() <= quick[1]:
        return None
    try:
        return quick[0].model_validate(data, strict=True)
    except pydantic.ValidationError:
        return None


class QuickAnswers(anthropic.AsyncAnthropic):
    """The SDK's client, a `Message` (or `BetaMessage`) answer built by `validated` (the
    same object, a fraction of the CPU); anything else, or with strict response validation
    asked for, as the SDK builds it."""

    def _process_response_data(
        self, *, data: object, cast_to: type[Any], response: httpx2.Response
    ) -> Any:
        if not self._strict_response_validation:
            quick = validated(cast_to, data)
            if quick is not None:
                return quick
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


def _with_ids(value: object, headers: Mapping[str, str]) -> Message:
    from anthropic import _models

    message = cast("Message", value)
    request_id = headers.get("request-id")
    add_ids = getattr(_models, "add_response_ids", None)
    if add_ids is not None:
        add_ids(message, request_id=request_id, workspace_id=headers.get("anthropic-workspace-id"))
    else:  # releases before workspace ids
        message._request_id = request_id
    return message


def with_output_format(kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(``output_format``, or None; a copy of `kwargs` without it and, when it is given,
    with its JSON schema as ``output_config["format"]``): the request the SDK's ``parse``
    and ``stream`` send for it, so the cache key is the one of that request. An omitted
    value (``anthropic.omit``) counts as not given, as in the SDK."""
    kwargs = dict(kwargs)
    output_format = kwargs.pop("output_format", None)
    if isinstance(output_format, anthropic.Omit | anthropic.NotGiven):
        output_format = None
    if output_format is not None:
        config = kwargs.get("output_config")
        if isinstance(config, anthropic.Omit | anthropic.NotGiven):
            config = None
        kwargs["output_config"] = _output_config(output_format, config)
    return output_format, kwargs


def _output_config(output_format: Any, config: Any) -> dict[str, Any]:
    """``output_config`` with ``format`` built from a pydantic type, exactly as the SDK does."""
    if isinstance(output_format, Mapping):
        raise TypeError(
            "`output_format` must be a type; pass a schema dict as "
            "`output_config={'format': ...}` instead"
        )
    from anthropic.lib._parse._transform import cached_json_schema, transform_schema
    from pydantic import TypeAdapter

    schema = cached_json_schema(TypeAdapter(output_format))
    fmt = {"type": "json_schema", "schema": transform_schema(schema)}
    return {**(config or {}), "format": fmt}


def parsed(message: Message, output_format: Any) -> ParsedMessage[Any]:
    """``messages.parse``'s answer made from `message`, exactly as the SDK makes it (each
    text block's ``parsed_output`` validated against `output_format`; None: not parsed)."""
    fmt = anthropic.NOT_GIVEN if output_format is None else output_format
    return parse_response(response=message, output_format=fmt)


def parsed_beta(message: BetaMessage, output_format: Any) -> ParsedBetaMessage[Any]:
    """``beta.messages.parse``'s answer made from `message`, as the SDK makes it."""
    fmt = anthropic.NOT_GIVEN if output_format is None else output_format
    return parse_beta_response(response=message, output_format=fmt)


def status_error(
    sdk: anthropic.AsyncAnthropic, message: str, body: object, response: httpx2.Response
) -> anthropic.APIStatusError:
    """The SDK's own error class for `response`'s status (`RateLimitError` for a 429, ...)."""
    return sdk._make_status_error(message, body=body, response=response)


def http_client(sdk: anthropic.AsyncAnthropic) -> httpx2.AsyncClient:
    """The HTTP client `sdk` sends on (the pipeline's header hook is on it)."""
    return sdk._client


def stream_parts(stream: anthropic.AsyncStream[Any]) -> tuple[Any, Any]:
    """(client, request options) of an `AsyncStream`, to build another over its response."""
    return stream._client, stream._options


class Passthrough:
    """A view of an SDK object whose own attributes (set by the subclass: ``messages``, ...)
    are scheduled facades; every other attribute is the SDK object's, unscheduled."""

    __slots__ = ("_sdk",)

    def __init__(self, sdk: Any) -> None:
        self._sdk = sdk

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not the SDK's to answer (and no recursion while unset)
            raise AttributeError(name)
        return getattr(self._sdk, name)
